//! "Who looked at my records": the patient's access history
//! (`api::operations::patient_audit::who_looked`), newest first, paged,
//! filtered by date (12 months by default), own views hidden unless asked.
//! A GET form: filters live in the query string (dates only, no patient
//! data).

use std::collections::HashMap;

use api::operations::patient::PatientCaller;
use api::operations::patient_audit::{
    DEFAULT_WINDOW_MS, HistoryQuery, ONE_DAY_MS, date_ms, who_looked,
};
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};

use super::{PatientChrome, html, verified_nhs_number};
use crate::WebState;
use crate::error::WebError;
use crate::pages::{AccessRow, PatientWhoLookedPage};
use crate::viewer::records::human_date;

const PAGE: usize = 20;

pub(super) async fn page(
    State(state): State<WebState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, WebError> {
    let session = state.sessions.load(&headers).await?;
    let caller = PatientCaller::new(verified_nhs_number(&session)?);
    let query: HashMap<String, String> = form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let from = query.get("from").cloned().unwrap_or_default();
    let to = query.get("to").cloned().unwrap_or_default();
    let include_own = query.get("own").is_some_and(|v| v == "yes");
    let now_ms = crate::session::now().saturating_mul(1000);
    let since_ms = date_ms(&from).unwrap_or(now_ms - DEFAULT_WINDOW_MS);
    // "To" includes the whole day.
    let until_ms = date_ms(&to).map(|ms| ms + ONE_DAY_MS);
    let before = query.get("before").and_then(|b| b.parse().ok());
    let history = who_looked(
        &state.api.context(),
        &caller,
        HistoryQuery {
            since_ms: Some(since_ms),
            until_ms,
            count: PAGE,
            before,
            include_own,
        },
    )
    .await?;
    let rows = history
        .entries
        .iter()
        .map(|e| AccessRow {
            when: format!(
                "{}, {}",
                human_date(&e.when),
                e.when.get(11..16).unwrap_or("")
            ),
            organisation: e.organisation.as_deref().map_or_else(
                || "NHS record locator".to_owned(),
                |ods| format!("{} ({ods})", state.organisation_name(ods)),
            ),
            who: e.who.phrase(),
            purpose: e.purpose.describe(),
            looked: e.looked.describe(e.refused),
        })
        .collect();
    let next = history.next_before.map(|b| {
        form_urlencoded::Serializer::new(String::new())
            .append_pair("from", &from)
            .append_pair("to", &to)
            .append_pair("own", if include_own { "yes" } else { "no" })
            .append_pair("before", &b.to_string())
            .finish()
    });
    let page = PatientWhoLookedPage {
        chrome: PatientChrome::new(&state, &session, &headers),
        rows,
        from,
        to,
        include_own,
        next,
    };
    Ok(html(&page)?.into_response())
}
