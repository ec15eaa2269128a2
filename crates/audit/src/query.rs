//! Audit searches (by patient, agent, date and outcome, newest first, paged
//! by sequence) and privacy-officer alerts.

use domain::NhsNumber;
use domain::search::{decode_position, encode_position};
use sha2::{Digest, Sha256};

use crate::chain::AuditRecord;
use crate::event::AuditOutcome;
use crate::fields::SearchFields;

/// An audit search. Filters AND together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditQuery {
    /// The patient entity.
    pub patient: Option<NhsNumber>,
    /// Any agent's identifier value: a client id, a person id or an ODS code.
    pub agent: Option<String>,
    /// `recorded` at or after, Unix milliseconds.
    pub since_ms: Option<i64>,
    /// `recorded` before, Unix milliseconds.
    pub until_ms: Option<i64>,
    /// `AuditEvent.outcome`.
    pub outcome: Option<AuditOutcome>,
    /// Records per page (at least 1).
    pub count: usize,
    /// Only records older than this (from the previous page's cursor).
    pub before_seq: Option<u64>,
}

impl Default for AuditQuery {
    fn default() -> Self {
        AuditQuery {
            patient: None,
            agent: None,
            since_ms: None,
            until_ms: None,
            outcome: None,
            count: 50,
            before_seq: None,
        }
    }
}

impl AuditQuery {
    /// Binds a cursor to the filters (not to the page size or position).
    pub fn fingerprint(&self) -> u64 {
        let mut h = Sha256::new();
        h.update(
            self.patient
                .map_or(u64::MAX, NhsNumber::as_u64)
                .to_be_bytes(),
        );
        h.update(self.agent.as_deref().unwrap_or("\u{0}").as_bytes());
        h.update([0]);
        h.update(self.since_ms.unwrap_or(i64::MIN).to_be_bytes());
        h.update(self.until_ms.unwrap_or(i64::MAX).to_be_bytes());
        h.update(self.outcome.map_or("-", AuditOutcome::code).as_bytes());
        let digest = h.finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        u64::from_be_bytes(first)
    }

    /// Whether a record with these fields matches (the memory backend's
    /// filter; SQL backends express the same in their WHERE clause).
    pub(crate) fn matches(&self, seq: u64, fields: &SearchFields) -> bool {
        self.before_seq.is_none_or(|b| seq < b)
            && self
                .patient
                .is_none_or(|p| fields.patient == Some(p.as_u64()))
            && self
                .agent
                .as_ref()
                .is_none_or(|a| fields.agents.iter().any(|x| x == a))
            && self.since_ms.is_none_or(|s| fields.recorded_ms >= s)
            && self.until_ms.is_none_or(|u| fields.recorded_ms < u)
            && self.outcome.is_none_or(|o| fields.outcome == o.code())
    }
}

/// One page of records, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditPage {
    /// Newest first.
    pub records: Vec<AuditRecord>,
    /// The `before_seq` of the next page, if there is one.
    pub next_before_seq: Option<u64>,
}

/// An opaque page cursor bound to the query's filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditCursor {
    /// The next page holds records below this seq.
    pub before_seq: u64,
    /// [`AuditQuery::fingerprint`] of the query that made it.
    pub fingerprint: u64,
}

impl AuditCursor {
    /// Opaque base64url text.
    pub fn encode(&self) -> String {
        encode_position("a1", self.before_seq, self.fingerprint)
    }

    /// `None` for anything this server did not issue.
    pub fn decode(text: &str) -> Option<AuditCursor> {
        let (before_seq, fingerprint) = decode_position("a1", text)?;
        Some(AuditCursor {
            before_seq,
            fingerprint,
        })
    }
}

/// Who reviewed an alert, when, and what they noted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acknowledgement {
    /// The privacy officer (client id or person id).
    pub by: String,
    /// RFC 3339.
    pub at: String,
    /// What they concluded.
    pub note: Option<String>,
}

/// A privacy-officer alert: an audit record whose access decision raised one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    /// The audit record that raised it.
    pub record: AuditRecord,
    /// `self-claimed` or `break-glass`.
    pub kind: String,
    /// Set once reviewed.
    pub acknowledgement: Option<Acknowledgement>,
}

/// Which alerts to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlertQuery {
    /// Only alerts not yet acknowledged.
    pub unacknowledged_only: bool,
    /// At most this many (at least 1).
    pub count: usize,
    /// Only alerts older than this seq.
    pub before_seq: Option<u64>,
}

impl Default for AlertQuery {
    fn default() -> Self {
        AlertQuery {
            unacknowledged_only: true,
            count: 50,
            before_seq: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_junk() {
        let c = AuditCursor {
            before_seq: 99,
            fingerprint: 7,
        };
        assert_eq!(AuditCursor::decode(&c.encode()), Some(c));
        assert_eq!(AuditCursor::decode("djEuMS4w"), None);
        assert_eq!(AuditCursor::decode(""), None);
    }

    #[test]
    fn fingerprint_ignores_position() {
        let a = AuditQuery {
            agent: Some("x".into()),
            ..AuditQuery::default()
        };
        let b = AuditQuery {
            count: 5,
            before_seq: Some(3),
            ..a.clone()
        };
        assert_eq!(a.fingerprint(), b.fingerprint());
        let c = AuditQuery {
            agent: Some("y".into()),
            ..a.clone()
        };
        assert_ne!(a.fingerprint(), c.fingerprint());
    }
}
