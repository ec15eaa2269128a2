//! Query strings of the patient API: only the parameters a route names are
//! accepted (anything else is 400, never silently ignored), and a patient
//! parameter must name the signed-in patient.

use audit::Interaction;
use domain::NhsNumber;
use domain::issue::{ErrorCode, Issue, IssueType};
use domain::systems::NHS_NUMBER;

use crate::error::ApiError;
use crate::operations::Context;
use crate::operations::patient::{PatientCaller, refuse_other_patient};
use crate::operations::patient_audit::{DEFAULT_WINDOW_MS, HistoryQuery, ONE_DAY_MS, date_ms};

/// Entries per page of "who looked" unless `_count` says otherwise.
pub const DEFAULT_COUNT: usize = 20;
pub const MAX_COUNT: usize = 100;

/// A checked query string.
pub struct Query {
    pairs: Vec<(String, String)>,
}

fn bad(code: ErrorCode, parameter: &str, why: impl Into<String>) -> ApiError {
    ApiError::one(Issue::new(code, IssueType::Invalid, parameter, why))
}

impl Query {
    /// `raw` with every parameter in `allowed` (or `_format`, which content
    /// negotiation reads).
    pub fn parse(raw: Option<&str>, allowed: &[&str]) -> Result<Query, ApiError> {
        let pairs: Vec<(String, String)> =
            form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
        let unknown: Vec<Issue> = pairs
            .iter()
            .filter(|(k, _)| k != "_format" && !allowed.contains(&k.as_str()))
            .map(|(k, _)| {
                Issue::new(
                    ErrorCode::InvalidParameter,
                    IssueType::NotSupported,
                    k.as_str(),
                    format!(
                        "{k} is not supported here; supported: {}",
                        allowed.join(", ")
                    ),
                )
            })
            .collect();
        if !unknown.is_empty() {
            return Err(ApiError::Rejected(unknown));
        }
        Ok(Query { pairs })
    }

    fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> {
        self.pairs
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn one<'a>(&'a self, name: &'a str) -> Result<Option<&'a str>, ApiError> {
        let mut values = self.all(name);
        let first = values.next();
        if values.next().is_some() {
            return Err(bad(
                ErrorCode::InvalidParameter,
                name,
                format!("{name} may be given once"),
            ));
        }
        Ok(first)
    }

    /// `base` with this query, `_cursor` replaced by `cursor`.
    pub fn url(&self, base: &str, cursor: Option<&str>) -> String {
        let mut form = form_urlencoded::Serializer::new(String::new());
        for (k, v) in self.pairs.iter().filter(|(k, _)| k != "_cursor") {
            form.append_pair(k, v);
        }
        if let Some(cursor) = cursor {
            form.append_pair("_cursor", cursor);
        }
        match form.finish() {
            query if query.is_empty() => base.to_owned(),
            query => format!("{base}?{query}"),
        }
    }

    /// "Who looked" as asked: `date` (`ge`, `gt`, `le`, `lt` or `eq` and a
    /// `YYYY-MM-DD` day; from 12 months ago by default), `_count` (1-100),
    /// `_include-own` (`true` lists the patient's own views) and `_cursor`.
    pub fn history(&self, now_ms: i64) -> Result<HistoryQuery, ApiError> {
        let mut since_ms = None;
        let mut until_ms = None;
        for value in self.all("date") {
            let (prefix, day) = match value.get(..2) {
                Some(p @ ("ge" | "gt" | "le" | "lt" | "eq")) => (p, &value[2..]),
                _ => ("eq", value),
            };
            let start = date_ms(day).ok_or_else(|| {
                bad(
                    ErrorCode::InvalidParameter,
                    "date",
                    "date must be a day (YYYY-MM-DD), optionally prefixed ge, gt, le, lt or eq",
                )
            })?;
            match prefix {
                "ge" => since_ms = Some(start),
                "gt" => since_ms = Some(start + ONE_DAY_MS),
                "le" => until_ms = Some(start + ONE_DAY_MS),
                "lt" => until_ms = Some(start),
                _ => {
                    since_ms = Some(start);
                    until_ms = Some(start + ONE_DAY_MS);
                }
            }
        }
        let count = match self.one("_count")? {
            None => DEFAULT_COUNT,
            Some(text) => text
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=MAX_COUNT).contains(n))
                .ok_or_else(|| {
                    bad(
                        ErrorCode::InvalidParameter,
                        "_count",
                        format!("_count must be a whole number from 1 to {MAX_COUNT}"),
                    )
                })?,
        };
        let include_own = match self.one("_include-own")? {
            None | Some("false") => false,
            Some("true") => true,
            Some(_) => {
                return Err(bad(
                    ErrorCode::InvalidParameter,
                    "_include-own",
                    "_include-own must be true or false",
                ));
            }
        };
        let before = self
            .one("_cursor")?
            .map(|c| {
                c.parse::<u64>().map_err(|_| {
                    bad(
                        ErrorCode::InvalidParameter,
                        "_cursor",
                        "_cursor must come from a next link",
                    )
                })
            })
            .transpose()?;
        Ok(HistoryQuery {
            since_ms: Some(since_ms.unwrap_or(now_ms - DEFAULT_WINDOW_MS)),
            until_ms,
            count,
            before,
            include_own,
        })
    }
}

