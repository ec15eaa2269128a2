//! Micro-benchmarks of hot paths, meant to run under callgrind: each case does
//! its setup, then runs the path `--iterations` times. `scripts/bench-micro`
//! runs every case twice (N and 2N iterations) and divides the difference in
//! instructions by N, which cancels setup and process start exactly. Instruction
//! counts do not move with a noisy neighbour, unlike wall time.

use std::hint::black_box;
use std::sync::Arc;

use api::extract::{Caller, RequestIds, SearchParams};
use api::{ApiSettings, AppState};
use domain::catalogue::Catalogue;
use domain::permissions::TypeSet;
use domain::search::Audience;
use domain::validation::{ValidationContext, validate};
use domain::{NhsNumber, OdsCode, Role};

use crate::dataset::Dataset;

/// Arguments of `nrls bench micro`.
#[derive(Debug, clap::Args)]
pub struct MicroArgs {
    /// nhs-parse, validate, import-line, bundle, search, search-sqlite,
    /// auth-hit or auth-miss.
    pub case: String,
    #[arg(long, default_value_t = 1_000)]
    pub iterations: u64,
}

/// Pointers the search and bundle cases hold for their patient: the
/// dataset's mean is about 3, a busy patient has 10.
const PATIENT_POINTERS: u64 = 10;

pub async fn run(args: MicroArgs) -> Result<(), String> {
    let n = args.iterations;
    match args.case.as_str() {
        "nhs-parse" => {
            let texts = ["9990000018", "9990000026", "9990000034", "9000000009"];
            for i in 0..n {
                let _ = black_box(NhsNumber::parse(black_box(texts[(i % 4) as usize])));
            }
        }
        "validate" => {
            let (docs, ods) = sample_docs()?;
            let catalogue = Catalogue::nrl_v3();
            for i in 0..n {
                let (doc, ods) = (&docs[(i % 10) as usize], &ods[(i % 10) as usize]);
                let ctx = ValidationContext {
                    catalogue,
                    caller: ods,
                    permitted_types: TypeSet::all(catalogue),
                };
                let _ = black_box(validate(black_box(doc), &ctx));
            }
        }
        "import-line" => {
            let lines = sample_lines(10);
            for i in 0..n {
                let line = &lines[(i % 10) as usize];
                let _ = black_box(crate::commands::import::to_record(
                    i,
                    black_box(line),
                    "2024-01-01T00:00:00Z",
                ));
            }
        }
        "bundle" => {
            let lines = sample_lines(PATIENT_POINTERS);
            for _ in 0..n {
                let mut bundle = fhir::SearchsetBuilder::new(
                    PATIENT_POINTERS,
                    "http://127.0.0.1:8080/consumer/FHIR/R4/DocumentReference?subject:identifier=https%3A%2F%2Ffhir.nhs.uk%2FId%2Fnhs-number%7C9990000018",
                    None,
                    lines.iter().map(|l| l.len() + 160).sum(),
                );
                for line in &lines {
                    bundle.push(fhir::BundleEntry {
                        full_url: "http://127.0.0.1:8080/consumer/FHIR/R4/DocumentReference/RA0-g1p0n0",
                        resource_json: line,
                    });
                }
                black_box(bundle.finish());
            }
        }
        "search" | "search-sqlite" => {
            let dir = std::env::temp_dir().join(format!("nrls-micro-{}", std::process::id()));
            let store: store::SharedStore = if args.case == "search" {
                Arc::new(store::memory::MemoryStore::new())
            } else {
                Arc::new(
                    store::sqlite::SqliteStore::open(&dir.join("nrls.db"), Default::default())
                        .map_err(|e| e.to_string())?,
                )
            };
            let (state, caller, params) = search_setup(store).await?;
            for _ in 0..n {
                // The operation as served, its (in-memory) audit append
                // included, then the Bundle the route writes.
                let page =
                    api::operations::search(&state.context(), &caller, Audience::Consumer, &params)
                        .await
                        .map_err(|e| format!("{e:?}"))?;
                black_box(api::routes::searchset(
                    &page,
                    &params,
                    &state.settings().public_url,
                    api::routes::CONSUMER_POINTERS,
                ));
            }
            drop(state);
            let _ = std::fs::remove_dir_all(&dir);
        }
        "auth-hit" | "auth-miss" => {
            let hit = args.case == "auth-hit";
            // A capacity of 1 leaves one entry per shard, and a full shard is
            // cleared on insert: cycling 64 tokens then misses (almost) always.
            let (authenticator, tokens) = auth_setup(if hit { 65_536 } else { 1 }).await?;
            for i in 0..n {
                let token = &tokens[(i % 64) as usize];
                let _ = black_box(authenticator.authenticate(black_box(token)));
            }
        }
        other => return Err(format!("unknown micro-benchmark {other}")),
    }
    Ok(())
}

