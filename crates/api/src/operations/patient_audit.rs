//! "Who looked at my records": a projection of the audit trail for the
//! patient's own NHS number. What a patient is told is deliberately
//! narrow: when, which organisation (ODS code), the kind of person (a
//! member of staff, or a computer system), why (direct care, emergency
//! access with its reason *category* only, the patient's own request), and
//! what was looked at. Staff names and ids, user ids, client ids, request
//! ids, IP addresses and free-text reasons never leave this module: the
//! projection is built field by field from the stored event, never copied.

use audit::AuditQuery;
use serde::Serialize;
use serde_json::Value;

use super::Context;
use super::patient::{PATIENT_CLIENT_ID, PATIENT_REQUESTED, PatientCaller};
use crate::audit_trail::{AuditDraft, audited};
use crate::error::ApiError;

/// The reason categories a self-claim or break-glass may give (the
/// viewer offers exactly these). Only a category from this list is shown
/// to the patient: text before a colon from any other caller could name
/// a person.
pub const REASON_CATEGORIES: &[&str] = &[
    "Patient is in my care now",
    "Emergency treatment",
    "Referral to me not yet recorded",
    "Patient cannot consent and needs urgent care",
    "Other",
];

/// Why the records were looked at, as a patient is told.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Purpose {
    /// `TREAT`: the patient's care.
    DirectCare,
    /// Break-glass (`ETREAT` or a break-glass basis): the reason's category
    /// from [`REASON_CATEGORIES`], never its free text.
    Emergency { category: Option<String> },
    /// The patient themselves (`PATRQT`).
    PatientRequest,
    /// Administration of access facts (objections, relationships).
    Administration,
}

/// What was done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Looked {
    /// Searched: this many records were shown.
    Records { shown: usize },
    /// Opened one record.
    OneRecord,
    /// Recorded or withdrew a choice about sharing.
    SharingChoice { recorded: bool },
    /// The patient read this history.
    AccessHistory,
}

/// One line of "who looked at my records".
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccessEntry {
    /// RFC 3339.
    pub when: String,
    /// ODS code of the organisation, when one acted.
    pub organisation: Option<String>,
    /// "staff", "system" or "you".
    pub who: &'static str,
    pub purpose: Purpose,
    pub looked: Looked,
    /// Refused or failed (nothing was shown).
    pub refused: bool,
}

/// One page, newest first.
#[derive(Debug, Clone, Serialize)]
pub struct AccessHistory {
    pub entries: Vec<AccessEntry>,
    /// `before` for the next page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_before: Option<u64>,
}

/// What the patient asked for.
#[derive(Debug, Clone, Copy)]
pub struct HistoryQuery {
    /// Unix milliseconds: from (default: 12 months ago, set by the caller).
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    pub count: usize,
    pub before: Option<u64>,
    /// Also list the patient's own views.
    pub include_own: bool,
}

