//! CapabilityStatements built from the same lists the search parser enforces,
//! so what the server advertises is what it accepts.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use domain::search::Audience;
use serde_json::{Value, json};

use crate::error::fhir_response;
use crate::state::AppState;

fn search_param(name: &str) -> Value {
    let (kind, doc) = match name {
        "subject:identifier" => (
            "token",
            "Patient NHS number: https://fhir.nhs.uk/Id/nhs-number|<number> (required)",
        ),
        "custodian:identifier" => (
            "token",
            "Custodian ODS code(s): https://fhir.nhs.uk/Id/ods-organization-code|<code>, comma-separated = OR",
        ),
        "type" => ("token", "Pointer type(s) system|code, comma-separated = OR"),
        "category" => (
            "token",
            "Category code(s) system|code, comma-separated = OR",
        ),
        "_summary" => ("token", "'count': the total only"),
        "_count" => ("number", "Page size"),
        _ => ("string", "Opaque page cursor from a next link"),
    };
    json!({"name": name, "type": kind, "documentation": doc})
}

/// The CapabilityStatement of one API.
pub fn capability_statement(audience: Audience, public_url: &str, max_count: usize) -> Value {
    let (base, interactions, description) = match audience {
        Audience::Producer => (
            "/producer/FHIR/R4",
            vec!["create", "update", "delete", "read", "search-type"],
            "NRL v3 compatible producer API: publish and manage pointers.",
        ),
        Audience::Consumer => (
            "/consumer/FHIR/R4",
            vec!["read", "search-type"],
            "NRL v3 compatible consumer API: find pointers by NHS number.",
        ),
    };
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-25",
        "kind": "instance",
        "software": {"name": "nrls", "version": env!("CARGO_PKG_VERSION")},
        "implementation": {"description": description, "url": format!("{public_url}{base}")},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "application/json", "json"],
        "rest": [{
            "mode": "server",
            "documentation": format!("Search pages hold at most {max_count} entries (_count); follow the next link for more."),
            "security": {
                "service": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/restful-security-service", "code": "SMART-on-FHIR"}]}],
                "extension": [{"url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                    "extension": [{"url": "token", "valueUri": format!("{public_url}/oauth2/token")}]}]
            },
            "resource": [{
                "type": "DocumentReference",
                "versioning": "versioned-update",
                "conditionalCreate": false,
                "interaction": interactions.iter().map(|i| json!({"code": i})).collect::<Vec<_>>(),
                // `_format` and `_pretty` are FHIR's general parameters, not search parameters.
                "searchParam": audience.parameters().iter().filter(|p| !matches!(**p, "_format" | "_pretty")).map(|p| search_param(p)).collect::<Vec<_>>(),
            }]
        }]
    })
}

pub async fn producer(State(state): State<AppState>) -> Response {
    respond(&state, Audience::Producer)
}

pub async fn consumer(State(state): State<AppState>) -> Response {
    respond(&state, Audience::Consumer)
}

fn respond(state: &AppState, audience: Audience) -> Response {
    let settings = state.settings();
    let mut body = capability_statement(
        audience,
        &settings.public_url,
        settings.search_limits.max_count,
    );
    if let Some(resources) = body["rest"][0]["resource"].as_array_mut() {
        if audience == Audience::Consumer {
            resources.push(super::shared_care_record::capability_resource());
        }
        resources.extend(super::subscriptions::capability_resources());
    }
    body["instantiates"] = serde_json::json!([
        "http://hl7.org/fhir/uv/subscriptions-backport/CapabilityStatement/backport-subscription-server-r4"
    ]);
    fhir_response(StatusCode::OK, body.to_string())
}
