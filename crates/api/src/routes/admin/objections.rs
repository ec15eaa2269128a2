//! `/admin/patients/{nhs}/objection`: a patient's objection to sharing.

use audit::{Interaction, now_rfc3339};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};
use store::access::Objection;

use super::{NoteBody, doc, nhs_number};
use crate::audit_trail::{AuditDraft, audited};
use crate::error::{ApiError, json_response};
use crate::extract::Admin;
use crate::state::AppState;
use crate::table::Routes;

const PATH: &str = "/patients/{nhs}/objection";

pub(super) fn routes() -> Routes {
    Routes::new()
        .add(
            Method::GET,
            PATH,
            doc("adminGetObjection", "Whether a patient objects to sharing"),
            read,
        )
        .add(
            Method::PUT,
            PATH,
            doc(
                "adminRecordObjection",
                "Record a patient's objection to sharing",
            ),
            record,
        )
        .add(
            Method::DELETE,
            PATH,
            doc("adminWithdrawObjection", "Withdraw a patient's objection"),
            withdraw,
        )
}

fn objection_json(o: &Objection) -> Value {
    json!({
        "patient": format!("{:010}", o.nhs_number.as_u64()),
        "recordedBy": o.recorded_by,
        "recordedAt": o.recorded_at,
        "note": o.note,
    })
}

fn none_recorded() -> ApiError {
    ApiError::not_found("no objection is recorded for this patient")
}

async fn read(
    State(state): State<AppState>,
    admin: Admin,
    Path(nhs): Path<String>,
) -> Result<Response, ApiError> {
    let patient = nhs_number("nhs", &nhs);
    let mut draft = AuditDraft::always(Interaction::Read);
    draft.patient = patient.as_ref().ok().copied();
    let result = async {
        match state.access().facts.objection(patient?).await? {
            Some(o) => Ok(json_response(StatusCode::OK, objection_json(&o))),
            None => Err(none_recorded()),
        }
    }
    .await;
    audited(&state.context(), admin.actor(), draft, result).await
}

async fn record(
    State(state): State<AppState>,
    admin: Admin,
    Path(nhs): Path<String>,
    body: Option<Json<NoteBody>>,
) -> Result<Response, ApiError> {
    let patient = nhs_number("nhs", &nhs);
    let mut draft = AuditDraft::always(Interaction::Update);
    draft.patient = patient.as_ref().ok().copied();
    let result = async {
        let objection = Objection {
            nhs_number: patient?,
            recorded_by: admin.client_id.to_string(),
            recorded_at: now_rfc3339(),
            note: body.and_then(|Json(b)| b.note),
        };
        state
            .access()
            .facts
            .record_objection(objection.clone())
            .await?;
        Ok(json_response(StatusCode::OK, objection_json(&objection)))
    }
    .await;
    audited(&state.context(), admin.actor(), draft, result).await
}

async fn withdraw(
    State(state): State<AppState>,
    admin: Admin,
    Path(nhs): Path<String>,
) -> Result<Response, ApiError> {
    let patient = nhs_number("nhs", &nhs);
    let mut draft = AuditDraft::always(Interaction::Delete);
    draft.patient = patient.as_ref().ok().copied();
    let result = async {
        if state.access().facts.withdraw_objection(patient?).await? {
            Ok(json_response(StatusCode::OK, json!({ "withdrawn": true })))
        } else {
            Err(none_recorded())
        }
    }
    .await;
    audited(&state.context(), admin.actor(), draft, result).await
}
