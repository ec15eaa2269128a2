//! End to end: the shared care record over real HTTP, with three real demo
//! sources (QWO, QE1, QRV) and a fourth, unregistered server, all in-process
//! on port 0. Sources are switched between normal, slow, failing and
//! malformed while the tests run.
//!
//! The service is built the way `nrls serve` builds it (`api::router` over
//! a state with the federator), over the real access services (policy and
//! audit trail, in memory). Sensitive pointers are tested twice: hidden by
//! the real access policy (default: fail closed), and by an extra closure
//! hook under which only the app `consumer-sensitive` sees them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use api::access::AccessServices;
use api::operations::SharedCareRecord;
use api::ops::Ops;
use api::{ApiSettings, AppState};
use auth::{AppRegistry, Authenticator, TokenSettings};
use domain::access::AccessPolicy;
use domain::{OdsCode, PointerId};
use federation::{FederationConfig, Federator, SourceRegistry};
use nrls::demo::source::{
    Mode, Region, RunningSource, SourceState, seed_pointers, spawn, summary_pointer,
};
use serde_json::Value;
use store::SharedStore;
use store::memory::MemoryStore;
use tokio::net::TcpListener;

const NHS: &str = "https://fhir.nhs.uk/Id/nhs-number";
const CRISIS: &str = "http://snomed.info/sct|736253002";
const SOURCES_EXT: &str = "https://example.invalid/nrls/fhir/StructureDefinition/converged-sources";
const CONFLICT_EXT: &str =
    "https://example.invalid/nrls/fhir/StructureDefinition/convergence-conflict";

struct Harness {
    url: String,
    state: AppState,
    http: reqwest::Client,
    store: SharedStore,
    /// QWO, QE1, QRV.
    sources: Vec<RunningSource>,
    /// A live server no source registration names.
    stray: RunningSource,
}

fn apps() -> Vec<auth::AppConfig> {
    let all: Vec<String> = domain::Catalogue::nrl_v3()
        .types()
        .iter()
        .map(|t| t.key())
        .collect();
    let app = |id: &str, types: Vec<String>| {
        auth::demo::app_config(
            id,
            id,
            vec![auth::OrganisationConfig {
                ods: "RX9".into(),
                roles: vec!["consumer".into()],
                pointer_types: types,
            }],
        )
    };
    vec![
        app("consumer", all.clone()),
        app("consumer-sensitive", all),
        app("consumer-crisis", vec![CRISIS.into()]),
    ]
}

async fn source(region: Region) -> RunningSource {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    spawn(
        listener,
        SourceState::new(region, Mode::Normal, Duration::from_millis(1_500)),
    )
    .unwrap()
}

impl Harness {
    async fn start(tweak: impl FnOnce(&mut FederationConfig)) -> Harness {
        Harness::start_with(tweak, AccessPolicy::default()).await
    }

