//! One pointer write, as the [`crate::PointerStore`] methods hand it to a
//! backend: each SQL backend applies it in one transaction of its own.

use domain::{PointerId, PointerRecord, Supersede};

/// One write.
#[derive(Debug)]
pub(crate) enum WriteOp {
    Create {
        record: PointerRecord,
        supersedes: Vec<Supersede>,
    },
    Update {
        record: PointerRecord,
        expected_version: u32,
    },
    Delete {
        id: PointerId,
        expected_version: Option<u32>,
    },
    /// Removes outbox events from the pending set (see [`crate::outbox`]).
    MarkDispatched { seqs: Vec<i64> },
}
