//! Applies the direct-care access policy to one request and notes the
//! decision for the audit trail.

use std::sync::Arc;

use audit::AccessFacts;
use domain::NhsNumber;
use domain::access::{AccessRequest, CallerApp, Grant, PatientAccess};
use domain::issue::{ErrorCode, Issue, IssueType};
use store::StoredPointer;

use super::Context;
use crate::audit_trail::AuditDraft;
use crate::caller::Caller;
use crate::error::ApiError;

/// The patient's recorded relationships and objection.
pub async fn patient_access(
    ctx: &Context<'_>,
    nhs_number: NhsNumber,
) -> Result<PatientAccess, ApiError> {
    Ok(ctx.access.facts.patient_access(nhs_number).await?)
}

/// A consumer read's access facts, and the patient's pointers when the facts
/// store can read them in the same round trip (`None`: read them after the
/// decision, from `ctx.consumer_store`). Only when consumer reads go to the
/// primary: the facts store reads the primary, and a configured replica is
/// there to take consumer reads off it.
pub async fn consumer_reads(
    ctx: &Context<'_>,
    subject: NhsNumber,
) -> Result<(PatientAccess, Option<Vec<StoredPointer>>), ApiError> {
    if Arc::ptr_eq(ctx.store, ctx.consumer_store)
        && let Some((access, rows)) = ctx
            .access
            .facts
            .patient_access_and_pointers(subject)
            .await?
    {
        return Ok((access, Some(rows)));
    }
    Ok((patient_access(ctx, subject).await?, None))
}

/// Decides the request; a denial is a 403 whose sentence starts with the
/// policy's reason code.
pub fn decide<'a>(
    ctx: &Context<'a>,
    caller: &'a Caller,
    patient: &'a PatientAccess,
    draft: &mut AuditDraft,
) -> Result<Grant<'a>, ApiError> {
    let request = AccessRequest {
        app: CallerApp {
            role: caller.role,
            ods: &caller.ods,
            requires_user: caller.requires_user,
        },
        user: caller.access.user.as_ref().map(|u| u.end_user()),
        purpose_of_use: caller.access.purpose.as_ref(),
        basis: &caller.access.basis,
        patient,
    };
    match ctx.access.policy.decide(&request) {
        Ok(grant) => {
            draft.access = Some(AccessFacts::granted(&caller.access.basis, &grant));
            Ok(grant)
        }
        Err(denial) => {
            draft.access = Some(AccessFacts::denied(&caller.access.basis, &denial));
            Err(ApiError::one(Issue::general(
                ErrorCode::AccessDenied,
                IssueType::Forbidden,
                format!(
                    "{}: {}",
                    denial.reason.as_str(),
                    denial.reason.description()
                ),
            )))
        }
    }
}
