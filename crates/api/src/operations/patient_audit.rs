//! "Who looked at my records": a projection of the audit trail for the
//! patient's own NHS number. What a patient is told is deliberately
//! narrow: when, which organisation (ODS code), the kind of person (a
//! role category such as "a nurse", from the national RBAC job role code,
//! or a computer system), why (direct care, emergency
//! access with its reason *category* only, the patient's own request), and
//! what was looked at. Staff names and ids, user ids, client ids, request
//! ids, IP addresses and free-text reasons never leave this module: the
//! projection is built field by field from the stored event, never copied.

use audit::AuditQuery;
use base64::Engine;
use serde::Serialize;
use serde_json::Value;

use super::Context;
use super::patient::{PATIENT_CLIENT_ID, PATIENT_REQUESTED, PatientCaller};
use crate::audit_trail::{AuditDraft, SessionEvent, USER_AUTHENTICATION, audited};
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

/// Who looked, in broad terms: a category of the national RBAC job role
/// (the `R` code of `S…:G…:R…`), never the role code itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Who {
    /// The patient themselves.
    You,
    Doctor,
    Nurse,
    Paramedic,
    OtherHealthProfessional,
    AdministrativeStaff,
    /// A member of staff whose role is unknown or not in the table.
    Staff,
    /// An app acting without a named user.
    System,
}

impl Who {
    /// The category's code (`urn:nrls:patient-role-category`).
    pub fn code(self) -> &'static str {
        match self {
            Who::You => "you",
            Who::Doctor => "doctor",
            Who::Nurse => "nurse",
            Who::Paramedic => "paramedic",
            Who::OtherHealthProfessional => "other-health-professional",
            Who::AdministrativeStaff => "administrative-staff",
            Who::Staff => "staff",
            Who::System => "system",
        }
    }

    /// As the patient is told it.
    pub fn phrase(self) -> &'static str {
        match self {
            Who::You => "You",
            Who::Doctor => "A doctor",
            Who::Nurse => "A nurse",
            Who::Paramedic => "A paramedic",
            Who::OtherHealthProfessional => "Another health professional",
            Who::AdministrativeStaff => "A member of administrative staff",
            Who::Staff => "A member of staff",
            Who::System => "A computer system",
        }
    }
}

/// National RBAC job roles by category. Sources: the NHS England "user
/// roles and access" table (R8000-R8015 access roles), the Care Connect SDS
/// Job Role Name code system (R0010-R9104); R1290 (paramedic) as the issue
/// names it. A role not listed is "a member of staff".
const ROLE_CATEGORIES: &[(Who, &[&str])] = &[
    (
        Who::Doctor,
        &[
            "R8000", "R0010", "R0020", "R0030", "R0040", "R0050", "R0060", "R0070", "R0080",
            "R0090", "R0100", "R0110", "R0120", "R0130", "R0140", "R0150", "R0160", "R0170",
            "R0180", "R0190", "R0200", "R0210", "R0215", "R0220", "R0230", "R0260", "R0270",
            "R1981", "R6200", "R6300", "R9102",
        ],
    ),
    (Who::Nurse, &["R8001", "R8002", "R9100"]),
    (Who::Paramedic, &["R1290"]),
    (
        Who::OtherHealthProfessional,
        &["R8003", "R8004", "R8005", "R7140", "R7150", "R9103"],
    ),
    (
        Who::AdministrativeStaff,
        &[
            "R8006", "R8007", "R8008", "R8009", "R8010", "R8011", "R8012", "R8013", "R8015",
            "R1984", "R9104",
        ],
    ),
];

/// The category of a national RBAC role code (`S0030:G0100:R8001` or a
/// bare `R8001`).
pub fn role_category(role_code: &str) -> Who {
    let job_role = role_code.rsplit(':').next().unwrap_or_default().trim();
    ROLE_CATEGORIES
        .iter()
        .find(|(_, codes)| codes.contains(&job_role))
        .map_or(Who::Staff, |(who, _)| *who)
}

/// How the patient's own shared care record view is recorded in the
/// audit query entity.
pub const SHARED_CARE_RECORD_QUERY: &str = "$shared-care-record";

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
    /// Assembled the shared care record from the organisations holding it.
    SharedCareRecord,
    /// A producer added, changed or removed a record about the patient.
    Written,
    /// Recorded or withdrew a choice about sharing.
    SharingChoice { recorded: bool },
    /// The patient read this history.
    AccessHistory,
    /// The patient signed in with NHS login.
    SignedIn,
    /// The patient signed out.
    SignedOut,
    /// A patient token (for an app acting for the patient) was issued.
    TokenIssued,
}

