#![allow(clippy::unwrap_used, clippy::expect_used)]

//! The fan-out against real HTTP servers on port 0: parallelism, time-outs,
//! the overall deadline, redirects and foreign links never followed, the
//! circuit breaker, size limits and client-credentials tokens.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use domain::convergence::query;
use domain::{NhsNumber, OdsCode, PointerId, PointerRecord};
use federation::{
    CLINICAL_SUMMARY, FederatedRecord, FederationConfig, Federator, Retrieval, SourceAuthConfig,
    SourceConfig, SourceRegistry, SourceStatus,
};
use serde_json::{Value, json};

const PATIENT: &str = "9000000009";

type Respond = Arc<dyn Fn(&str) -> Response + Send + Sync>;

#[derive(Clone)]
struct Behaviour {
    delay: Duration,
    hits: Arc<AtomicUsize>,
    respond: Respond,
    bearer: Option<&'static str>,
}

async fn search(
    State(b): State<Behaviour>,
    Path(resource_type): Path<String>,
    headers: HeaderMap,
) -> Response {
    b.hits.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(b.delay).await;
    if let Some(token) = b.bearer {
        let sent = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if sent != Some(&format!("Bearer {token}")) {
            return StatusCode::UNAUTHORIZED.into_response();
        }
    }
    (b.respond)(&resource_type)
}

async fn spawn(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    url
}

/// A FHIR source at `{url}/FHIR/R4`; returns its base URL and hit counter.
async fn source(delay_ms: u64, respond: Respond) -> (String, Arc<AtomicUsize>) {
    source_with(delay_ms, respond, None, Router::new()).await
}

async fn source_with(
    delay_ms: u64,
    respond: Respond,
    bearer: Option<&'static str>,
    extra: Router,
) -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let behaviour = Behaviour {
        delay: Duration::from_millis(delay_ms),
        hits: hits.clone(),
        respond,
        bearer,
    };
    let app = Router::new()
        .route("/FHIR/R4/{resource_type}", get(search))
        .with_state(behaviour)
        .merge(extra);
    (format!("{}/FHIR/R4", spawn(app).await), hits)
}

fn bundle_of(resources: Vec<Value>) -> Response {
    let entry: Vec<Value> = resources
        .into_iter()
        .map(|r| json!({"resource": r}))
        .collect();
    let body = json!({"resourceType": "Bundle", "type": "searchset", "meta": {"lastUpdated": "2026-01-01T00:00:00Z"}, "entry": entry});
    (
        [(header::CONTENT_TYPE, "application/fhir+json")],
        body.to_string(),
    )
        .into_response()
}

