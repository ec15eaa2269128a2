//! Who is calling, independent of how they proved it: an app acting for one
//! of its organisations in one role, with the pointer types it may use and
//! what it declares about the person behind the request. The HTTP extractors
//! (`extract::caller`) build one from headers; a web front end builds one
//! from its session. Every operation takes one.

use std::sync::Arc;

use auth::user_identity::UserIdentity;
use domain::access::{AccessBasis, PurposeOfUse};
use domain::catalogue::Catalogue;
use domain::permissions::TypeSet;
use domain::{OdsCode, PointerRecord, Role};

/// An authorised caller.
#[derive(Debug, Clone)]
pub struct Caller {
    pub client_id: Arc<str>,
    pub ods: OdsCode,
    pub role: Role,
    /// Pointer types this caller may use in its role.
    pub types: TypeSet,
    pub ids: RequestIds,
    /// The end user, purpose of use and access basis the request declares.
    pub access: RequestAccess,
    /// The app must name an end user on every consumer call.
    pub requires_user: bool,
}

impl Caller {
    /// Whether this caller's role grants the pointer's type. The one check of
    /// type permissions on stored pointers (reads, searches, the shared care
    /// record); the access policy's filter comes on top.
    pub fn may_see(&self, catalogue: &Catalogue, record: &PointerRecord) -> bool {
        catalogue
            .find_key(&record.type_key)
            .is_some_and(|t| self.types.contains(t.index))
    }

    /// Who this caller is in the audit trail.
    pub fn actor(&self) -> Actor<'_> {
        Actor {
            client_id: &self.client_id,
            organisation: Some(&self.ods),
            request_id: &self.ids.request_id,
            access: Some(&self.access),
        }
    }
}

/// The ids a request carries, checked (`X-Request-Id`, a correlation id).
#[derive(Debug, Clone)]
pub struct RequestIds {
    pub request_id: String,
    pub correlation_id: Option<String>,
}

/// What a request declares about the person behind it and why they look.
#[derive(Debug, Clone, Default)]
pub struct RequestAccess {
    pub user: Option<UserIdentity>,
    pub purpose: Option<PurposeOfUse>,
    pub basis: AccessBasis,
}

/// Who an AuditEvent names as the agent: a [`Caller`], or an admin app
/// (no organisation, no end user).
#[derive(Debug, Clone, Copy)]
pub struct Actor<'a> {
    pub client_id: &'a str,
    pub organisation: Option<&'a OdsCode>,
    pub request_id: &'a str,
    pub access: Option<&'a RequestAccess>,
}
