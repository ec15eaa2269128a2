//! The transactional outbox: every pointer write also records one
//! [`PointerEvent`] in the same transaction (HAPI FHIR's subscription
//! pattern), so a write that rolls back emits nothing and a write that
//! commits is never lost to a crash before delivery. Subscription delivery
//! reads pending events with [`crate::PointerStore::pending_events`] and
//! marks them done with [`crate::PointerStore::mark_dispatched`].

use domain::{NhsNumber, OdsCode, PointerId};

/// What a write did to a pointer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PointerChange {
    /// A new pointer, replacing nothing.
    Created,
    /// A new pointer that replaced (and deleted) one or more others: ONE event,
    /// the new pointer as focus, the replaced ones as additional context.
    Superseded,
    /// A pointer replaced in place by its next version.
    Updated,
    /// A pointer deleted (withdrawn by its producer).
    Deleted,
}

impl PointerChange {
    /// The stored form, also used in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            PointerChange::Created => "created",
            PointerChange::Superseded => "superseded",
            PointerChange::Updated => "updated",
            PointerChange::Deleted => "deleted",
        }
    }

    /// Inverse of [`PointerChange::as_str`].
    pub fn parse(text: &str) -> Option<PointerChange> {
        Some(match text {
            "created" => PointerChange::Created,
            "superseded" => PointerChange::Superseded,
            "updated" => PointerChange::Updated,
            "deleted" => PointerChange::Deleted,
            _ => return None,
        })
    }
}

/// One committed pointer write, as the outbox holds it until dispatched.
///
/// It carries what subscription matching and access checks need (patient,
/// custodian, type, security labels) so dispatch never has to read a pointer
/// that a later write may already have changed or deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PointerEvent {
    /// Outbox position: unique and increasing in allocation order. Under
    /// concurrent writers (PostgreSQL) a lower `seq` may commit after a higher
    /// one, so readers must not treat it as a high-water mark: pending events
    /// are those not yet marked dispatched.
    pub seq: i64,
    pub change: PointerChange,
    /// The pointer written: the new one for a create or supersede, the
    /// updated or deleted one otherwise.
    pub focus: PointerId,
    /// The pointers a supersede replaced, in request order; empty otherwise.
    pub additional_context: Vec<PointerId>,
    pub nhs_number: NhsNumber,
    pub custodian: OdsCode,
    /// `system|code` of the pointer type.
    pub type_key: String,
    /// The focus pointer's security labels (of the deleted version for a
    /// delete): a sensitive pointer must never notify a subscriber who could
    /// not see it.
    pub security_labels: Vec<String>,
    /// When the write committed, RFC 3339 UTC with milliseconds, from the
    /// database clock.
    pub recorded_at: String,
}

/// Ids of the additional context, space-separated (pointer ids never hold a
/// space), as the SQLite backend stores them.
pub(crate) fn join_ids(ids: &[PointerId]) -> String {
    ids.iter()
        .map(PointerId::as_str)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Inverse of [`join_ids`]; `None` if an id does not parse.
pub(crate) fn split_ids(text: &str) -> Option<Vec<PointerId>> {
    text.split_whitespace().map(PointerId::parse).collect()
}
