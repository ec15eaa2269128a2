//! OTLP trace export, black-box: the real service in-process on port 0, a
//! real HTTP receiver standing in for the OpenTelemetry Collector
//! (`POST /v1/traces`), and real regional sources that record the
//! `traceparent` they are sent. Checks what is exported (ids, names,
//! attributes), that spans link across hops, that nothing identifying a
//! patient leaves in a span, and that nothing is recorded when export is off.

use crate::support;
use crate::support::ops;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use nrls::config::{Backend, Config};
use serde_json::{Value, json};
use support::{CONSUMER_DR, SUMMARY, TestServer};
use tokio::net::TcpListener;

/// The caller's trace and span, as a gateway in front would send them.
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

fn traceparent(trace_id: &str, flags: &str) -> String {
    format!("00-{trace_id}-{CALLER_SPAN}-{flags}")
}

/// Every request body a receiver got, with its headers.
type Received = Arc<Mutex<Vec<(HeaderMap, String)>>>;

async fn listen(router: Router) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    url
}

/// An OTLP/HTTP receiver: keeps every export request, answers 200.
struct Collector {
    url: String,
    received: Received,
}

impl Collector {
    async fn start() -> Collector {
        let received = Received::default();
        let router = Router::new()
            .route(
                "/v1/traces",
                post(
                    |State(received): State<Received>, headers: HeaderMap, body: String| async move {
                        received.lock().unwrap().push((headers, body));
                        (StatusCode::OK, "{}")
                    },
                ),
            )
            .with_state(Arc::clone(&received));
        Collector {
            url: listen(router).await,
            received,
        }
    }

    /// Every span exported so far.
    fn spans(&self) -> Vec<Value> {
        let received = self.received.lock().unwrap();
        let mut spans = Vec::new();
        for (_, body) in received.iter() {
            let request: Value = serde_json::from_str(body).unwrap();
            for resource in request["resourceSpans"].as_array().unwrap() {
                for scope in resource["scopeSpans"].as_array().unwrap() {
                    spans.extend(scope["spans"].as_array().unwrap().iter().cloned());
                }
            }
        }
        spans
    }

    /// Everything the collector was sent, as one text.
    fn raw(&self) -> String {
        let received = self.received.lock().unwrap();
        received.iter().map(|(_, body)| body.as_str()).collect()
    }

