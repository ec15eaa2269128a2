//! "Who looked at my records": the patient's access history
//! (`api::operations::patient_audit::who_looked`), newest first, paged,
//! filtered by date (12 months by default), own views hidden unless asked.
//! A GET form: filters live in the query string (dates only, no patient
//! data).

use std::collections::HashMap;

use api::operations::patient::PatientCaller;
use api::operations::patient_audit::{HistoryQuery, Looked, Purpose, who_looked};
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};

use super::{PatientChrome, html, verified_nhs_number};
use crate::WebState;
use crate::error::WebError;
use crate::pages::{AccessRow, PatientWhoLookedPage};
use crate::viewer::records::human_date;

const PAGE: usize = 20;
const DAY_MS: i64 = 86_400_000;

/// `YYYY-MM-DD` as Unix milliseconds at 00:00 UTC.
fn date_ms(text: &str) -> Option<i64> {
    let mut parts = text.trim().splitn(3, '-');
    let y: i64 = parts.next()?.parse().ok()?;
    let m: i64 = parts.next()?.parse().ok()?;
    let d: i64 = parts.next()?.parse().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || !(1970..=9999).contains(&y) {
        return None;
    }
    // Days from civil (H. Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some((era * 146_097 + doe - 719_468) * DAY_MS)
}

fn purpose_text(purpose: &Purpose) -> String {
    match purpose {
        Purpose::DirectCare => "Your care".to_owned(),
        Purpose::Emergency { category: Some(c) } => {
            format!("Emergency access (reason given: {c})")
        }
        Purpose::Emergency { category: None } => "Emergency access".to_owned(),
        Purpose::PatientRequest => "You looked".to_owned(),
        Purpose::Administration => "Managing who can see your records".to_owned(),
    }
}

fn looked_text(looked: &Looked, refused: bool) -> String {
    if refused {
        return "Tried to look, but was not shown anything".to_owned();
    }
    match looked {
        Looked::Records { shown: 0 } => "Searched, no records shown".to_owned(),
        Looked::Records { shown: 1 } => "Where your records are (1 record)".to_owned(),
        Looked::Records { shown } => format!("Where your records are ({shown} records)"),
        Looked::OneRecord => "Opened one of your records".to_owned(),
        Looked::AccessHistory => "Who looked at your records".to_owned(),
        Looked::SharingChoice { recorded: true } => {
            "Change of sharing choice: stopped sharing".to_owned()
        }
        Looked::SharingChoice { recorded: false } => {
            "Change of sharing choice: started sharing again".to_owned()
        }
    }
}

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
    let since_ms = date_ms(&from).unwrap_or(now_ms - 365 * DAY_MS);
    // "To" includes the whole day.
    let until_ms = date_ms(&to).map(|ms| ms + DAY_MS);
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
            who: match e.who {
                "you" => "You",
                "staff" => "A member of staff",
                _ => "A computer system",
            },
            purpose: purpose_text(&e.purpose),
            looked: looked_text(&e.looked, e.refused),
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

#[cfg(test)]
mod tests {
    use super::date_ms;

    #[test]
    fn dates_become_utc_midnight_milliseconds() {
        assert_eq!(date_ms("1970-01-01"), Some(0));
        assert_eq!(date_ms("2026-03-01"), Some(1_772_323_200_000));
        assert_eq!(date_ms("2026-13-01"), None);
        assert_eq!(date_ms("yesterday"), None);
    }
}
