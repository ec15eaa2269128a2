//! OpenTelemetry trace export (OTLP), optional and off by default.
//!
//! nrls records two kinds of span, named by the request's
//! [`TraceContext`]: one SERVER span per HTTP request (the `observe`
//! middleware in `api`) and one CLIENT span per federated source call (the
//! fan-out in `federation`). Finished spans go through a [`Tracer`] into a
//! bounded [`SpanQueue`]; a background task in the binary takes them in
//! batches, [`encode`]s them as OTLP/JSON and posts them to the collector.
//!
//! Hand-written rather than the OpenTelemetry SDK: OTLP/HTTP with the JSON
//! encoding is a stable, documented wire format, and this is a few hundred
//! lines against the SDK's 19 extra crates and ~86 s of build (measured; see
//! docs/operations.md "Traces"). This module is pure (no I/O, no HTTP
//! client), so everything but the POST is unit-tested here.

mod encode;
mod queue;
mod span;

use std::sync::Arc;

pub use encode::{CONTENT_TYPE, Resource, TRACES_PATH, encode};
pub use queue::SpanQueue;
pub use span::{Span, SpanKind, Status, Value, keys};

use crate::trace_context::TraceContext;

/// Where finished spans go. Off (the default) it holds nothing: checking it
/// is one branch, and callers build no span at all.
#[derive(Clone, Default)]
pub struct Tracer(Option<Arc<SpanQueue>>);

impl std::fmt::Debug for Tracer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.is_on() {
            "Tracer(on)"
        } else {
            "Tracer(off)"
        })
    }
}

impl Tracer {
    /// Records nothing.
    pub const OFF: Tracer = Tracer(None);

    /// Records into `queue`.
    pub fn new(queue: Arc<SpanQueue>) -> Tracer {
        Tracer(Some(queue))
    }

    /// Whether spans are exported at all.
    pub fn is_on(&self) -> bool {
        self.0.is_some()
    }

    /// Whether spans of `trace` are recorded: export is on and the trace is
    /// sampled (the caller's `traceparent` flag, or on for a trace nrls
    /// started). Check it before building a span.
    pub fn records(&self, trace: &TraceContext) -> bool {
        self.is_on() && trace.sampled()
    }

    /// Queues a finished span; never waits (a full queue drops it).
    pub fn record(&self, span: Span) {
        if let Some(queue) = &self.0 {
            queue.push(span);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::Metrics;

    #[test]
    fn only_sampled_traces_are_recorded_and_only_when_on() {
        let queue = Arc::new(SpanQueue::new(10, 10, Metrics::new().otlp().clone()));
        let on = Tracer::new(Arc::clone(&queue));
        let sampled = TraceContext::from_header_or_root(None, true);
        let unsampled = TraceContext::from_header_or_root(None, false);
        assert!(on.records(&sampled));
        assert!(!on.records(&unsampled));
        assert!(!Tracer::OFF.records(&sampled));
        assert!(!Tracer::default().is_on());
        let span = || {
            Span::new(
                &sampled,
                SpanKind::Server,
                "GET /",
                SystemTime::now(),
                Duration::ZERO,
            )
        };
        Tracer::OFF.record(span());
        on.record(span());
        assert_eq!(queue.len(), 1);
    }
}
