//! Pointer storage. [`PointerStore`] is the contract; each backend lives in its
//! own folder and must pass the one [`conformance`] suite.

pub mod access;
pub mod audit_outbox;
pub mod compression;
pub mod instrumented;
pub mod memory;
pub mod outbox;
pub mod postgres;
pub mod sqlite;
pub mod stats;
pub mod subscriptions;
mod write_op;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;

use std::sync::Arc;

use async_trait::async_trait;
use domain::{NhsNumber, OdsCode, PointerId, PointerRecord, Supersede};

pub use audit_outbox::{AuditKept, OutboxedAudit, PointerWrite};
pub use instrumented::InstrumentedStore;
pub use outbox::{PointerChange, PointerEvent};
pub use stats::{PoolStats, WriteStats};
pub use subscriptions::{
    Claim, DeliveryState, Matcher, NotificationEvent, Subscription, SubscriptionRecord,
    SubscriptionStatus, SubscriptionStore,
};

/// A stored pointer with its insertion sequence. Sequences only grow, so a
/// search page cursor of "sequence below N" is stable under concurrent inserts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPointer {
    pub seq: i64,
    pub record: PointerRecord,
}

/// Why a store operation failed. Each variant maps to one HTTP outcome.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("pointer {0} does not exist")]
    NotFound(PointerId),
    #[error("a pointer with id {0} already exists")]
    DuplicateId(PointerId),
    #[error("custodian already has a pointer with masterIdentifier {0}")]
    DuplicateMasterIdentifier(String),
    #[error("pointer {id} is at version {actual}, not {expected}")]
    VersionConflict {
        id: PointerId,
        expected: u32,
        actual: u32,
    },
    #[error("superseded pointer {} does not exist", .0.target)]
    SupersedeTargetMissing(Supersede),
    #[error("superseded pointer {} has a different {field}", .target.target)]
    SupersedeMismatch {
        target: Supersede,
        field: &'static str,
    },
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("store failure: {0}")]
    Internal(String),
}

/// What [`PointerStore::import`] did with a batch of records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportOutcome {
    /// Records newly stored.
    pub imported: u64,
    /// Records whose id was already stored with exactly the same JSON: a
    /// re-run of the same import, counted but not written again.
    pub already_present: u64,
    /// Records not stored, by their position in the batch, with the reason:
    /// `DuplicateId` when the id is stored with other content,
    /// `DuplicateMasterIdentifier` when another pointer of the custodian holds
    /// the record's masterIdentifier.
    pub rejected: Vec<(usize, StoreError)>,
}

