//! "Where my records are": the patient's own current pointers, as a patient
//! is shown them (`api::operations::patient::my_pointers`, which filters
//! and audits), grouped by type. No retrieval details: no ASIDs, no URLs.

use api::operations::patient::{PatientCaller, my_pointers};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::{PatientChrome, html, verified_nhs_number};
use crate::WebState;
use crate::error::WebError;
use crate::pages::{PatientRecordGroup, PatientRecordRow, PatientRecordsPage};
use crate::viewer::records::human_date;

pub(super) async fn page(
    State(state): State<WebState>,
    headers: HeaderMap,
) -> Result<Response, WebError> {
    let session = state.sessions.load(&headers).await?;
    let nhs = verified_nhs_number(&session)?;
    let caller = PatientCaller::new(nhs);
    let found = my_pointers(&state.api.context(), &caller, &state.patient_types).await?;
    let pointers: Vec<Value> = found
        .entries
        .iter()
        .filter_map(|r| serde_json::from_str(&r.json).ok())
        .collect();
    let page = PatientRecordsPage {
        chrome: PatientChrome::new(&state, &session, &headers),
        total: found.total,
        groups: group(&state, &pointers),
    };
    Ok(html(&page)?.into_response())
}

fn text<'a>(value: &'a Value, path: &[&str]) -> &'a str {
    path.iter()
        .try_fold(value, |v, key| match key.parse::<usize>() {
            Ok(i) => v.get(i),
            Err(_) => v.get(*key),
        })
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// Grouped by type name (alphabetical), newest first within a type.
fn group(state: &WebState, pointers: &[Value]) -> Vec<PatientRecordGroup> {
    let mut sorted: Vec<&Value> = pointers.iter().collect();
    sorted.sort_by(|a, b| {
        let key = |p: &Value| text(p, &["type", "coding", "0", "display"]).to_owned();
        key(a)
            .cmp(&key(b))
            .then_with(|| text(b, &["date"]).cmp(text(a, &["date"])))
    });
    let mut groups: Vec<PatientRecordGroup> = Vec::new();
    for pointer in sorted {
        let name = match text(pointer, &["type", "coding", "0", "display"]) {
            "" => "Other record",
            name => name,
        };
        if groups.last().is_none_or(|g| g.name != name) {
            groups.push(PatientRecordGroup {
                name: name.to_owned(),
                records: Vec::new(),
            });
        }
        let custodian = text(pointer, &["custodian", "identifier", "value"]);
        if let Some(current) = groups.last_mut() {
            current.records.push(PatientRecordRow {
                organisation: state.organisation_name(custodian),
                date: human_date(text(pointer, &["date"])),
                kind: kind_of_record(pointer),
            });
        }
    }
    groups
}

/// What kind of record it is, in plain words.
fn kind_of_record(pointer: &Value) -> String {
    let attachment = &pointer["content"][0]["attachment"];
    match text(attachment, &["contentType"]) {
        "application/pdf" => "A document (PDF)".to_owned(),
        "text/html" => "A web page".to_owned(),
        media if media.contains("fhir") => "A record in the organisation's system".to_owned(),
        "" => "Not stated".to_owned(),
        _ => "A document".to_owned(),
    }
}
