use audit::Interaction;
use domain::access::PatientAccess;
use domain::issue::ErrorCode;
use domain::{PointerId, PointerRecord};

use super::Context;
use super::policy::{decide, patient_access};
use crate::audit_trail::{AuditDraft, audited};
use crate::caller::Caller;
use crate::error::ApiError;

pub(crate) fn parse_id(text: &str) -> Result<PointerId, ApiError> {
    PointerId::parse(text)
        .ok_or_else(|| ApiError::not_found(format!("'{text}' is not a pointer id")))
}

/// Producers act only on their own pointers. The id's prefix names the
/// custodian, so another organisation's pointer is refused without a lookup.
/// The refusal names the id in `draft`: a denied attempt on another
/// custodian's pointer is audited like any other denial.
pub(crate) fn own_id(
    caller: &Caller,
    text: &str,
    draft: &mut AuditDraft,
) -> Result<PointerId, ApiError> {
    let id = parse_id(text)?;
    if id.custodian_prefix().as_ref() != Some(&caller.ods) {
        draft.resources.push(id.to_string());
        return Err(ApiError::forbidden(
            ErrorCode::AuthorCredentialsError,
            format!(
                "pointer {id} belongs to another organisation than {}",
                caller.ods
            ),
        ));
    }
    Ok(id)
}

/// Reads one of the producer's own pointers, audited.
pub async fn read_for_producer(
    ctx: &Context<'_>,
    caller: &Caller,
    id: &str,
) -> Result<PointerRecord, ApiError> {
    let mut draft = AuditDraft::new(Interaction::Read);
    let result = own_pointer(ctx, caller, id, &mut draft).await;
    audited(ctx, caller.actor(), draft, result).await
}

/// One of the producer's own pointers, from the primary (a producer must see
/// its own writes); updates and deletes start here too.
pub(super) async fn own_pointer(
    ctx: &Context<'_>,
    caller: &Caller,
    id: &str,
    draft: &mut AuditDraft,
) -> Result<PointerRecord, ApiError> {
    let id = own_id(caller, id, draft)?;
    let record = ctx
        .store
        .get(&id)
        .await?
        .filter(|r| r.custodian == caller.ods)
        .ok_or_else(|| ApiError::not_found(format!("pointer {id} does not exist")))?;
    draft.patient = Some(record.nhs_number);
    draft.resources.push(record.id.to_string());
    if !caller.may_see(ctx.catalogue, &record) {
        return Err(ApiError::forbidden(
            ErrorCode::AccessDeniedLevel,
            format!(
                "your organisation may not access pointers of type {}",
                record.type_key
            ),
        ));
    }
    Ok(record)
}

/// Reads any pointer the consumer may see, audited. A pointer it may not see
/// (type, sensitivity, objection) is reported exactly like one that does not
/// exist, so a response never reveals it.
pub async fn read_for_consumer(
    ctx: &Context<'_>,
    caller: &Caller,
    id: &str,
) -> Result<PointerRecord, ApiError> {
    let mut draft = AuditDraft::new(Interaction::Read);
    let result = visible_pointer(ctx, caller, id, &mut draft).await;
    audited(ctx, caller.actor(), draft, result).await
}

/// The request is decided before anything about the pointer is revealed: a
/// missing id is decided as a pointer of a patient nrls knows nothing of (no
/// relationship, no objection), so a refused caller gets the same 403
/// whether or not the id exists, and an allowed one the same 404 for a
/// missing pointer as for one it may not see.
async fn visible_pointer(
    ctx: &Context<'_>,
    caller: &Caller,
    id: &str,
    draft: &mut AuditDraft,
) -> Result<PointerRecord, ApiError> {
    let id = parse_id(id)?;
    let not_found = || ApiError::not_found(format!("pointer {id} does not exist"));
    let record = ctx.consumer_store.get(&id).await?;
    let patient = match &record {
        Some(record) => {
            // An attempt on a real patient's pointer is audited even when refused.
            draft.patient = Some(record.nhs_number);
            patient_access(ctx, record.nhs_number).await?
        }
        None => PatientAccess::default(),
    };
    let grant = decide(ctx, caller, &patient, draft)?;
    let record = record
        .filter(|r| caller.may_see(ctx.catalogue, r) && grant.filter.visible(r))
        .ok_or_else(not_found)?;
    draft.resources.push(record.id.to_string());
    Ok(record)
}
