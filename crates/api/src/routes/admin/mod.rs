//! The admin API: recorded relationships, patient objections,
//! privacy-officer alerts, and FHIR search over the audit trail, one file
//! per resource.
//!
//! Callers authenticate with an access token like any app and must be an
//! admin app (`ApiSettings::admin_clients`; the [`Admin`] extractor). Every
//! admin call writes its own `AuditEvent` through `audited`, whether or not
//! it touched a patient: if that write fails the answer is 503.
//!
//! | method | path (under `/admin`) | does |
//! |---|---|---|
//! | GET | `/relationships?patient=N` | a patient's relationships |
//! | POST | `/relationships` `{patient, ods, kind}` | record one (201) |
//! | DELETE | `/relationships/{id}` | remove one |
//! | GET/PUT/DELETE | `/patients/{nhs}/objection` (`PUT {note}`) | read / record / withdraw |
//! | GET | `/alerts?status=open\|all&_count=N&before=SEQ` | alerts, newest first |
//! | POST | `/alerts/{seq}/acknowledge` `{note}` | acknowledge one |
//! | GET | `/FHIR/R4/AuditEvent?patient=&agent=&date=&outcome=&_count=&_cursor=` | searchset Bundle |
//!
//! [`Admin`]: crate::extract::Admin

mod alerts;
mod audit_events;
mod audit_search;
mod objections;
mod relationships;

use domain::NhsNumber;
use domain::issue::{ErrorCode, Issue, IssueType};
use serde::Deserialize;

use crate::error::ApiError;
use crate::table::{Doc, Routes};

/// Largest `_count` for audit searches and alert lists.
const MAX_COUNT: usize = 100;

/// The admin operations, relative to `/admin`.
pub fn routes() -> Routes {
    relationships::routes()
        .merge(objections::routes())
        .merge(alerts::routes())
        .merge(audit_events::routes())
}

fn doc(operation_id: &'static str, summary: &'static str) -> Doc {
    Doc::new(operation_id, summary, "admin").authenticated()
}

fn invalid(parameter: &str, diagnostics: impl Into<String>) -> ApiError {
    ApiError::one(Issue::new(
        ErrorCode::InvalidParameter,
        IssueType::Invalid,
        parameter,
        diagnostics,
    ))
}

/// A bare NHS number or `https://fhir.nhs.uk/Id/nhs-number|N`.
fn nhs_number(parameter: &str, text: &str) -> Result<NhsNumber, ApiError> {
    let value = text
        .strip_prefix(domain::systems::NHS_NUMBER)
        .and_then(|rest| rest.strip_prefix('|'))
        .unwrap_or(text);
    NhsNumber::parse(value).map_err(|e| invalid(parameter, format!("{parameter}: {e}")))
}

/// The query's parameters; any name outside `allowed` is a 400.
fn query_params(raw: Option<&str>, allowed: &[&str]) -> Result<Vec<(String, String)>, ApiError> {
    form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
        .map(|(k, v)| {
            if allowed.contains(&k.as_ref()) {
                Ok((k.into_owned(), v.into_owned()))
            } else {
                Err(invalid(&k, format!("unsupported parameter {k:?}")))
            }
        })
        .collect()
}

fn param<'p>(params: &'p [(String, String)], name: &str) -> Option<&'p str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// `{note}`, the body of an objection or an acknowledgement (optional).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct NoteBody {
    #[serde(default)]
    note: Option<String>,
}

#[cfg(test)]
mod tests;
