use audit::Interaction;
use domain::clock::now_instant;
use domain::issue::Issue;
use domain::validation::{
    Submission, ValidPointer, ValidationContext, check_immutable_fields, validate_submission,
};
use domain::{PointerId, PointerRecord};
use fhir::DocumentReference;
use store::{PointerWrite, StoreError};

use super::Context;
use super::read::{own_id, own_pointer};
use crate::audit_trail::{AuditDraft, audited, write_audited};
use crate::caller::Caller;
use crate::error::ApiError;

/// A pointer that was written: its id and new version.
#[derive(Debug, Clone)]
pub struct Written {
    pub id: PointerId,
    pub version: u32,
}

fn check(
    ctx: &Context<'_>,
    caller: &Caller,
    submission: &Submission,
) -> Result<ValidPointer, ApiError> {
    let ctx = ValidationContext {
        catalogue: ctx.catalogue,
        caller: &caller.ods,
        permitted_types: caller.types,
    };
    validate_submission(submission, &ctx).map_err(ApiError::Rejected)
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

/// Creates a pointer, superseding (atomically deleting) any it `replaces`;
/// audited.
pub async fn create(
    ctx: &Context<'_>,
    caller: &Caller,
    submission: Submission,
) -> Result<Written, ApiError> {
    let mut draft = AuditDraft::new(Interaction::Create);
    let result = create_pointer(ctx, caller, submission, &mut draft).await;
    audited(ctx, caller.actor(), draft, result).await
}

async fn create_pointer(
    ctx: &Context<'_>,
    caller: &Caller,
    submission: Submission,
    draft: &mut AuditDraft,
) -> Result<Written, ApiError> {
    // Named before validation so a refused create of a real patient is audited too.
    draft.patient = subject_of(&submission.doc);
    let mut valid = check(ctx, caller, &submission)?;
    let doc = submission.doc;
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
    let write = PointerWrite::Create { record, supersedes };
    write_audited(ctx, caller.actor(), draft, write).await?;
    ctx.delivery_due.notify_one();
    Ok(Written { id, version: 1 })
}

/// Replaces one of the producer's pointers, audited. Optimistic concurrency:
/// the version the client read (`If-Match` or `meta.versionId`) must still
/// be current.
pub async fn update(
    ctx: &Context<'_>,
    caller: &Caller,
    path_id: &str,
    submission: Submission,
    if_match: Option<u32>,
) -> Result<Written, ApiError> {
    let mut draft = AuditDraft::new(Interaction::Update);
    let result = update_pointer(ctx, caller, path_id, submission, if_match, &mut draft).await;
    audited(ctx, caller.actor(), draft, result).await
}

async fn update_pointer(
    ctx: &Context<'_>,
    caller: &Caller,
    path_id: &str,
    submission: Submission,
    if_match: Option<u32>,
    draft: &mut AuditDraft,
) -> Result<Written, ApiError> {
    let id = own_id(caller, path_id, draft)?;
    let doc = &submission.doc;
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
    let existing = own_pointer(ctx, caller, id.as_str(), draft).await?;
    let old: DocumentReference = serde_json::from_str(&existing.json)
        .map_err(|e| ApiError::Internal(format!("stored pointer {id}: {e}")))?;
    let mut valid = check(ctx, caller, &submission)?;
    let immutable = check_immutable_fields(&submission.doc, &old);
    if !immutable.is_empty() {
        return Err(ApiError::Rejected(immutable));
    }
    let client_version = if_match.or(body_version);
    if let Some(v) = client_version
        && v != existing.version
    {
        return Err(precondition_failed(&id, v, existing.version));
    }
    let mut doc = submission.doc;
    if doc.date.is_none() {
        doc.date = old.date.clone();
    }
    valid.supersedes.clear();
    let version = existing.version + 1;
    let record = record(doc, valid, id.clone(), version)?;
    let write = PointerWrite::Update {
        record,
        expected_version: existing.version,
    };
    match write_audited(ctx, caller.actor(), draft, write).await {
        Err(ApiError::Store(StoreError::VersionConflict {
            expected, actual, ..
        })) if client_version.is_some() => Err(precondition_failed(&id, expected, actual)),
        other => other,
    }?;
    ctx.delivery_due.notify_one();
    Ok(Written { id, version })
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

/// Deletes one of the producer's pointers (at `if_match` version, if
/// given), audited.
pub async fn delete(
    ctx: &Context<'_>,
    caller: &Caller,
    path_id: &str,
    if_match: Option<u32>,
) -> Result<(), ApiError> {
    let mut draft = AuditDraft::new(Interaction::Delete);
    let result = delete_pointer(ctx, caller, path_id, if_match, &mut draft).await;
    audited(ctx, caller.actor(), draft, result).await
}

async fn delete_pointer(
    ctx: &Context<'_>,
    caller: &Caller,
    path_id: &str,
    if_match: Option<u32>,
    draft: &mut AuditDraft,
) -> Result<(), ApiError> {
    let existing = own_pointer(ctx, caller, path_id, draft).await?;
    let write = PointerWrite::Delete {
        id: existing.id.clone(),
        expected_version: if_match,
    };
    match write_audited(ctx, caller.actor(), draft, write).await {
        Err(ApiError::Store(StoreError::VersionConflict {
            expected,
            actual,
            id,
        })) => Err(precondition_failed(&id, expected, actual)),
        other => other,
    }?;
    ctx.delivery_due.notify_one();
    Ok(())
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
