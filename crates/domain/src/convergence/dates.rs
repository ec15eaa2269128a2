//! FHIR `date` and `dateTime` values as spans of Unix seconds, and the one
//! clinical date of each resource type that convergence and date bounds use.
//!
//! A partial date denotes every second it could mean: `2015` is the whole of
//! 2015, `2015-03` the whole of March. Comparisons use those ranges, so a
//! value is never treated as more precise than it was written.

use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::{Date, Month, OffsetDateTime};

/// A time span in Unix seconds. `end` is `None` when the span is still open
/// (an ongoing medication, an encounter in progress).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start: i64,
    pub end: Option<i64>,
}

impl Span {
    /// True when the two spans share at least one second.
    pub fn overlaps(&self, other: &Span) -> bool {
        let a_end = self.end.unwrap_or(i64::MAX);
        let b_end = other.end.unwrap_or(i64::MAX);
        self.start <= b_end && other.start <= a_end
    }
}

/// The first and last second a FHIR `date`, `dateTime` or `instant` can
/// denote, or `None` if `text` is none of them. A time needs a zone (FHIR R4).
pub fn parse_range(text: &str) -> Option<(i64, i64)> {
    let bytes = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| -> Option<i32> {
        let part = text.get(range)?;
        part.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let start_of = |date: Date| date.midnight().assume_utc().unix_timestamp();
    match bytes.len() {
        4 => {
            let year = digits(0..4)?;
            let first = Date::from_calendar_date(year, Month::January, 1).ok()?;
            let next = Date::from_calendar_date(year + 1, Month::January, 1).ok()?;
            Some((start_of(first), start_of(next) - 1))
        }
        7 if bytes[4] == b'-' => {
            let year = digits(0..4)?;
            let month = Month::try_from(u8::try_from(digits(5..7)?).ok()?).ok()?;
            let first = Date::from_calendar_date(year, month, 1).ok()?;
            let next = if month == Month::December {
                Date::from_calendar_date(year + 1, Month::January, 1).ok()?
            } else {
                Date::from_calendar_date(year, month.next(), 1).ok()?
            };
            Some((start_of(first), start_of(next) - 1))
        }
        10 if bytes[4] == b'-' && bytes[7] == b'-' => {
            let year = digits(0..4)?;
            let month = Month::try_from(u8::try_from(digits(5..7)?).ok()?).ok()?;
            let day = u8::try_from(digits(8..10)?).ok()?;
            let date = Date::from_calendar_date(year, month, day).ok()?;
            Some((start_of(date), start_of(date) + 86_399))
        }
        _ => {
            let at = OffsetDateTime::parse(text, &Rfc3339).ok()?.unix_timestamp();
            Some((at, at))
        }
    }
}

fn point(resource: &Value, element: &str) -> Option<Span> {
    let (start, end) = parse_range(resource.get(element)?.as_str()?)?;
    Some(Span {
        start,
        end: Some(end),
    })
}

fn period(period: Option<&Value>) -> Option<Span> {
    let period = period?;
    let start = period
        .get("start")
        .and_then(Value::as_str)
        .and_then(parse_range);
    let end = period
        .get("end")
        .and_then(Value::as_str)
        .and_then(parse_range);
    match (start, end) {
        (None, None) => None,
        (start, end) => Some(Span {
            start: start.map_or(i64::MIN, |s| s.0),
            end: end.map(|e| e.1),
        }),
    }
}

/// The clinical date of a resource, by type (see docs/federation.md):
///
/// | type | date |
/// |---|---|
/// | AllergyIntolerance, Condition | `onsetDateTime`, `onsetPeriod`, else `recordedDate` |
/// | MedicationStatement | `effectivePeriod`, `effectiveDateTime`, else `dateAsserted` |
/// | MedicationRequest | `dispenseRequest.validityPeriod`, else `authoredOn` |
/// | Immunization | `occurrenceDateTime`, else `recorded` |
/// | Encounter | `period` |
///
/// Other types, and resources with none of these, have no clinical date.
pub fn clinical_span(resource: &Value) -> Option<Span> {
    match resource.get("resourceType")?.as_str()? {
        "AllergyIntolerance" | "Condition" => point(resource, "onsetDateTime")
            .or_else(|| period(resource.get("onsetPeriod")))
            .or_else(|| point(resource, "recordedDate")),
        "MedicationStatement" => period(resource.get("effectivePeriod"))
            .or_else(|| point(resource, "effectiveDateTime"))
            .or_else(|| point(resource, "dateAsserted")),
        "MedicationRequest" => period(
            resource
                .get("dispenseRequest")
                .and_then(|d| d.get("validityPeriod")),
        )
        .or_else(|| point(resource, "authoredOn")),
        "Immunization" => {
            point(resource, "occurrenceDateTime").or_else(|| point(resource, "recorded"))
        }
        "Encounter" => period(resource.get("period")),
        _ => None,
    }
}

/// The calendar day an immunisation was given (`occurrenceDateTime` as
/// written, day precision or finer), or `None`.
pub fn occurrence_day(resource: &Value) -> Option<&str> {
    let text = resource.get("occurrenceDateTime")?.as_str()?;
    parse_range(text)?;
    text.get(..10).filter(|day| day.len() == 10)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn partial_dates_cover_their_whole_precision() {
        let cases: &[(&str, Option<(i64, i64)>)] = &[
            ("2020", Some((1_577_836_800, 1_609_459_199))),
            ("2020-02", Some((1_580_515_200, 1_583_020_799))),
            ("2020-12", Some((1_606_780_800, 1_609_459_199))),
            ("2020-02-29", Some((1_582_934_400, 1_583_020_799))),
            ("2020-02-30", None),
            ("2020-13", None),
            ("2020-03-01T10:00:00Z", Some((1_583_056_800, 1_583_056_800))),
            (
                "2020-03-01T10:00:00+01:00",
                Some((1_583_053_200, 1_583_053_200)),
            ),
            ("2020-03-01T10:00:00", None),
            ("20x0", None),
            ("", None),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_range(text), *expected, "{text}");
        }
    }

    #[test]
    fn clinical_date_follows_the_table() {
        let day = |d: &str| parse_range(d).unwrap();
        let cases = [
            (
                json!({"resourceType": "Condition", "onsetDateTime": "2015-03-01", "recordedDate": "2016-01-01"}),
                Some(Span {
                    start: day("2015-03-01").0,
                    end: Some(day("2015-03-01").1),
                }),
            ),
            (
                json!({"resourceType": "Condition", "recordedDate": "2016-01-01"}),
                Some(Span {
                    start: day("2016-01-01").0,
                    end: Some(day("2016-01-01").1),
                }),
            ),
            (
                json!({"resourceType": "MedicationStatement", "effectivePeriod": {"start": "2020-01-01"}}),
                Some(Span {
                    start: day("2020-01-01").0,
                    end: None,
                }),
            ),
            (
                json!({"resourceType": "MedicationRequest", "dispenseRequest": {"validityPeriod": {"end": "2020-01-01"}}}),
                Some(Span {
                    start: i64::MIN,
                    end: Some(day("2020-01-01").1),
                }),
            ),
            (json!({"resourceType": "Encounter"}), None),
            (
                json!({"resourceType": "Observation", "effectiveDateTime": "2020"}),
                None,
            ),
        ];
        for (resource, expected) in cases {
            assert_eq!(clinical_span(&resource), expected, "{resource}");
        }
    }

    #[test]
    fn open_spans_overlap_everything_after_their_start() {
        let open = Span {
            start: 100,
            end: None,
        };
        let before = Span {
            start: 0,
            end: Some(99),
        };
        let after = Span {
            start: 1_000,
            end: Some(2_000),
        };
        assert!(!open.overlaps(&before));
        assert!(open.overlaps(&after));
        assert!(after.overlaps(&open));
    }
}