/// Each of `names` given must be the caller's NHS number (as
/// `https://fhir.nhs.uk/Id/nhs-number|<number>` or the bare number):
/// malformed is 400; another patient's number is 404, audited as a failure.
pub async fn check_subject(
    ctx: &Context<'_>,
    caller: &PatientCaller,
    query: &Query,
    names: &[&str],
    interaction: Interaction,
) -> Result<(), ApiError> {
    for name in names {
        for value in query.all(name) {
            let (system, number) = value
                .split_once('|')
                .map_or((None, value), |(s, n)| (Some(s), n));
            if system.is_some_and(|s| s != NHS_NUMBER) {
                return Err(bad(
                    ErrorCode::InvalidIdentifierSystem,
                    name,
                    format!("{name} must use the system {NHS_NUMBER}"),
                ));
            }
            let asked = NhsNumber::parse(number).map_err(|_| {
                bad(
                    ErrorCode::InvalidNhsNumber,
                    name,
                    format!("{name} is not a valid NHS number"),
                )
            })?;
            if asked != caller.nhs_number {
                return Err(refuse_other_patient(ctx, caller, interaction, number).await);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_parameters_are_refused_by_name() {
        let Err(ApiError::Rejected(issues)) =
            Query::parse(Some("date=ge2026-01-01&colour=red"), &["date"])
        else {
            panic!("accepted an unknown parameter");
        };
        assert_eq!(issues[0].expression.as_deref(), Some("colour"));
    }

    #[test]
    fn history_reads_dates_count_and_cursor() {
        let query = Query::parse(
            Some("date=ge2026-03-01&date=le2026-03-01&_count=5&_include-own=true&_cursor=42"),
            &["date", "_count", "_include-own", "_cursor"],
        )
        .unwrap();
        let history = query.history(0).unwrap();
        assert_eq!(history.since_ms, Some(1_772_323_200_000));
        assert_eq!(history.until_ms, Some(1_772_323_200_000 + ONE_DAY_MS));
        assert_eq!(
            (history.count, history.before, history.include_own),
            (5, Some(42), true)
        );
        assert_eq!(
            query.url("http://x/AuditEvent", Some("7")),
            "http://x/AuditEvent?date=ge2026-03-01&date=le2026-03-01&_count=5&_include-own=true&_cursor=7"
        );
        let defaults = Query::parse(None, &[])
            .unwrap()
            .history(400 * ONE_DAY_MS)
            .unwrap();
        assert_eq!(defaults.since_ms, Some(35 * ONE_DAY_MS));
        assert_eq!(defaults.count, DEFAULT_COUNT);
        for bad in [
            "_count=0",
            "_count=101",
            "_include-own=yes",
            "date=2026-02-30x",
            "_cursor=abc",
        ] {
            let query =
                Query::parse(Some(bad), &["date", "_count", "_include-own", "_cursor"]).unwrap();
            assert!(query.history(0).is_err(), "{bad} accepted");
        }
    }
}
