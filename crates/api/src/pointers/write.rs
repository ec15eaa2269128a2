use domain::clock::now_instant;
use domain::issue::Issue;
use domain::validation::{ValidPointer, ValidationContext, check_immutable_fields, validate};
use domain::{PointerId, PointerRecord};
use fhir::DocumentReference;
use store::StoreError;

use super::read::{own_id, read_for_producer};
use crate::audit_trail::AuditDraft;
use crate::error::ApiError;
use crate::extract::Caller;
use crate::state::AppState;

/// A pointer that was written.
#[derive(Debug, Clone)]
pub struct Created {
    pub id: PointerId,
    pub version: u32,
}

fn check(
    state: &AppState,
    caller: &Caller,
    doc: &DocumentReference,
) -> Result<ValidPointer, ApiError> {
    let ctx = ValidationContext {
        catalogue: state.catalogue(),
        caller: &caller.ods,
        permitted_types: caller.types,
    };
    validate(doc, &ctx).map_err(ApiError::Rejected)
}

fn record(
    doc: DocumentReference,
    valid: ValidPointer,
    id: PointerId,
    version: u32,
) -> Result<PointerRecord, ApiError> {
    valid
        .into_record(doc, id, version, &now_instant())
        .map_err(|e| ApiError::Internal(format!("serialising a pointer: {e}")))
}

/// Creates a pointer, superseding (atomically deleting) any it `replaces`.
pub async fn create(
    state: &AppState,
    caller: &Caller,
    doc: DocumentReference,
    draft: &mut AuditDraft,
) -> Result<Created, ApiError> {
    // Named before validation so a refused create of a real patient is audited too.
    draft.patient = subject_of(&doc);
    let mut valid = check(state, caller, &doc)?;
    let id = match valid.id.take() {
        Some(id) => id,
        None => PointerId::generate(&caller.ods, &uuid::Uuid::new_v4().to_string())
            .ok_or_else(|| ApiError::Internal("generated pointer id is invalid".into()))?,
    };
    let supersedes = std::mem::take(&mut valid.supersedes);
    draft.resources.push(id.to_string());
    draft
        .resources
        .extend(supersedes.iter().map(|s| s.target.to_string()));
    let record = record(doc, valid, id.clone(), 1)?;
    state.store().create(record, supersedes).await?;
    Ok(Created { id, version: 1 })
}

/// Replaces one of the producer's pointers. Optimistic concurrency: the version
/// the client read (`If-Match` or `meta.versionId`) must still be current.
pub async fn update(
    state: &AppState,
    caller: &Caller,
    path_id: &str,
    doc: DocumentReference,
    if_match: Option<u32>,
    draft: &mut AuditDraft,
) -> Result<Created, ApiError> {
    let id = own_id(caller, path_id, draft)?;
    if doc.id.as_deref() != Some(id.as_str()) {
        return Err(ApiError::one(Issue::invalid(
            "DocumentReference.id",
            format!("the body's id must equal the id in the URL ({id})"),
        )));
    }
    let body_version = match doc.meta.as_ref().and_then(|m| m.version_id.as_deref()) {
        None => None,
        Some(v) => Some(v.parse::<u32>().map_err(|_| {
            ApiError::one(Issue::invalid(
                "DocumentReference.meta.versionId",
                "versionId must be a whole number",
            ))
        })?),
    };
    let existing = read_for_producer(state, caller, id.as_str(), draft).await?;
    let old: DocumentReference = serde_json::from_str(&existing.json)
        .map_err(|e| ApiError::Internal(format!("stored pointer {id}: {e}")))?;
    let mut valid = check(state, caller, &doc)?;
    let immutable = check_immutable_fields(&doc, &old);
    if !immutable.is_empty() {
        return Err(ApiError::Rejected(immutable));
    }
    let client_version = if_match.or(body_version);
    if let Some(v) = client_version
        && v != existing.version
    {
        return Err(precondition_failed(&id, v, existing.version));
    }
    let mut doc = doc;
    if doc.date.is_none() {
        doc.date = old.date.clone();
    }
    valid.supersedes.clear();
    let version = existing.version + 1;
    let record = record(doc, valid, id.clone(), version)?;
    match state.store().update(record, existing.version).await {
        Err(StoreError::VersionConflict {
            expected, actual, ..
        }) if client_version.is_some() => Err(precondition_failed(&id, expected, actual)),
        other => other.map_err(ApiError::from),
    }?;
    Ok(Created { id, version })
}

fn precondition_failed(id: &PointerId, expected: u32, actual: u32) -> ApiError {
    ApiError::one(Issue::new(
        domain::ErrorCode::PreconditionFailed,
        domain::IssueType::Conflict,
        "If-Match",
        format!(
            "pointer {id} is at version {actual}, not {expected}; read it again before updating"
        ),
    ))
}

/// Deletes one of the producer's pointers (at `if_match` version, if given).
pub async fn delete(
    state: &AppState,
    caller: &Caller,
    path_id: &str,
    if_match: Option<u32>,
    draft: &mut AuditDraft,
) -> Result<(), ApiError> {
    let existing = read_for_producer(state, caller, path_id, draft).await?;
    match state.store().delete(&existing.id, if_match).await {
        Err(StoreError::VersionConflict {
            expected,
            actual,
            id,
        }) => Err(precondition_failed(&id, expected, actual)),
        other => other.map_err(ApiError::from),
    }
}

/// The NHS number a body names, if it names a valid one.
fn subject_of(doc: &DocumentReference) -> Option<domain::NhsNumber> {
    let value = doc
        .subject
        .as_ref()?
        .identifier
        .as_ref()?
        .value
        .as_deref()?;
    domain::NhsNumber::parse(value).ok()
}
