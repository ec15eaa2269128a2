//! Metrics recorded by the federation fan-out and the audit trail writer.
//!
//! Their names and recording API are fixed here so those crates only call
//! them; nothing here depends on how they are built.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use super::HistogramFamily;

/// Regional sources answer over a WAN: 5 ms to 30 s.
const SOURCE_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

fn source_histogram() -> Histogram {
    Histogram::new(SOURCE_BUCKETS)
}

/// A source name as a label value: shared, so a handle clones no string.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct SourceName(Arc<str>);

impl EncodeLabelValue for SourceName {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        EncodeLabelValue::encode(&&*self.0, encoder)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    source: SourceName,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceOnly {
    source: SourceName,
}

/// How a call to a federated source ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceOutcome {
    /// The source answered with a usable result.
    Ok,
    /// The source answered with an error or an unusable body.
    Error,
    /// No answer within the deadline.
    Timeout,
}

/// Per-source calls of the federation fan-out.
#[derive(Clone)]
pub struct FederationMetrics {
    requests: Family<SourceLabels, Counter>,
    duration: HistogramFamily<SourceOnly>,
}

/// The series of one source, resolved once (when the source registry is
/// built) so recording a call allocates nothing.
#[derive(Clone)]
pub struct SourceMetrics {
    ok: Counter,
    error: Counter,
    timeout: Counter,
    duration: Histogram,
}

impl FederationMetrics {
    pub(super) fn register(registry: &mut Registry) -> FederationMetrics {
        let metrics = FederationMetrics {
            requests: Family::default(),
            duration: Family::new_with_constructor(source_histogram),
        };
        registry.register(
            "federation_source_requests",
            "Calls to federated sources, by source and result (ok, error, timeout)",
            metrics.requests.clone(),
        );
        registry.register_with_unit(
            "federation_source_request_duration",
            "Time for a federated source to answer, by source",
            Unit::Seconds,
            metrics.duration.clone(),
        );
        metrics
    }

    /// The handle for the source called `name` (its configured name, never
    /// a URL with credentials). Creates its series at zero.
    pub fn source(&self, name: &str) -> SourceMetrics {
        let source = SourceName(Arc::from(name));
        let counter = |result| {
            self.requests.get_or_create_owned(&SourceLabels {
                source: source.clone(),
                result,
            })
        };
        SourceMetrics {
            ok: counter("ok"),
            error: counter("error"),
            timeout: counter("timeout"),
            duration: self.duration.get_or_create_owned(&SourceOnly {
                source: source.clone(),
            }),
        }
    }
}

impl SourceMetrics {
    /// Records one call to this source.
    pub fn record(&self, outcome: SourceOutcome, elapsed: Duration) {
        let counter = match outcome {
            SourceOutcome::Ok => &self.ok,
            SourceOutcome::Error => &self.error,
            SourceOutcome::Timeout => &self.timeout,
        };
        counter.inc();
        self.duration.observe(elapsed.as_secs_f64());
    }
}

/// An audit event waiting to be written; see [`AuditMetrics::pending`].
pub struct AuditPending(Gauge);

impl Drop for AuditPending {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The audit trail writer's queue.
#[derive(Clone)]
pub struct AuditMetrics {
    backlog: Gauge,
    written: Counter,
}

impl AuditMetrics {
    pub(super) fn register(registry: &mut Registry) -> AuditMetrics {
        let metrics = AuditMetrics {
            backlog: Gauge::default(),
            written: Counter::default(),
        };
        registry.register(
            "audit_backlog_events",
            "Audit events accepted but not yet durably written",
            metrics.backlog.clone(),
        );
        registry.register(
            "audit_events_written",
            "Audit events durably written",
            metrics.written.clone(),
        );
        metrics
    }

    /// Sets the number of audit events waiting to be written.
    pub fn set_backlog(&self, events: u64) {
        self.backlog.set(i64::try_from(events).unwrap_or(i64::MAX));
    }

    /// One event handed to the writer: in the backlog until the returned
    /// guard is dropped (however the append ends).
    pub fn pending(&self) -> AuditPending {
        self.backlog.inc();
        AuditPending(self.backlog.clone())
    }

    /// Counts events that reached durable storage.
    pub fn written(&self, events: u64) {
        self.written.inc_by(events);
    }
}