/// The pointer store contract. Every method is atomic; a write that returns
/// `Ok` is durable.
#[async_trait]
pub trait PointerStore: Send + Sync + 'static {
    /// Inserts `record` and deletes every superseded target in one transaction.
    /// Each target must exist and share the record's patient, custodian and type.
    async fn create(
        &self,
        record: PointerRecord,
        supersedes: Vec<Supersede>,
    ) -> Result<(), StoreError>;

    /// Replaces the pointer `record.id` if it is still at `expected_version`.
    /// `record.version` must already be the next version.
    async fn update(&self, record: PointerRecord, expected_version: u32) -> Result<(), StoreError>;

    /// Deletes a pointer if it is at `expected_version` (any version when `None`).
    async fn delete(&self, id: &PointerId, expected_version: Option<u32>)
    -> Result<(), StoreError>;

    /// Reads one pointer.
    async fn get(&self, id: &PointerId) -> Result<Option<PointerRecord>, StoreError>;

    /// Every pointer of a patient, newest (highest sequence) first.
    async fn patient_pointers(
        &self,
        nhs_number: NhsNumber,
    ) -> Result<Vec<StoredPointer>, StoreError>;

    /// Bulk-loads validated records, as `nrls import` does. Idempotent: a
    /// record whose id is already stored with identical JSON counts as
    /// already present, not as an error, so a load can simply be re-run.
    /// A rejected record does not stop the others. Supersedes are not applied
    /// (an import carries pointers as they are, not as producer requests).
    ///
    /// `Ok` means every stored record is durable. The default runs one
    /// [`PointerStore::create`] per record; backends override it with large
    /// transactions.
    async fn import(&self, records: Vec<PointerRecord>) -> Result<ImportOutcome, StoreError> {
        let mut outcome = ImportOutcome::default();
        for (index, record) in records.into_iter().enumerate() {
            let id = record.id.clone();
            let json = record.json.clone();
            match self.create(record, Vec::new()).await {
                Ok(()) => outcome.imported += 1,
                Err(StoreError::DuplicateId(_)) => match self.get(&id).await? {
                    Some(stored) if stored.json == json => outcome.already_present += 1,
                    _ => outcome.rejected.push((index, StoreError::DuplicateId(id))),
                },
                Err(e @ StoreError::DuplicateMasterIdentifier(_)) => {
                    outcome.rejected.push((index, e));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(outcome)
    }

    /// Up to `limit` pointers with a sequence above `after_seq`, lowest first,
    /// optionally only those of one custodian: pages for `nrls export`. Pass
    /// the last sequence returned to get the next page; an empty page is the end.
    ///
    /// The default reports the backend cannot export.
    async fn pointers_after(
        &self,
        after_seq: i64,
        limit: usize,
        custodian: Option<&OdsCode>,
    ) -> Result<Vec<StoredPointer>, StoreError> {
        let _ = (after_seq, limit, custodian);
        Err(StoreError::Unavailable(format!(
            "the {} backend cannot list pointers for export",
            self.backend()
        )))
    }

    /// Up to `limit` outbox events not yet marked dispatched, lowest
    /// [`PointerEvent::seq`] first. Every committed write has exactly one; a
    /// rejected or rolled-back write has none (see [`outbox`]).
    ///
    /// The default reports the backend keeps no outbox.
    async fn pending_events(&self, limit: usize) -> Result<Vec<PointerEvent>, StoreError> {
        let _ = limit;
        Err(StoreError::Unavailable(format!(
            "the {} backend keeps no outbox",
            self.backend()
        )))
    }

    /// Marks outbox events dispatched, so [`PointerStore::pending_events`]
    /// no longer returns them. Unknown or already dispatched sequences are
    /// ignored, so a dispatcher that crashed after dispatching but before
    /// marking can simply mark again.
    async fn mark_dispatched(&self, seqs: &[i64]) -> Result<(), StoreError> {
        let _ = seqs;
        Err(StoreError::Unavailable(format!(
            "the {} backend keeps no outbox",
            self.backend()
        )))
    }

    /// Runs `write` and keeps `audit` (the request's audit record, opaque
    /// bytes) in the same transaction, when the backend keeps an audit
    /// outbox (see [`audit_outbox`]); a rejected write keeps nothing.
    ///
    /// The default runs the write alone and answers
    /// [`AuditKept::NotKept`]: the caller then appends the record itself.
    async fn write_audited(
        &self,
        write: PointerWrite,
        audit: Vec<u8>,
    ) -> Result<AuditKept, StoreError> {
        let _ = audit;
        write.apply(self).await?;
        Ok(AuditKept::NotKept)
    }

    /// Up to `limit` audit records waiting in the outbox, lowest id first.
    /// The default (no outbox) has none.
    async fn audit_outbox(&self, limit: usize) -> Result<Vec<OutboxedAudit>, StoreError> {
        let _ = limit;
        Ok(Vec::new())
    }

    /// Forgets the outbox's records `ids`, once the audit log holds them.
    /// Removing again (or an unknown id) is harmless. By id, not "up to an
    /// id": where ids are handed out before commit (PostgreSQL), a lower id
    /// may still commit after a higher one was read.
    async fn remove_audit_outbox(&self, ids: &[u64]) -> Result<(), StoreError> {
        let _ = ids;
        Ok(())
    }

    /// Number of pointers stored (for status pages and benchmarks).
    async fn count(&self) -> Result<u64, StoreError>;

    /// Checks the store can serve requests.
    async fn health(&self) -> Result<(), StoreError>;

    /// Short name of the backend, e.g. `sqlite`.
    fn backend(&self) -> &'static str;

    /// Group-commit counters, for backends that batch writes. Default: none.
    fn write_stats(&self) -> Option<WriteStats> {
        None
    }

    /// Connection pool use, for backends with a pool. Default: none.
    fn pool_stats(&self) -> Option<PoolStats> {
        None
    }

    /// The subscriptions kept beside this store's outbox (issue 15), for
    /// backends that keep them. Default: none.
    fn subscriptions(&self) -> Option<&dyn SubscriptionStore> {
        None
    }
    // A method added here must also be forwarded in `instrumented.rs`, or the
    // served store (which is wrapped) silently falls back to the default.
}

/// A shared handle on any backend.
pub type SharedStore = Arc<dyn PointerStore>;
