use domain::issue::ErrorCode;
use domain::{PointerId, PointerRecord};

use super::access_check::{decide, patient_access};
use crate::audit_trail::AuditDraft;
use crate::error::ApiError;
use crate::extract::Caller;
use crate::state::AppState;

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

fn type_permitted(state: &AppState, caller: &Caller, record: &PointerRecord) -> bool {
    state
        .catalogue()
        .find_key(&record.type_key)
        .is_some_and(|t| caller.types.contains(t.index))
}

/// Reads one of the producer's own pointers.
pub async fn read_for_producer(
    state: &AppState,
    caller: &Caller,
    id: &str,
    draft: &mut AuditDraft,
) -> Result<PointerRecord, ApiError> {
    let id = own_id(caller, id, draft)?;
    let record = state
        .store()
        .get(&id)
        .await?
        .filter(|r| r.custodian == caller.ods)
        .ok_or_else(|| ApiError::not_found(format!("pointer {id} does not exist")))?;
    draft.patient = Some(record.nhs_number);
    draft.resources.push(record.id.to_string());
    if !type_permitted(state, caller, &record) {
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

/// Reads any pointer the consumer may see. A pointer it may not see (type,
/// sensitivity, objection) is reported exactly like one that does not exist,
/// so a response never reveals it.
pub async fn read_for_consumer(
    state: &AppState,
    caller: &Caller,
    id: &str,
    draft: &mut AuditDraft,
) -> Result<PointerRecord, ApiError> {
    let id = parse_id(id)?;
    let not_found = || ApiError::not_found(format!("pointer {id} does not exist"));
    let record = state
        .consumer_store()
        .get(&id)
        .await?
        .ok_or_else(not_found)?;
    // An attempt on a real patient's pointer is audited even when refused.
    draft.patient = Some(record.nhs_number);
    if !type_permitted(state, caller, &record) {
        return Err(not_found());
    }
    let patient = patient_access(state, record.nhs_number).await?;
    let grant = decide(state, caller, &patient, draft)?;
    if !grant.filter.visible(&record) {
        return Err(not_found());
    }
    draft.resources.push(record.id.to_string());
    Ok(record)
}
