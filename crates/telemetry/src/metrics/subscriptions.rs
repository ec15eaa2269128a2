//! Metrics of subscription delivery (issue 15): every delivery attempt by
//! kind and outcome.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AttemptLabels {
    kind: &'static str,
    outcome: &'static str,
}

/// Delivery attempts.
#[derive(Clone)]
pub struct SubscriptionMetrics {
    attempts: Family<AttemptLabels, Counter>,
}

impl SubscriptionMetrics {
    pub(super) fn register(registry: &mut Registry) -> SubscriptionMetrics {
        let attempts = Family::<AttemptLabels, Counter>::default();
        registry.register(
            "subscription_delivery_attempts",
            "Subscription notification attempts, by kind (handshake, heartbeat, event-notification) and outcome (delivered, retry, failed, refused: access re-check stopped it)",
            attempts.clone(),
        );
        SubscriptionMetrics { attempts }
    }

    /// One attempt. `kind`: `handshake`, `heartbeat` or `event-notification`;
    /// `outcome`: `delivered`, `retry`, `failed` or `refused`.
    pub fn attempt(&self, kind: &'static str, outcome: &'static str) {
        self.attempts
            .get_or_create(&AttemptLabels { kind, outcome })
            .inc();
    }
}
