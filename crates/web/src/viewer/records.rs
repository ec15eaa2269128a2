//! Where the patient's records are: the API's consumer search, as pointers
//! grouped by category then type, emergency care plans first.

use api::operations::{SearchParams, search};
use api::{AppState, Caller};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use domain::NhsNumber;
use domain::access::ReasonCode;
use domain::search::Audience;
use domain::systems::SPINE_ASID;
use serde_json::Value;

use super::access::relationship_page;
use super::caller::caller;
use super::patient::from_path;
use super::{respond, signed_in};
use crate::WebState;
use crate::error::WebError;
use crate::pages::{
    CategoryGroup, Chrome, OpenHow, PatientRef, PointerRow, RecordsPage, TypeGroup, render,
};

const NHS_NUMBER_SYSTEM: &str = "https://fhir.nhs.uk/Id/nhs-number";

/// Types shown first, in this order: what an emergency needs first.
const PRIORITY_TYPES: &[&str] = &[
    "736253002",        // Mental health crisis plan
    "861421000000109",  // End of life care coordination summary
    "1382601000000107", // ReSPECT form
];

/// The API's consumer search for one patient (`api::operations::search`,
/// which writes the one AuditEvent before answering). The only place the
/// viewer searches; returns each visible pointer as stored.
pub(crate) async fn search_pointers(
    api: &AppState,
    caller: &Caller,
    nhs: NhsNumber,
) -> Result<Vec<Value>, api::ApiError> {
    let params = SearchParams(vec![
        (
            "subject:identifier".to_owned(),
            format!("{NHS_NUMBER_SYSTEM}|{nhs}"),
        ),
        (
            "_count".to_owned(),
            api.settings().search_limits.max_count.to_string(),
        ),
    ]);
    let page = search(&api.context(), caller, Audience::Consumer, &params).await?;
    page.entries
        .iter()
        .map(|record| {
            serde_json::from_str(&record.json)
                .map_err(|e| api::ApiError::Internal(format!("stored pointer {}: {e}", record.id)))
        })
        .collect()
}

