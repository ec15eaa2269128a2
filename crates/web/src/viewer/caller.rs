//! The API's caller, built from a viewer session: the app is the viewer,
//! acting for the organisation of the user's chosen role, with the user as
//! the verified end user. The access policy and the audit trail then see
//! exactly what they see for an API call carrying `NHSD-User-Identity`.

use std::sync::Arc;

use api::Caller;
use api::caller::{RequestAccess, RequestIds};
use auth::{NrbacRole, UserIdentity};
use domain::access::{AccessBasis, PurposeOfUse};
use domain::catalogue::Catalogue;
use domain::permissions::TypeSet;
use domain::{OdsCode, Role};

use crate::error::WebError;
use crate::session::data::{BasisKind, PatientBasis, SignedInUser};

/// The client id the viewer's requests are audited under.
pub const VIEWER_CLIENT_ID: &str = "nrls-viewer";

/// The caller for one page view of `basis`'s patient.
pub fn caller(user: &SignedInUser, basis: Option<&PatientBasis>) -> Result<Caller, WebError> {
    let role = user.role().ok_or(WebError::RoleRequired)?;
    let ods = OdsCode::parse(&role.org)
        .ok_or_else(|| WebError::Identity(format!("'{}' is not an ODS code", role.org)))?;
    let roles = user
        .roles
        .iter()
        .filter_map(|r| {
            Some(NrbacRole {
                person_role_id: r.person_role_id.clone(),
                org: OdsCode::parse(&r.org)?,
                role_code: r.role_code.clone(),
                activity_codes: r.activity_codes.clone(),
            })
        })
        .collect();
    let identity = UserIdentity::signed_in(
        &user.issuer,
        &user.person_id,
        roles,
        Some(&role.person_role_id),
        user.expires_at,
    )
    .map_err(|e| WebError::Identity(e.to_string()))?;
    let (basis, purpose) = match basis {
        None => (AccessBasis::Recorded, PurposeOfUse::Treatment),
        Some(b) => match b.kind {
            BasisKind::SelfClaimed => (
                AccessBasis::SelfClaimed {
                    reason: Some(b.reason.clone()),
                },
                PurposeOfUse::Treatment,
            ),
            BasisKind::BreakGlass => (
                AccessBasis::BreakGlass {
                    reason: Some(b.reason.clone()),
                },
                PurposeOfUse::EmergencyTreatment,
            ),
        },
    };
    Ok(Caller {
        client_id: Arc::from(VIEWER_CLIENT_ID),
        ods,
        role: Role::Consumer,
        // The viewer is onboarded for every pointer type; the access policy
        // still hides sensitive pointers and objecting patients' records.
        types: TypeSet::all(Catalogue::nrl_v3()),
        ids: RequestIds {
            request_id: uuid::Uuid::new_v4().to_string(),
            correlation_id: None,
        },
        access: RequestAccess {
            user: Some(identity),
            purpose: Some(purpose),
            basis,
        },
        requires_user: true,
    })
}
