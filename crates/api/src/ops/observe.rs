//! The outermost middleware: for every request it records the HTTP metrics,
//! joins or starts a W3C trace, exports the request's SERVER span when OTLP
//! export is on, and writes one access-log line:
//!
//! ```text
//! method route status latency_ms client_id ods request_id correlation_id trace_id
//! ```
//!
//! The route is the *template* (`/consumer/FHIR/R4/DocumentReference/{id}`),
//! never the raw URI, so neither a query string (which carries NHS numbers)
//! nor a path identifier reaches the log. Tokens are never read here. Header
//! values we echo into the log are bounded, and runs of ten or more digits in
//! them are masked, in case a client put an NHS number in a correlation id.
//! The span carries the same fields as the log line, by the same rules.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use telemetry::otlp::{Span, SpanKind, keys};
use telemetry::{Metrics, RouteLabel, TRACEPARENT, TraceContext, Tracer};
use tracing::Instrument;

use crate::extract::headers::{X_CORRELATION_ID, X_REQUEST_ID};
use crate::extract::{CallerNote, CallerSlot};
use crate::ops::Ops;
use crate::table::Operation;

/// The route label of requests no route matched (404s).
const UNMATCHED: &str = "unmatched";

/// Route templates known to the router, resolved once when it is built.
#[derive(Clone)]
pub struct Observer {
    routes: Arc<HashMap<String, (RouteLabel, bool)>>,
    unmatched: RouteLabel,
    metrics: Arc<Metrics>,
    tracer: Tracer,
}

impl Observer {
    /// Indexes `operations` and creates their metric series at zero.
    pub fn new(operations: &[Operation], ops: &Ops) -> Observer {
        let metrics = Arc::clone(ops.metrics());
        let mut routes = HashMap::new();
        for op in operations {
            let (label, _) = routes
                .entry(op.path.clone())
                .or_insert_with(|| (RouteLabel::new(&op.path), op.doc.quiet));
            metrics.http().preregister(method_label(&op.method), label);
        }
        Observer {
            routes: Arc::new(routes),
            unmatched: RouteLabel::new(UNMATCHED),
            metrics,
            tracer: ops.tracer().clone(),
        }
    }

    /// The route's label: the API's from the route table; the web pages'
    /// (not in the table) from their matched template, which is as bounded
    /// as the table (`/my-record/{*rest}`, never the raw path).
    fn route(&self, request: &Request) -> (RouteLabel, bool) {
        match request.extensions().get::<MatchedPath>() {
            Some(matched) => self
                .routes
                .get(matched.as_str())
                .cloned()
                .unwrap_or_else(|| (RouteLabel::new(matched.as_str()), false)),
            None => (self.unmatched.clone(), false),
        }
    }
}

pub async fn observe(
    State(observer): State<Observer>,
    mut request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    // Read only when spans are exported: with export off (the default) the
    // request path builds no span and reads no wall clock.
    let exporting = observer.tracer.is_on();
    let started_at = exporting.then(SystemTime::now);
    let in_flight = observer.metrics.http().in_flight();
    let method = method_label(request.method());
    let (route, quiet) = observer.route(&request);
    let trace = TraceContext::from_header_or_root(
        request
            .headers()
            .get(TRACEPARENT)
            .and_then(|v| v.to_str().ok()),
        exporting,
    );
    let request_id = request.headers().get(&X_REQUEST_ID).cloned();
    let correlation_id = request.headers().get(&X_CORRELATION_ID).cloned();
    let slot = CallerSlot::default();
    request.extensions_mut().insert(slot.clone());
    // Handlers that call out (the federation fan-out) take it from here.
    request.extensions_mut().insert(trace);
    let trace_id = trace.trace_id();
    let request_id = request_id
        .as_ref()
        .map(|v| request_id_for_log(v.as_bytes()));
    let span =
        tracing::info_span!("request", trace_id = %trace_id, request_id = request_id.as_deref());
    let response = next.run(request).instrument(span).await;
    let elapsed = started.elapsed();
    drop(in_flight);
    let status = response.status().as_u16();
    observer
        .metrics
        .http()
        .record(method, &route, status, elapsed);
    let caller = slot.get();
    // Probes and scrapes (quiet routes) would drown the traces that matter.
    if let Some(started_at) = started_at
        && !quiet
        && observer.tracer.records(&trace)
    {
        let route = (route != observer.unmatched).then_some(&route);
        let timing = (started_at, elapsed);
        let ids = (caller, request_id.as_deref());
        let span = request_span(&trace, method, route, status, timing, ids);
        observer.tracer.record(span);
    }
    let correlation_id = correlation_id
        .as_ref()
        .map(|v| free_text_for_log(v.as_bytes()));
    macro_rules! access_log {
        ($level:ident) => {
            tracing::$level!(
                target: "nrls::access",
                method,
                route = route.as_str(),
                status,
                latency_ms = elapsed.as_secs_f64() * 1000.0,
                client_id = caller.map(|c| &*c.client_id),
                ods = caller.map(|c| c.ods.as_str()),
                request_id = request_id.as_deref(),
                correlation_id = correlation_id.as_deref(),
                trace_id = %trace_id,
                "request"
            )
        };
    }
    if quiet {
        access_log!(debug);
    } else {
        access_log!(info);
    }
    response
}