fn one_condition() -> Respond {
    Arc::new(|resource_type: &str| {
        if resource_type == "Condition" {
            bundle_of(vec![json!({
                "resourceType": "Condition", "id": "c1",
                "code": {"coding": [{"system": "http://snomed.info/sct", "code": "195967001"}]},
                "onsetDateTime": "2015-03-01",
                "subject": {"identifier": {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": PATIENT}},
            })])
        } else {
            bundle_of(vec![])
        }
    })
}

fn config(ods: &str, base: &str, timeout_ms: u64) -> SourceConfig {
    SourceConfig {
        ods: ods.into(),
        name: format!("{ods} shared care record"),
        base_url: base.into(),
        timeout_ms,
        resource_types: vec!["Condition".into()],
        auth: SourceAuthConfig::None {},
    }
}

fn pointer(ods: &str) -> PointerRecord {
    let custodian = OdsCode::parse(ods).unwrap();
    PointerRecord {
        id: PointerId::generate(&custodian, "summary").unwrap(),
        nhs_number: NhsNumber::parse(PATIENT).unwrap(),
        custodian,
        type_key: CLINICAL_SUMMARY.into(),
        master_identifier: None,
        security_labels: vec![],
        version: 1,
        last_updated: "2026-01-01T00:00:00Z".into(),
        json: json!({"status": "current", "content": [{"attachment": {"url": "http://unused.invalid/"}}]})
            .to_string(),
    }
}

async fn retrieve(federator: &Federator, custodians: &[&str]) -> FederatedRecord {
    let q = query::parse([(
        "patient.identifier",
        "https://fhir.nhs.uk/Id/nhs-number|9000000009",
    )])
    .unwrap();
    let pointers: Vec<PointerRecord> = custodians.iter().map(|c| pointer(c)).collect();
    federator
        .retrieve(
            Retrieval {
                query: &q,
                pointers: &pointers,
                correlation_id: Some("test"),
                trace: None,
                tracer: &telemetry::Tracer::OFF,
                pointer_url_base: "http://nrls.test/consumer/FHIR/R4/DocumentReference",
            },
            |_| true,
        )
        .await
}

fn status_of(record: &FederatedRecord, ods: &str) -> (SourceStatus, String) {
    let r = record
        .sources
        .iter()
        .find(|r| r.ods.as_str() == ods)
        .unwrap();
    (r.status, r.detail.clone())
}

fn federator(sources: &[SourceConfig], tweak: impl FnOnce(&mut FederationConfig)) -> Federator {
    let mut config = FederationConfig::default();
    tweak(&mut config);
    Federator::new(SourceRegistry::from_configs(sources).unwrap(), &config).unwrap()
}

#[tokio::test]
async fn sources_are_asked_in_parallel_and_a_slow_one_times_out() {
    let (a, _) = source(50, one_condition()).await;
    let (b, _) = source(100, one_condition()).await;
    let (c, _) = source(1_000, one_condition()).await;
    let f = federator(
        &[
            config("QWO", &a, 1_000),
            config("QE1", &b, 1_000),
            config("QRV", &c, 200),
        ],
        |_| {},
    );
    let started = Instant::now();
    let record = retrieve(&f, &["QWO", "QE1", "QRV"]).await;
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_millis(600), "{elapsed:?}");
    assert_eq!(status_of(&record, "QWO").0, SourceStatus::Ok);
    assert_eq!(status_of(&record, "QE1").0, SourceStatus::Ok);
    let (status, detail) = status_of(&record, "QRV");
    assert_eq!(status, SourceStatus::TimedOut);
    assert!(detail.contains("its time-out"), "{detail}");
    assert!(record.partial);
    // The two answers converge into one condition from two sources.
    assert_eq!(record.entries, 1);
    assert_eq!(record.bundle["meta"]["tag"][0]["code"], "partial");
}

#[tokio::test]
async fn the_overall_deadline_caps_every_source() {
    let (a, _) = source(500, one_condition()).await;
    let f = federator(&[config("QWO", &a, 5_000)], |c| c.overall_deadline_ms = 150);
    let started = Instant::now();
    let record = retrieve(&f, &["QWO"]).await;
    assert!(started.elapsed() < Duration::from_millis(450));
    let (status, detail) = status_of(&record, "QWO");
    assert_eq!(status, SourceStatus::TimedOut);
    assert!(detail.contains("overall deadline"), "{detail}");
}

#[tokio::test]
async fn redirects_and_foreign_next_links_are_never_followed() {
    let (elsewhere, elsewhere_hits) = source(0, one_condition()).await;
    let target = format!("{elsewhere}/Condition");
    let redirecting: Respond = Arc::new(move |_: &str| {
        (StatusCode::FOUND, [(header::LOCATION, target.clone())]).into_response()
    });
    let (a, _) = source(0, redirecting).await;
    let next = format!("{elsewhere}/Condition?page=2");
    let linking: Respond = Arc::new(move |_: &str| {
        let body = json!({"resourceType": "Bundle", "type": "searchset",
            "link": [{"relation": "next", "url": next}], "entry": []});
        body.to_string().into_response()
    });
    let (b, _) = source(0, linking).await;
    let f = federator(
        &[config("QWO", &a, 1_000), config("QE1", &b, 1_000)],
        |_| {},
    );
    let record = retrieve(&f, &["QWO", "QE1"]).await;
    let (status, detail) = status_of(&record, "QWO");
    assert_eq!(status, SourceStatus::Error);
    assert!(detail.contains("redirect"), "{detail}");
    let (status, detail) = status_of(&record, "QE1");
    assert_eq!(status, SourceStatus::Error);
    assert!(
        detail.contains("outside its registered base URL"),
        "{detail}"
    );
    assert_eq!(elsewhere_hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_failing_source_is_refused_once_its_circuit_opens() {
    let failing: Respond = Arc::new(|_: &str| StatusCode::SERVICE_UNAVAILABLE.into_response());
    let (a, hits) = source(0, failing).await;
    let f = federator(&[config("QE1", &a, 1_000)], |c| {
        c.failure_threshold = 2;
        c.cool_down_seconds = 60;
    });
    for _ in 0..2 {
        let record = retrieve(&f, &["QE1"]).await;
        let (status, detail) = status_of(&record, "QE1");
        assert_eq!(status, SourceStatus::Error);
        assert!(detail.contains("HTTP 503"), "{detail}");
    }
    let started = Instant::now();
    let record = retrieve(&f, &["QE1"]).await;
    let (status, detail) = status_of(&record, "QE1");
    assert_eq!(status, SourceStatus::Refused);
    assert!(detail.contains("circuit open"), "{detail}");
    assert!(started.elapsed() < Duration::from_millis(50));
    assert_eq!(
        hits.load(Ordering::SeqCst),
        2,
        "a refused source is not called"
    );
    assert!(record.partial);
}

#[tokio::test]
async fn malformed_oversized_and_wrong_patient_answers_are_errors() {
    let not_json: Respond = Arc::new(|_: &str| "<html>oops</html>".into_response());
    let huge: Respond = Arc::new(|_: &str| "x".repeat(4_096).into_response());
    let other_patient: Respond = Arc::new(|_: &str| {
        bundle_of(vec![json!({"resourceType": "Condition",
            "subject": {"identifier": {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9000000017"}}})])
    });
    let (a, _) = source(0, not_json).await;
    let (b, _) = source(0, huge).await;
    let (c, _) = source(0, other_patient).await;
    let f = federator(
        &[
            config("QWO", &a, 1_000),
            config("QE1", &b, 1_000),
            config("QRV", &c, 1_000),
        ],
        |c| c.max_response_bytes = 1_024,
    );
    let record = retrieve(&f, &["QWO", "QE1", "QRV"]).await;
    let details: Vec<(SourceStatus, String)> = ["QWO", "QE1", "QRV"]
        .iter()
        .map(|o| status_of(&record, o))
        .collect();
    assert!(
        details.iter().all(|(s, _)| *s == SourceStatus::Error),
        "{details:?}"
    );
    assert!(details[0].1.contains("not JSON"));
    assert!(details[1].1.contains("larger than 1024 bytes"));
    assert!(details[2].1.contains("another patient"));
    assert_eq!(record.entries, 0);
}

#[tokio::test]
async fn client_credentials_tokens_are_fetched_once_and_sent() {
    let token_hits = Arc::new(AtomicUsize::new(0));
    let counter = token_hits.clone();
    let token_route = Router::new().route(
        "/oauth2/token",
        post(move |body: String| {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                assert!(body.contains("grant_type=client_credentials"), "{body}");
                assert!(body.contains("client_assertion="), "{body}");
                axum::Json(
                    json!({"access_token": "t0ken", "expires_in": 300, "token_type": "bearer"}),
                )
            }
        }),
    );
    let (base, hits) = source_with(0, one_condition(), Some("t0ken"), token_route).await;
    let key = auth::demo::signing_key("nrls-federation").unwrap();
    let key_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(key_file.path(), &key.pem).unwrap();
    let mut source = config("QWO", &base, 1_000);
    source.auth = SourceAuthConfig::ClientCredentials {
        token_url: base.replace("/FHIR/R4", "/oauth2/token"),
        client_id: "nrls-federation".into(),
        private_key_file: key_file.path().to_owned(),
        kid: "demo-1".into(),
        alg: "ES384".into(),
        scope: Some("system/*.read".into()),
    };
    let f = federator(&[source], |_| {});
    for _ in 0..2 {
        let record = retrieve(&f, &["QWO"]).await;
        assert_eq!(
            status_of(&record, "QWO").0,
            SourceStatus::Ok,
            "{:?}",
            record.sources
        );
    }
    assert_eq!(token_hits.load(Ordering::SeqCst), 1);
    assert_eq!(hits.load(Ordering::SeqCst), 2);
}
