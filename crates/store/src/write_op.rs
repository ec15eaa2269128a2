//! One write, as the [`crate::PointerStore`] methods hand it to a backend:
//! each SQL backend applies it in one transaction of its own.

use crate::PointerWrite;

/// One write.
#[derive(Debug)]
pub(crate) enum WriteOp {
    /// A pointer create, update or delete.
    Pointer(PointerWrite),
    /// Removes outbox events from the pending set (see [`crate::outbox`]).
    MarkDispatched { seqs: Vec<i64> },
    /// Forgets audit outbox records (see [`crate::audit_outbox`]).
    RemoveAuditOutbox { ids: Vec<u64> },
}

impl From<PointerWrite> for WriteOp {
    fn from(write: PointerWrite) -> WriteOp {
        WriteOp::Pointer(write)
    }
}