    async fn start_with(
        tweak: impl FnOnce(&mut FederationConfig),
        policy: AccessPolicy,
    ) -> Harness {
        let mut sources = Vec::new();
        for region in Region::ALL {
            sources.push(source(region).await);
        }
        let stray = source(Region::Qwo).await;
        let registrations: Vec<federation::SourceConfig> = sources
            .iter()
            .map(|s| federation::SourceConfig {
                ods: s.state.region.ods().into(),
                name: s.state.region.name().into(),
                base_url: s.base_url.clone(),
                timeout_ms: 400,
                resource_types: [
                    "AllergyIntolerance",
                    "Condition",
                    "MedicationStatement",
                    "Immunization",
                    "Encounter",
                ]
                .map(str::to_owned)
                .to_vec(),
                auth: federation::SourceAuthConfig::None {},
            })
            .collect();
        let mut config = FederationConfig {
            overall_deadline_ms: 1_500,
            failure_threshold: 100,
            ..FederationConfig::default()
        };
        tweak(&mut config);
        let federator = Federator::new(
            SourceRegistry::from_configs(&registrations).unwrap(),
            &config,
        )
        .unwrap();

        let store: SharedStore = Arc::new(MemoryStore::new());
        let with_bases: Vec<(Region, String)> = sources
            .iter()
            .map(|s| (s.state.region, s.base_url.clone()))
            .collect();
        seed_pointers(store.as_ref(), &with_bases).await.unwrap();

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let registry = Arc::new(AppRegistry::from_configs(&apps()).unwrap());
        let auth = Arc::new(
            Authenticator::new(
                registry,
                TokenSettings::new(url.clone(), format!("{url}/oauth2/token"), vec![7; 32]),
            )
            .unwrap(),
        );
        let settings = ApiSettings {
            public_url: url.clone(),
            ..ApiSettings::default()
        };
        let access = AccessServices {
            policy,
            ..AccessServices::in_memory()
        };
        let shared = SharedCareRecord {
            federator: Arc::new(federator),
            visibility: Arc::new(|caller, pointer| {
                pointer.security_labels.is_empty() || &*caller.client_id == "consumer-sensitive"
            }),
        };
        // The route is part of the consumer API; the federator is part of
        // the state, as `nrls serve` wires it.
        let state = AppState::with_ops(store.clone(), auth, settings, Ops::default(), access)
            .with_shared_care_record(shared)
            .unwrap_or_else(|_| panic!("the state is not shared yet"));
        let state_handle = state.clone();
        let app = api::router(state);
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Harness {
            url,
            state: state_handle,
            http: reqwest::Client::new(),
            store,
            sources,
            stray,
        }
    }

    fn source(&self, region: Region) -> &SourceState {
        &self.sources[region.index()].state
    }

    async fn token(&self, client_id: &str) -> String {
        let endpoint = format!("{}/oauth2/token", self.url);
        let key = auth::demo::signing_key(client_id).unwrap();
        let assertion =
            auth::mint_client_assertion(client_id, &endpoint, &key, Duration::from_secs(60))
                .unwrap();
        let body: Value = self
            .http
            .post(&endpoint)
            .form(&[
                ("grant_type", "client_credentials"),
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ),
                ("client_assertion", assertion.as_str()),
            ])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body["access_token"].as_str().unwrap().to_owned()
    }

    /// GETs the record of demo patient `p` as `client_id`; (status, body).
    async fn record(&self, client_id: &str, query: &str) -> (u16, Value) {
        let token = self.token(client_id).await;
        let response = self
            .http
            .get(format!(
                "{}/consumer/FHIR/R4/Patient/$shared-care-record?{query}",
                self.url
            ))
            .bearer_auth(token)
            .header("NHSD-End-User-Organisation-ODS", "RX9")
            .header("X-Request-Id", uuid::Uuid::new_v4().to_string())
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }
}

fn patient(p: usize) -> String {
    format!(
        "patient.identifier={NHS}%7C{}",
        nrls::demo::patients(p + 1)[p]
    )
}

fn resources<'a>(bundle: &'a Value, resource_type: &str) -> Vec<&'a Value> {
    bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["resource"])
        .filter(|r| r["resourceType"] == resource_type)
        .collect()
}

fn outcome(bundle: &Value) -> &Value {
    resources(bundle, "OperationOutcome")[0]
}

/// (status code, diagnostics) of the issue reporting `ods`.
fn source_issue(bundle: &Value, ods: &str) -> (String, String) {
    let issue = outcome(bundle)["issue"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["extension"][0]["extension"][0]["valueIdentifier"]["value"] == ods)
        .unwrap_or_else(|| panic!("no issue for {ods}: {bundle}"));
    (
        issue["details"]["coding"][0]["code"]
            .as_str()
            .unwrap()
            .to_owned(),
        issue["diagnostics"].as_str().unwrap().to_owned(),
    )
}

fn completeness(bundle: &Value) -> &str {
    bundle["meta"]["tag"][0]["code"].as_str().unwrap()
}

