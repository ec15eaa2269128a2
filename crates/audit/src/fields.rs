//! The few facts of an event that searches filter on, derived from the event
//! itself in one place. Backends store them in indexed columns beside the
//! hashed JSON; `verify` derives them again from the JSON, so editing an
//! index column (to hide a record from a search) is tampering it detects.

use domain::NhsNumber;
use fhir::AuditEvent;

use crate::event::{AuditFacts, access_of, systems};

/// What an audit search can filter on.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SearchFields {
    /// The patient's NHS number, as an integer.
    pub patient: Option<u64>,
    /// Identifier values of every agent (client id, person id, ODS code,
    /// NHS login account),
    /// sorted and without duplicates.
    pub agents: Vec<String>,
    /// `AuditEvent.outcome`: `0`, `4`, `8` or `12`.
    pub outcome: String,
    /// `AuditEvent.recorded` in Unix milliseconds (0 if unreadable).
    pub recorded_ms: i64,
    /// `self-claimed` or `break-glass` when the event raised an alert.
    pub alert: Option<String>,
}

impl SearchFields {
    /// The fields of the event `facts` render as, straight from the facts
    /// (equal to `SearchFields::of(&facts.to_event(node))`, without building
    /// the event).
    pub fn of_facts(facts: &AuditFacts) -> SearchFields {
        let mut agents: Vec<String> = std::iter::once(&facts.client_id)
            .chain(facts.user.as_ref().map(|u| &u.person_id))
            .chain(facts.organisation.as_ref())
            .chain(facts.login_subject.as_ref())
            .cloned()
            .collect();
        agents.sort_unstable();
        agents.dedup();
        SearchFields {
            patient: facts.patient.map(NhsNumber::as_u64),
            agents,
            outcome: facts.outcome.code().to_owned(),
            recorded_ms: parse_instant_ms(&facts.recorded).unwrap_or(0),
            alert: facts
                .access
                .as_ref()
                .and_then(|a| a.alert_kind())
                .map(str::to_owned),
        }
    }

    /// The fields of `event`.
    pub fn of(event: &AuditEvent) -> SearchFields {
        let patient = event
            .entity
            .iter()
            .filter(|e| {
                e.role.as_ref().is_some_and(|r| {
                    r.system.as_deref() == Some(systems::OBJECT_ROLE)
                        && r.code.as_deref() == Some("1")
                })
            })
            .filter_map(|e| e.what.as_ref()?.identifier.as_ref())
            .filter(|i| i.system.as_deref() == Some(systems::NHS_NUMBER))
            .find_map(|i| NhsNumber::parse(i.value.as_deref()?).ok())
            .map(NhsNumber::as_u64);
        let mut agents: Vec<String> = event
            .agent
            .iter()
            .filter_map(|a| a.who.as_ref()?.identifier.as_ref())
            .filter_map(|i| i.value.clone())
            .collect();
        agents.sort_unstable();
        agents.dedup();
        let alert = access_of(event).and_then(|(basis, _, alert)| alert.then_some(basis));
        SearchFields {
            patient,
            agents,
            outcome: event.outcome.clone().unwrap_or_default(),
            recorded_ms: parse_instant_ms(&event.recorded).unwrap_or(0),
            alert,
        }
    }
}

/// An RFC 3339 instant in Unix milliseconds.
pub fn parse_instant_ms(text: &str) -> Option<i64> {
    let at =
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).ok()
}
