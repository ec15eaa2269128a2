//! Every request that touches patient data leaves exactly one AuditEvent,
//! written durably before the response goes out: a 2xx (or a refusal)
//! without its audit record cannot happen, because a failed audit write
//! turns into a 503. Only a server failure's record is written after its
//! (error) response, so an outage costs callers one deadline, not two.

use std::sync::Arc;

use audit::{
    AccessFacts, AuditError, AuditFacts, AuditLog, AuditOutcome, AuditUser, Interaction,
    now_rfc3339,
};
use domain::NhsNumber;
use fhir::AuditEvent;
use telemetry::AuditMetrics;

use crate::caller::Actor;
use crate::error::{ApiError, Dependency};
use crate::operations::Context;

/// What a request touched, filled in by the operation as it learns it.
#[derive(Debug)]
pub struct AuditDraft {
    pub interaction: Interaction,
    pub patient: Option<NhsNumber>,
    /// Pointer ids read, returned, created, changed or deleted.
    pub resources: Vec<String>,
    /// The search parameters, for searches.
    pub query: Option<String>,
    /// How access was decided, for consumer requests.
    pub access: Option<AccessFacts>,
    /// Recorded even when no patient data was touched: admin calls, which
    /// change access facts or read the audit trail itself.
    pub always: bool,
    /// Not a RESTful operation: a patient's sign-in, sign-out or token.
    pub session_event: Option<SessionEvent>,
    /// The NHS login `sub` of the patient acting, when known.
    pub nhs_login_subject: Option<String>,
}

/// The identifier system of an NHS login `sub` in an event's agents.
pub const NHS_LOGIN_SUBJECT: &str = "https://login.nhs.uk/sub";

/// nrls's own subtypes of DICOM "User Authentication" (the issue of an
/// access token has no DICOM code).
pub const SESSION_EVENT_SYSTEM: &str = "urn:nrls:audit-session-event";

/// Events about a patient's NHS login session rather than their records:
/// BALP records authentication as DICOM `110114` "User Authentication"
/// with subtype `110122` Login or `110123` Logout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEvent {
    /// Signing in with NHS login (success or failure).
    Login,
    /// Signing out.
    Logout,
    /// A patient token issued from the session (`POST /patient/token`).
    TokenIssued,
}

impl SessionEvent {
    /// The `AuditEvent.subtype` coding: system, code, display.
    pub fn subtype(self) -> (&'static str, &'static str, &'static str) {
        match self {
            SessionEvent::Login => (audit::event::systems::DCM, "110122", "Login"),
            SessionEvent::Logout => (audit::event::systems::DCM, "110123", "Logout"),
            SessionEvent::TokenIssued => (SESSION_EVENT_SYSTEM, "token-issued", "Token issued"),
        }
    }

    /// Reads an event's `subtype` code back.
    pub fn of_code(code: &str) -> Option<SessionEvent> {
        [
            SessionEvent::Login,
            SessionEvent::Logout,
            SessionEvent::TokenIssued,
        ]
        .into_iter()
        .find(|e| e.subtype().1 == code)
    }
}

/// DICOM `110114`, the `AuditEvent.type` of [`SessionEvent`]s.
pub const USER_AUTHENTICATION: &str = "110114";

/// Reshapes a RESTful event built by `AuditFacts` into a session event,
/// and names the NHS login account as an agent: the facts' own fields
/// (outcome, purpose, patient, time) are kept as built.
fn shape(event: &mut AuditEvent, session_event: Option<SessionEvent>, subject: Option<String>) {
    if let Some(kind) = session_event {
        let (system, code, display) = kind.subtype();
        event.kind = fhir::Coding::new(
            audit::event::systems::DCM,
            USER_AUTHENTICATION,
            "User Authentication",
        );
        event.subtype = vec![fhir::Coding::new(system, code, display)];
        event.action = Some("E".to_owned());
    }
    if let Some(subject) = subject {
        // The patient, not the app, asked.
        event.agent.iter_mut().for_each(|a| a.requestor = false);
        event.agent.push(fhir::AuditAgent {
            kind: Some(fhir::CodeableConcept {
                coding: Some(vec![fhir::Coding::new(
                    audit::event::systems::PARTICIPATION,
                    "IRCP",
                    "information recipient",
                )]),
                ..Default::default()
            }),
            who: Some(fhir::Reference {
                identifier: Some(fhir::Identifier::new(NHS_LOGIN_SUBJECT, &subject)),
                ..Default::default()
            }),
            requestor: true,
            ..Default::default()
        });
    }
}

