//! The converged shared care record: the API's `$shared-care-record`
//! operation, as sections with their sources and conflicts, under a
//! completeness banner naming every source that did not contribute.

use api::Caller;
use api::operations::{SearchParams, SharedCareRecordQuery, shared_care_record};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use domain::NhsNumber;
use domain::convergence::ext::{CONFLICT_EXT, SOURCES_EXT};
use federation::{FederatedRecord, SourceStatus};
use serde_json::Value;

use super::access::relationship_page;
use super::caller::caller;
use super::patient::from_path;
use super::records::{human_date, needs_relationship};
use super::{respond, signed_in};
use crate::WebState;
use crate::error::WebError;
use crate::pages::{
    Chrome, EntryRow, PatientRef, SectionView, SharedRecordPage, SourceRow, render,
};

/// The API's operation for one patient (`api::operations::shared_care_record`,
/// which writes the one AuditEvent before answering). The only place the
/// viewer asks for the shared care record.
async fn shared_record(
    state: &WebState,
    caller: &Caller,
    nhs: NhsNumber,
) -> Result<FederatedRecord, api::ApiError> {
    let params = SearchParams(vec![(
        "patient.identifier".to_owned(),
        format!("https://fhir.nhs.uk/Id/nhs-number|{nhs}"),
    )]);
    let pointer_url_base = format!(
        "{}/consumer/FHIR/R4/DocumentReference",
        state.api.settings().public_url
    );
    let query = SharedCareRecordQuery {
        params: &params,
        trace: None,
        pointer_url_base: &pointer_url_base,
    };
    shared_care_record(&state.api.context(), caller, query).await
}

pub(super) async fn page(
    State(state): State<WebState>,
    headers: HeaderMap,
    Path(nhs): Path<String>,
) -> Result<Response, WebError> {
    let mut session = state.sessions.load(&headers).await?;
    let user = signed_in(&session)?.clone();
    let nhs = from_path(&nhs)?;
    let digits = nhs.to_string();
    let basis = session.data.basis_for(&digits).cloned();
    let caller = caller(&user, basis.as_ref())?;
    let assembled = shared_record(&state, &caller, nhs).await;
    session.data.remember(&digits);
    let record = match assembled {
        Ok(record) => record,
        Err(e) if needs_relationship(&e) => {
            let page = relationship_page(&state, &session, nhs, Vec::new(), Default::default());
            let html = render(&page)?;
            return respond(&state, session, (StatusCode::FORBIDDEN, html)).await;
        }
        Err(e) => return Err(e.into()),
    };
    let page = SharedRecordPage {
        chrome: Chrome::new(&state, &session),
        patient: PatientRef::new(nhs),
        partial: record.partial,
        sources: sources(&state, &record),
        sections: sections(&state, &record.bundle),
    };
    let html = render(&page)?;
    respond(&state, session, html).await
}

pub(crate) fn sources(state: &WebState, record: &FederatedRecord) -> Vec<SourceRow> {
    let now = crate::session::now();
    record
        .sources
        .iter()
        .map(|s| SourceRow {
            name: s
                .name
                .clone()
                .unwrap_or_else(|| state.organisation_name(s.ods.as_str())),
            ods: s.ods.as_str().to_owned(),
            status: s.status.display().to_owned(),
            detail: plain_detail(s.status, &s.detail),
            age: s.data_age.as_ref().map(|age| {
                format!(
                    "{} ({})",
                    human_date(&age.as_of),
                    age_words(age.age_seconds(now))
                )
            }),
            ok: s.status == SourceStatus::Ok,
            makes_partial: s.makes_partial(),
        })
        .collect()
}