fn sources_of(resource: &Value) -> Vec<String> {
    let ext = resource["extension"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["url"] == SOURCES_EXT)
        .unwrap();
    ext["extension"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["url"] == "source")
        .map(|e| e["valueIdentifier"]["value"].as_str().unwrap().to_owned())
        .collect()
}

fn coded<'a>(bundle: &'a Value, resource_type: &str, element: &str, code: &str) -> Vec<&'a Value> {
    resources(bundle, resource_type)
        .into_iter()
        .filter(|r| r[element]["coding"][0]["code"] == code)
        .collect()
}

#[tokio::test]
async fn three_sources_converge_into_one_complete_record() {
    let h = Harness::start(|_| {}).await;
    let (status, bundle) = h.record("consumer", &patient(0)).await;
    assert_eq!(status, 200, "{bundle}");
    assert_eq!(bundle["type"], "collection");
    assert_eq!(completeness(&bundle), "complete");
    assert_eq!(
        bundle["entry"][0]["resource"]["resourceType"],
        "OperationOutcome"
    );

    // Penicillin: reported by all three regions, one entry, highest criticality.
    let penicillin = coded(&bundle, "AllergyIntolerance", "code", "764146007");
    assert_eq!(penicillin.len(), 1, "{bundle}");
    assert_eq!(penicillin[0]["criticality"], "high");
    assert_eq!(sources_of(penicillin[0]), ["QE1", "QRV", "QWO"]);
    assert_eq!(penicillin[0]["reaction"].as_array().unwrap().len(), 3);
    // Asthma: active in QWO, resolved in QE1: one entry, the disagreement flagged.
    let asthma = coded(&bundle, "Condition", "code", "195967001");
    assert_eq!(asthma.len(), 1);
    let conflict = asthma[0]["extension"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["url"] == CONFLICT_EXT)
        .unwrap();
    assert_eq!(conflict["extension"][0]["valueString"], "clinicalStatus");
    // Entered-in-error (diabetes at QWO) is dropped.
    assert!(coded(&bundle, "Condition", "code", "44054006").is_empty());
    // The uncoded allergy passes through on its own.
    let uncoded: Vec<&Value> = resources(&bundle, "AllergyIntolerance")
        .into_iter()
        .filter(|r| r["code"]["coding"].is_null())
        .collect();
    assert_eq!(uncoded.len(), 1);

    // One Provenance per source, each naming its custodian and its pointer.
    let provenance = resources(&bundle, "Provenance");
    assert_eq!(provenance.len(), 3);
    for p in &provenance {
        assert!(!p["target"].as_array().unwrap().is_empty());
        let pointer = &p["entity"][0]["what"]["reference"];
        assert!(
            pointer
                .as_str()
                .unwrap()
                .contains("/consumer/FHIR/R4/DocumentReference/")
        );
    }
    // Every source is reported ok with the age of its data.
    for ods in ["QWO", "QE1", "QRV"] {
        let (code, text) = source_issue(&bundle, ods);
        assert_eq!(code, "ok", "{text}");
        assert!(text.contains("data as of"), "{text}");
    }
    let (_, qe1) = source_issue(&bundle, "QE1");
    assert!(
        qe1.contains("21600 s old") || qe1.contains("21601 s old"),
        "{qe1}"
    );

    // Same answer, same order, every time.
    let order = |b: &Value| -> Vec<String> {
        b["entry"].as_array().unwrap()[1..]
            .iter()
            .filter(|e| e["resource"]["resourceType"] != "Provenance")
            .map(|e| e["fullUrl"].as_str().unwrap().to_owned())
            .collect()
    };
    let (_, again) = h.record("consumer", &patient(0)).await;
    assert_eq!(order(&bundle), order(&again));
}

