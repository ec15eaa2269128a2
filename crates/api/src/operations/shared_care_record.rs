//! The read-only national shared care record. Checks the request, applies
//! the access policy as a pointer search does, reads the patient's pointers
//! and hands them to the federator with the caller's visibility rules; the
//! federator asks the sources and assembles the Bundle. Source failures are
//! part of the answer (the OperationOutcome inside the Bundle), never an
//! error. Every request leaves one AuditEvent naming the pointers whose
//! sources were called.

use std::sync::Arc;
use std::time::Duration;

use audit::Interaction;
use domain::PointerRecord;
use domain::convergence::query;
use domain::issue::{ErrorCode, Issue, IssueType};
use federation::{CLINICAL_SUMMARY, FederatedRecord, Federator, Retrieval, SourceStatus};
use telemetry::{SourceOutcome, TraceContext};

use super::patient::{PatientCaller, patient_visible};
use super::policy::{consumer_reads, decide};
use super::{Context, SearchParams};
use crate::audit_trail::{AuditDraft, audited};
use crate::caller::Caller;
use crate::error::ApiError;

/// An extra rule on which pointers may lead to a source, on top of the
/// caller's pointer-type permissions and the access policy's filter. A
/// pointer it rejects is treated exactly like no pointer at all.
pub type Visibility = Arc<dyn Fn(&Caller, &PointerRecord) -> bool + Send + Sync>;

/// The federator, and any extra visibility rule: part of the state when
/// sources are configured.
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

/// What a request for the record carries besides its parameters.
pub struct SharedCareRecordQuery<'a> {
    pub params: &'a SearchParams,
    /// The trace to carry to the sources (each source call becomes a span).
    pub trace: Option<&'a TraceContext>,
    /// Where the pointers are read, e.g.
    /// `https://nrls.example/consumer/FHIR/R4/DocumentReference`: the
    /// Provenance of each source names the pointers it was found through.
    pub pointer_url_base: &'a str,
}

/// The patient's shared care record, audited.
pub async fn shared_care_record(
    ctx: &Context<'_>,
    caller: &Caller,
    request: SharedCareRecordQuery<'_>,
) -> Result<FederatedRecord, ApiError> {
    let mut draft = AuditDraft::new(Interaction::Search);
    let result = federate(ctx, caller, &request, &mut draft).await;
    audited(ctx, caller.actor(), draft, result).await
}

/// The patient's own shared care record (`/my-record/`): the same federator
/// and assembly as [`shared_care_record`], followed only through the
/// Clinical summary pointers a patient is shown (current, not labelled R, V
/// or NOPAT, the rule of `my_pointers`). No direct-care access policy: the
/// patient is the subject, and their own objection concerns staff, not
/// them. Audited once as the patient's request (`PATRQT`), naming the
/// pointers whose sources were called.
pub async fn my_shared_care_record(
    ctx: &Context<'_>,
    caller: &PatientCaller,
    pointer_url_base: &str,
) -> Result<FederatedRecord, ApiError> {
    let mut draft = AuditDraft::new(Interaction::Search);
    draft.patient = Some(caller.nhs_number);
    draft.query = Some(format!(
        "{}?patient={}",
        super::patient_audit::SHARED_CARE_RECORD_QUERY,
        caller.nhs_number
    ));
    let result = async {
        let shared = ctx.shared_care_record.ok_or_else(|| {
            ApiError::one(Issue::general(
                ErrorCode::ServiceUnavailable,
                IssueType::NotSupported,
                "the shared care record is not enabled on this server (no sources are configured)",
            ))
        })?;
        let params = SearchParams(vec![(
            "patient.identifier".to_owned(),
            format!("https://fhir.nhs.uk/Id/nhs-number|{}", caller.nhs_number),
        )]);
        let query = query::parse(params.pairs()).map_err(ApiError::Rejected)?;
        let summary_code = CLINICAL_SUMMARY
            .rsplit_once('|')
            .map_or(CLINICAL_SUMMARY, |(_, code)| code);
        let summary_only = [summary_code.to_owned()];
        let rows = ctx
            .consumer_store
            .patient_pointers(caller.nhs_number)
            .await?;
        let pointers: Vec<PointerRecord> = rows.into_iter().map(|s| s.record).collect();
        let record = shared
            .federator
            .retrieve(
                Retrieval {
                    query: &query,
                    pointers: &pointers,
                    correlation_id: Some(caller.request_id()),
                    trace: None,
                    tracer: ctx.tracer,
                    pointer_url_base,
                },
                |pointer| patient_visible(pointer, &summary_only),
            )
            .await;
        record_metrics(ctx, &record.sources);
        Ok(record)
    }
    .await;
    if let Ok(record) = &result {
        draft.resources = record
            .sources
            .iter()
            .filter(|s| s.was_called())
            .flat_map(|s| s.pointers.iter().map(|p| format!("DocumentReference/{p}")))
            .collect();
    }
    audited(ctx, caller.actor(), draft, result).await
}

/// Checks the request and the caller's access, then asks the federator. Every
/// decision is noted in `draft` for the one AuditEvent of the request.
async fn federate(
    ctx: &Context<'_>,
    caller: &Caller,
    request: &SharedCareRecordQuery<'_>,
    draft: &mut AuditDraft,
) -> Result<FederatedRecord, ApiError> {
    let shared = ctx.shared_care_record.ok_or_else(|| {
        ApiError::one(Issue::general(
            ErrorCode::ServiceUnavailable,
            IssueType::NotSupported,
            "the shared care record is not enabled on this server (no sources are configured)",
        ))
    })?;
    let params = request.params;
    let query = query::parse(params.pairs()).map_err(ApiError::Rejected)?;
    draft.patient = Some(query.subject);
    draft.query = Some(
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params.pairs())
            .finish(),
    );
    let catalogue = ctx.catalogue;
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
    let (patient, read_with_facts) = consumer_reads(ctx, query.subject).await?;
    let grant = decide(ctx, caller, &patient, draft)?;
    let rows = match read_with_facts {
        Some(rows) => rows,
        None => ctx.consumer_store.patient_pointers(query.subject).await?,
    };
    let pointers: Vec<PointerRecord> = rows.into_iter().map(|s| s.record).collect();
    let visibility = &shared.visibility;
    let record = shared
        .federator
        .retrieve(
            Retrieval {
                query: &query,
                pointers: &pointers,
                correlation_id: Some(&caller.ids.request_id),
                trace: request.trace,
                tracer: ctx.tracer,
                pointer_url_base: request.pointer_url_base,
            },
            |pointer| {
                caller.may_see(catalogue, pointer)
                    && grant.filter.visible(pointer)
                    && visibility(caller, pointer)
            },
        )
        .await;
    record_metrics(ctx, &record.sources);
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
fn record_metrics(ctx: &Context<'_>, sources: &[federation::SourceReport]) {
    let metrics = ctx.metrics.federation();
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
