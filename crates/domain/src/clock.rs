//! Timestamps in the FHIR `instant` form (UTC, seconds precision).

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Now as a FHIR instant, e.g. `2026-11-25T16:32:26Z`.
pub fn now_instant() -> String {
    let now = OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    now.format(&Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_owned())
}

/// True when `text` is a FHIR `dateTime` with a time zone (RFC 3339).
pub fn is_date_time(text: &str) -> bool {
    OffsetDateTime::parse(text, &Rfc3339).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_is_a_date_time() {
        assert!(is_date_time(&now_instant()));
        assert!(!is_date_time("2024-13-01"));
        assert!(is_date_time("2022-12-21T10:45:41+11:00"));
    }
}
