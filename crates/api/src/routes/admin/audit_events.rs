//! `/admin/FHIR/R4/AuditEvent`: FHIR search over the audit trail, itself
//! audited with its query.

use audit::{AuditCursor, AuditQuery, Interaction};
use axum::extract::{RawQuery, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;

use super::{audit_search, doc};
use crate::audit_trail::{AuditDraft, audited};
use crate::error::{ApiError, fhir_response};
use crate::extract::Admin;
use crate::routes::ADMIN_BASE;
use crate::state::AppState;
use crate::table::Routes;

const PATH: &str = "/FHIR/R4/AuditEvent";

pub(super) fn routes() -> Routes {
    Routes::new().add(
        Method::GET,
        PATH,
        doc(
            "adminSearchAuditEvents",
            "Search the audit trail by patient, agent, date and outcome",
        ),
        search,
    )
}

async fn search(
    State(state): State<AppState>,
    admin: Admin,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let raw = raw.unwrap_or_default();
    let parsed = audit_search::parse(&raw);
    let mut draft = AuditDraft::always(Interaction::Search);
    draft.patient = parsed.as_ref().ok().and_then(|q| q.patient);
    draft.query = Some(raw.clone());
    let result = async {
        let query: AuditQuery = parsed?;
        let page = state.access().audit.search(&query).await?;
        let base = format!("{}{ADMIN_BASE}{PATH}", state.settings().public_url);
        Ok(fhir_response(
            StatusCode::OK,
            audit_search::bundle(&base, &raw, &query, &page),
        ))
    }
    .await;
    audited(&state.context(), admin.actor(), draft, result).await
}

/// The cursor of the page after `query`.
pub(super) fn next_cursor(query: &AuditQuery, before_seq: u64) -> String {
    AuditCursor {
        before_seq,
        fingerprint: query.fingerprint(),
    }
    .encode()
}
