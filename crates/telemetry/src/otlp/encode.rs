//! OTLP/JSON: the body of `POST {endpoint}/v1/traces` with
//! `Content-Type: application/json`, an `ExportTraceServiceRequest` in the
//! protobuf JSON mapping as OTLP specifies it
//! (<https://opentelemetry.io/docs/specs/otlp/#json-protobuf-encoding>):
//! lowerCamelCase field names, trace and span ids as lower-case **hex**
//! (not base64, unlike plain proto3 JSON), 64-bit integers (`*UnixNano`,
//! `intValue`) as decimal strings, enums (`kind`, `status.code`) as integers.

use serde::Serialize;

use super::span::{Span, Value};
use crate::trace_context::to_hex;

/// The service the spans come from: OTLP's `Resource`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    /// `service.name`, e.g. `nrls`.
    pub service_name: String,
    /// `service.version`.
    pub service_version: String,
    /// `service.instance.id`: which node of the deployment.
    pub instance_id: String,
}

/// `Content-Type` of the export request.
pub const CONTENT_TYPE: &str = "application/json";

/// The path OTLP/HTTP receivers take traces on, appended to the endpoint.
pub const TRACES_PATH: &str = "/v1/traces";

/// The instrumentation scope every nrls span is reported under.
const SCOPE: &str = "nrls";

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ExportTraceServiceRequest<'a> {
    resource_spans: [ResourceSpans<'a>; 1],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResourceSpans<'a> {
    resource: Attributes<'a>,
    scope_spans: [ScopeSpans<'a>; 1],
}

#[derive(Serialize)]
struct Attributes<'a> {
    attributes: Vec<KeyValue<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ScopeSpans<'a> {
    scope: Scope<'a>,
    spans: Vec<SpanJson<'a>>,
}

#[derive(Serialize)]
struct Scope<'a> {
    name: &'a str,
    version: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SpanJson<'a> {
    trace_id: String,
    span_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    parent_span_id: Option<String>,
    name: &'a str,
    kind: u8,
    start_time_unix_nano: String,
    end_time_unix_nano: String,
    attributes: Vec<KeyValue<'a>>,
    status: StatusJson,
}

#[derive(Serialize)]
struct StatusJson {
    code: u8,
}

#[derive(Serialize)]
struct KeyValue<'a> {
    key: &'a str,
    value: AnyValue<'a>,
}

/// Externally tagged: `{"stringValue": "..."}` or `{"intValue": "42"}`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
enum AnyValue<'a> {
    StringValue(&'a str),
    IntValue(String),
}

impl<'a> From<&'a Value> for AnyValue<'a> {
    fn from(value: &'a Value) -> AnyValue<'a> {
        match value {
            Value::Str(text) => AnyValue::StringValue(text),
            Value::Int(n) => AnyValue::IntValue(n.to_string()),
        }
    }
}

fn text<'a>(key: &'a str, value: &'a str) -> KeyValue<'a> {
    KeyValue {
        key,
        value: AnyValue::StringValue(value),
    }
}

impl<'a> From<&'a Span> for SpanJson<'a> {
    fn from(span: &'a Span) -> SpanJson<'a> {
        SpanJson {
            trace_id: to_hex(&span.trace_id),
            span_id: to_hex(&span.span_id),
            parent_span_id: span.parent_span_id.map(|id| to_hex(&id)),
            name: &span.name,
            kind: span.kind.code(),
            start_time_unix_nano: span.start_unix_nanos.to_string(),
            end_time_unix_nano: span.end_unix_nanos.to_string(),
            attributes: span
                .attributes
                .iter()
                .map(|(key, value)| KeyValue {
                    key,
                    value: value.into(),
                })
                .collect(),
            status: StatusJson {
                code: span.status.code(),
            },
        }
    }
}