/// The SERVER span of one request, named `{METHOD} {route template}` (just
/// the method when no route matched), with the attributes of the OpenTelemetry
/// HTTP conventions, the caller's app and organisation and the request id as
/// logged. Never the URI: its query string and path ids carry NHS numbers.
fn request_span(
    trace: &TraceContext,
    method: &'static str,
    route: Option<&RouteLabel>,
    status: u16,
    (started_at, elapsed): (SystemTime, Duration),
    (caller, request_id): (Option<&CallerNote>, Option<&str>),
) -> Span {
    // The conventions' name for a method outside the known set.
    let method = if method == "other" { "_OTHER" } else { method };
    let name = match route {
        Some(route) => format!("{method} {}", route.as_str()),
        None => method.to_owned(),
    };
    let mut span = Span::new(trace, SpanKind::Server, name, started_at, elapsed);
    span.set(keys::HTTP_REQUEST_METHOD, method);
    if let Some(route) = route {
        span.set(keys::HTTP_ROUTE, route.as_str().to_owned());
    }
    span.set(keys::HTTP_RESPONSE_STATUS_CODE, status);
    if let Some(caller) = caller {
        span.set(keys::CLIENT_ID, caller.client_id.to_string());
        span.set(keys::ODS, caller.ods.as_str().to_owned());
    }
    if let Some(id) = request_id {
        span.set(keys::REQUEST_ID, id.to_owned());
    }
    // Only server errors fail a server span; a 4xx is the client's.
    if status >= 500 {
        span.set_error();
    }
    span
}

/// A static label for the method: no allocation, bounded cardinality.
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// A well-formed request id (a UUID) is logged as is; anything else is
/// treated as free text.
fn request_id_for_log(value: &[u8]) -> Cow<'static, str> {
    let uuid_shaped = value.len() == 36
        && value.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        });
    if uuid_shaped {
        Cow::Owned(String::from_utf8_lossy(value).into_owned())
    } else {
        free_text_for_log(value)
    }
}

/// Client-supplied text for a log field: visible ASCII only, at most 200
/// characters, with every run of ten or more digits masked.
fn free_text_for_log(value: &[u8]) -> Cow<'static, str> {
    if value.is_empty() || value.len() > 200 || !value.iter().all(u8::is_ascii_graphic) {
        return Cow::Borrowed("<invalid>");
    }
    let mut out = String::with_capacity(value.len());
    let mut run = 0;
    for (i, &c) in value.iter().enumerate() {
        if c.is_ascii_digit() {
            run += 1;
            let next_is_digit = value.get(i + 1).is_some_and(u8::is_ascii_digit);
            if !next_is_digit {
                let digits = &value[i + 1 - run..=i];
                if run >= 10 {
                    out.extend(std::iter::repeat_n('*', run));
                } else {
                    out.extend(digits.iter().map(|d| char::from(*d)));
                }
                run = 0;
            }
        } else {
            out.push(char::from(c));
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_digit_runs_are_masked() {
        assert_eq!(free_text_for_log(b"corr-9990000018-x"), "corr-**********-x");
        assert_eq!(free_text_for_log(b"999 000 0018"), "<invalid>");
        assert_eq!(free_text_for_log(b"abc123456789"), "abc123456789");
        assert_eq!(free_text_for_log(b"12345678901"), "***********");
        assert_eq!(free_text_for_log("é".as_bytes()), "<invalid>");
        let uuid = b"60e0b220-8136-4ca5-ae46-123456789012";
        assert_eq!(request_id_for_log(uuid), String::from_utf8_lossy(uuid));
        assert_eq!(request_id_for_log(b"9990000018"), "**********");
    }
}
