//! Trace context on source calls: the `traceparent` each call sends and,
//! when the request's trace is recorded, the call's CLIENT span.
//!
//! A recorded call gets a span id of its own, a child of the request's
//! SERVER span, and sends *that* id as the parent in `traceparent`, so the
//! source's spans hang under the call that caused them. The span carries the
//! source's configured name and ODS code, host and status: never the search
//! URL, which holds the patient's NHS number.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use telemetry::TraceContext;
use telemetry::otlp::{Span, SpanKind, Tracer, keys};

use crate::client::FetchError;
use crate::registry::Source;

/// A source call being traced.
pub(crate) struct SourceCall {
    context: TraceContext,
    source: Arc<Source>,
    started: SystemTime,
    tracer: Tracer,
}

/// The `traceparent` for a call to `source`, and the call's span to finish
/// when the trace is recorded.
pub(crate) fn begin(
    trace: Option<&TraceContext>,
    tracer: &Tracer,
    source: &Arc<Source>,
) -> (Option<String>, Option<SourceCall>) {
    let Some(trace) = trace else {
        return (None, None);
    };
    if !tracer.records(trace) {
        // No span is recorded for the call, so the request's span is the
        // parent the source sees (the trace id links the logs all the same).
        return (Some(trace.outbound_traceparent()), None);
    }
    let context = trace.child();
    let call = SourceCall {
        context,
        source: Arc::clone(source),
        started: SystemTime::now(),
        tracer: tracer.clone(),
    };
    (Some(context.outbound_traceparent()), Some(call))
}

/// How a call ended, as far as its span tells.
pub(crate) enum CallEnd<'a> {
    /// The source answered; the HTTP status of its first answer.
    Answered(Option<u16>),
    Failed(&'a FetchError),
    TimedOut,
}

impl SourceCall {
    /// Records the call's CLIENT span.
    pub(crate) fn finish(self, elapsed: Duration, end: CallEnd<'_>) {
        let source = &self.source;
        let mut span = Span::new(
            &self.context,
            SpanKind::Client,
            format!("GET {}", source.name),
            self.started,
            elapsed,
        );
        span.set(keys::HTTP_REQUEST_METHOD, "GET");
        if let Some(host) = source.base_url.host_str() {
            span.set(keys::SERVER_ADDRESS, host.to_owned());
        }
        if let Some(port) = source.base_url.port_or_known_default() {
            span.set(keys::SERVER_PORT, port);
        }
        span.set(keys::SOURCE, source.name.clone());
        span.set(keys::SOURCE_ODS, source.ods.as_str().to_owned());
        match end {
            CallEnd::Answered(status) => {
                if let Some(status) = status {
                    span.set(keys::HTTP_RESPONSE_STATUS_CODE, status);
                }
            }
            CallEnd::Failed(error) => {
                if let Some(status) = error.status() {
                    span.set(keys::HTTP_RESPONSE_STATUS_CODE, status);
                }
                span.set(keys::ERROR_TYPE, error.kind());
                span.set_error();
            }
            CallEnd::TimedOut => {
                span.set(keys::ERROR_TYPE, "timeout");
                span.set_error();
            }
        }
        self.tracer.record(span);
    }
}
