//! Access facts in memory, for tests and `--store memory` runs.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use domain::NhsNumber;
use domain::access::PatientAccess;

use super::{AccessStore, AccessStoreError, NewRelationship, Objection, Relationship};

#[derive(Default)]
struct State {
    next_id: u64,
    relationships: BTreeMap<u64, Relationship>,
    objections: HashMap<NhsNumber, Objection>,
}

/// An [`AccessStore`] in memory.
#[derive(Default)]
pub struct MemoryAccessStore {
    state: Mutex<State>,
}

impl MemoryAccessStore {
    /// An empty store.
    pub fn new() -> MemoryAccessStore {
        MemoryAccessStore::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl AccessStore for MemoryAccessStore {
    async fn patient_access(
        &self,
        nhs_number: NhsNumber,
    ) -> Result<PatientAccess, AccessStoreError> {
        let state = self.lock();
        let mut related_organisations: Vec<_> = state
            .relationships
            .values()
            .filter(|r| r.nhs_number == nhs_number)
            .map(|r| r.ods.clone())
            .collect();
        related_organisations.sort();
        related_organisations.dedup();
        Ok(PatientAccess {
            related_organisations,
            objection: state.objections.contains_key(&nhs_number),
        })
    }

    async fn add_relationship(
        &self,
        new: NewRelationship,
    ) -> Result<Relationship, AccessStoreError> {
        let mut state = self.lock();
        if let Some(existing) = state
            .relationships
            .values()
            .find(|r| r.nhs_number == new.nhs_number && r.ods == new.ods && r.kind == new.kind)
        {
            return Err(AccessStoreError::DuplicateRelationship(existing.id));
        }
        state.next_id += 1;
        let relationship = Relationship {
            id: state.next_id,
            nhs_number: new.nhs_number,
            ods: new.ods,
            kind: new.kind,
            recorded_by: new.recorded_by,
            recorded_at: new.recorded_at,
        };
        state
            .relationships
            .insert(relationship.id, relationship.clone());
        Ok(relationship)
    }

    async fn relationships(
        &self,
        nhs_number: NhsNumber,
    ) -> Result<Vec<Relationship>, AccessStoreError> {
        Ok(self
            .lock()
            .relationships
            .values()
            .filter(|r| r.nhs_number == nhs_number)
            .cloned()
            .collect())
    }

    async fn remove_relationship(&self, id: u64) -> Result<Relationship, AccessStoreError> {
        self.lock()
            .relationships
            .remove(&id)
            .ok_or(AccessStoreError::RelationshipNotFound(id))
    }

    async fn record_objection(&self, objection: Objection) -> Result<(), AccessStoreError> {
        self.lock()
            .objections
            .insert(objection.nhs_number, objection);
        Ok(())
    }

    async fn objection(
        &self,
        nhs_number: NhsNumber,
    ) -> Result<Option<Objection>, AccessStoreError> {
        Ok(self.lock().objections.get(&nhs_number).cloned())
    }

    async fn withdraw_objection(&self, nhs_number: NhsNumber) -> Result<bool, AccessStoreError> {
        Ok(self.lock().objections.remove(&nhs_number).is_some())
    }

    fn backend(&self) -> &'static str {
        "memory"
    }
}