/// Whether the API refused for lack of a legitimate relationship: the page
/// then asks for a reason instead of failing.
pub(super) fn needs_relationship(error: &api::ApiError) -> bool {
    let summary = error.summary();
    [
        ReasonCode::NoLegitimateRelationship,
        ReasonCode::SelfClaimReasonRequired,
        ReasonCode::BreakGlassReasonRequired,
    ]
    .iter()
    .any(|code| summary.contains(code.as_str()))
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
    let searched = search_pointers(&state.api, &caller, nhs).await;
    session.data.remember(&digits);
    let pointers = match searched {
        Ok(pointers) => pointers,
        Err(e) if needs_relationship(&e) => {
            let page = relationship_page(&state, &session, nhs, Vec::new(), Default::default());
            let html = render(&page)?;
            return respond(&state, session, (StatusCode::FORBIDDEN, html)).await;
        }
        Err(e) => return Err(e.into()),
    };
    let pointers: Vec<&Value> = pointers.iter().collect();
    // Shown so the page explains fewer records; read from the same facts the
    // policy read (the audit record of this view already notes the decision).
    let objection = state
        .api
        .access()
        .facts
        .patient_access(nhs)
        .await
        .map(|a| a.objection)
        .unwrap_or(false);
    let page = RecordsPage {
        chrome: Chrome::new(&state, &session),
        patient: PatientRef::new(nhs),
        total: pointers.len(),
        groups: group(&state, &pointers),
        objection,
        broke_glass: basis.is_some_and(|b| b.kind == crate::session::data::BasisKind::BreakGlass),
    };
    let html = render(&page)?;
    respond(&state, session, html).await
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

/// Pointers grouped by category then type: the category holding the
/// emergency care plans first, those types first within it, then by name;
/// newest first within a type.
fn group(state: &WebState, pointers: &[&Value]) -> Vec<CategoryGroup> {
    let priority = |code: &str| PRIORITY_TYPES.iter().position(|p| *p == code);
    let mut rows: Vec<(&str, &str, &str, &Value)> = pointers
        .iter()
        .map(|p| {
            (
                text(p, &["category", "0", "coding", "0", "display"]),
                text(p, &["type", "coding", "0", "display"]),
                text(p, &["type", "coding", "0", "code"]),
                *p,
            )
        })
        .collect();
    let category_rank = |category: &str, rows: &[(&str, &str, &str, &Value)]| {
        rows.iter()
            .filter(|r| r.0 == category)
            .filter_map(|r| priority(r.2))
            .min()
            .unwrap_or(usize::MAX)
    };
    let ranks: Vec<usize> = rows.iter().map(|r| category_rank(r.0, &rows)).collect();
    let mut keyed: Vec<(usize, &str, usize, &str, &str, &Value)> = rows
        .drain(..)
        .zip(ranks)
        .map(|((cat, name, code, p), rank)| {
            (
                rank,
                cat,
                priority(code).unwrap_or(usize::MAX),
                name,
                text(p, &["date"]),
                p,
            )
        })
        .collect();
    keyed.sort_by(|a, b| {
        (a.0, a.1, a.2, a.3)
            .cmp(&(b.0, b.1, b.2, b.3))
            .then_with(|| b.4.cmp(a.4))
    });
    let mut groups: Vec<CategoryGroup> = Vec::new();
    for (_, category, type_rank, type_name, _, pointer) in keyed {
        if groups.last().is_none_or(|g| g.name != category) {
            groups.push(CategoryGroup {
                name: category.to_owned(),
                types: Vec::new(),
            });
        }
        let Some(current) = groups.last_mut() else {
            continue;
        };
        if current.types.last().is_none_or(|t| t.name != type_name) {
            current.types.push(TypeGroup {
                name: type_name.to_owned(),
                priority: type_rank != usize::MAX,
                pointers: Vec::new(),
            });
        }
        if let Some(types) = current.types.last_mut() {
            types.pointers.push(row(state, pointer));
        }
    }
    groups
}

fn row(state: &WebState, pointer: &Value) -> PointerRow {
    let custodian = text(pointer, &["custodian", "identifier", "value"]).to_owned();
    let attachment = &pointer["content"][0]["attachment"];
    let url = text(attachment, &["url"]);
    let asid = pointer["context"]["related"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| text(r, &["identifier", "system"]) == SPINE_ASID)
        .map(|r| text(r, &["identifier", "value"]).to_owned());
    let open = if url.starts_with("https://") {
        OpenHow::Link(url.to_owned())
    } else if url.starts_with("ssp://") {
        OpenHow::SpineSecureProxy(asid)
    } else {
        OpenHow::Other("Ask the organisation that holds it".to_owned())
    };
    let format = match (
        text(&pointer["content"][0], &["format", "display"]),
        text(attachment, &["contentType"]),
    ) {
        ("", "") => "Not stated".to_owned(),
        (display, "") => display.to_owned(),
        ("", media) => media.to_owned(),
        (display, media) => format!("{display} ({media})"),
    };
    PointerRow {
        custodian_name: state.organisation_name(&custodian),
        custodian,
        date: human_date(text(pointer, &["date"])),
        status: match text(pointer, &["status"]) {
            "current" => "Current".to_owned(),
            "superseded" => "Superseded".to_owned(),
            "entered-in-error" => "Entered in error".to_owned(),
            other => other.to_owned(),
        },
        format,
        open,
    }
}

/// `2026-03-01T10:00:00Z` as `1 March 2026` (NHS content style).
pub(crate) fn human_date(fhir: &str) -> String {
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    let mut parts = fhir.get(..10).unwrap_or("").split('-');
    let (Some(y), Some(m), Some(d)) = (parts.next(), parts.next(), parts.next()) else {
        return if fhir.is_empty() {
            "Not recorded".to_owned()
        } else {
            fhir.to_owned()
        };
    };
    match (m.parse::<usize>(), d.parse::<u32>()) {
        (Ok(m @ 1..=12), Ok(d)) => format!("{d} {} {y}", MONTHS[m - 1]),
        _ => fhir.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::human_date;

    #[test]
    fn dates_read_as_the_nhs_writes_them() {
        assert_eq!(human_date("2026-03-01T10:00:00Z"), "1 March 2026");
        assert_eq!(human_date("2025-12-25"), "25 December 2025");
        assert_eq!(human_date(""), "Not recorded");
    }
}
