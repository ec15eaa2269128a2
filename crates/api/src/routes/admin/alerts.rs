//! `/admin/alerts`: self-claimed and break-glass accesses, for a privacy
//! officer to review and acknowledge.

use audit::{Acknowledgement, AlertQuery, Interaction, now_rfc3339};
use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use super::{MAX_COUNT, NoteBody, doc, invalid, param, query_params};
use crate::audit_trail::{AuditDraft, audited};
use crate::error::{ApiError, json_response};
use crate::extract::Admin;
use crate::state::AppState;
use crate::table::Routes;

pub(super) fn routes() -> Routes {
    Routes::new()
        .add(
            Method::GET,
            "/alerts",
            doc(
                "adminListAlerts",
                "Self-claimed and break-glass accesses for a privacy officer",
            ),
            list,
        )
        .add(
            Method::POST,
            "/alerts/{seq}/acknowledge",
            doc("adminAcknowledgeAlert", "Acknowledge an alert"),
            acknowledge,
        )
}

fn alert_query(raw: Option<&str>) -> Result<AlertQuery, ApiError> {
    let params = query_params(raw, &["status", "_count", "before"])?;
    let unacknowledged_only = match param(&params, "status") {
        None | Some("open") => true,
        Some("all") => false,
        Some(_) => return Err(invalid("status", "status must be open or all")),
    };
    let number = |name: &str| -> Result<Option<u64>, ApiError> {
        param(&params, name)
            .map(|v| {
                v.parse()
                    .map_err(|_| invalid(name, format!("{name} must be a positive integer")))
            })
            .transpose()
    };
    let count = number("_count")?.map_or(20, |c| usize::try_from(c).unwrap_or(MAX_COUNT));
    Ok(AlertQuery {
        unacknowledged_only,
        count: count.clamp(1, MAX_COUNT),
        before_seq: number("before")?,
    })
}

async fn list(
    State(state): State<AppState>,
    admin: Admin,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let draft = AuditDraft::always(Interaction::Search);
    let result = async {
        let query = alert_query(raw.as_deref())?;
        let alerts = state.access().audit.alerts(&query).await?;
        let list: Vec<Value> = alerts
            .iter()
            .map(|a| {
                json!({
                    "seq": a.record.seq,
                    "kind": a.kind,
                    "acknowledgement": a.acknowledgement.as_ref().map(|k| json!({ "by": k.by, "at": k.at, "note": k.note })),
                    "event": serde_json::from_str::<Value>(&a.record.event_json).unwrap_or(Value::Null),
                })
            })
            .collect();
        Ok(json_response(StatusCode::OK, json!({ "alerts": list })))
    }
    .await;
    audited(&state.context(), admin.actor(), draft, result).await
}

async fn acknowledge(
    State(state): State<AppState>,
    admin: Admin,
    Path(seq): Path<u64>,
    body: Option<Json<NoteBody>>,
) -> Result<Response, ApiError> {
    let mut draft = AuditDraft::always(Interaction::Update);
    draft.resources.push(format!("AuditEvent/{seq}"));
    let ack = Acknowledgement {
        by: admin.client_id.to_string(),
        at: now_rfc3339(),
        note: body.and_then(|Json(b)| b.note),
    };
    let result = state
        .access()
        .audit
        .acknowledge(seq, ack)
        .await
        .map(|()| json_response(StatusCode::OK, json!({ "acknowledged": seq })))
        .map_err(ApiError::from);
    audited(&state.context(), admin.actor(), draft, result).await
}
