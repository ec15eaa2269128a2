//! `AuditEvent` search parameters and the searchset Bundle they produce.
//! Unknown parameters are a 400, never silently ignored.

use audit::{AuditCursor, AuditOutcome, AuditPage, AuditQuery};
use serde_json::{Value, json};

use super::audit_events::next_cursor;
use super::{MAX_COUNT, invalid, nhs_number};
use crate::error::ApiError;

const DEFAULT_COUNT: usize = 20;
const DAY_MS: i64 = 86_400_000;

/// Parses `patient`, `agent`, `date` (repeatable, with `ge`/`gt`/`le`/`lt`/`eq`
/// prefixes, a day or an instant), `outcome`, `_count` and `_cursor`.
pub(super) fn parse(raw: &str) -> Result<AuditQuery, ApiError> {
    let mut query = AuditQuery {
        count: DEFAULT_COUNT,
        ..AuditQuery::default()
    };
    let mut cursor = None;
    for (name, value) in form_urlencoded::parse(raw.as_bytes()) {
        match name.as_ref() {
            "patient" => query.patient = Some(nhs_number("patient", &value)?),
            "agent" => query.agent = Some(value.into_owned()),
            "date" => apply_date(&mut query, &value)?,
            "outcome" => {
                query.outcome = Some(
                    AuditOutcome::parse(&value)
                        .ok_or_else(|| invalid("outcome", "outcome must be 0, 4 or 8"))?,
                );
            }
            "_count" => {
                let count: usize = value
                    .parse()
                    .map_err(|_| invalid("_count", "_count must be a positive integer"))?;
                query.count = count.clamp(1, MAX_COUNT);
            }
            "_cursor" => {
                cursor =
                    Some(AuditCursor::decode(&value).ok_or_else(|| {
                        invalid("_cursor", "_cursor is not one this server issued")
                    })?);
            }
            other => {
                return Err(invalid(
                    other,
                    format!("unsupported AuditEvent search parameter {other:?}"),
                ));
            }
        }
    }
    if let Some(cursor) = cursor {
        if cursor.fingerprint != query.fingerprint() {
            return Err(invalid("_cursor", "_cursor belongs to a different search"));
        }
        query.before_seq = Some(cursor.before_seq);
    }
    Ok(query)
}

/// The period a date value names: a whole UTC day, or one millisecond.
fn period(value: &str) -> Option<(i64, i64)> {
    if value.len() == 10 {
        let start = audit::fields::parse_instant_ms(&format!("{value}T00:00:00Z"))?;
        Some((start, start + DAY_MS))
    } else {
        let at = audit::fields::parse_instant_ms(value)?;
        Some((at, at + 1))
    }
}

fn apply_date(query: &mut AuditQuery, text: &str) -> Result<(), ApiError> {
    let (prefix, value) = match text.get(..2) {
        Some(p @ ("ge" | "gt" | "le" | "lt" | "eq")) => (p, &text[2..]),
        _ => ("eq", text),
    };
    let (start, end) = period(value)
        .ok_or_else(|| invalid("date", "date must be YYYY-MM-DD or an RFC 3339 instant"))?;
    let since = |q: &mut AuditQuery, t: i64| q.since_ms = Some(q.since_ms.map_or(t, |s| s.max(t)));
    let until = |q: &mut AuditQuery, t: i64| q.until_ms = Some(q.until_ms.map_or(t, |u| u.min(t)));
    match prefix {
        "ge" => since(query, start),
        "gt" => since(query, end),
        "lt" => until(query, start),
        "le" => until(query, end),
        _ => {
            since(query, start);
            until(query, end);
        }
    }
    Ok(())
}

/// A searchset Bundle of the page's AuditEvents, each given its seq as id.
/// No `total`: counting every match would cost a full scan.
pub(super) fn bundle(base: &str, raw: &str, query: &AuditQuery, page: &AuditPage) -> String {
    let link = |cursor: Option<String>| {
        let mut form = form_urlencoded::Serializer::new(String::new());
        for (k, v) in form_urlencoded::parse(raw.as_bytes()).filter(|(k, _)| k != "_cursor") {
            form.append_pair(&k, &v);
        }
        if let Some(c) = cursor {
            form.append_pair("_cursor", &c);
        }
        format!("{base}?{}", form.finish())
    };
    let mut links = vec![json!({ "relation": "self", "url": link(None) })];
    if let Some(next) = page.next_before_seq {
        links.push(json!({ "relation": "next", "url": link(Some(next_cursor(query, next))) }));
    }
    let entries: Vec<Value> = page
        .records
        .iter()
        .map(|record| {
            let mut resource: Value =
                serde_json::from_str(&record.event_json).unwrap_or(Value::Null);
            if let Some(object) = resource.as_object_mut() {
                object.insert("id".into(), Value::String(record.seq.to_string()));
            }
            json!({
                "fullUrl": format!("{base}/{}", record.seq),
                "resource": resource,
                "search": { "mode": "match" },
            })
        })
        .collect();
    json!({ "resourceType": "Bundle", "type": "searchset", "link": links, "entry": entries })
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_parameter() {
        let q = parse("patient=https://fhir.nhs.uk/Id/nhs-number%7C9990000018&agent=RX1&date=ge2026-03-01&date=lt2026-03-02T12:00:00Z&outcome=4&_count=500").unwrap();
        assert_eq!(q.patient.unwrap().as_u64(), 9_990_000_018);
        assert_eq!(q.agent.as_deref(), Some("RX1"));
        assert_eq!(
            q.since_ms,
            audit::fields::parse_instant_ms("2026-03-01T00:00:00Z")
        );
        assert_eq!(
            q.until_ms,
            audit::fields::parse_instant_ms("2026-03-02T12:00:00Z")
        );
        assert_eq!(q.outcome, Some(AuditOutcome::MinorFailure));
        assert_eq!(q.count, MAX_COUNT);
        let day = parse("date=2026-03-01").unwrap();
        assert_eq!(day.until_ms.unwrap() - day.since_ms.unwrap(), DAY_MS);
    }

    #[test]
    fn refuses_what_it_does_not_support() {
        for bad in [
            "subject=1",
            "patient=123",
            "date=yesterday",
            "outcome=2",
            "_count=x",
            "_cursor=abc",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        let q = parse("agent=a").unwrap();
        let cursor = next_cursor(&q, 10);
        assert_eq!(
            parse(&format!("agent=a&_cursor={cursor}"))
                .unwrap()
                .before_seq,
            Some(10)
        );
        assert!(parse(&format!("agent=b&_cursor={cursor}")).is_err());
    }
}