impl Purpose {
    /// As the patient is told it (the page and the FHIR `text`).
    pub fn describe(&self) -> String {
        match self {
            Purpose::DirectCare => "Your care".to_owned(),
            Purpose::Emergency { category: Some(c) } => {
                format!("Emergency access (reason given: {c})")
            }
            Purpose::Emergency { category: None } => "Emergency access".to_owned(),
            Purpose::PatientRequest => "You looked".to_owned(),
            Purpose::Administration => "Managing who can see your records".to_owned(),
        }
    }
}

impl Looked {
    /// As the patient is told it; `refused` when nothing was shown.
    pub fn describe(&self, refused: bool) -> String {
        if refused {
            return "Tried to look, but was not shown anything".to_owned();
        }
        match self {
            Looked::Records { shown: 0 } => "Searched, no records shown".to_owned(),
            Looked::Records { shown: 1 } => "Where your records are (1 record)".to_owned(),
            Looked::Records { shown } => format!("Where your records are ({shown} records)"),
            Looked::OneRecord => "Opened one of your records".to_owned(),
            Looked::SharedCareRecord => "Your shared care record".to_owned(),
            Looked::Written => "Added, changed or removed a record about you".to_owned(),
            Looked::AccessHistory => "Who looked at your records".to_owned(),
            Looked::SignedIn => "Signed in with NHS login".to_owned(),
            Looked::SignedOut => "Signed out".to_owned(),
            Looked::TokenIssued => "Gave an app access to your records".to_owned(),
            Looked::SharingChoice { recorded: true } => {
                "Change of sharing choice: stopped sharing".to_owned()
            }
            Looked::SharingChoice { recorded: false } => {
                "Change of sharing choice: started sharing again".to_owned()
            }
        }
    }
}

const DAY_MS: i64 = 86_400_000;

/// `YYYY-MM-DD` as Unix milliseconds at 00:00 UTC.
pub fn date_ms(text: &str) -> Option<i64> {
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

/// The default window starts this long before now: 12 months.
pub const DEFAULT_WINDOW_MS: i64 = 365 * DAY_MS;

/// One day, for "to" dates that include the whole day.
pub const ONE_DAY_MS: i64 = DAY_MS;

/// One line of "who looked at my records".
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccessEntry {
    /// RFC 3339.
    pub when: String,
    /// ODS code of the organisation, when one acted.
    pub organisation: Option<String>,
    /// The role category; never the role id.
    pub who: Who,
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
    let user_role = agents
        .iter()
        .find(|a| who_system(a) == Some(audit::event::systems::USER_ID))
        .map(|a| {
            a.pointer("/role/0/coding/0/code")
                .and_then(Value::as_str)
                .unwrap_or_default()
        });
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
    let query = strings(event, "entity")
        .find(|e| e.pointer("/role/code").and_then(Value::as_str) == Some("24"));
    let has_query = query.is_some();
    // The fan-out names the pointers it followed as `DocumentReference/<id>`;
    // the patient's own records it under a `$shared-care-record` query.
    let shared_care_record = query
        .and_then(|q| q.get("query"))
        .and_then(Value::as_str)
        .and_then(|q| base64::engine::general_purpose::STANDARD.decode(q).ok())
        .is_some_and(|q| q.starts_with(SHARED_CARE_RECORD_QUERY.as_bytes()))
        || strings(event, "entity").any(|e| {
            e.pointer("/what/reference")
                .and_then(Value::as_str)
                .is_some_and(|r| r.starts_with("DocumentReference/"))
        });
    let session_event = (event.pointer("/type/code").and_then(Value::as_str)
        == Some(USER_AUTHENTICATION))
    .then(|| event.pointer("/subtype/0/code").and_then(Value::as_str))
    .map(|code| code.and_then(SessionEvent::of_code));
    let looked = match session_event {
        // Sign-in, sign-out and tokens: the patient's own session.
        Some(Some(SessionEvent::Login)) => Looked::SignedIn,
        Some(Some(SessionEvent::Logout)) => Looked::SignedOut,
        Some(Some(SessionEvent::TokenIssued)) => Looked::TokenIssued,
        // An authentication event this node does not know: not about records.
        Some(None) => return None,
        None => {
            let action = event.get("action").and_then(Value::as_str);
            looked_at(action, own, shown, has_query, shared_care_record)
        }
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
        who: match (own, user_role) {
            (true, _) => Who::You,
            (false, Some(role)) => role_category(role),
            (false, None) => Who::System,
        },
        purpose,
        looked,
        refused,
    })
}

