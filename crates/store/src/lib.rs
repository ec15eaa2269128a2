//! Pointer storage. [`PointerStore`] is the contract; each backend lives in its
//! own folder and must pass the one [`conformance`] suite.

pub mod memory;
pub mod sqlite;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;

use std::sync::Arc;

use async_trait::async_trait;
use domain::{NhsNumber, PointerId, PointerRecord, Supersede};

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

    /// Number of pointers stored (for status pages and benchmarks).
    async fn count(&self) -> Result<u64, StoreError>;

    /// Checks the store can serve requests.
    async fn health(&self) -> Result<(), StoreError>;

    /// Short name of the backend, e.g. `sqlite`.
    fn backend(&self) -> &'static str;
}

/// A shared handle on any backend.
pub type SharedStore = Arc<dyn PointerStore>;
