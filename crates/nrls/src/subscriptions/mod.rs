//! Subscription delivery (issue 15): one task per node that, every poll
//! interval,
//!
//! 1. fans pending outbox events out to the matching subscriptions
//!    (`SubscriptionStore::fan_out`: numbering and outbox removal in one
//!    transaction), matching by topic and filters and by who may hear of the
//!    pointer (`api::operations::subscriptions::recheck`, the access policy);
//! 2. claims the subscriptions due now under a lease (PostgreSQL: `SKIP
//!    LOCKED`, so nodes share the work and a dead node's lease expires), and
//!    sends each its next notification in its own task (`delivery.rs`).
//!
//! A round also starts as soon as this node commits a pointer write or a
//! new or reactivated subscription (`AppState::delivery_due`), so the poll
//! interval bounds only the latency of other nodes' writes and of retries.
//!
//! It holds the service state weakly, so it never keeps a closing store
//! open, and stops once the service lets go.

mod delivery;

use std::sync::Arc;
use std::time::{Duration, Instant};

use api::WeakAppState;
use api::operations::subscriptions::recheck;
use domain::OdsCode;
use domain::access::{PatientAccess, Visibility};
use domain::catalogue::Catalogue;
use domain::subscription::retry::RetrySchedule;
use domain::subscription::{Change, ChangeFacts, Spec};
use store::{Matcher, PointerChange, PointerEvent, Subscription, SubscriptionStore};
use tokio::task::JoinHandle;

use crate::config::SubscriptionsConfig;

/// Outbox events fanned out per transaction.
const FAN_OUT_PAGE: usize = 1000;
/// Subscriptions claimed per round.
const CLAIM_BATCH: usize = 64;
/// How often acknowledged events past retention are purged.
const PURGE_EVERY: Duration = Duration::from_secs(3600);

/// Delivery settings, from `[subscriptions]`.
#[derive(Debug, Clone)]
pub struct DeliverySettings {
    /// Names this process's leases; unique per process.
    pub node: String,
    pub timeout: Duration,
    pub retry: RetrySchedule,
    pub poll: Duration,
    pub lease: Duration,
    pub retention: Duration,
}

impl DeliverySettings {
    pub fn from_config(config: &SubscriptionsConfig, node: &str) -> DeliverySettings {
        let unique = uuid::Uuid::new_v4().simple().to_string();
        DeliverySettings {
            node: format!("{node}/{}/{}", std::process::id(), &unique[..8]),
            timeout: Duration::from_secs(u64::from(config.timeout_seconds.max(1))),
            retry: RetrySchedule {
                delays: config
                    .retry_delays_ms
                    .iter()
                    .map(|ms| Duration::from_millis(*ms))
                    .collect(),
                window: Duration::from_millis(config.retry_window_ms),
            },
            poll: Duration::from_millis(config.poll_interval_ms.max(1)),
            lease: Duration::from_secs(config.lease_seconds.max(1)),
            retention: Duration::from_secs(u64::from(config.event_retention_days) * 86_400),
        }
    }
}

/// The delivery task's shared parts.
pub struct Worker {
    state: WeakAppState,
    settings: DeliverySettings,
    client: reqwest::Client,
    /// Cuts the poll short: a delivery just finished and more may wait.
    wake: tokio::sync::Notify,
}

impl Worker {
    pub fn new(state: WeakAppState, settings: DeliverySettings) -> Worker {
        // Notifications never follow redirects: the endpoint is what the
        // subscriber registered, nothing else.
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Worker {
            state,
            settings,
            client,
            wake: tokio::sync::Notify::new(),
        }
    }

    /// Starts the task.
    pub fn spawn(self) -> JoinHandle<()> {
        let worker = Arc::new(self);
        let due = worker.state.upgrade().map(|state| state.delivery_due());
        tokio::spawn(async move {
            let mut last_purge = Instant::now();
            loop {
                let Some(state) = worker.state.upgrade() else {
                    break;
                };
                if let Err(error) = worker.round(&state, &mut last_purge).await {
                    // A store outage passes; the work waits for the next round.
                    tracing::warn!(%error, "subscription delivery round failed; retrying");
                }
                drop(state);
                tokio::select! {
                    () = tokio::time::sleep(worker.settings.poll) => {}
                    () = worker.wake.notified() => {}
                    () = delivery_due(due.as_deref()) => {}
                }
            }
            tracing::debug!("subscription delivery stopped");
        })
    }

