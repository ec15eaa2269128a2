//! The audit of a patient's NHS login session itself: signing in (success
//! and failure), the page explaining how to prove who they are, a patient
//! token issued from the session, and signing out. None touches record
//! data, but each is a patient call, so each writes one AuditEvent, in the
//! shape of the patient's other events (client `nrls-patient`, purpose
//! `PATRQT`) with BALP's "User Authentication" type for the session events.
//!
//! What is known decides what is written: the NHS number only when NHS
//! login proved it (P9), so the event is in that patient's trail; the NHS
//! login `sub` once the ID token was verified; for a failed sign-in, only
//! why it failed (nothing about the person, who is not known).

use audit::Interaction;
use domain::NhsNumber;
use domain::access::{AccessBasis, PurposeOfUse};
use domain::issue::ErrorCode;

use super::Context;
use super::patient::{PATIENT_CLIENT_ID, PATIENT_REQUESTED};
use crate::audit_trail::{AuditDraft, SessionEvent, audited};
use crate::caller::{Actor, RequestAccess};
use crate::error::{ApiError, Dependency};

/// The query entity of the explanation page's event.
pub const PROVE_PAGE_QUERY: &str = "$prove-who-you-are";

/// A patient as NHS login described them, at any proofing level.
#[derive(Debug, Clone)]
pub struct PatientLogin {
    /// NHS login's `sub`.
    pub subject: String,
    /// Only when proved to P9.
    pub nhs_number: Option<NhsNumber>,
}

struct PatientActor {
    request_id: String,
    access: RequestAccess,
}

impl PatientActor {
    fn new() -> PatientActor {
        PatientActor {
            request_id: uuid::Uuid::new_v4().to_string(),
            access: RequestAccess {
                user: None,
                purpose: Some(PurposeOfUse::Other(PATIENT_REQUESTED.to_owned())),
                basis: AccessBasis::Recorded,
            },
        }
    }

    fn actor(&self) -> Actor<'_> {
        Actor {
            client_id: PATIENT_CLIENT_ID,
            organisation: None,
            request_id: &self.request_id,
            access: Some(&self.access),
        }
    }
}

fn draft(
    interaction: Interaction,
    event: Option<SessionEvent>,
    login: &PatientLogin,
) -> AuditDraft {
    let mut draft = AuditDraft::always(interaction);
    draft.session_event = event;
    draft.patient = login.nhs_number;
    draft.nhs_login_subject = Some(login.subject.clone());
    draft
}

/// Records `result` (success or a refusal) and keeps only the audit
/// write's own failure: the caller answers a refusal its own way.
async fn record(
    ctx: &Context<'_>,
    draft: AuditDraft,
    result: Result<(), ApiError>,
) -> Result<(), ApiError> {
    let actor = PatientActor::new();
    match audited(ctx, actor.actor(), draft, result).await {
        Err(e @ ApiError::Unavailable(Dependency::AuditTrail)) => Err(e),
        _ => Ok(()),
    }
}

/// A completed NHS login sign-in (any proofing level).
pub async fn signed_in(ctx: &Context<'_>, login: &PatientLogin) -> Result<(), ApiError> {
    let draft = draft(Interaction::Create, Some(SessionEvent::Login), login);
    record(ctx, draft, Ok(())).await
}

/// A sign-in that failed: `why` is the kind of failure (an error code, no
/// token contents). Nobody is named: whoever it was is not known.
pub async fn sign_in_failed(ctx: &Context<'_>, why: &str) -> Result<(), ApiError> {
    let mut draft = AuditDraft::always(Interaction::Create);
    draft.session_event = Some(SessionEvent::Login);
    let refused = Err(ApiError::forbidden(
        ErrorCode::AccessDenied,
        format!("NHS login sign-in failed: {why}"),
    ));
    record(ctx, draft, refused).await
}

/// The explanation page for a patient below P9 (no data shown).
pub async fn explanation_viewed(ctx: &Context<'_>, login: &PatientLogin) -> Result<(), ApiError> {
    let mut draft = draft(Interaction::Read, None, login);
    draft.query = Some(PROVE_PAGE_QUERY.to_owned());
    record(ctx, draft, Ok(())).await
}

/// Signing out of `/my-record/`.
pub async fn signed_out(ctx: &Context<'_>, login: &PatientLogin) -> Result<(), ApiError> {
    let draft = draft(Interaction::Delete, Some(SessionEvent::Logout), login);
    record(ctx, draft, Ok(())).await
}

/// Issues a patient token (`issue`) and audits it: success, or the
/// refusal (a patient below P9 asking).
pub async fn token_issued<T>(
    ctx: &Context<'_>,
    login: &PatientLogin,
    issue: Result<T, ApiError>,
) -> Result<T, ApiError> {
    let draft = draft(Interaction::Create, Some(SessionEvent::TokenIssued), login);
    let actor = PatientActor::new();
    audited(ctx, actor.actor(), draft, issue).await
}