fn strings<'a>(value: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    value
        .get(key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

fn who_system(agent: &Value) -> Option<&str> {
    agent
        .pointer("/who/identifier/system")
        .and_then(Value::as_str)
}

/// The projection of one stored event; `None` for events that are not
/// about access to this patient's records.
pub fn project(event: &Value) -> Option<AccessEntry> {
    let when = event.get("recorded")?.as_str()?.to_owned();
    let agents: Vec<&Value> = strings(event, "agent").collect();
    let organisation = agents
        .iter()
        .find(|a| who_system(a) == Some(audit::event::systems::ODS))
        .and_then(|a| a.pointer("/who/identifier/value"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let client = agents
        .iter()
        .find(|a| who_system(a) == Some(audit::event::systems::CLIENT_ID))
        .and_then(|a| a.pointer("/who/identifier/value"))
        .and_then(Value::as_str);
    let has_user = agents
        .iter()
        .any(|a| who_system(a) == Some(audit::event::systems::USER_ID));
    let purpose_code = strings(event, "purposeOfEvent")
        .filter_map(|p| p.pointer("/coding/0/code"))
        .filter_map(Value::as_str)
        .next();
    let access = strings(event, "extension").find(|e| {
        e.get("url").and_then(Value::as_str) == Some(audit::event::systems::ACCESS_EXTENSION)
    });
    let part = |name: &str| {
        access
            .into_iter()
            .flat_map(|a| strings(a, "extension"))
            .find(|p| p.get("url").and_then(Value::as_str) == Some(name))
    };
    let basis = part("basis")
        .and_then(|p| p.get("valueCode"))
        .and_then(Value::as_str);
    // AuditEvent.outcome "0" is success; anything else showed nothing.
    let refused = event.get("outcome").and_then(Value::as_str) != Some("0");
    let own = client == Some(PATIENT_CLIENT_ID) || purpose_code == Some(PATIENT_REQUESTED);
    let purpose = if own {
        Purpose::PatientRequest
    } else if basis == Some("break-glass") || purpose_code == Some("ETREAT") {
        // "category: free text": only the category is the patient's to see.
        let category = part("reason")
            .and_then(|p| p.get("valueString"))
            .and_then(Value::as_str)
            .and_then(|r| r.split(':').next())
            .map(str::trim)
            .filter(|c| REASON_CATEGORIES.contains(c))
            .map(str::to_owned);
        Purpose::Emergency { category }
    } else if purpose_code.is_none() && organisation.is_none() {
        Purpose::Administration
    } else {
        Purpose::DirectCare
    };
    let shown = strings(event, "entity")
        .filter(|e| e.pointer("/role/code").and_then(Value::as_str) == Some("4"))
        .count();
    let has_query = strings(event, "entity")
        .any(|e| e.pointer("/role/code").and_then(Value::as_str) == Some("24"));
    let looked = match event.get("action").and_then(Value::as_str) {
        // `who_looked` records no query: its own event is a history read.
        Some("E") if own && shown == 0 && !has_query => Looked::AccessHistory,
        Some("R") => Looked::OneRecord,
        Some("U") if shown == 0 => Looked::SharingChoice { recorded: true },
        Some("D") if shown == 0 => Looked::SharingChoice { recorded: false },
        _ => Looked::Records { shown },
    };
    let looked = match (&purpose, looked) {
        // The patient's own read of their sharing choice is not a change.
        (Purpose::PatientRequest | Purpose::Administration, Looked::OneRecord) if shown == 0 => {
            return None;
        }
        (_, looked) => looked,
    };
    Some(AccessEntry {
        when,
        organisation,
        who: if own {
            "you"
        } else if has_user {
            "staff"
        } else {
            "system"
        },
        purpose,
        looked,
        refused,
    })
}

/// The patient's access history; audited as a search of their own trail.
pub async fn who_looked(
    ctx: &Context<'_>,
    caller: &PatientCaller,
    query: HistoryQuery,
) -> Result<AccessHistory, ApiError> {
    let mut draft = AuditDraft::always(audit::Interaction::Search);
    draft.patient = Some(caller.nhs_number);
    let result = async {
        let page = ctx
            .access
            .audit
            .search(&AuditQuery {
                patient: Some(caller.nhs_number),
                since_ms: query.since_ms,
                until_ms: query.until_ms,
                count: query.count.clamp(1, 100),
                before_seq: query.before,
                ..AuditQuery::default()
            })
            .await?;
        let entries = page
            .records
            .iter()
            .filter_map(|r| serde_json::from_str::<Value>(&r.event_json).ok())
            .filter_map(|e| project(&e))
            .filter(|e| {
                query.include_own
                    || e.purpose != Purpose::PatientRequest
                    || matches!(e.looked, Looked::SharingChoice { .. })
            })
            .collect();
        Ok(AccessHistory {
            entries,
            next_before: page.next_before_seq,
        })
    }
    .await;
    audited(ctx, caller.actor(), draft, result).await
}
