//! `GET /consumer/FHIR/R4/Patient/$shared-care-record`: the route, its
//! CapabilityStatement entry and OperationDefinition. The work is the
//! operation `operations::shared_care_record`; this handler extracts the
//! caller and parameters, builds the pointers' URL base and shapes the
//! response.

use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use domain::convergence::query;

use super::CONSUMER_POINTERS;
use crate::error::{ApiError, fhir_response};
use crate::extract::{Consumer, RequestTrace, SearchParams};
use crate::operations::{self, SharedCareRecordQuery};
use crate::state::AppState;
use crate::table::{Doc, Routes};

/// The operation's path under the consumer base.
pub const PATH: &str = "/Patient/$shared-care-record";

/// The operation, relative to the consumer base: nest it under
/// [`CONSUMER_BASE`] with the consumer routes.
pub fn routes() -> Routes {
    Routes::new().add(
        Method::GET,
        PATH,
        Doc::new(
            "sharedCareRecord",
            "A patient's shared care record, converged from the regional sources that hold it, with every source's status",
            "consumer",
        )
        .authenticated()
        .query(query::PARAMETERS),
        shared_care_record,
    )
}

/// Canonical URL of the operation's definition.
pub const OPERATION_DEFINITION: &str =
    "https://example.invalid/nrls/fhir/OperationDefinition/Patient-shared-care-record";

/// The consumer CapabilityStatement's entry for the operation (capability.rs
/// pushes it onto `rest[0].resource`).
pub fn capability_resource() -> serde_json::Value {
    serde_json::json!({
        "type": "Patient",
        "operation": [{
            "name": "shared-care-record",
            "definition": OPERATION_DEFINITION,
            "documentation": "GET [base]/Patient/$shared-care-record?patient.identifier=https://fhir.nhs.uk/Id/nhs-number|<n>[&section=...][&date.ge=...][&date.le=...]: the patient's read-only shared care record, converged from the regional sources whose custodians hold a current Clinical summary pointer you may see. A collection Bundle: an OperationOutcome reporting every source (ok, timed-out, error, refused, not-asked, with the age of its data) and whether the record is complete or PARTIAL (also in Bundle.meta.tag and the record-completeness extension on Bundle.meta), the converged resources, and one Provenance per contributing source. Source failures never fail the request.",
        }],
    })
}

/// The OperationDefinition the CapabilityStatement names (serve it, or
/// publish it with the profiles).
pub fn operation_definition() -> serde_json::Value {
    let parameters = [
        (
            "patient.identifier",
            "token",
            1,
            "Patient NHS number: https://fhir.nhs.uk/Id/nhs-number|<number>",
        ),
        (
            "section",
            "token",
            0,
            "Comma-separated sections: allergies, problems, medications, immunisations, encounters (default: all)",
        ),
        (
            "date.ge",
            "date",
            0,
            "Only resources whose clinical date is on or after this FHIR date or dateTime",
        ),
        (
            "date.le",
            "date",
            0,
            "Only resources whose clinical date is on or before this FHIR date or dateTime",
        ),
    ];
    let mut parameter: Vec<serde_json::Value> = parameters
        .iter()
        .map(|(name, kind, min, doc)| {
            serde_json::json!({"name": name, "use": "in", "min": min, "max": "1", "type": "string", "searchType": kind, "documentation": doc})
        })
        .collect();
    parameter.push(serde_json::json!({"name": "return", "use": "out", "min": 1, "max": "1", "type": "Bundle",
        "documentation": "collection Bundle: OperationOutcome (completeness and every source), converged resources, Provenance per contributing source"}));
    serde_json::json!({
        "resourceType": "OperationDefinition",
        "url": OPERATION_DEFINITION,
        "name": "SharedCareRecord",
        "status": "draft",
        "kind": "operation",
        "code": "shared-care-record",
        "resource": ["Patient"],
        "system": false, "type": true, "instance": false,
        "affectsState": false,
        "parameter": parameter,
    })
}

async fn shared_care_record(
    State(state): State<AppState>,
    Consumer(caller): Consumer,
    RequestTrace(trace): RequestTrace,
    params: SearchParams,
) -> Result<Response, ApiError> {
    let pointer_url_base = format!("{}{CONSUMER_POINTERS}", state.settings().public_url);
    let request = SharedCareRecordQuery {
        params: &params,
        trace: trace.as_ref(),
        pointer_url_base: &pointer_url_base,
    };
    let record = operations::shared_care_record(&state.context(), &caller, request).await?;
    Ok(fhir_response(StatusCode::OK, record.bundle.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::CONSUMER_BASE;

    #[test]
    fn the_operation_sits_under_the_consumer_base() {
        let (_, operations) = Routes::new().nest(CONSUMER_BASE, routes()).into_parts();
        assert_eq!(operations.len(), 1);
        assert_eq!(
            operations[0].path,
            "/consumer/FHIR/R4/Patient/$shared-care-record"
        );
        assert_eq!(operations[0].doc.query, query::PARAMETERS);
        // The definition names exactly the parameters the parser accepts.
        let definition = operation_definition();
        let names: Vec<&str> = definition["parameter"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["use"] == "in")
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, query::PARAMETERS);
        assert_eq!(
            capability_resource()["operation"][0]["definition"],
            OPERATION_DEFINITION
        );
    }
}
