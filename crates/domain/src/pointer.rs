//! What the store keeps for one pointer: the indexed facts and the JSON served.

use crate::{NhsNumber, OdsCode, PointerId};

/// A stored pointer. `json` is the `DocumentReference` exactly as it is served,
/// so reads and searches never re-serialise it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PointerRecord {
    pub id: PointerId,
    pub nhs_number: NhsNumber,
    pub custodian: OdsCode,
    /// `system|code` of the pointer type.
    pub type_key: String,
    /// `system|value` of `masterIdentifier`, unique per custodian.
    pub master_identifier: Option<String>,
    /// Security label codes (e.g. `R`, `V`) from `meta.security` and `securityLabel`.
    pub security_labels: Vec<String>,
    /// Starts at 1; each update adds one.
    pub version: u32,
    pub last_updated: String,
    pub json: String,
}

/// A pointer that a new one replaces. The store checks, in the same transaction
/// as the create, that the target exists and matches patient, custodian and type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Supersede {
    pub target: PointerId,
    /// Where the target was named in the request, for error reporting.
    pub expression: String,
}