#[tokio::test]
async fn a_slow_source_times_out_and_the_rest_is_returned() {
    let h = Harness::start(|_| {}).await;
    h.source(Region::Qe1)
        .set_mode(Mode::Slow, Some(Duration::from_millis(2_000)));
    let started = Instant::now();
    let (status, bundle) = h.record("consumer", &patient(0)).await;
    assert!(started.elapsed() < Duration::from_millis(1_500));
    assert_eq!(status, 200);
    assert_eq!(completeness(&bundle), "partial");
    let headline = &outcome(&bundle)["issue"][0];
    assert_eq!(headline["code"], "incomplete");
    assert!(
        headline["diagnostics"]
            .as_str()
            .unwrap()
            .contains("QE1 timed-out")
    );
    let (code, text) = source_issue(&bundle, "QE1");
    assert_eq!(code, "timed-out");
    assert!(text.contains("400 ms"), "{text}");
    let penicillin = coded(&bundle, "AllergyIntolerance", "code", "764146007");
    assert_eq!(sources_of(penicillin[0]), ["QRV", "QWO"]);
    assert_eq!(resources(&bundle, "Provenance").len(), 2);
    // The scrape counts each source's outcome and latency.
    let scrape = h.state.ops().metrics().render();
    let total = |result: &str| -> f64 {
        scrape
            .lines()
            .filter(|l| l.starts_with("nrls_federation_source_requests_total{"))
            .filter(|l| l.contains(&format!("result=\"{result}\"")))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    assert!(total("timeout") >= 1.0, "{scrape}");
    assert!(total("ok") >= 2.0, "{scrape}");
    assert!(
        scrape.contains("nrls_federation_source_request_duration_seconds_count"),
        "{scrape}"
    );
}

#[tokio::test]
async fn failing_and_malformed_sources_are_reported_never_a_500() {
    let h = Harness::start(|_| {}).await;
    h.source(Region::Qrv).set_mode(Mode::Failing, None);
    h.source(Region::Qwo).set_mode(Mode::Malformed, None);
    let (status, bundle) = h.record("consumer", &patient(0)).await;
    assert_eq!(status, 200, "{bundle}");
    assert_eq!(completeness(&bundle), "partial");
    let (code, text) = source_issue(&bundle, "QRV");
    assert_eq!(code, "error");
    assert!(text.contains("HTTP 503"), "{text}");
    let (code, text) = source_issue(&bundle, "QWO");
    assert_eq!(code, "error");
    assert!(text.contains("not JSON"), "{text}");
    assert_eq!(source_issue(&bundle, "QE1").0, "ok");
    let penicillin = coded(&bundle, "AllergyIntolerance", "code", "764146007");
    assert_eq!(sources_of(penicillin[0]), ["QE1"]);
}

#[tokio::test]
async fn a_failing_source_is_refused_once_its_circuit_opens() {
    let h = Harness::start(|c| {
        c.failure_threshold = 2;
        c.cool_down_seconds = 60;
    })
    .await;
    h.source(Region::Qe1).set_mode(Mode::Failing, None);
    for _ in 0..2 {
        let (_, bundle) = h.record("consumer", &patient(0)).await;
        assert_eq!(source_issue(&bundle, "QE1").0, "error");
    }
    let calls = h.source(Region::Qe1).requests();
    let (status, bundle) = h.record("consumer", &patient(0)).await;
    assert_eq!(status, 200);
    let (code, text) = source_issue(&bundle, "QE1");
    assert_eq!(code, "refused");
    assert!(text.contains("circuit open"), "{text}");
    assert_eq!(
        h.source(Region::Qe1).requests(),
        calls,
        "a refused source is not called"
    );
    assert_eq!(completeness(&bundle), "partial");
}

#[tokio::test]
async fn a_pointer_url_outside_the_registry_is_never_fetched() {
    let h = Harness::start(|_| {}).await;
    let stray_url = format!("{}/Patient/anything", h.stray.base_url);
    // RR8 has no registered source; QWO is registered, but this pointer of
    // QWO's names the stray server.
    for (ods, p) in [("RR8", 1), ("QWO", 1)] {
        let custodian = OdsCode::parse(ods).unwrap();
        let record = summary_pointer(&custodian, p, &stray_url, &[]).unwrap();
        h.store.create(record, Vec::new()).await.unwrap();
    }
    let (status, bundle) = h.record("consumer", &patient(1)).await;
    assert_eq!(status, 200);
    assert_eq!(h.stray.state.requests(), 0, "the stray server was called");
    let (code, text) = source_issue(&bundle, "RR8");
    assert_eq!(code, "not-asked");
    assert!(text.contains("no source is registered"), "{text}");
    let (code, text) = source_issue(&bundle, "QWO");
    assert_eq!(code, "ok");
    assert!(text.contains("outside the registered base URL"), "{text}");
    // RR8 holds part of the record that could not be retrieved.
    assert_eq!(completeness(&bundle), "partial");
}

/// Patient 2 is held by QWO and QRV; QRV's pointer becomes restricted (`R`).
async fn restrict_qrv_pointer_of_patient_2(h: &Harness) {
    let qrv = OdsCode::parse("QRV").unwrap();
    let id = PointerId::generate(&qrv, "scr-02").unwrap();
    h.store.delete(&id, None).await.unwrap();
    let base = &h.sources[Region::Qrv.index()].base_url;
    let restricted = summary_pointer(&qrv, 2, &format!("{base}/Patient/qrv-2"), &["R"]).unwrap();
    h.store.create(restricted, Vec::new()).await.unwrap();
}

/// Asserts QRV was hidden: not called, reported word for word like a
/// registered source with no pointer (QE1 here), nothing of it in the answer.
fn assert_qrv_hidden(h: &Harness, bundle: &Value) {
    assert_eq!(h.source(Region::Qrv).requests(), 0);
    let (code, text) = source_issue(bundle, "QRV");
    let (_, no_pointer) = source_issue(bundle, "QE1");
    assert_eq!(code, "not-asked");
    assert_eq!(
        text.trim_start_matches("QRV (North West London ICB shared care record)"),
        no_pointer.trim_start_matches("QE1 (Lancashire and South Cumbria ICB shared care record)")
    );
    let text = bundle.to_string();
    assert!(!text.contains("qrv-"), "QRV data leaked");
    assert!(!text.contains("QRV-scr"), "QRV pointer leaked");
    assert_eq!(completeness(bundle), "complete");
}

#[tokio::test]
async fn the_access_policy_hides_a_sensitive_pointers_source() {
    // Default policy: R and V are sensitive and no activity code is
    // configured, so no consumer sees them (fail closed).
    let h = Harness::start(|_| {}).await;
    restrict_qrv_pointer_of_patient_2(&h).await;
    for app in ["consumer", "consumer-sensitive"] {
        let (status, bundle) = h.record(app, &patient(2)).await;
        assert_eq!(status, 200);
        assert_qrv_hidden(&h, &bundle);
        assert_eq!(source_issue(&bundle, "QWO").0, "ok");
    }
}

#[tokio::test]
async fn the_visibility_hook_hides_a_sensitive_pointers_source_without_the_role() {
    // The policy lets labels through here, so the hook alone decides.
    let policy = AccessPolicy {
        sensitive_labels: vec![],
        ..AccessPolicy::default()
    };
    let h = Harness::start_with(|_| {}, policy).await;
    restrict_qrv_pointer_of_patient_2(&h).await;
    let (status, bundle) = h.record("consumer", &patient(2)).await;
    assert_eq!(status, 200);
    assert_qrv_hidden(&h, &bundle);

    let (_, bundle) = h.record("consumer-sensitive", &patient(2)).await;
    assert_eq!(source_issue(&bundle, "QRV").0, "ok");
    assert!(h.source(Region::Qrv).requests() > 0);
    assert_eq!(resources(&bundle, "Provenance").len(), 2);
}

#[tokio::test]
async fn every_request_is_audited_with_the_pointers_of_the_sources_called() {
    let h = Harness::start(|_| {}).await;
    h.source(Region::Qe1).set_mode(Mode::Failing, None);
    let (status, _) = h.record("consumer", &patient(0)).await;
    assert_eq!(status, 200);
    let page = h
        .state
        .access()
        .audit
        .search(&audit::AuditQuery {
            patient: Some(nrls::demo::patients(1)[0]),
            ..audit::AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(page.records.len(), 1);
    let event = &page.records[0].event_json;
    for pointer in ["QWO-scr-00", "QE1-scr-00", "QRV-scr-00"] {
        assert!(event.contains(pointer), "{pointer} missing from {event}");
    }
}

#[tokio::test]
async fn sections_and_dates_narrow_the_record() {
    let h = Harness::start(|_| {}).await;
    let query = format!("{}&section=allergies,immunisations", patient(0));
    let (status, bundle) = h.record("consumer", &query).await;
    assert_eq!(status, 200);
    let kinds: std::collections::BTreeSet<&str> = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["resourceType"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds.into_iter().collect::<Vec<_>>(),
        [
            "AllergyIntolerance",
            "Immunization",
            "OperationOutcome",
            "Provenance"
        ]
    );
    let query = format!("{}&section=encounters&date.ge=2025-01-01", patient(0));
    let (_, bundle) = h.record("consumer", &query).await;
    let encounters = resources(&bundle, "Encounter");
    assert_eq!(encounters.len(), 1, "{bundle}");
    assert_eq!(sources_of(encounters[0]), ["QE1"]);
}

#[tokio::test]
async fn bad_requests_are_400_and_missing_permission_403() {
    let h = Harness::start(|_| {}).await;
    let cases = [
        ("", 400),
        ("patient.identifier=9000000009", 400),
        (&*format!("{}&section=labs", patient(0)), 400),
        (&*format!("{}&_count=5", patient(0)), 400),
        (&*format!("{}&date.ge=yesterday", patient(0)), 400),
    ];
    for (query, expected) in cases {
        let (status, body) = h.record("consumer", query).await;
        assert_eq!(status, expected, "{query}: {body}");
        assert_eq!(body["resourceType"], "OperationOutcome");
    }
    let (status, body) = h.record("consumer-crisis", &patient(0)).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(h.source(Region::Qwo).requests(), 0);
}

/// Fan-out overhead over the slowest source: sources answer after 50, 100 and
/// 200 ms; overhead = end-to-end time minus 200 ms, over 100 requests.
/// `cargo test -p nrls --release --test federation -- --ignored --nocapture fan_out_overhead`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn fan_out_overhead() {
    let h = Harness::start(|c| c.overall_deadline_ms = 5_000).await;
    for (region, ms) in [(Region::Qwo, 50), (Region::Qe1, 100), (Region::Qrv, 200)] {
        h.source(region)
            .set_mode(Mode::Slow, Some(Duration::from_millis(ms)));
    }
    let token = h.token("consumer").await;
    let url = format!(
        "{}/consumer/FHIR/R4/Patient/$shared-care-record?{}",
        h.url,
        patient(0)
    );
    let mut overheads = Vec::new();
    for i in 0..110 {
        let started = Instant::now();
        let response = h
            .http
            .get(&url)
            .bearer_auth(&token)
            .header("NHSD-End-User-Organisation-ODS", "RX9")
            .header("X-Request-Id", uuid::Uuid::new_v4().to_string())
            .send()
            .await
            .unwrap();
        let body: Value = response.json().await.unwrap();
        let elapsed = started.elapsed();
        assert_eq!(completeness(&body), "complete", "{body}");
        if i >= 10 {
            overheads.push(elapsed.as_secs_f64() * 1_000.0 - 200.0);
        }
    }
    overheads.sort_by(f64::total_cmp);
    let pct = |p: f64| overheads[((overheads.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "fan-out overhead over the slowest source (ms, n={}): p50 {:.2} p99 {:.2} max {:.2}",
        overheads.len(),
        pct(0.5),
        pct(0.99),
        overheads[overheads.len() - 1]
    );
}
