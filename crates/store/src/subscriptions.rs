//! Subscriptions and their notification events (issue 15): the stored half
//! of FHIR R4 Subscriptions (Backport IG). What a subscription asks for
//! (topic, filters, endpoint, payload) is an opaque JSON `spec` the domain
//! reads; the store keeps the delivery state that must survive crashes and be
//! shared by every node:
//!
//! - **Fan-out** ([`SubscriptionStore::fan_out`]) turns pending outbox events
//!   into per-subscription notification events and removes them from the
//!   outbox in ONE transaction, so an event is never lost between the two
//!   nor numbered twice. Event numbers start at 1 per subscription, have no
//!   gaps, and never change once given.
//! - **Leases** ([`SubscriptionStore::claim_due`]): a node claims due
//!   subscriptions for a while; another node skips them (PostgreSQL
//!   `FOR UPDATE SKIP LOCKED`) until the lease expires, so each event is
//!   delivered once in the normal case and a dead node's work is taken over.
//!   One lease covers a whole subscription, so its events go out in order:
//!   event n+1 is only claimed once n is acknowledged.
//! - Times are milliseconds since the Unix epoch, passed in by the caller, so
//!   tests and retry schedules need no database clock.

use std::sync::Arc;

use async_trait::async_trait;
use domain::NhsNumber;

use crate::{PointerEvent, StoreError};

/// Where a subscription stands, as FHIR's `Subscription.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SubscriptionStatus {
    /// Created or reactivated; the handshake has not succeeded yet.
    Requested,
    /// Handshake acknowledged: notifications flow.
    Active,
    /// Delivery stopped; `error` says why. Events keep accumulating and stay
    /// readable through `$events` until the subscriber reactivates it.
    Error,
}

impl SubscriptionStatus {
    /// The FHIR code, also the stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            SubscriptionStatus::Requested => "requested",
            SubscriptionStatus::Active => "active",
            SubscriptionStatus::Error => "error",
        }
    }

    /// Inverse of [`SubscriptionStatus::as_str`].
    pub fn parse(text: &str) -> Option<SubscriptionStatus> {
        Some(match text {
            "requested" => SubscriptionStatus::Requested,
            "active" => SubscriptionStatus::Active,
            "error" => SubscriptionStatus::Error,
            _ => return None,
        })
    }
}

/// What a subscriber asked for, fixed at creation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionRecord {
    /// Server-assigned id.
    pub id: String,
    /// Client id of the app that created it: only that app sees it.
    pub owner_app: String,
    /// The one patient it is about (fan-out looks subscriptions up by patient).
    pub nhs_number: NhsNumber,
    /// Heartbeat period in milliseconds; 0 for none.
    pub heartbeat_ms: i64,
    /// Topic, filters, channel and payload, as JSON the domain reads
    /// (`domain::subscription::Spec`).
    pub spec: String,
    /// RFC 3339 UTC creation time.
    pub created: String,
}

/// Delivery state of a subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryState {
    pub status: SubscriptionStatus,
    /// Why the subscription is in `error`.
    pub error: Option<String>,
    /// Events numbered so far: FHIR's `events-since-subscription-start`, and
    /// the number of the latest event.
    pub events_total: i64,
    /// The highest event number the endpoint acknowledged.
    pub delivered_through: i64,
    /// Failed attempts at the current notification.
    pub attempts: u32,
    /// Not to be attempted before this time (ms since the epoch).
    pub next_attempt_ms: i64,
    /// When a notification or heartbeat last reached the endpoint (ms); the
    /// heartbeat is due `heartbeat_ms` after it.
    pub last_sent_ms: i64,
}

impl DeliveryState {
    /// A new (or reactivated) subscription: handshake due at once.
    pub fn requested() -> DeliveryState {
        DeliveryState {
            status: SubscriptionStatus::Requested,
            error: None,
            events_total: 0,
            delivered_through: 0,
            attempts: 0,
            next_attempt_ms: 0,
            last_sent_ms: 0,
        }
    }
}

/// A stored subscription with its delivery state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub record: SubscriptionRecord,
    pub state: DeliveryState,
}

