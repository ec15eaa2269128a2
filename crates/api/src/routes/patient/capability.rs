//! The patient API's CapabilityStatement: what `/patient/FHIR/R4` serves,
//! from the same parameter lists its handlers enforce.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::{AUDIT_SEARCH, CONSENT_SEARCH, PATIENT_BASE, POINTER_SEARCH};
use crate::error::fhir_response;
use crate::state::AppState;

fn param(name: &str) -> Value {
    let (kind, doc) = match name {
        "subject:identifier" | "patient.identifier" => (
            "token",
            "Optional; must be the signed-in patient's NHS number (another is 404)",
        ),
        "date" => (
            "date",
            "ge, gt, le, lt or eq and a day (YYYY-MM-DD); default the last 12 months",
        ),
        "_count" => ("number", "Entries per page, 1 to 100 (default 20)"),
        "_include-own" => ("token", "true to list the patient's own views"),
        _ => ("string", "From a next link"),
    };
    json!({"name": name, "type": kind, "documentation": doc})
}

fn resource(kind: &str, interactions: &[&str], params: &[&str], profile_note: &str) -> Value {
    json!({
        "type": kind,
        "documentation": profile_note,
        "interaction": interactions.iter().map(|c| json!({"code": c})).collect::<Vec<_>>(),
        "searchParam": params.iter().map(|p| param(p)).collect::<Vec<_>>(),
    })
}

/// `GET /patient/FHIR/R4/metadata`.
pub async fn statement(State(state): State<AppState>) -> Response {
    let url = format!("{}{PATIENT_BASE}", state.settings().public_url);
    let body = json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-12-05",
        "kind": "instance",
        "software": {"name": "nrls", "version": env!("CARGO_PKG_VERSION")},
        "implementation": {"description": "Patient API: a patient's own pointers, who looked at them and their choice about sharing (NHS login, P9)", "url": url},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "application/json", "json"],
        "rest": [{
            "mode": "server",
            "documentation": "Every request is for the signed-in patient: a patient token from POST /patient/token or the /my-record/ session. Below P9: 403.",
            "security": {"description": "Bearer patient token (NHS login, P9) or the /my-record/ session cookie; app tokens are refused"},
            "resource": [
                resource("DocumentReference", &["read", "search-type"], POINTER_SEARCH, "Pointers the patient is shown; no retrieval details"),
                resource("AuditEvent", &["search-type"], AUDIT_SEARCH, "Who looked: role categories, organisations, purposes; no staff identities"),
                resource("Consent", &["read", "search-type", "create", "update"], CONSENT_SEARCH, "The objection to sharing (IHE PCF: scope patient-privacy, provision.type deny), id objection"),
            ],
        }],
    });
    fhir_response(StatusCode::OK, body.to_string())
}
