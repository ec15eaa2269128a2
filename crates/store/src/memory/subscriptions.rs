//! Subscriptions in memory: the reference for the conformance cases. The
//! outbox lives in the pointer state, so fan-out takes both locks (pointer
//! state first, always in that order).

use std::collections::BTreeMap;

use async_trait::async_trait;

use super::MemoryStore;
use crate::StoreError;
use crate::subscriptions::{
    Claim, DeliveryState, Matcher, NotificationEvent, Subscription, SubscriptionRecord,
    SubscriptionStore, due,
};

/// One subscription with its events and lease.
pub(super) struct Entry {
    subscription: Subscription,
    events: BTreeMap<i64, NotificationEvent>,
    lease: Option<(String, i64)>,
    /// Creation order, for `subscriptions_of`.
    order: u64,
}

#[derive(Default)]
pub(super) struct Subscriptions {
    by_id: BTreeMap<String, Entry>,
    next_order: u64,
}

impl MemoryStore {
    fn subs(&self) -> Result<std::sync::MutexGuard<'_, Subscriptions>, StoreError> {
        self.subscriptions
            .lock()
            .map_err(|_| StoreError::Internal("memory store lock poisoned".into()))
    }
}

#[async_trait]
impl SubscriptionStore for MemoryStore {
    async fn create_subscription(&self, record: SubscriptionRecord) -> Result<(), StoreError> {
        let mut subs = self.subs()?;
        if subs.by_id.contains_key(&record.id) {
            return Err(StoreError::Internal(format!(
                "subscription id {} is taken",
                record.id
            )));
        }
        subs.next_order += 1;
        let order = subs.next_order;
        subs.by_id.insert(
            record.id.clone(),
            Entry {
                subscription: Subscription {
                    record,
                    state: DeliveryState::requested(),
                },
                events: BTreeMap::new(),
                lease: None,
                order,
            },
        );
        Ok(())
    }

    async fn subscription(&self, id: &str) -> Result<Option<Subscription>, StoreError> {
        Ok(self.subs()?.by_id.get(id).map(|e| e.subscription.clone()))
    }

    async fn subscriptions_of(&self, owner_app: &str) -> Result<Vec<Subscription>, StoreError> {
        let subs = self.subs()?;
        let mut found: Vec<&Entry> = subs
            .by_id
            .values()
            .filter(|e| e.subscription.record.owner_app == owner_app)
            .collect();
        found.sort_by_key(|e| e.order);
        Ok(found.into_iter().map(|e| e.subscription.clone()).collect())
    }

    async fn delete_subscription(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self.subs()?.by_id.remove(id).is_some())
    }

    async fn reactivate(&self, id: &str) -> Result<bool, StoreError> {
        let mut subs = self.subs()?;
        let Some(entry) = subs.by_id.get_mut(id) else {
            return Ok(false);
        };
        let state = &mut entry.subscription.state;
        *state = DeliveryState {
            events_total: state.events_total,
            delivered_through: state.delivered_through,
            last_sent_ms: state.last_sent_ms,
            ..DeliveryState::requested()
        };
        entry.lease = None;
        Ok(true)
    }

    async fn fan_out(&self, limit: usize, matcher: Matcher) -> Result<usize, StoreError> {
        let mut state = self.lock()?;
        let mut subs = self.subs()?;
        let seqs: Vec<i64> = state.pending_events.keys().take(limit).copied().collect();
        for seq in &seqs {
            let Some(event) = state.pending_events.remove(seq) else {
                continue;
            };
            for entry in subs.by_id.values_mut() {
                let sub = &entry.subscription;
                if sub.record.nhs_number != event.nhs_number || !matcher(sub, &event) {
                    continue;
                }
                entry.subscription.state.events_total += 1;
                let number = entry.subscription.state.events_total;
                entry.events.insert(
                    number,
                    NotificationEvent {
                        number,
                        event: event.clone(),
                    },
                );
            }
        }
        Ok(seqs.len())
    }

    async fn claim_due(
        &self,
        node: &str,
        now_ms: i64,
        lease_ms: i64,
        limit: usize,
    ) -> Result<Vec<Claim>, StoreError> {
        let mut subs = self.subs()?;
        let mut due_entries: Vec<&mut Entry> = subs
            .by_id
            .values_mut()
            .filter(|e| e.lease.as_ref().is_none_or(|(_, until)| *until < now_ms))
            .filter(|e| {
                let s = &e.subscription;
                due(&s.state, s.record.heartbeat_ms, now_ms)
            })
            .collect();
        due_entries.sort_by_key(|e| e.subscription.state.next_attempt_ms);
        Ok(due_entries
            .into_iter()
            .take(limit)
            .map(|entry| {
                entry.lease = Some((node.to_owned(), now_ms + lease_ms));
                let next = entry.subscription.state.delivered_through + 1;
                Claim {
                    subscription: entry.subscription.clone(),
                    next_event: entry.events.get(&next).cloned(),
                }
            })
            .collect())
    }

    async fn finish_attempt(
        &self,
        id: &str,
        node: &str,
        state: &DeliveryState,
    ) -> Result<bool, StoreError> {
        let mut subs = self.subs()?;
        let Some(entry) = subs.by_id.get_mut(id) else {
            return Ok(false);
        };
        if entry
            .lease
            .as_ref()
            .is_none_or(|(holder, _)| holder != node)
        {
            return Ok(false);
        }
        entry.lease = None;
        entry.subscription.state = DeliveryState {
            events_total: entry.subscription.state.events_total,
            ..state.clone()
        };
        Ok(true)
    }

    async fn events(
        &self,
        id: &str,
        since: Option<i64>,
        until: Option<i64>,
        limit: usize,
    ) -> Result<Vec<NotificationEvent>, StoreError> {
        let subs = self.subs()?;
        let Some(entry) = subs.by_id.get(id) else {
            return Ok(Vec::new());
        };
        let since = since.unwrap_or(i64::MIN);
        let until = until.unwrap_or(i64::MAX);
        if since > until {
            return Ok(Vec::new());
        }
        Ok(entry
            .events
            .range(since..=until)
            .take(limit)
            .map(|(_, e)| e.clone())
            .collect())
    }

    async fn purge_events(&self, before: &str) -> Result<u64, StoreError> {
        let mut subs = self.subs()?;
        let mut purged = 0;
        for entry in subs.by_id.values_mut() {
            let through = entry.subscription.state.delivered_through;
            let before_len = entry.events.len();
            entry
                .events
                .retain(|n, e| *n > through || e.event.recorded_at.as_str() >= before);
            purged += (before_len - entry.events.len()) as u64;
        }
        Ok(purged)
    }
}