/// `n` pointers of one patient (the dataset's first, with its NHS number).
fn sample_lines(n: u64) -> Vec<String> {
    let dataset = Dataset::new(5_000, 1);
    let patient = dataset.nhs_number(0);
    let mut lines = Vec::new();
    let _ = dataset.generate(|g| {
        if lines.len() < n as usize {
            // Every line becomes this patient's, so one search finds all.
            lines.push(
                g.json
                    .replace(&g.nhs_number.to_string(), &patient.to_string()),
            );
        }
        Ok::<(), ()>(())
    });
    lines
}

fn sample_docs() -> Result<(Vec<fhir::DocumentReference>, Vec<OdsCode>), String> {
    let mut docs = Vec::new();
    let mut ods = Vec::new();
    for line in sample_lines(10) {
        let doc: fhir::DocumentReference =
            serde_json::from_str(&line).map_err(|e| e.to_string())?;
        let code = doc
            .custodian
            .as_ref()
            .and_then(|c| c.identifier.as_ref())
            .and_then(|i| i.value.as_deref())
            .and_then(OdsCode::parse)
            .ok_or("sample without custodian")?;
        docs.push(doc);
        ods.push(code);
    }
    Ok((docs, ods))
}

async fn search_setup(
    store: store::SharedStore,
) -> Result<(AppState, Caller, SearchParams), String> {
    let records = sample_lines(PATIENT_POINTERS)
        .iter()
        .enumerate()
        .map(|(i, line)| crate::commands::import::to_record(i as u64, line, "2024-01-01T00:00:00Z"))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{e:?}"))?;
    let patient = records.first().map(|r| r.nhs_number).ok_or("no sample")?;
    store.import(records).await.map_err(|e| e.to_string())?;
    let registry = auth::AppRegistry::from_configs(&[]).map_err(|e| e.to_string())?;
    let settings = auth::TokenSettings::new(
        "http://127.0.0.1:8080",
        "http://127.0.0.1:8080/oauth2/token",
        vec![7u8; 32],
    );
    let authenticator =
        auth::Authenticator::new(Arc::new(registry), settings).map_err(|e| e.to_string())?;
    let state = AppState::new(store, Arc::new(authenticator), ApiSettings::default());
    let caller = Caller {
        client_id: Arc::from("micro"),
        ods: OdsCode::parse("RX9").ok_or("ods")?,
        role: Role::Consumer,
        types: TypeSet::all(Catalogue::nrl_v3()),
        ids: RequestIds {
            request_id: "00000000-0000-4000-8000-000000000001".into(),
            correlation_id: None,
        },
        access: Default::default(),
        requires_user: false,
    };
    let params = SearchParams(vec![(
        "subject:identifier".into(),
        format!("https://fhir.nhs.uk/Id/nhs-number|{patient}"),
    )]);
    Ok((state, caller, params))
}

/// An authenticator with one app and 64 access tokens it issued (all cached
/// when `cache_capacity` allows).
async fn auth_setup(cache_capacity: usize) -> Result<(auth::Authenticator, Vec<String>), String> {
    const CLIENT: &str = "micro-consumer";
    const TOKEN_URL: &str = "http://127.0.0.1:8080/oauth2/token";
    let org = auth::OrganisationConfig {
        ods: "RX9".into(),
        roles: vec!["consumer".into()],
        pointer_types: vec!["http://snomed.info/sct|736253002".into()],
    };
    let app = auth::demo::app_config(CLIENT, "Micro-benchmark consumer", vec![org]);
    let registry = auth::AppRegistry::from_configs(&[app]).map_err(|e| e.to_string())?;
    let mut settings = auth::TokenSettings::new("http://127.0.0.1:8080", TOKEN_URL, vec![7u8; 32]);
    settings.token_cache_capacity = cache_capacity;
    let authenticator =
        auth::Authenticator::new(Arc::new(registry), settings).map_err(|e| e.to_string())?;
    let key = auth::demo::signing_key(CLIENT).map_err(|e| e.to_string())?;
    let mut tokens = Vec::with_capacity(64);
    for _ in 0..64 {
        let assertion = auth::mint_client_assertion(
            CLIENT,
            TOKEN_URL,
            &key,
            std::time::Duration::from_secs(120),
        )
        .map_err(|e| e.to_string())?;
        let form = vec![
            ("grant_type".to_owned(), "client_credentials".to_owned()),
            (
                "client_assertion_type".to_owned(),
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".to_owned(),
            ),
            ("client_assertion".to_owned(), assertion),
        ];
        let issued = authenticator
            .issue_token(&form)
            .await
            .map_err(|e| e.to_string())?;
        tokens.push(issued.access_token);
    }
    Ok((authenticator, tokens))
}
