//! Hand-written serde structs for the few FHIR R4 resources nrls owns.
//!
//! Every struct keeps the elements it does not model in a flattened map, so a
//! resource read and written back loses nothing. Fields are `Option` so that a
//! missing element is a validation issue with a precise expression, not a
//! deserialisation failure.

mod audit_event;
mod bundle;
mod datatypes;
mod document_reference;
mod elements;
mod operation_outcome;

pub use audit_event::{AuditAgent, AuditEntity, AuditEntityDetail, AuditEvent, AuditSource};
pub use bundle::{BundleEntry, SearchsetBuilder};
pub use datatypes::{Attachment, CodeableConcept, Coding, Extension, Identifier, Meta, Reference};
pub use document_reference::{Content, Context, DocumentReference, RelatesTo};
pub use elements::JsonKey;
pub use operation_outcome::{OperationOutcome, OutcomeIssue};

/// Media type nrls answers with.
pub const FHIR_JSON: &str = "application/fhir+json";
