//! Demo regional sources: small FHIR R4 servers, as an ICB shared care
//! record would expose one, serving synthetic structured records
//! (AllergyIntolerance, Condition, MedicationStatement, Immunization,
//! Encounter) for the demo patients. Its mode can be switched while it runs
//! (`PUT /_mode/{mode}`) to show time-outs, failures and the circuit breaker:
//!
//! - `normal`: answers at once;
//! - `slow`: waits `delay_ms` (default 1500) before answering;
//! - `failing`: answers 503 with an OperationOutcome;
//! - `malformed`: answers 200 with a body that is not JSON.
//!
//! Synthetic data only; no authentication (register it with `auth = none`).
//! `nrls serve --demo` starts three in-process ([`start_demo_sources`]);
//! `nrls demo-source` (commands/demo_source.rs) runs one on its own.

mod records;

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use domain::catalogue::Catalogue;
use domain::clock::now_instant;
use domain::permissions::TypeSet;
use domain::validation::{ValidationContext, validate};
use domain::{NhsNumber, OdsCode, PointerId, PointerRecord};
use serde_json::{Value, json};
use store::{PointerStore, StoreError};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::net::TcpListener;

use crate::dataset::{PointerSpec, document_reference};
use crate::demo;

pub use records::holds;

/// The three demo ICB shared care records (demo custodians QWO, QE1, QRV).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Region {
    Qwo,
    Qe1,
    Qrv,
}

impl Region {
    pub const ALL: [Region; 3] = [Region::Qwo, Region::Qe1, Region::Qrv];

    /// The custodian ODS code.
    pub fn ods(self) -> &'static str {
        match self {
            Region::Qwo => "QWO",
            Region::Qe1 => "QE1",
            Region::Qrv => "QRV",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Region::Qwo => "West Yorkshire ICB shared care record",
            Region::Qe1 => "Lancashire and South Cumbria ICB shared care record",
            Region::Qrv => "North West London ICB shared care record",
        }
    }

    pub fn index(self) -> usize {
        match self {
            Region::Qwo => 0,
            Region::Qe1 => 1,
            Region::Qrv => 2,
        }
    }

    /// How far behind its feeds the region's record runs, so the demo shows
    /// different data ages.
    pub fn lag(self) -> Duration {
        match self {
            Region::Qwo => Duration::from_secs(5 * 60),
            Region::Qe1 => Duration::from_secs(6 * 3_600),
            Region::Qrv => Duration::from_secs(2 * 86_400),
        }
    }

    /// Reads an ODS code (any case).
    pub fn parse(text: &str) -> Result<Region, String> {
        Region::ALL
            .into_iter()
            .find(|r| r.ods().eq_ignore_ascii_case(text))
            .ok_or_else(|| format!("unknown region '{text}': use QWO, QE1 or QRV"))
    }
}

/// How the source behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    Normal,
    Slow,
    Failing,
    Malformed,
}

impl Mode {
    const ALL: [Mode; 4] = [Mode::Normal, Mode::Slow, Mode::Failing, Mode::Malformed];

    pub fn name(self) -> &'static str {
        match self {
            Mode::Normal => "normal",
            Mode::Slow => "slow",
            Mode::Failing => "failing",
            Mode::Malformed => "malformed",
        }
    }
}

/// A running source's shared state: mode, delay and a request counter.
#[derive(Debug)]
pub struct SourceState {
    pub region: Region,
    mode: AtomicU8,
    delay_ms: AtomicU64,
    requests: AtomicUsize,
}

impl SourceState {
    pub fn new(region: Region, mode: Mode, delay: Duration) -> Arc<SourceState> {
        Arc::new(SourceState {
            region,
            mode: AtomicU8::new(mode as u8),
            delay_ms: AtomicU64::new(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX)),
            requests: AtomicUsize::new(0),
        })
    }

    pub fn mode(&self) -> Mode {
        let raw = self.mode.load(Ordering::Relaxed);
        Mode::ALL
            .into_iter()
            .find(|m| *m as u8 == raw)
            .unwrap_or(Mode::Normal)
    }

    pub fn set_mode(&self, mode: Mode, delay: Option<Duration>) {
        self.mode.store(mode as u8, Ordering::Relaxed);
        if let Some(delay) = delay {
            let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
            self.delay_ms.store(ms, Ordering::Relaxed);
        }
    }

    /// FHIR requests served so far (the test harness asserts on it).
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::Relaxed)
    }
}

/// A source serving on a bound listener.
pub struct RunningSource {
    /// FHIR base URL, e.g. `http://127.0.0.1:9101/FHIR/R4`.
    pub base_url: String,
    pub state: Arc<SourceState>,
    pub task: tokio::task::JoinHandle<()>,
}

/// Serves `state` on `listener` in the background.
pub fn spawn(listener: TcpListener, state: Arc<SourceState>) -> std::io::Result<RunningSource> {
    let base_url = format!("http://{}/FHIR/R4", listener.local_addr()?);
    let app = router(state.clone());
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "demo source stopped");
        }
    });
    Ok(RunningSource {
        base_url,
        state,
        task,
    })
}

