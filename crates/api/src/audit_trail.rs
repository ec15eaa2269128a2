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
use axum::response::Response;
use domain::NhsNumber;
use fhir::AuditEvent;
use store::StoreError;
use telemetry::AuditMetrics;

use crate::error::ApiError;
use crate::extract::Caller;
use crate::state::AppState;

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
}

impl AuditDraft {
    pub fn new(interaction: Interaction) -> AuditDraft {
        AuditDraft {
            interaction,
            patient: None,
            resources: Vec::new(),
            query: None,
            access: None,
        }
    }

    /// True once the request has reached patient data (a patient or a pointer).
    fn touched_patient_data(&self) -> bool {
        self.patient.is_some() || !self.resources.is_empty()
    }
}

/// Records `result` in the audit trail and returns it; if the record cannot be
/// written the caller gets a 503 instead.
pub async fn audited(
    state: &AppState,
    caller: &Caller,
    draft: AuditDraft,
    result: Result<Response, ApiError>,
) -> Result<Response, ApiError> {
    if !draft.touched_patient_data() {
        return result;
    }
    let (status, outcome_desc) = match &result {
        Ok(response) => (response.status().as_u16(), None),
        Err(e) => (e.status().as_u16(), Some(e.summary())),
    };
    let access = &caller.access;
    let facts = AuditFacts {
        interaction: draft.interaction,
        outcome: AuditOutcome::of_status(status),
        outcome_desc,
        recorded: now_rfc3339(),
        request_id: Some(caller.ids.request_id.clone()),
        client_id: caller.client_id.to_string(),
        organisation: Some(caller.ods.to_string()),
        user: access.user.as_ref().map(|u| AuditUser {
            person_id: u.person_id().to_owned(),
            role_code: u.role().role_code.clone(),
        }),
        purpose_of_use: access.purpose.as_ref().map(|p| p.code().to_owned()),
        patient: draft.patient,
        resources: draft.resources,
        query: draft.query,
        access: draft.access,
    };
    let services = state.access();
    let event = facts.to_event(&services.node);
    let metrics = state.ops().metrics().audit();
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
            Err(ApiError::Store(StoreError::Unavailable(
                "audit trail unavailable".into(),
            )))
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