    async fn round(
        self: &Arc<Self>,
        state: &api::AppState,
        last_purge: &mut Instant,
    ) -> Result<(), store::StoreError> {
        let store = state.store();
        let Some(subs) = store.subscriptions() else {
            // No subscriptions kept: nobody to tell, so the outbox is drained.
            let events = store.pending_events(FAN_OUT_PAGE).await?;
            let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
            return store.mark_dispatched(&seqs).await;
        };
        // A cheap read first: the fan-out transaction takes the write lock.
        while !store.pending_events(1).await?.is_empty() {
            let matcher = matcher(state);
            if subs.fan_out(FAN_OUT_PAGE, matcher).await? < FAN_OUT_PAGE {
                break;
            }
        }
        self.claim_and_deliver(subs).await?;
        if last_purge.elapsed() >= PURGE_EVERY {
            *last_purge = Instant::now();
            purge(subs, self.settings.retention).await?;
        }
        Ok(())
    }

    async fn claim_and_deliver(
        self: &Arc<Self>,
        subs: &dyn SubscriptionStore,
    ) -> Result<(), store::StoreError> {
        let lease_ms = i64::try_from(self.settings.lease.as_millis()).unwrap_or(i64::MAX);
        let claims = subs
            .claim_due(&self.settings.node, now_ms(), lease_ms, CLAIM_BATCH)
            .await?;
        for claim in claims {
            let worker = Arc::clone(self);
            tokio::spawn(async move { delivery::deliver(&worker, claim).await });
        }
        Ok(())
    }
}

/// Resolves when this node next commits work for delivery (never, without
/// a state to ask).
async fn delivery_due(signal: Option<&tokio::sync::Notify>) {
    match signal {
        Some(signal) => signal.notified().await,
        None => std::future::pending().await,
    }
}

async fn purge(subs: &dyn SubscriptionStore, retention: Duration) -> Result<(), store::StoreError> {
    let cutoff = time::OffsetDateTime::now_utc() - retention;
    let cutoff = cutoff
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let purged = subs.purge_events(&cutoff).await?;
    if purged > 0 {
        tracing::info!(
            purged,
            "acknowledged subscription events past retention purged"
        );
    }
    Ok(())
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

pub(crate) fn change(change: PointerChange) -> Change {
    match change {
        PointerChange::Created => Change::Created,
        PointerChange::Superseded => Change::Superseded,
        PointerChange::Updated => Change::Updated,
        PointerChange::Deleted => Change::Deleted,
    }
}

/// Whether `event` concerns `sub`: its topic and filters, and whether its
/// app may hear of the pointer under the access policy (pointer types,
/// sensitive labels, own-custodian scope). The patient's objection and
/// relationships are checked at delivery, which reads them; an app that
/// lost its permission still gets the event numbered, so that delivery
/// reports the loss instead of going silent.
fn matcher(state: &api::AppState) -> Matcher {
    let policy = state.access().policy.clone();
    let registry = state.auth().registry();
    Arc::new(move |sub: &Subscription, event: &PointerEvent| {
        let catalogue = Catalogue::nrl_v3();
        let Some(spec) = Spec::from_json(&sub.record.spec) else {
            return false;
        };
        let facts = ChangeFacts {
            change: change(event.change),
            nhs_number: event.nhs_number,
            type_key: &event.type_key,
            custodian: &event.custodian,
        };
        if !spec.matches(catalogue, &facts) {
            return false;
        }
        let Some(organisation) = OdsCode::parse(&spec.organisation) else {
            return false;
        };
        let patient = PatientAccess {
            related_organisations: vec![organisation.clone()],
            objection: false,
        };
        match recheck(
            &policy,
            &registry,
            catalogue,
            &sub.record.owner_app,
            &spec,
            &organisation,
            &patient,
        ) {
            Ok((types, grant)) => {
                catalogue
                    .find_key(&event.type_key)
                    .is_some_and(|t| types.contains(t.index))
                    && grant.filter.check(&event.custodian, &event.security_labels)
                        == Visibility::Visible
            }
            Err(_) => true,
        }
    })
}
