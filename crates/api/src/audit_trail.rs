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
use store::{AuditKept, PointerWrite};
use telemetry::AuditMetrics;

use crate::caller::Actor;
use crate::error::{ApiError, Dependency};
use crate::operations::Context;

/// What a request touched, filled in by the operation as it learns it.
#[derive(Debug, Clone)]
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
    /// Set by [`write_audited`] when the store kept the success record with
    /// the write itself: `audited` then has nothing left to append.
    kept_with_change: bool,
}

pub use audit::event::systems::{NHS_LOGIN_SUBJECT, SESSION_EVENT as SESSION_EVENT_SYSTEM};
pub use audit::{SessionEvent, USER_AUTHENTICATION};

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
            kept_with_change: false,
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
    // Only the last fallible step of an operation keeps its record with the
    // write, so a kept record always goes with an `Ok`.
    if !draft.is_recorded() || (draft.kept_with_change && result.is_ok()) {
        return result;
    }
    // Operations answer Ok only with success; the status is the error's.
    let (status, outcome_desc) = match &result {
        Ok(_) => (200, None),
        Err(e) => (e.status().as_u16(), Some(e.summary())),
    };
    let facts = facts_of(actor, draft, status, outcome_desc);
    let services = ctx.access;
    let metrics = ctx.metrics.audit();
    // A server failure discloses nothing, and usually means the database is
    // away: the audit trail, often in the same database, would make the
    // caller wait a second deadline for an append that fails too. Its record
    // is written in the background instead (or its failure logged).
    if matches!(&result, Err(e) if e.status().is_server_error()) {
        let (log, metrics) = (Arc::clone(&services.audit), metrics.clone());
        let services_node = services.node.clone();
        tokio::spawn(async move {
            if let Err(e) = append(log.as_ref(), &metrics, &services_node, facts).await {
                tracing::warn!(error = %e, "audit write of a failed request failed");
            }
        });
        return result;
    }
    match append(services.audit.as_ref(), metrics, &services.node, facts).await {
        Ok(()) => result,
        Err(e) => {
            tracing::error!(error = %e, "audit write failed: refusing the response");
            // Whatever the cause, the answer cannot go out unrecorded.
            Err(ApiError::Unavailable(Dependency::AuditTrail))
        }
    }
}

/// The facts of a request that ended with `status`.
fn facts_of(
    actor: Actor<'_>,
    draft: AuditDraft,
    status: u16,
    outcome_desc: Option<String>,
) -> AuditFacts {
    let access = actor.access;
    AuditFacts {
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
        session: draft.session_event,
        login_subject: draft.nhs_login_subject,
    }
}

/// Runs a pointer write, the operation's last fallible step, with the
/// request's success record kept in the same store transaction when the
/// store keeps an audit outbox (issue 16, "share the fsync"): the response
/// then waits for one durable commit, not one in the store and one in the
/// audit log. `draft` must already name everything the write touches.
/// Otherwise the write runs alone and `audited` appends the record as usual.
pub async fn write_audited(
    ctx: &Context<'_>,
    actor: Actor<'_>,
    draft: &mut AuditDraft,
    write: PointerWrite,
) -> Result<(), ApiError> {
    let services = ctx.access;
    let Some(outbox) = services.audit_outbox.as_ref() else {
        return write
            .apply(ctx.store.as_ref())
            .await
            .map_err(ApiError::from);
    };
    let facts = facts_of(actor, draft.clone(), 200, None);
    let entry = audit::compact::encode(&facts, &services.node);
    match ctx.store.write_audited(write, entry).await? {
        AuditKept::WithTheChange => {
            draft.kept_with_change = true;
            outbox.kept();
            ctx.metrics.audit().written(1);
        }
        AuditKept::NotKept => {}
    }
    Ok(())
}

/// Appends one request's facts (a compact record, rendered as the
/// `AuditEvent` when read), counted in the backlog while it waits and as
/// written once durable.
async fn append(
    log: &dyn AuditLog,
    metrics: &AuditMetrics,
    node: &str,
    facts: AuditFacts,
) -> Result<(), AuditError> {
    let pending = metrics.pending();
    let seqs = log.record(node, vec![facts]).await?;
    drop(pending);
    metrics.written(seqs.len() as u64);
    Ok(())
}