impl AuditDraft {
    pub fn new(interaction: Interaction) -> AuditDraft {
        AuditDraft {
            interaction,
            patient: None,
            resources: Vec::new(),
            query: None,
            access: None,
            always: false,
            session_event: None,
            nhs_login_subject: None,
        }
    }

    /// A draft recorded whatever the request touched (admin calls).
    pub fn always(interaction: Interaction) -> AuditDraft {
        AuditDraft {
            always: true,
            ..AuditDraft::new(interaction)
        }
    }

    /// True once the request has reached patient data (a patient or a
    /// pointer), or is recorded regardless.
    fn is_recorded(&self) -> bool {
        self.always || self.patient.is_some() || !self.resources.is_empty()
    }
}

/// Records `result` in the audit trail and returns it; if the record cannot be
/// written the caller gets a 503 instead. Every operation ends here, so a
/// web front end calling the operations audits exactly as the API does.
pub async fn audited<T>(
    ctx: &Context<'_>,
    actor: Actor<'_>,
    draft: AuditDraft,
    result: Result<T, ApiError>,
) -> Result<T, ApiError> {
    if !draft.is_recorded() {
        return result;
    }
    // Operations answer Ok only with success; the status is the error's.
    let (status, outcome_desc) = match &result {
        Ok(_) => (200, None),
        Err(e) => (e.status().as_u16(), Some(e.summary())),
    };
    let access = actor.access;
    let (session_event, subject) = (draft.session_event, draft.nhs_login_subject);
    let facts = AuditFacts {
        interaction: draft.interaction,
        outcome: AuditOutcome::of_status(status),
        outcome_desc,
        recorded: now_rfc3339(),
        request_id: Some(actor.request_id.to_owned()),
        client_id: actor.client_id.to_owned(),
        organisation: actor.organisation.map(ToString::to_string),
        user: access.and_then(|a| a.user.as_ref()).map(|u| AuditUser {
            person_id: u.person_id().to_owned(),
            role_code: u.role().role_code.clone(),
        }),
        purpose_of_use: access
            .and_then(|a| a.purpose.as_ref())
            .map(|p| p.code().to_owned()),
        patient: draft.patient,
        resources: draft.resources,
        query: draft.query,
        access: draft.access,
    };
    let services = ctx.access;
    let mut event = facts.to_event(&services.node);
    shape(&mut event, session_event, subject);
    let metrics = ctx.metrics.audit();
    // A server failure discloses nothing, and usually means the database is
    // away: the audit trail, often in the same database, would make the
    // caller wait a second deadline for an append that fails too. Its record
    // is written in the background instead (or its failure logged).
    if matches!(&result, Err(e) if e.status().is_server_error()) {
        let (log, metrics) = (Arc::clone(&services.audit), metrics.clone());
        tokio::spawn(async move {
            if let Err(e) = append(log.as_ref(), &metrics, event).await {
                tracing::warn!(error = %e, "audit write of a failed request failed");
            }
        });
        return result;
    }
    match append(services.audit.as_ref(), metrics, event).await {
        Ok(()) => result,
        Err(e) => {
            tracing::error!(error = %e, "audit write failed: refusing the response");
            // Whatever the cause, the answer cannot go out unrecorded.
            Err(ApiError::Unavailable(Dependency::AuditTrail))
        }
    }
}

/// Appends one event, counted in the backlog while it waits and as written
/// once durable.
async fn append(
    log: &dyn AuditLog,
    metrics: &AuditMetrics,
    event: AuditEvent,
) -> Result<(), AuditError> {
    let pending = metrics.pending();
    let seqs = log.append(vec![event]).await?;
    drop(pending);
    metrics.written(seqs.len() as u64);
    Ok(())
}
