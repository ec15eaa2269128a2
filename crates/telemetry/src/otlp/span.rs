//! The spans nrls records: what OTLP's `Span` message needs and nothing more
//! (no events, links or trace state).

use std::borrow::Cow;
use std::time::{Duration, SystemTime};

use crate::trace_context::TraceContext;

/// Attribute keys, from the OpenTelemetry semantic conventions where one
/// fits (`http.*`, `server.*`, `error.type`) and `nrls.*` otherwise.
/// Values are route templates, ids and codes: never a raw URL, query string,
/// NHS number or token.
pub mod keys {
    pub const HTTP_REQUEST_METHOD: &str = "http.request.method";
    pub const HTTP_ROUTE: &str = "http.route";
    pub const HTTP_RESPONSE_STATUS_CODE: &str = "http.response.status_code";
    pub const SERVER_ADDRESS: &str = "server.address";
    pub const SERVER_PORT: &str = "server.port";
    pub const ERROR_TYPE: &str = "error.type";
    pub const CLIENT_ID: &str = "nrls.client_id";
    pub const ODS: &str = "nrls.ods";
    pub const REQUEST_ID: &str = "nrls.request_id";
    /// A federated source's configured name.
    pub const SOURCE: &str = "nrls.source";
    /// A federated source's custodian ODS code.
    pub const SOURCE_ODS: &str = "nrls.source.ods";
}

/// Which side of a call a span is. OTLP/JSON carries the protobuf enum's
/// integer value ([`SpanKind::code`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanKind {
    /// A request nrls answered.
    Server,
    /// A call nrls made.
    Client,
}

impl SpanKind {
    /// `SPAN_KIND_SERVER` = 2, `SPAN_KIND_CLIENT` = 3.
    pub fn code(self) -> u8 {
        match self {
            SpanKind::Server => 2,
            SpanKind::Client => 3,
        }
    }
}

/// How the operation ended. Success stays `Unset`, as the conventions ask
/// of instrumentation (`Ok` is for an operator's override).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Unset,
    Error,
}

impl Status {
    /// `STATUS_CODE_UNSET` = 0, `STATUS_CODE_ERROR` = 2.
    pub fn code(self) -> u8 {
        match self {
            Status::Unset => 0,
            Status::Error => 2,
        }
    }
}

/// An attribute value: OTLP's `AnyValue`, the two kinds nrls uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Str(Cow<'static, str>),
    Int(i64),
}

impl From<&'static str> for Value {
    fn from(value: &'static str) -> Value {
        Value::Str(Cow::Borrowed(value))
    }
}

impl From<String> for Value {
    fn from(value: String) -> Value {
        Value::Str(Cow::Owned(value))
    }
}

impl From<i64> for Value {
    fn from(value: i64) -> Value {
        Value::Int(value)
    }
}

impl From<u16> for Value {
    fn from(value: u16) -> Value {
        Value::Int(i64::from(value))
    }
}

/// One finished span.
#[derive(Debug, Clone)]
pub struct Span {
    pub(super) trace_id: [u8; 16],
    pub(super) span_id: [u8; 8],
    pub(super) parent_span_id: Option<[u8; 8]>,
    pub(super) name: Cow<'static, str>,
    pub(super) kind: SpanKind,
    pub(super) start_unix_nanos: u64,
    pub(super) end_unix_nanos: u64,
    pub(super) attributes: Vec<(&'static str, Value)>,
    pub(super) status: Status,
}

impl Span {
    /// The span `trace` names (its span id, under its parent span), which
    /// began at `start` and took `elapsed`. The end is computed from the
    /// monotonic `elapsed`, so a clock step during a request cannot make a
    /// span end before it starts.
    pub fn new(
        trace: &TraceContext,
        kind: SpanKind,
        name: impl Into<Cow<'static, str>>,
        start: SystemTime,
        elapsed: Duration,
    ) -> Span {
        let start_unix_nanos = unix_nanos(start);
        let elapsed = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        Span {
            trace_id: trace.trace_id_bytes(),
            span_id: trace.span_id_bytes(),
            parent_span_id: trace.parent_id_bytes(),
            name: name.into(),
            kind,
            start_unix_nanos,
            end_unix_nanos: start_unix_nanos.saturating_add(elapsed),
            attributes: Vec::with_capacity(8),
            status: Status::Unset,
        }
    }

    /// Adds an attribute.
    pub fn set(&mut self, key: &'static str, value: impl Into<Value>) {
        self.attributes.push((key, value.into()));
    }

    /// Marks the operation failed.
    pub fn set_error(&mut self) {
        self.status = Status::Error;
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn kind(&self) -> SpanKind {
        self.kind
    }

    pub fn status(&self) -> Status {
        self.status
    }

    /// The value of attribute `key`, if set.
    pub fn attribute(&self, key: &str) -> Option<&Value> {
        self.attributes
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
    }
}

/// Nanoseconds since the Unix epoch; 0 for a clock set before 1970.
fn unix_nanos(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