/// The export request for `spans`, all from `resource`.
pub fn encode(resource: &Resource, spans: &[Span]) -> Vec<u8> {
    let request = ExportTraceServiceRequest {
        resource_spans: [ResourceSpans {
            resource: Attributes {
                attributes: vec![
                    text("service.name", &resource.service_name),
                    text("service.version", &resource.service_version),
                    text("service.instance.id", &resource.instance_id),
                ],
            },
            scope_spans: [ScopeSpans {
                scope: Scope {
                    name: SCOPE,
                    version: env!("CARGO_PKG_VERSION"),
                },
                spans: spans.iter().map(SpanJson::from).collect(),
            }],
        }],
    };
    // Serialising plain structs of strings and integers into memory cannot
    // fail; were it to, the empty body is refused by the collector and
    // counted as a failed export, never a panic on the export task.
    serde_json::to_vec(&request).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use serde_json::{Value as Json, json};

    use super::*;
    use crate::otlp::span::{SpanKind, keys};
    use crate::trace_context::TraceContext;

    const CALLER: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    fn resource() -> Resource {
        Resource {
            service_name: "nrls".into(),
            service_version: "1.2.3".into(),
            instance_id: "node-a:8080".into(),
        }
    }

    fn at(seconds: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(seconds)
    }

    #[test]
    fn a_server_span_is_encoded_as_otlp_json() {
        let trace = TraceContext::parse(CALLER).unwrap();
        let mut span = Span::new(
            &trace,
            SpanKind::Server,
            "GET /consumer/FHIR/R4/DocumentReference",
            at(1_700_000_000),
            Duration::from_nanos(1_500_000),
        );
        span.set(keys::HTTP_REQUEST_METHOD, "GET");
        span.set(keys::HTTP_RESPONSE_STATUS_CODE, 503u16);
        span.set_error();
        let body: Json = serde_json::from_slice(&encode(&resource(), &[span])).unwrap();

        let resource_spans = &body["resourceSpans"][0];
        assert_eq!(
            resource_spans["resource"]["attributes"],
            json!([
                {"key": "service.name", "value": {"stringValue": "nrls"}},
                {"key": "service.version", "value": {"stringValue": "1.2.3"}},
                {"key": "service.instance.id", "value": {"stringValue": "node-a:8080"}},
            ])
        );
        let scope_spans = &resource_spans["scopeSpans"][0];
        assert_eq!(scope_spans["scope"]["name"], "nrls");
        let span = &scope_spans["spans"][0];
        assert_eq!(
            *span,
            json!({
                "traceId": "0af7651916cd43dd8448eb211c80319c",
                "spanId": trace.span_id(),
                "parentSpanId": "b7ad6b7169203331",
                "name": "GET /consumer/FHIR/R4/DocumentReference",
                "kind": 2,
                "startTimeUnixNano": "1700000000000000000",
                "endTimeUnixNano": "1700000000001500000",
                "attributes": [
                    {"key": "http.request.method", "value": {"stringValue": "GET"}},
                    {"key": "http.response.status_code", "value": {"intValue": "503"}},
                ],
                "status": {"code": 2},
            })
        );
        // Ids are lower-case hex of the right length, never base64.
        let span_id = span["spanId"].as_str().unwrap();
        assert_eq!(span_id.len(), 16);
        assert!(
            span_id
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );
    }

    #[test]
    fn a_root_client_span_has_no_parent_and_an_unset_status() {
        let root = TraceContext::new_root();
        let span = Span::new(&root, SpanKind::Client, "GET north", at(1), Duration::ZERO);
        let body: Json = serde_json::from_slice(&encode(&resource(), &[span])).unwrap();
        let span = &body["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
        assert_eq!(span["kind"], 3);
        assert!(span.get("parentSpanId").is_none());
        assert_eq!(span["status"], json!({"code": 0}));
        assert_eq!(span["startTimeUnixNano"], "1000000000");
        assert_eq!(span["endTimeUnixNano"], span["startTimeUnixNano"]);
        assert_eq!(span["attributes"], json!([]));
    }

    #[test]
    fn attribute_text_is_escaped() {
        let mut span = Span::new(
            &TraceContext::new_root(),
            SpanKind::Server,
            "GET \"odd\"\n",
            at(1),
            Duration::ZERO,
        );
        span.set(keys::CLIENT_ID, String::from("app\\\"x"));
        let body: Json = serde_json::from_slice(&encode(&resource(), &[span])).unwrap();
        let span = &body["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
        assert_eq!(span["name"], "GET \"odd\"\n");
        assert_eq!(span["attributes"][0]["value"]["stringValue"], "app\\\"x");
    }
}
