//! The bounded queue between the request path and the export task.
//!
//! A request only ever takes a short lock to push; it never waits for the
//! collector. When the queue is full the span is dropped and counted
//! (`nrls_otlp_spans_dropped_total{reason="queue_full"}`): losing spans under
//! a collector outage is better than slowing or failing patient requests.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};

use super::span::Span;
use crate::metrics::OtlpMetrics;

type Wake = Box<dyn Fn() + Send + Sync>;

/// Finished spans waiting for the export task.
pub struct SpanQueue {
    spans: Mutex<VecDeque<Span>>,
    capacity: usize,
    batch_size: usize,
    metrics: OtlpMetrics,
    /// Called when a full batch is waiting, so the export task sends it
    /// without waiting for its next tick.
    wake: OnceLock<Wake>,
}

impl std::fmt::Debug for SpanQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpanQueue")
            .field("capacity", &self.capacity)
            .field("batch_size", &self.batch_size)
            .finish_non_exhaustive()
    }
}

impl SpanQueue {
    /// A queue holding at most `capacity` spans, handed out `batch_size` at
    /// a time (both at least 1).
    pub fn new(capacity: usize, batch_size: usize, metrics: OtlpMetrics) -> SpanQueue {
        let capacity = capacity.max(1);
        SpanQueue {
            spans: Mutex::new(VecDeque::with_capacity(capacity.min(4096))),
            capacity,
            batch_size: batch_size.max(1),
            metrics,
            wake: OnceLock::new(),
        }
    }

    /// Sets what a full batch wakes (the export task). Once only.
    pub fn on_batch_ready(&self, wake: impl Fn() + Send + Sync + 'static) {
        let _ = self.wake.set(Box::new(wake));
    }

    /// Queues a span, or drops and counts it when the queue is full.
    pub fn push(&self, span: Span) {
        let waiting = {
            let mut spans = self.lock();
            if spans.len() >= self.capacity {
                drop(spans);
                self.metrics.dropped_queue_full();
                return;
            }
            spans.push_back(span);
            spans.len()
        };
        // Once per batch, not per span: the task drains everything it finds.
        if waiting % self.batch_size == 0
            && let Some(wake) = self.wake.get()
        {
            wake();
        }
    }

    /// Up to one batch of the oldest spans; empty when none wait.
    pub fn take_batch(&self) -> Vec<Span> {
        let mut spans = self.lock();
        let n = spans.len().min(self.batch_size);
        spans.drain(..n).collect()
    }

    /// Spans waiting.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// A panic while holding the lock cannot leave the queue inconsistent
    /// (push and drain are single calls), so a poisoned lock is used as is.
    fn lock(&self) -> MutexGuard<'_, VecDeque<Span>> {
        self.spans.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::Metrics;
    use crate::otlp::SpanKind;
    use crate::trace_context::TraceContext;

    fn span(name: &'static str) -> Span {
        Span::new(
            &TraceContext::new_root(),
            SpanKind::Server,
            name,
            SystemTime::now(),
            Duration::from_millis(1),
        )
    }

    fn dropped(metrics: &Metrics) -> String {
        metrics
            .render()
            .lines()
            .find(|l| l.starts_with(r#"nrls_otlp_spans_dropped_total{reason="queue_full"}"#))
            .unwrap()
            .to_owned()
    }

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_blocking() {
        let metrics = Metrics::new();
        let queue = SpanQueue::new(3, 2, metrics.otlp().clone());
        for name in ["a", "b", "c", "d", "e"] {
            queue.push(span(name));
        }
        assert_eq!(queue.len(), 3);
        assert!(dropped(&metrics).ends_with(" 2"), "{}", dropped(&metrics));
        // Oldest first, a batch at a time.
        let first: Vec<String> = queue
            .take_batch()
            .iter()
            .map(|s| s.name().to_owned())
            .collect();
        assert_eq!(first, ["a", "b"]);
        assert_eq!(queue.take_batch().len(), 1);
        assert!(queue.take_batch().is_empty());
        assert!(queue.is_empty());
        // Room again.
        queue.push(span("f"));
        assert_eq!(queue.len(), 1);
        assert!(dropped(&metrics).ends_with(" 2"));
    }

    #[test]
    fn a_full_batch_wakes_the_exporter_once() {
        let queue = SpanQueue::new(100, 4, Metrics::new().otlp().clone());
        let wakes = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&wakes);
        queue.on_batch_ready(move || {
            counter.fetch_add(1, Ordering::Relaxed);
        });
        for _ in 0..9 {
            queue.push(span("x"));
        }
        assert_eq!(wakes.load(Ordering::Relaxed), 2);
    }
}
