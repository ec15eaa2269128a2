//! Metrics of the OTLP span export (see [`crate::otlp`]). Registered whether
//! or not export is on, so dashboards and alerts see them at zero.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// Spans accepted by the collector, and spans lost on the way.
#[derive(Clone)]
pub struct OtlpMetrics {
    exported: Counter,
    queue_full: Counter,
    export_failed: Counter,
}

impl OtlpMetrics {
    pub(super) fn register(registry: &mut Registry) -> OtlpMetrics {
        let exported = Counter::default();
        let dropped = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "otlp_spans_exported",
            "Spans the OTLP collector accepted",
            exported.clone(),
        );
        registry.register(
            "otlp_spans_dropped",
            "Spans not exported, by reason: queue_full (the export queue was full) or export_failed (the collector refused or did not answer)",
            dropped.clone(),
        );
        OtlpMetrics {
            exported,
            queue_full: dropped.get_or_create_owned(&ReasonLabel {
                reason: "queue_full",
            }),
            export_failed: dropped.get_or_create_owned(&ReasonLabel {
                reason: "export_failed",
            }),
        }
    }

    /// The collector accepted `spans` spans.
    pub fn exported(&self, spans: u64) {
        self.exported.inc_by(spans);
    }

    /// A span was dropped because the export queue was full.
    pub fn dropped_queue_full(&self) {
        self.queue_full.inc();
    }

    /// A batch of `spans` spans could not be delivered.
    pub fn dropped_export_failed(&self, spans: u64) {
        self.export_failed.inc_by(spans);
    }
}
