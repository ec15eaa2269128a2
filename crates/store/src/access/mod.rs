//! Patient access facts, kept apart from the pointer tables: recorded
//! relationships between organisations and patients, and patients'
//! objections to sharing. The access policy (`domain::access`) reads them
//! once per consumer request through [`AccessStore::patient_access`]; the
//! admin API manages them.
//!
//! Backends: [`postgres::PostgresAccessStore`] (tables in the shared nrls
//! database), [`sqlite::SqliteAccessStore`] (its own `access.db`) and
//! [`memory::MemoryAccessStore`]; all pass the tests in `tests.rs`.

pub mod memory;
pub mod postgres;
pub mod sqlite;

use async_trait::async_trait;
use domain::access::PatientAccess;
use domain::{NhsNumber, OdsCode};

/// Why an organisation has a relationship with a patient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RelationshipKind {
    /// The patient's registered GP practice.
    RegisteredPractice,
    /// An open referral to the organisation.
    Referral,
    /// A current or recent encounter (admission, attendance).
    Encounter,
}

impl RelationshipKind {
    /// Every kind.
    pub const ALL: [RelationshipKind; 3] = [
        RelationshipKind::RegisteredPractice,
        RelationshipKind::Referral,
        RelationshipKind::Encounter,
    ];

    /// `registered-practice`, `referral` or `encounter`.
    pub fn as_str(self) -> &'static str {
        match self {
            RelationshipKind::RegisteredPractice => "registered-practice",
            RelationshipKind::Referral => "referral",
            RelationshipKind::Encounter => "encounter",
        }
    }

    /// Reads a kind written by [`RelationshipKind::as_str`].
    pub fn parse(text: &str) -> Option<RelationshipKind> {
        RelationshipKind::ALL
            .into_iter()
            .find(|k| k.as_str() == text)
    }
}

/// A relationship to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRelationship {
    /// The patient.
    pub nhs_number: NhsNumber,
    /// The organisation.
    pub ods: OdsCode,
    /// Why they are related.
    pub kind: RelationshipKind,
    /// Who recorded it (the admin caller), for the record.
    pub recorded_by: String,
    /// RFC 3339.
    pub recorded_at: String,
}

/// A recorded relationship.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relationship {
    /// Assigned by the store; never reused.
    pub id: u64,
    /// The patient.
    pub nhs_number: NhsNumber,
    /// The organisation.
    pub ods: OdsCode,
    /// Why they are related.
    pub kind: RelationshipKind,
    /// Who recorded it.
    pub recorded_by: String,
    /// When (RFC 3339).
    pub recorded_at: String,
}

/// A relationship's columns as a SQL backend stores them (`id`,
/// `nhs_number`, `ods`, `kind`, `recorded_by`, `recorded_at`).
pub(crate) struct RelationshipColumns {
    pub id: i64,
    pub nhs_number: i64,
    pub ods: String,
    pub kind: String,
    pub recorded_by: String,
    pub recorded_at: String,
}

impl RelationshipColumns {
    /// The relationship, or what is wrong with a row nrls never writes (the
    /// table was damaged): reported as a fault, never skipped.
    pub(crate) fn decode(self) -> Result<Relationship, &'static str> {
        Ok(Relationship {
            id: u64::try_from(self.id).map_err(|_| "a negative id")?,
            nhs_number: u64::try_from(self.nhs_number)
                .ok()
                .and_then(|n| NhsNumber::from_u64(n).ok())
                .ok_or("a value that is not an NHS number")?,
            ods: OdsCode::parse(&self.ods).ok_or("a value that is not an ODS code")?,
            kind: RelationshipKind::parse(&self.kind).ok_or("an unknown relationship kind")?,
            recorded_by: self.recorded_by,
            recorded_at: self.recorded_at,
        })
    }
}

/// A patient's objection to sharing their pointers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Objection {
    /// The patient.
    pub nhs_number: NhsNumber,
    /// Who recorded it.
    pub recorded_by: String,
    /// RFC 3339.
    pub recorded_at: String,
    /// Free text, e.g. how the objection was received.
    pub note: Option<String>,
}

/// Why an access-store operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessStoreError {
    /// No relationship has this id: 404.
    #[error("relationship {0} does not exist")]
    RelationshipNotFound(u64),
    /// The same patient, organisation and kind again: 409.
    #[error("this relationship is already recorded (id {0})")]
    DuplicateRelationship(u64),
    /// Try again later: 503.
    #[error("access store unavailable: {0}")]
    Unavailable(String),
    /// A fault of ours: 500.
    #[error("access store failure: {0}")]
    Internal(String),
}

/// The access-facts store contract. Writes are durable when they return.
#[async_trait]
pub trait AccessStore: Send + Sync + 'static {
    /// What the policy needs about one patient: one read per request.
    async fn patient_access(
        &self,
        nhs_number: NhsNumber,
    ) -> Result<PatientAccess, AccessStoreError>;

    /// [`AccessStore::patient_access`] and the patient's pointers, newest
    /// first (as [`crate::PointerStore::patient_pointers`] gives them), in
    /// one read: for a store that keeps the facts in the pointer store's own
    /// database, so a consumer search costs one round trip, not two. `None`:
    /// this store cannot; read the two apart.
    async fn patient_access_and_pointers(
        &self,
        _nhs_number: NhsNumber,
    ) -> Result<Option<(PatientAccess, Vec<crate::StoredPointer>)>, AccessStoreError> {
        Ok(None)
    }

    /// Records a relationship; the same patient, organisation and kind twice
    /// is `DuplicateRelationship`.
    async fn add_relationship(
        &self,
        new: NewRelationship,
    ) -> Result<Relationship, AccessStoreError>;

    /// A patient's relationships, oldest first.
    async fn relationships(
        &self,
        nhs_number: NhsNumber,
    ) -> Result<Vec<Relationship>, AccessStoreError>;

    /// Removes a relationship and returns it.
    async fn remove_relationship(&self, id: u64) -> Result<Relationship, AccessStoreError>;

    /// Records (or replaces) a patient's objection.
    async fn record_objection(&self, objection: Objection) -> Result<(), AccessStoreError>;

    /// The patient's objection, if one is recorded.
    async fn objection(&self, nhs_number: NhsNumber)
    -> Result<Option<Objection>, AccessStoreError>;

    /// Withdraws an objection; `false` if there was none.
    async fn withdraw_objection(&self, nhs_number: NhsNumber) -> Result<bool, AccessStoreError>;

    /// Short name of the backend.
    fn backend(&self) -> &'static str;
}

#[cfg(test)]
mod tests;