/// What a RESTful event did, from its action and entities.
fn looked_at(
    action: Option<&str>,
    own: bool,
    shown: usize,
    has_query: bool,
    shared_care_record: bool,
) -> Looked {
    match action {
        // `who_looked` records no query: its own event is a history read.
        Some("E") if own && shown == 0 && !has_query => Looked::AccessHistory,
        Some("E") if shared_care_record => Looked::SharedCareRecord,
        Some("R") => Looked::OneRecord,
        Some("U") if shown == 0 => Looked::SharingChoice { recorded: true },
        Some("D") if shown == 0 => Looked::SharingChoice { recorded: false },
        Some("C" | "U" | "D") => Looked::Written,
        _ => Looked::Records { shown },
    }
}

/// Audit reads one page of "who looked" may take.
const MAX_READS_PER_PAGE: usize = 20;

/// The patient's access history; audited as a search of their own trail.
pub async fn who_looked(
    ctx: &Context<'_>,
    caller: &PatientCaller,
    query: HistoryQuery,
) -> Result<AccessHistory, ApiError> {
    let mut draft = AuditDraft::always(audit::Interaction::Search);
    draft.patient = Some(caller.nhs_number);
    let result = async {
        let count = query.count.clamp(1, 100);
        let mut entries = Vec::with_capacity(count);
        let mut before = query.before;
        // Events the patient is not shown (their own views, unless asked)
        // would leave a page short: read on until it is full or the trail
        // ends, within a bound. Each event gives at most one entry.
        for _ in 0..MAX_READS_PER_PAGE {
            let page = ctx
                .access
                .audit
                .search(&AuditQuery {
                    patient: Some(caller.nhs_number),
                    since_ms: query.since_ms,
                    until_ms: query.until_ms,
                    count: count - entries.len(),
                    before_seq: before,
                    ..AuditQuery::default()
                })
                .await?;
            entries.extend(
                page.records
                    .iter()
                    .filter_map(|r| serde_json::from_str::<Value>(&r.event_json).ok())
                    .filter_map(|e| project(&e))
                    .filter(|e| {
                        query.include_own
                            || e.purpose != Purpose::PatientRequest
                            || matches!(e.looked, Looked::SharingChoice { .. })
                    }),
            );
            before = page.next_before_seq;
            if entries.len() >= count || before.is_none() {
                break;
            }
        }
        Ok(AccessHistory {
            entries,
            next_before: before,
        })
    }
    .await;
    audited(ctx, caller.actor(), draft, result).await
}

#[cfg(test)]
mod tests {
    use super::{Who, date_ms, role_category};

    #[test]
    fn dates_become_utc_midnight_milliseconds() {
        assert_eq!(date_ms("1970-01-01"), Some(0));
        assert_eq!(date_ms("2026-03-01"), Some(1_772_323_200_000));
        assert_eq!(date_ms("2026-13-01"), None);
        assert_eq!(date_ms("yesterday"), None);
    }

    #[test]
    fn role_codes_become_categories_never_ids() {
        assert_eq!(role_category("S0010:G0020:R0260"), Who::Doctor);
        assert_eq!(role_category("R8000"), Who::Doctor);
        assert_eq!(role_category("S0030:G0100:R8001"), Who::Nurse);
        assert_eq!(role_category("R1290"), Who::Paramedic);
        assert_eq!(role_category("R8003"), Who::OtherHealthProfessional);
        assert_eq!(role_category("R8010"), Who::AdministrativeStaff);
        assert_eq!(role_category("S0030:G0100:R0570"), Who::Staff);
        assert_eq!(role_category(""), Who::Staff);
        assert_eq!(Who::Nurse.phrase(), "A nurse");
        assert_eq!(Who::Staff.phrase(), "A member of staff");
    }
}
