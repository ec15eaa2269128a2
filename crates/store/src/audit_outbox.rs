//! The audit outbox (issue 16, "share the fsync"): an audited write commits
//! its request's audit record in the same transaction as the pointer change,
//! so a create pays one durable commit instead of one in the store and a
//! second in the audit log. The audit crate moves entries into its hash
//! chain afterwards (`audit::outbox`) and then removes them here.
//!
//! An entry is opaque to the store: the audit crate's compact encoding of
//! the request's facts. The store keeps it, hands it back in order and
//! forgets it when told; it never reads it.

use domain::{PointerId, PointerRecord, Supersede};

use crate::{PointerStore, StoreError};

/// A pointer write that an audit record goes with.
#[derive(Debug)]
pub enum PointerWrite {
    /// As [`crate::PointerStore::create`].
    Create {
        record: PointerRecord,
        supersedes: Vec<Supersede>,
    },
    /// As [`crate::PointerStore::update`].
    Update {
        record: PointerRecord,
        expected_version: u32,
    },
    /// As [`crate::PointerStore::delete`].
    Delete {
        id: PointerId,
        expected_version: Option<u32>,
    },
}

impl PointerWrite {
    /// Runs the write alone, through the store's plain methods: what a
    /// store without an audit outbox does, and a caller with no outbox to
    /// feed.
    pub async fn apply<S: PointerStore + ?Sized>(self, store: &S) -> Result<(), StoreError> {
        match self {
            PointerWrite::Create { record, supersedes } => store.create(record, supersedes).await,
            PointerWrite::Update {
                record,
                expected_version,
            } => store.update(record, expected_version).await,
            PointerWrite::Delete {
                id,
                expected_version,
            } => store.delete(&id, expected_version).await,
        }
    }
}

/// Where a committed write's audit record went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditKept {
    /// In the store's outbox, committed with the change: durable already.
    WithTheChange,
    /// Nowhere: this backend keeps no audit outbox, so the caller must
    /// append the record to the audit log itself.
    NotKept,
}

/// One audit record waiting in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxedAudit {
    /// Only grows, and is never handed out twice, even after removal.
    pub id: u64,
    pub entry: Vec<u8>,
}
