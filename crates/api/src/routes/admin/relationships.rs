//! `/admin/relationships`: the relationships the access policy reads.

use audit::{Interaction, now_rfc3339};
use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use domain::OdsCode;
use serde::Deserialize;
use serde_json::{Value, json};
use store::access::{NewRelationship, Relationship, RelationshipKind};

use super::{doc, invalid, nhs_number, param, query_params};
use crate::audit_trail::{AuditDraft, audited};
use crate::error::{ApiError, json_response};
use crate::extract::Admin;
use crate::state::AppState;
use crate::table::Routes;

pub(super) fn routes() -> Routes {
    Routes::new()
        .add(
            Method::GET,
            "/relationships",
            doc(
                "adminListRelationships",
                "List recorded relationships of a patient or organisation",
            ),
            list,
        )
        .add(
            Method::POST,
            "/relationships",
            doc(
                "adminAddRelationship",
                "Record a relationship between an organisation and a patient",
            ),
            add,
        )
        .add(
            Method::DELETE,
            "/relationships/{id}",
            doc("adminRemoveRelationship", "Remove a recorded relationship"),
            remove,
        )
}

fn relationship_json(r: &Relationship) -> Value {
    json!({
        "id": r.id,
        "patient": format!("{:010}", r.nhs_number.as_u64()),
        "ods": r.ods.as_str(),
        "kind": r.kind.as_str(),
        "recordedBy": r.recorded_by,
        "recordedAt": r.recorded_at,
    })
}

async fn list(
    State(state): State<AppState>,
    admin: Admin,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let patient = query_params(raw.as_deref(), &["patient"]).and_then(|params| {
        let value =
            param(&params, "patient").ok_or_else(|| invalid("patient", "patient is required"))?;
        nhs_number("patient", value)
    });
    let mut draft = AuditDraft::always(Interaction::Search);
    draft.patient = patient.as_ref().ok().copied();
    let result = async {
        let relationships = state.access().facts.relationships(patient?).await?;
        let list: Vec<Value> = relationships.iter().map(relationship_json).collect();
        Ok(json_response(
            StatusCode::OK,
            json!({ "relationships": list }),
        ))
    }
    .await;
    audited(&state.context(), admin.actor(), draft, result).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RelationshipBody {
    patient: String,
    ods: String,
    kind: String,
}

async fn add(
    State(state): State<AppState>,
    admin: Admin,
    Json(body): Json<RelationshipBody>,
) -> Result<Response, ApiError> {
    let patient = nhs_number("patient", &body.patient);
    let mut draft = AuditDraft::always(Interaction::Create);
    draft.patient = patient.as_ref().ok().copied();
    draft.resources.push("Relationship".to_owned());
    let result = async {
        let ods =
            OdsCode::parse(&body.ods).ok_or_else(|| invalid("ods", "ods is not an ODS code"))?;
        let kind = RelationshipKind::parse(&body.kind).ok_or_else(|| {
            invalid(
                "kind",
                "kind must be registered-practice, referral or encounter",
            )
        })?;
        let new = NewRelationship {
            nhs_number: patient?,
            ods,
            kind,
            recorded_by: admin.client_id.to_string(),
            recorded_at: now_rfc3339(),
        };
        let created = state.access().facts.add_relationship(new).await?;
        Ok(json_response(
            StatusCode::CREATED,
            relationship_json(&created),
        ))
    }
    .await;
    audited(&state.context(), admin.actor(), draft, result).await
}

async fn remove(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<u64>,
) -> Result<Response, ApiError> {
    let removed = state.access().facts.remove_relationship(id).await;
    let mut draft = AuditDraft::always(Interaction::Delete);
    draft.patient = removed.as_ref().ok().map(|r| r.nhs_number);
    draft.resources.push(format!("Relationship/{id}"));
    let result = removed
        .map(|r| json_response(StatusCode::OK, relationship_json(&r)))
        .map_err(ApiError::from);
    audited(&state.context(), admin.actor(), draft, result).await
}