    /// Waits until `count` spans match.
    async fn wait_for(&self, count: usize, matches: impl Fn(&Value) -> bool) -> Vec<Value> {
        for _ in 0..200 {
            let found: Vec<Value> = self.spans().into_iter().filter(&matches).collect();
            if found.len() >= count {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("no such span exported; got {:#?}", self.spans());
    }
}

/// Points `config` at `collector`, sending every 50 ms.
fn exporting_to(collector: &Collector) -> impl FnOnce(&mut Config) + use<> {
    let url = collector.url.clone();
    move |config: &mut Config| {
        config.telemetry.otlp_endpoint = Some(url);
        config.telemetry.otlp_interval_ms = 50;
        config
            .telemetry
            .otlp_headers
            .insert("x-collector-key".into(), "sesame".into());
    }
}

/// An attribute's value (`stringValue`, or `intValue` as its string).
fn attribute(span: &Value, key: &str) -> Option<String> {
    let value = &span["attributes"]
        .as_array()?
        .iter()
        .find(|a| a["key"] == key)?["value"];
    value
        .get("stringValue")
        .or_else(|| value.get("intValue"))
        .and_then(Value::as_str)
        .map(str::to_owned)
}

fn is_hex(text: &str, len: usize) -> bool {
    text.len() == len && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

async fn scrape(server: &TestServer) -> String {
    let response = server
        .http
        .get(format!("{}/metrics", server.url))
        .send()
        .await
        .unwrap();
    response.text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_exports_its_server_span_under_the_callers_span() {
    let collector = Collector::start().await;
    let server = TestServer::start_with(Backend::Memory, exporting_to(&collector)).await;
    let producer = server.client("producer-a", "RR8").await;
    producer.create(&support::pointer("RR8", 3, SUMMARY)).await;
    let consumer = server.client("consumer", "RX9").await;
    let nhs_number = support::patient(3);
    // Built by hand: `Client::request` sets a request id of its own.
    let search = |trace: String, request_id: &str| {
        server
            .http
            .get(format!(
                "{}{CONSUMER_DR}?{}",
                server.url,
                support::subject(3)
            ))
            .bearer_auth(consumer.token.as_deref().unwrap())
            .header("NHSD-End-User-Organisation-ODS", "RX9")
            .header("traceparent", trace)
            .header("X-Request-Id", request_id)
    };

    // A caller that does not sample its trace: nrls records nothing of it.
    let unsampled_trace = "0af7651916cd43dd8448eb211c80319c";
    let reply =
        support::Client::send(search(traceparent(unsampled_trace, "00"), &ops::uuid())).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let request_id = ops::uuid();
    let reply = support::Client::send(search(traceparent(TRACE_ID, "01"), &request_id)).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    // No traceparent: nrls starts a trace, and records it.
    let metadata = consumer.get("/consumer/FHIR/R4/metadata").await;
    assert_eq!(metadata.status, 200);
    let probe = server.anonymous().get("/livez").await;
    assert_eq!(probe.status, 200);

    let span = collector
        .wait_for(1, |s| s["traceId"] == TRACE_ID)
        .await
        .remove(0);
    assert_eq!(span["kind"], 2, "SPAN_KIND_SERVER");
    assert_eq!(span["parentSpanId"], CALLER_SPAN);
    let span_id = span["spanId"].as_str().unwrap();
    assert!(is_hex(span_id, 16) && span_id != CALLER_SPAN, "{span_id}");
    assert_eq!(span["name"], format!("GET {CONSUMER_DR}"));
    assert_eq!(attribute(&span, "http.route").unwrap(), CONSUMER_DR);
    assert_eq!(attribute(&span, "http.request.method").unwrap(), "GET");
    assert_eq!(
        attribute(&span, "http.response.status_code").unwrap(),
        "200"
    );
    assert_eq!(attribute(&span, "nrls.client_id").unwrap(), "consumer");
    assert_eq!(attribute(&span, "nrls.ods").unwrap(), "RX9");
    assert_eq!(attribute(&span, "nrls.request_id").unwrap(), request_id);
    assert_eq!(span["status"], json!({"code": 0}));
    let start: u128 = span["startTimeUnixNano"].as_str().unwrap().parse().unwrap();
    let end: u128 = span["endTimeUnixNano"].as_str().unwrap().parse().unwrap();
    assert!(
        start > 1_600_000_000_000_000_000 && end >= start,
        "{start} {end}"
    );

    let root = collector
        .wait_for(1, |s| s["name"] == "GET /consumer/FHIR/R4/metadata")
        .await
        .remove(0);
    assert!(is_hex(root["traceId"].as_str().unwrap(), 32));
    assert!(root.get("parentSpanId").is_none(), "{root}");

    let spans = collector.spans();
    assert!(
        spans.iter().all(|s| s["traceId"] != unsampled_trace),
        "an unsampled trace was exported"
    );
    // Probes would drown real traffic.
    assert!(spans.iter().all(|s| s["name"] != "GET /livez"));

    let received = collector.received.lock().unwrap().clone();
    let (headers, body) = &received[0];
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["x-collector-key"], "sesame");
    let resource = &serde_json::from_str::<Value>(body).unwrap()["resourceSpans"][0]["resource"];
    let service = |key: &str| {
        resource["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["key"] == key)
            .map(|a| a["value"]["stringValue"].clone())
    };
    assert_eq!(service("service.name"), Some(json!("nrls")));
    assert!(service("service.instance.id").is_some());

    let raw = collector.raw();
    for secret in [nhs_number.as_str(), consumer.token.as_deref().unwrap()] {
        assert!(!raw.contains(secret), "{secret} was exported:\n{raw}");
    }
    assert!(
        !raw.contains("subject:identifier"),
        "a query string was exported"
    );

    let metrics = scrape(&server).await;
    assert!(ops::series(&metrics, "nrls_otlp_spans_exported_total") >= 3.0);
    server.stop().await;
}

/// A regional source that records the `traceparent` of every call and
/// answers an empty searchset, or 503 when `failing`.
struct Source {
    base_url: String,
    traceparents: Arc<Mutex<Vec<String>>>,
}

impl Source {
    async fn start(failing: bool) -> Source {
        let traceparents = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&traceparents);
        let router = Router::new().route(
            "/FHIR/R4/{resource_type}",
            get(move |headers: HeaderMap| async move {
                if let Some(value) = headers.get("traceparent") {
                    seen.lock()
                        .unwrap()
                        .push(value.to_str().unwrap().to_owned());
                }
                let (status, body) = if failing {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        json!({"resourceType": "OperationOutcome", "issue": []}),
                    )
                } else {
                    (
                        StatusCode::OK,
                        json!({"resourceType": "Bundle", "type": "searchset", "entry": []}),
                    )
                };
                (
                    status,
                    [("content-type", "application/fhir+json")],
                    body.to_string(),
                )
            }),
        );
        Source {
            base_url: format!("{}/FHIR/R4", listen(router).await),
            traceparents,
        }
    }

    fn traceparents(&self) -> Vec<String> {
        self.traceparents.lock().unwrap().clone()
    }
}

/// Two custodians (RR8, RYJ) whose Clinical summary pointers for patient 4
/// lead to two registered sources; RYJ's answers 503.
struct Federated {
    server: TestServer,
    ok: Source,
    failing: Source,
}

impl Federated {
    async fn start(tweak: impl FnOnce(&mut Config)) -> Federated {
        let ok = Source::start(false).await;
        let failing = Source::start(true).await;
        let registration = |ods: &str, source: &Source| federation::SourceConfig {
            ods: ods.into(),
            name: format!("{ods} shared care record"),
            base_url: source.base_url.clone(),
            timeout_ms: 2_000,
            resource_types: vec!["Condition".into(), "AllergyIntolerance".into()],
            auth: federation::SourceAuthConfig::None {},
        };
        let sources = vec![registration("RR8", &ok), registration("RYJ", &failing)];
        let server = TestServer::start_with(Backend::Memory, |config| {
            config.sources = sources;
            config.apps.push(auth::demo::app_config(
                "producer-ryj",
                "RYJ summaries",
                vec![auth::OrganisationConfig {
                    ods: "RYJ".into(),
                    roles: vec!["producer".into()],
                    pointer_types: vec![SUMMARY.into()],
                }],
            ));
            tweak(config);
        })
        .await;
        for (app, ods) in [("producer-a", "RR8"), ("producer-ryj", "RYJ")] {
            let producer = server.client(app, ods).await;
            producer.create(&support::pointer(ods, 4, SUMMARY)).await;
        }
        Federated {
            server,
            ok,
            failing,
        }
    }

    async fn record(&self, trace: Option<String>) {
        let consumer = self.server.client("consumer", "RX9").await;
        let mut request = consumer.request(
            reqwest::Method::GET,
            &format!(
                "/consumer/FHIR/R4/Patient/$shared-care-record?patient.identifier={}%7C{}",
                support::NHS,
                support::patient(4)
            ),
        );
        if let Some(trace) = trace {
            request = request.header("traceparent", trace);
        }
        let reply = support::Client::send(request).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_source_call_exports_a_client_span_that_the_source_sees_as_its_parent() {
    let collector = Collector::start().await;
    let federated = Federated::start(exporting_to(&collector)).await;
    federated.record(Some(traceparent(TRACE_ID, "01"))).await;

    let server_span = collector
        .wait_for(1, |s| s["traceId"] == TRACE_ID && s["kind"] == 2)
        .await
        .remove(0);
    assert_eq!(
        server_span["name"],
        "GET /consumer/FHIR/R4/Patient/$shared-care-record"
    );
    let calls = collector
        .wait_for(2, |s| s["traceId"] == TRACE_ID && s["kind"] == 3)
        .await;
    assert_eq!(calls.len(), 2, "one CLIENT span per source: {calls:#?}");
    for (source, ods, status, failed) in [
        (&federated.ok, "RR8", "200", false),
        (&federated.failing, "RYJ", "503", true),
    ] {
        let call = calls
            .iter()
            .find(|s| attribute(s, "nrls.source.ods").as_deref() == Some(ods))
            .unwrap_or_else(|| panic!("no span for {ods}: {calls:#?}"));
        // A child of the request's span...
        assert_eq!(call["parentSpanId"], server_span["spanId"]);
        assert_eq!(call["name"], format!("GET {ods} shared care record"));
        assert_eq!(attribute(call, "server.address").unwrap(), "127.0.0.1");
        assert_eq!(
            attribute(call, "http.response.status_code").unwrap(),
            status
        );
        assert_eq!(call["status"]["code"], if failed { 2 } else { 0 });
        if failed {
            assert_eq!(attribute(call, "error.type").unwrap(), "http_status");
        }
        // ...and the parent of everything the source did for it.
        let expected = format!("00-{TRACE_ID}-{}-01", call["spanId"].as_str().unwrap());
        let seen = source.traceparents();
        assert!(!seen.is_empty(), "{ods} was not called");
        assert!(seen.iter().all(|t| *t == expected), "{ods}: {seen:?}");
    }
    let raw = collector.raw();
    assert!(
        !raw.contains(&support::patient(4)),
        "an NHS number was exported"
    );
    federated.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_endpoint_nothing_is_recorded_or_sent() {
    assert_eq!(Config::default().telemetry.otlp_endpoint, None);
    // A collector nobody configured: it must hear nothing.
    let collector = Collector::start().await;
    let federated = Federated::start(|_| {}).await;
    federated.record(Some(traceparent(TRACE_ID, "01"))).await;
    federated.record(None).await;

    // The trace is still carried on, with the request's own span as the
    // parent; a trace nrls starts is not marked sampled, as nothing records it.
    let seen = federated.ok.traceparents();
    assert!(
        seen.iter()
            .any(|t| t.starts_with(&format!("00-{TRACE_ID}-")))
    );
    assert!(
        seen.iter()
            .filter(|t| !t.contains(TRACE_ID))
            .all(|t| t.ends_with("-00")),
        "{seen:?}"
    );
    let metrics = scrape(&federated.server).await;
    for series in [
        "nrls_otlp_spans_exported_total",
        r#"nrls_otlp_spans_dropped_total{reason="queue_full"}"#,
        r#"nrls_otlp_spans_dropped_total{reason="export_failed"}"#,
    ] {
        assert!(metrics.contains(series), "{series} not registered");
        assert_eq!(ops::series(&metrics, series), 0.0, "{series}");
    }
    federated.server.stop().await;
    assert!(collector.received.lock().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_queued_at_shutdown_are_flushed_and_a_dead_collector_is_counted() {
    // A long interval: only the shutdown flush can send these spans.
    let collector = Collector::start().await;
    let server = TestServer::start_with(Backend::Memory, |config| {
        exporting_to(&collector)(config);
        config.telemetry.otlp_interval_ms = 60_000;
    })
    .await;
    let consumer = server.client("consumer", "RX9").await;
    let reply = consumer.get("/consumer/FHIR/R4/metadata").await;
    assert_eq!(reply.status, 200);
    assert!(collector.spans().is_empty(), "sent before the interval");
    server.stop().await;
    assert!(
        collector
            .spans()
            .iter()
            .any(|s| s["name"] == "GET /consumer/FHIR/R4/metadata"),
        "not flushed at shutdown"
    );

    // Nothing listens here: every batch fails, is dropped and counted, and
    // requests are served all the same.
    let dead = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let server = TestServer::start_with(Backend::Memory, |config| {
        config.telemetry.otlp_endpoint = Some(dead_url);
        config.telemetry.otlp_interval_ms = 20;
        config.telemetry.otlp_timeout_ms = 500;
    })
    .await;
    let consumer = server.client("consumer", "RX9").await;
    for _ in 0..3 {
        assert_eq!(consumer.get("/consumer/FHIR/R4/metadata").await.status, 200);
    }
    let mut failed = 0.0;
    for _ in 0..100 {
        let metrics = scrape(&server).await;
        failed = ops::series(
            &metrics,
            r#"nrls_otlp_spans_dropped_total{reason="export_failed"}"#,
        );
        if failed >= 3.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(failed >= 3.0, "failed exports not counted: {failed}");
    server.stop().await;
}