/// The source's routes.
pub fn router(state: Arc<SourceState>) -> Router {
    Router::new()
        .route("/FHIR/R4/metadata", get(metadata))
        .route("/FHIR/R4/{resource_type}", get(search))
        .route("/_mode/{mode}", put(set_mode))
        .route("/_status", get(status))
        .with_state(state)
}

fn fhir(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/fhir+json")],
        body.to_string(),
    )
        .into_response()
}

fn outcome(status: StatusCode, code: &str, text: &str) -> Response {
    fhir(
        status,
        json!({"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": code, "diagnostics": text}]}),
    )
}

/// Every type a source may be registered for, so a demo source registered
/// with the default `resource_types` answers each and the record is complete.
const SERVED: &[&str] = federation::registry::RESOURCE_TYPES;

async fn search(
    State(state): State<Arc<SourceState>>,
    Path(resource_type): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    state.requests.fetch_add(1, Ordering::Relaxed);
    match state.mode() {
        Mode::Normal => {}
        Mode::Slow => {
            let ms = state.delay_ms.load(Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        Mode::Failing => {
            return outcome(
                StatusCode::SERVICE_UNAVAILABLE,
                "transient",
                "demo source in failing mode",
            );
        }
        Mode::Malformed => {
            return (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/fhir+json")],
                r#"{"resourceType":"Bundle","type":"searchset","entry":[{"resource":"#,
            )
                .into_response();
        }
    }
    if !SERVED.contains(&resource_type.as_str()) {
        return outcome(
            StatusCode::NOT_FOUND,
            "not-supported",
            "this source does not serve that resource type",
        );
    }
    let pairs: Vec<(String, String)> = form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .into_owned()
        .collect();
    let Some(number) = pairs
        .iter()
        .find(|(k, _)| k == "patient:identifier" || k == "patient.identifier")
        .and_then(|(_, v)| v.strip_prefix("https://fhir.nhs.uk/Id/nhs-number|"))
    else {
        return outcome(
            StatusCode::BAD_REQUEST,
            "required",
            "search by patient:identifier=https://fhir.nhs.uk/Id/nhs-number|<number>",
        );
    };
    let resources = NhsNumber::parse(number)
        .ok()
        .and_then(|nhs| {
            let p = demo::patients(demo::PATIENTS)
                .iter()
                .position(|n| *n == nhs)?;
            Some(records::records(state.region, p, nhs))
        })
        .unwrap_or_default();
    let entry: Vec<Value> = resources
        .into_iter()
        .filter(|r| r["resourceType"] == resource_type.as_str())
        .map(|r| json!({"resource": r, "search": {"mode": "match"}}))
        .collect();
    fhir(
        StatusCode::OK,
        json!({
            "resourceType": "Bundle", "type": "searchset", "total": entry.len(),
            "meta": {"lastUpdated": synced_at(state.region)},
            "entry": entry,
        }),
    )
}

/// When the region's record was last brought up to date: now minus its lag.
fn synced_at(region: Region) -> String {
    let lag = time::Duration::try_from(region.lag()).unwrap_or(time::Duration::ZERO);
    (OffsetDateTime::now_utc() - lag)
        .replace_nanosecond(0)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(now_instant)
}

async fn metadata(State(state): State<Arc<SourceState>>) -> Response {
    let resource: Vec<Value> = SERVED
        .iter()
        .map(|t| json!({"type": t, "interaction": [{"code": "search-type"}], "searchParam": [{"name": "patient", "type": "reference"}]}))
        .collect();
    fhir(
        StatusCode::OK,
        json!({
            "resourceType": "CapabilityStatement", "status": "active", "kind": "instance",
            "date": "2026-11-25", "fhirVersion": "4.0.1", "format": ["application/fhir+json"],
            "software": {"name": format!("nrls demo source {}", state.region.ods())},
            "rest": [{"mode": "server", "resource": resource}],
        }),
    )
}

async fn set_mode(
    State(state): State<Arc<SourceState>>,
    Path(mode): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let delay_ms = form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .find(|(k, _)| k == "delay_ms")
        .and_then(|(_, v)| v.parse::<u64>().ok());
    let Some(mode) = Mode::ALL.into_iter().find(|m| m.name() == mode) else {
        return (
            StatusCode::BAD_REQUEST,
            "mode is one of normal, slow, failing, malformed",
        )
            .into_response();
    };
    state.set_mode(mode, delay_ms.map(Duration::from_millis));
    status(State(state)).await
}

async fn status(State(state): State<Arc<SourceState>>) -> Response {
    axum::Json(json!({
        "region": state.region.ods(),
        "mode": state.mode().name(),
        "delay_ms": state.delay_ms.load(Ordering::Relaxed),
        "requests": state.requests(),
    }))
    .into_response()
}

/// Seeds one Clinical summary pointer per demo patient each source holds a
/// record for, its URL under that source's base URL (the "patient pointer"
/// the shared care record finds sources by). Already-present pointers are
/// left alone. Returns how many were created.
pub async fn seed_pointers(
    store: &dyn PointerStore,
    sources: &[(Region, String)],
) -> Result<usize, String> {
    let mut created = 0;
    for (p, _) in demo::patients(demo::PATIENTS).into_iter().enumerate() {
        for (region, base_url) in sources {
            if !holds(*region, p) {
                continue;
            }
            let custodian = OdsCode::parse(region.ods()).ok_or("bad demo ODS code")?;
            let url = format!(
                "{}/Patient/{}-{p}",
                base_url.trim_end_matches('/'),
                region.ods().to_ascii_lowercase()
            );
            let record = summary_pointer(&custodian, p, &url, &[])?;
            match store.create(record, Vec::new()).await {
                Ok(()) => created += 1,
                Err(StoreError::DuplicateId(_) | StoreError::DuplicateMasterIdentifier(_)) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    }
    Ok(created)
}

/// A valid Clinical summary pointer of `custodian` for demo patient `p`,
/// pointing at `url`, with the given confidentiality labels (e.g. `R`).
pub fn summary_pointer(
    custodian: &OdsCode,
    p: usize,
    url: &str,
    security_labels: &[&str],
) -> Result<PointerRecord, String> {
    let catalogue = Catalogue::nrl_v3();
    let summary = catalogue
        .find_key(federation::CLINICAL_SUMMARY)
        .ok_or("Clinical summary is not in the catalogue")?;
    let nhs_number = *demo::patients(p + 1).last().ok_or("no demo patient")?;
    let local_id = format!("scr-{p:02}");
    let mut json = document_reference(&PointerSpec {
        nhs_number,
        custodian,
        pointer_type: summary,
        local_id: &local_id,
        created_offset: u32::try_from(p).unwrap_or(0) * 86_400,
    });
    json["content"][0]["attachment"]["url"] = json!(url);
    if !security_labels.is_empty() {
        let codes: Vec<Value> = security_labels
            .iter()
            .map(|c| json!({"system": domain::systems::CONFIDENTIALITY, "code": c}))
            .collect();
        json["meta"] = json!({"security": codes});
    }
    let doc: fhir::DocumentReference = serde_json::from_value(json).map_err(|e| e.to_string())?;
    let ctx = ValidationContext {
        catalogue,
        caller: custodian,
        permitted_types: TypeSet::all(catalogue),
    };
    let valid =
        validate(&doc, &ctx).map_err(|issues| format!("demo pointer invalid: {issues:?}"))?;
    let id = PointerId::generate(custodian, &local_id).ok_or("bad demo id")?;
    valid
        .into_record(doc, id, 1, &now_instant())
        .map_err(|e| e.to_string())
}

/// The demo patient whose shared care record is always partial.
pub const PARTIAL_PATIENT: usize = 2;

/// A fourth demo source that never answers (a closed port), holding part of
/// one demo patient's record ([`PARTIAL_PATIENT`], at Leeds Teaching
/// Hospitals, RR8): that patient's shared care record is always partial, so
/// the viewer's completeness banner can be seen without switching modes.
pub async fn unreachable_source(
    store: &dyn PointerStore,
) -> Result<federation::SourceConfig, String> {
    // Port 9 (discard) on loopback: nothing listens there, the connection is refused.
    let base_url = "http://127.0.0.1:9/fhir".to_owned();
    let custodian = OdsCode::parse("RR8").ok_or("bad demo ODS code")?;
    let url = format!("{base_url}/Patient/rr8-{PARTIAL_PATIENT}");
    let record = summary_pointer(&custodian, PARTIAL_PATIENT, &url, &[])?;
    match store.create(record, Vec::new()).await {
        Ok(()) | Err(StoreError::DuplicateId(_) | StoreError::DuplicateMasterIdentifier(_)) => {}
        Err(e) => return Err(e.to_string()),
    }
    Ok(federation::SourceConfig {
        ods: custodian.as_str().to_owned(),
        name: "Leeds Teaching Hospitals (demo: never answers)".to_owned(),
        base_url,
        timeout_ms: 1_000,
        resource_types: SERVED.iter().map(|t| (*t).to_owned()).collect(),
        auth: federation::SourceAuthConfig::None {},
    })
}

/// Starts the three demo sources on `127.0.0.1:0` and returns them with the
/// `[[sources]]` configuration that registers them.
pub async fn start_demo_sources() -> std::io::Result<Vec<(RunningSource, federation::SourceConfig)>>
{
    let mut out = Vec::new();
    for region in Region::ALL {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let running = spawn(
            listener,
            SourceState::new(region, Mode::Normal, Duration::from_millis(1_500)),
        )?;
        let config = federation::SourceConfig {
            ods: region.ods().to_owned(),
            name: region.name().to_owned(),
            base_url: running.base_url.clone(),
            timeout_ms: 2_000,
            resource_types: SERVED.iter().map(|t| (*t).to_owned()).collect(),
            auth: federation::SourceAuthConfig::None {},
        };
        out.push((running, config));
    }
    Ok(out)
}