/// The federation's detail without its leading status ("error: …"), which
/// the page already shows as a tag, starting with a capital.
fn plain_detail(status: SourceStatus, detail: &str) -> String {
    let code = status.code().replace('-', " ");
    let rest = detail
        .split_once(": ")
        .filter(|(head, _)| head.replace('-', " ").eq_ignore_ascii_case(&code))
        .map_or(detail, |(_, rest)| rest);
    let mut chars = rest.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// "3 hours old".
fn age_words(seconds: i64) -> String {
    let (n, unit) = match seconds {
        s if s < 120 => return "up to date".to_owned(),
        s if s < 7200 => (s / 60, "minute"),
        s if s < 172_800 => (s / 3600, "hour"),
        s => (s / 86_400, "day"),
    };
    format!("{n} {unit}{} old", if n == 1 { "" } else { "s" })
}

const SECTIONS: &[(&str, &[&str])] = &[
    ("Allergies", &["AllergyIntolerance"]),
    ("Problems", &["Condition"]),
    ("Medications", &["MedicationStatement", "MedicationRequest"]),
    ("Immunisations", &["Immunization"]),
    ("Encounters", &["Encounter"]),
];

fn first_text(resource: &Value, candidates: &[&str]) -> String {
    for name in candidates {
        let concept = match &resource[*name] {
            Value::Array(items) => items.first().unwrap_or(&Value::Null),
            other => other,
        };
        if let Some(text) = concept["text"].as_str() {
            return text.to_owned();
        }
        if let Some(display) = concept["coding"][0]["display"].as_str() {
            return display.to_owned();
        }
        if let Some(display) = concept["display"].as_str() {
            return display.to_owned();
        }
    }
    "Not named".to_owned()
}

fn ods_names(state: &WebState, identifiers: impl Iterator<Item = String>) -> String {
    identifiers
        .map(|ods| format!("{} ({ods})", state.organisation_name(&ods)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn entry(state: &WebState, resource: &Value) -> EntryRow {
    let extensions = resource["extension"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let sources = extensions
        .iter()
        .filter(|e| e["url"] == SOURCES_EXT)
        .flat_map(|e| e["extension"].as_array().cloned().unwrap_or_default())
        .filter(|p| p["url"] == "source")
        .filter_map(|p| p["valueIdentifier"]["value"].as_str().map(str::to_owned));
    let conflicts = extensions
        .iter()
        .filter(|e| e["url"] == CONFLICT_EXT)
        .map(|e| {
            let parts = e["extension"].as_array().cloned().unwrap_or_default();
            let element = parts
                .iter()
                .find(|p| p["url"] == "element")
                .and_then(|p| p["valueString"].as_str())
                .unwrap_or("a detail")
                .to_owned();
            let reported: Vec<String> = parts
                .iter()
                .filter(|p| p["url"] == "reported")
                .map(|p| {
                    let inner = p["extension"].as_array().cloned().unwrap_or_default();
                    let get = |url: &str, key: &str| {
                        inner
                            .iter()
                            .find(|i| i["url"] == url)
                            .map(|i| i[key].clone())
                            .unwrap_or(Value::Null)
                    };
                    let ods = get("source", "valueIdentifier")["value"]
                        .as_str()
                        .unwrap_or("?")
                        .to_owned();
                    let value = get("value", "valueString")
                        .as_str()
                        .unwrap_or("")
                        .to_owned();
                    format!("{} ({ods}): {value}", state.organisation_name(&ods))
                })
                .collect();
            format!("{element} recorded differently by: {}", reported.join("; "))
        })
        .collect();
    let date = [
        "recordedDate",
        "onsetDateTime",
        "effectiveDateTime",
        "authoredOn",
        "occurrenceDateTime",
        "dateAsserted",
    ]
    .iter()
    .find_map(|k| resource[*k].as_str())
    .or_else(|| resource["period"]["start"].as_str())
    .unwrap_or("");
    let status = resource["clinicalStatus"]["coding"][0]["code"]
        .as_str()
        .or_else(|| resource["status"].as_str())
        .unwrap_or("")
        .to_owned();
    EntryRow {
        title: first_text(
            resource,
            &[
                "code",
                "medicationCodeableConcept",
                "vaccineCode",
                "type",
                "class",
            ],
        ),
        status,
        date: human_date(date),
        sources: ods_names(state, sources),
        conflicts,
    }
}

pub(crate) fn sections(state: &WebState, bundle: &Value) -> Vec<SectionView> {
    let resources: Vec<&Value> = bundle["entry"]
        .as_array()
        .map(|entries| entries.iter().map(|e| &e["resource"]).collect())
        .unwrap_or_default();
    SECTIONS
        .iter()
        .map(|(name, types)| SectionView {
            name,
            entries: resources
                .iter()
                .filter(|r| types.iter().any(|t| r["resourceType"] == *t))
                .map(|r| entry(state, r))
                .collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_detail_does_not_repeat_its_status() {
        assert_eq!(
            plain_detail(
                SourceStatus::Error,
                "error: the source could not be reached (connection failed)"
            ),
            "The source could not be reached (connection failed)"
        );
        assert_eq!(
            plain_detail(SourceStatus::NotAsked, "not asked: no current pointer"),
            "No current pointer"
        );
        // A detail that does not start with its status is kept whole.
        assert_eq!(
            plain_detail(SourceStatus::Ok, "answered in 4 ms"),
            "Answered in 4 ms"
        );
    }
}
