//! In-memory backend: the test double, and the reference the conformance suite
//! is first written against. Nothing survives a restart.

mod subscriptions;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;
use domain::{NhsNumber, OdsCode, PointerId, PointerRecord, Supersede};

use crate::{PointerChange, PointerEvent, PointerStore, StoreError, StoredPointer};

#[derive(Default)]
struct State {
    next_seq: i64,
    by_id: HashMap<PointerId, StoredPointer>,
    by_patient: HashMap<NhsNumber, BTreeSet<(i64, PointerId)>>,
    master_identifiers: HashMap<(String, String), PointerId>,
    next_event: i64,
    /// The outbox: events not yet marked dispatched, by sequence.
    pending_events: BTreeMap<i64, PointerEvent>,
}

/// A [`PointerStore`] held in a mutex-guarded map.
#[derive(Default)]
pub struct MemoryStore {
    state: Mutex<State>,
    subscriptions: Mutex<subscriptions::Subscriptions>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, State>, StoreError> {
        self.state
            .lock()
            .map_err(|_| StoreError::Internal("memory store lock poisoned".into()))
    }
}

fn master_key(record: &PointerRecord) -> Option<(String, String)> {
    record
        .master_identifier
        .as_ref()
        .map(|m| (record.custodian.as_str().to_owned(), m.clone()))
}

impl State {
    fn check_target(&self, record: &PointerRecord, s: &Supersede) -> Result<(), StoreError> {
        let target = self
            .by_id
            .get(&s.target)
            .ok_or_else(|| StoreError::SupersedeTargetMissing(s.clone()))?;
        let t = &target.record;
        let mismatch = if t.nhs_number != record.nhs_number {
            Some("subject")
        } else if t.custodian != record.custodian {
            Some("custodian")
        } else if t.type_key != record.type_key {
            Some("type")
        } else {
            None
        };
        match mismatch {
            Some(field) => Err(StoreError::SupersedeMismatch {
                target: s.clone(),
                field,
            }),
            None => Ok(()),
        }
    }

    fn remove(&mut self, id: &PointerId) -> Option<StoredPointer> {
        let stored = self.by_id.remove(id)?;
        if let Some(set) = self.by_patient.get_mut(&stored.record.nhs_number) {
            set.remove(&(stored.seq, id.clone()));
        }
        if let Some(key) = master_key(&stored.record) {
            self.master_identifiers.remove(&key);
        }
        Some(stored)
    }

    /// Appends the outbox event of a write. Called only once every check has
    /// passed, under the same lock as the change: the "transaction" here.
    fn record_event(
        &mut self,
        change: PointerChange,
        focus: &PointerRecord,
        additional_context: Vec<PointerId>,
    ) {
        self.next_event += 1;
        let event = PointerEvent {
            seq: self.next_event,
            change,
            focus: focus.id.clone(),
            additional_context,
            nhs_number: focus.nhs_number,
            custodian: focus.custodian.clone(),
            type_key: focus.type_key.clone(),
            security_labels: focus.security_labels.clone(),
            recorded_at: domain::clock::now_instant(),
        };
        self.pending_events.insert(event.seq, event);
    }

    fn insert(&mut self, seq: i64, record: PointerRecord) {
        if let Some(key) = master_key(&record) {
            self.master_identifiers.insert(key, record.id.clone());
        }
        self.by_patient
            .entry(record.nhs_number)
            .or_default()
            .insert((seq, record.id.clone()));
        self.by_id
            .insert(record.id.clone(), StoredPointer { seq, record });
    }
}

#[async_trait]
impl PointerStore for MemoryStore {
    async fn create(
        &self,
        record: PointerRecord,
        supersedes: Vec<Supersede>,
    ) -> Result<(), StoreError> {
        let mut state = self.lock()?;
        if state.by_id.contains_key(&record.id) {
            return Err(StoreError::DuplicateId(record.id));
        }
        for s in &supersedes {
            state.check_target(&record, s)?;
        }
        if let Some(key) = master_key(&record) {
            let replaced = state
                .master_identifiers
                .get(&key)
                .is_some_and(|holder| supersedes.iter().any(|s| &s.target == holder));
            if state.master_identifiers.contains_key(&key) && !replaced {
                return Err(StoreError::DuplicateMasterIdentifier(key.1));
            }
        }
        for s in &supersedes {
            state.remove(&s.target);
        }
        state.next_seq += 1;
        let seq = state.next_seq;
        let change = if supersedes.is_empty() {
            PointerChange::Created
        } else {
            PointerChange::Superseded
        };
        let replaced = supersedes.into_iter().map(|s| s.target).collect();
        state.record_event(change, &record, replaced);
        state.insert(seq, record);
        Ok(())
    }