/// One numbered event of one subscription: the outbox event it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationEvent {
    /// 1, 2, 3... per subscription, never reused.
    pub number: i64,
    /// The pointer change, as the outbox recorded it (`seq` is the outbox's).
    pub event: PointerEvent,
}

/// Work a node claimed: a subscription and, if one is due, the event to send
/// next (the one after `delivered_through`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub subscription: Subscription,
    pub next_event: Option<NotificationEvent>,
}

/// Whether an outbox event concerns a subscription (topic, filters, and who
/// may hear of it). Called inside the fan-out transaction, so it must be
/// quick and must not block.
pub type Matcher = Arc<dyn Fn(&Subscription, &PointerEvent) -> bool + Send + Sync>;

/// The subscription half of the store. Backends that keep an outbox
/// implement it on the same database, so fan-out shares its transaction.
#[async_trait]
pub trait SubscriptionStore: Send + Sync {
    /// Stores a new subscription in state [`DeliveryState::requested`].
    /// An id already taken is `StoreError::Internal` (ids are random).
    async fn create_subscription(&self, record: SubscriptionRecord) -> Result<(), StoreError>;

    /// One subscription.
    async fn subscription(&self, id: &str) -> Result<Option<Subscription>, StoreError>;

    /// Every subscription an app created, oldest first.
    async fn subscriptions_of(&self, owner_app: &str) -> Result<Vec<Subscription>, StoreError>;

    /// Deletes a subscription and its events; `false` if there was none.
    async fn delete_subscription(&self, id: &str) -> Result<bool, StoreError>;

    /// Back to `requested` (a new handshake), keeping its events and numbers:
    /// delivery resumes after the last acknowledged event. `false` if there
    /// is no such subscription.
    async fn reactivate(&self, id: &str) -> Result<bool, StoreError>;

    /// Moves up to `limit` pending outbox events to the subscriptions
    /// `matcher` accepts (any status), numbering them, and removes them from
    /// the outbox, all in one transaction. Returns how many outbox events it
    /// took. Only one node fans out at a time; another gets 0 meanwhile.
    async fn fan_out(&self, limit: usize, matcher: Matcher) -> Result<usize, StoreError>;

    /// Leases up to `limit` subscriptions due at `now_ms` to `node` until
    /// `now_ms + lease_ms`. Due: not leased (or the lease expired), not
    /// before `next_attempt_ms`, and either `requested` (handshake), or
    /// `active` with an unacknowledged event or a heartbeat due.
    async fn claim_due(
        &self,
        node: &str,
        now_ms: i64,
        lease_ms: i64,
        limit: usize,
    ) -> Result<Vec<Claim>, StoreError>;

    /// Records an attempt's result and releases the lease, but only if
    /// `node` still holds it (a node whose lease expired and was taken over
    /// must not overwrite the new holder's state). `events_total` is not
    /// changed. Returns whether it was recorded.
    async fn finish_attempt(
        &self,
        id: &str,
        node: &str,
        state: &DeliveryState,
    ) -> Result<bool, StoreError>;

    /// Events numbered `since..=until` (both optional), lowest first, at most
    /// `limit`.
    async fn events(
        &self,
        id: &str,
        since: Option<i64>,
        until: Option<i64>,
        limit: usize,
    ) -> Result<Vec<NotificationEvent>, StoreError>;

    /// Deletes acknowledged events recorded before `before` (RFC 3339 UTC,
    /// same format as `recorded_at`); returns how many.
    async fn purge_events(&self, before: &str) -> Result<u64, StoreError>;
}

/// The rule [`SubscriptionStore::claim_due`] applies, lease aside; the SQL
/// backends state the same in their queries.
pub(crate) fn due(state: &DeliveryState, heartbeat_ms: i64, now_ms: i64) -> bool {
    if state.next_attempt_ms > now_ms {
        return false;
    }
    match state.status {
        SubscriptionStatus::Requested => true,
        SubscriptionStatus::Active => {
            state.events_total > state.delivered_through
                || (heartbeat_ms > 0 && state.last_sent_ms + heartbeat_ms <= now_ms)
        }
        SubscriptionStatus::Error => false,
    }
}
