//! `GET /consumer/FHIR/R4/Patient/$shared-care-record`: the read-only national
//! shared care record. The handler checks the request, applies the access
//! policy as a pointer search does, reads the patient's pointers and hands
//! them to the federator with the caller's visibility rules; the federator
//! asks the sources and assembles the Bundle. Source failures are part of the
//! answer (the OperationOutcome inside the Bundle), never an error status.
//! Every request leaves one AuditEvent naming the pointers whose sources
//! were called.

use std::sync::Arc;
use std::time::Duration;

use audit::Interaction;
use axum::Router;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use domain::PointerRecord;
use domain::convergence::query;
use domain::issue::{ErrorCode, Issue, IssueType};
use federation::{CLINICAL_SUMMARY, Federator, Retrieval, SourceStatus};
use telemetry::SourceOutcome;

use super::CONSUMER_BASE;
use super::table::{Doc, Routes};
use crate::audit_trail::{AuditDraft, audited};
use crate::error::{ApiError, fhir_response};
use crate::extract::{Caller, Consumer, SearchParams};
use crate::pointers::{decide, patient_access};
use crate::state::AppState;

/// The operation's path under the consumer base.
pub const PATH: &str = "/Patient/$shared-care-record";

/// An extra rule on which pointers may lead to a source, on top of the
/// caller's pointer-type permissions and the access policy's filter (both
/// applied by the handler). A pointer it rejects is treated exactly like no
/// pointer at all.
pub type Visibility = Arc<dyn Fn(&Caller, &PointerRecord) -> bool + Send + Sync>;

/// What the route needs besides [`AppState`].
#[derive(Clone)]
pub struct SharedCareRecord {
    pub federator: Arc<Federator>,
    pub visibility: Visibility,
}

impl SharedCareRecord {
    /// With no extra rule: the access policy alone decides (it hides
    /// sensitive pointers from callers without the activity code).
    pub fn new(federator: Arc<Federator>) -> Self {
        SharedCareRecord {
            federator,
            visibility: Arc::new(|_, _| true),
        }
    }
}

/// The federation handle of this request, and the trace to carry to the
/// sources (each source call becomes a span of it). The handle is read from the request extensions
/// (`.layer(Extension(SharedCareRecord))`) until `AppState` carries it; this
/// impl is the one place to change when it does.
struct Federation {
    shared: SharedCareRecord,
    trace: Option<telemetry::TraceContext>,
}

impl FromRequestParts<AppState> for Federation {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, ApiError> {
        let trace = parts.extensions.get::<telemetry::TraceContext>().copied();
        parts
            .extensions
            .get::<SharedCareRecord>()
            .cloned()
            .map(|shared| Federation { shared, trace })
            .ok_or_else(|| {
                ApiError::one(Issue::general(
                    ErrorCode::ServiceUnavailable,
                    IssueType::NotSupported,
                    "the shared care record is not enabled on this server (no sources are configured)",
                ))
            })
    }
}

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

/// The consumer CapabilityStatement's entry for the operation: push it onto
/// `rest[0].resource` (capability.rs) when the route is wired.
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

/// The operation at its full path, for merging into a router directly.
pub fn router() -> Router<AppState> {
    Routes::new().nest(CONSUMER_BASE, routes()).into_parts().0
}

async fn shared_care_record(
    State(state): State<AppState>,
    Consumer(caller): Consumer,
    federation: Federation,
    params: SearchParams,
) -> Result<Response, ApiError> {
    let mut draft = AuditDraft::new(Interaction::Search);
    let result = assemble(
        &state,
        &caller,
        &federation.shared,
        federation.trace.as_ref(),
        &params,
        &mut draft,
    )
    .await
    .map(|record| fhir_response(StatusCode::OK, record.bundle.to_string()));
    audited(&state, &caller, draft, result).await
}

/// Checks the request and the caller's access, then asks the federator. Every
/// decision is noted in `draft` for the one AuditEvent of the request (write
/// it with `audit_trail::audited`). HTTP-independent: the web viewer calls it
/// too, with a caller built from its session.
pub async fn assemble(
    state: &AppState,
    caller: &Caller,
    shared: &SharedCareRecord,
    trace: Option<&telemetry::TraceContext>,
    params: &SearchParams,
    draft: &mut AuditDraft,
) -> Result<federation::FederatedRecord, ApiError> {
    let query = query::parse(params.pairs()).map_err(ApiError::Rejected)?;
    draft.patient = Some(query.subject);
    draft.query = Some(
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params.pairs())
            .finish(),
    );
    let catalogue = state.catalogue();
    let summary = catalogue
        .find_key(CLINICAL_SUMMARY)
        .ok_or_else(|| ApiError::Internal("Clinical summary is not in the catalogue".into()))?;
    if !caller.types.contains(summary.index) {
        return Err(ApiError::forbidden(
            ErrorCode::AccessDeniedLevel,
            format!(
                "the shared care record is found through Clinical summary pointers ({CLINICAL_SUMMARY}), which your organisation may not access"
            ),
        ));
    }
    // The direct-care access policy, as for a pointer search: purpose of
    // use, relationship, objections; its filter hides sensitive pointers.
    let patient = patient_access(state, query.subject).await?;
    let grant = decide(state, caller, &patient, draft)?;
    let rows = state
        .consumer_store()
        .patient_pointers(query.subject)
        .await?;
    let pointers: Vec<PointerRecord> = rows.into_iter().map(|s| s.record).collect();
    let pointer_url_base = format!(
        "{}{CONSUMER_BASE}/DocumentReference",
        state.settings().public_url
    );
    let visibility = &shared.visibility;
    let record = shared
        .federator
        .retrieve(
            Retrieval {
                query: &query,
                pointers: &pointers,
                correlation_id: Some(&caller.ids.request_id),
                trace,
                tracer: state.ops().tracer(),
                pointer_url_base: &pointer_url_base,
            },
            |pointer| {
                catalogue
                    .find_key(&pointer.type_key)
                    .is_some_and(|t| caller.types.contains(t.index))
                    && grant.filter.visible(pointer)
                    && visibility(caller, pointer)
            },
        )
        .await;
    record_metrics(state, &record.sources);
    // The audit trail names the pointers whose sources were called; the
    // per-source outcomes are in `record.sources` (and the log line below).
    draft.resources = record
        .sources
        .iter()
        .filter(|s| s.was_called())
        .flat_map(|s| s.pointers.iter().map(|p| format!("DocumentReference/{p}")))
        .collect();
    let outcomes: Vec<String> = record
        .sources
        .iter()
        .filter(|s| s.was_called() || s.status == SourceStatus::Refused)
        .map(|s| format!("{}={}", s.ods, s.status.code()))
        .collect();
    tracing::info!(
        request_id = %caller.ids.request_id,
        client_id = %caller.client_id,
        patient = %query.subject.masked(),
        sources = %outcomes.join(","),
        partial = record.partial,
        entries = record.entries,
        "shared care record assembled"
    );
    Ok(record)
}

/// One observation per source called, on the metrics the operations guide lists.
fn record_metrics(state: &AppState, sources: &[federation::SourceReport]) {
    let metrics = state.ops().metrics().federation();
    for report in sources.iter().filter(|s| s.was_called()) {
        let outcome = match report.status {
            SourceStatus::Ok => SourceOutcome::Ok,
            SourceStatus::TimedOut => SourceOutcome::Timeout,
            _ => SourceOutcome::Error,
        };
        let elapsed = Duration::from_millis(report.elapsed_ms.unwrap_or(0));
        metrics.source(report.ods.as_str()).record(outcome, elapsed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