    async fn update(&self, record: PointerRecord, expected_version: u32) -> Result<(), StoreError> {
        let mut state = self.lock()?;
        let current = state
            .by_id
            .get(&record.id)
            .ok_or_else(|| StoreError::NotFound(record.id.clone()))?;
        if current.record.version != expected_version {
            return Err(StoreError::VersionConflict {
                id: record.id.clone(),
                expected: expected_version,
                actual: current.record.version,
            });
        }
        if let Some(key) = master_key(&record)
            && state
                .master_identifiers
                .get(&key)
                .is_some_and(|holder| holder != &record.id)
        {
            return Err(StoreError::DuplicateMasterIdentifier(key.1));
        }
        let Some(old) = state.remove(&record.id) else {
            return Err(StoreError::NotFound(record.id));
        };
        state.record_event(PointerChange::Updated, &record, Vec::new());
        state.insert(old.seq, record);
        Ok(())
    }

    async fn delete(
        &self,
        id: &PointerId,
        expected_version: Option<u32>,
    ) -> Result<(), StoreError> {
        let mut state = self.lock()?;
        let current = state
            .by_id
            .get(id)
            .ok_or_else(|| StoreError::NotFound(id.clone()))?;
        if let Some(expected) = expected_version
            && current.record.version != expected
        {
            return Err(StoreError::VersionConflict {
                id: id.clone(),
                expected,
                actual: current.record.version,
            });
        }
        if let Some(removed) = state.remove(id) {
            state.record_event(PointerChange::Deleted, &removed.record, Vec::new());
        }
        Ok(())
    }

    async fn get(&self, id: &PointerId) -> Result<Option<PointerRecord>, StoreError> {
        Ok(self.lock()?.by_id.get(id).map(|s| s.record.clone()))
    }

    async fn patient_pointers(
        &self,
        nhs_number: NhsNumber,
    ) -> Result<Vec<StoredPointer>, StoreError> {
        let state = self.lock()?;
        let Some(set) = state.by_patient.get(&nhs_number) else {
            return Ok(Vec::new());
        };
        Ok(set
            .iter()
            .rev()
            .filter_map(|(_, id)| state.by_id.get(id).cloned())
            .collect())
    }

    async fn pointers_after(
        &self,
        after_seq: i64,
        limit: usize,
        custodian: Option<&OdsCode>,
    ) -> Result<Vec<StoredPointer>, StoreError> {
        let state = self.lock()?;
        // A full scan per page: fine for a test double, not for millions.
        let mut page: Vec<StoredPointer> = state
            .by_id
            .values()
            .filter(|s| s.seq > after_seq)
            .filter(|s| custodian.is_none_or(|c| &s.record.custodian == c))
            .cloned()
            .collect();
        page.sort_unstable_by_key(|s| s.seq);
        page.truncate(limit);
        Ok(page)
    }

    async fn pending_events(&self, limit: usize) -> Result<Vec<PointerEvent>, StoreError> {
        let state = self.lock()?;
        Ok(state.pending_events.values().take(limit).cloned().collect())
    }

    async fn mark_dispatched(&self, seqs: &[i64]) -> Result<(), StoreError> {
        let mut state = self.lock()?;
        for seq in seqs {
            state.pending_events.remove(seq);
        }
        Ok(())
    }

    async fn count(&self) -> Result<u64, StoreError> {
        Ok(self.lock()?.by_id.len() as u64)
    }

    async fn health(&self) -> Result<(), StoreError> {
        self.lock().map(|_| ())
    }

    fn backend(&self) -> &'static str {
        "memory"
    }

    fn subscriptions(&self) -> Option<&dyn crate::SubscriptionStore> {
        Some(self)
    }
}

#[cfg(test)]
mod tests {
    crate::conformance_tests!(|| async { super::MemoryStore::new() });
}
