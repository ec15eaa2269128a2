//! "Who looked at my records" as FHIR AuditEvents. Each is rendered from
//! the projection (`operations::patient_audit::AccessEntry`), never from
//! the stored event: it can only carry what the projection kept (when, the
//! organisation, the role category, the purpose, what was looked at), so no
//! staff name or id, user or role id, client id, request id or IP address
//! can reach a patient.

use serde_json::{Value, json};

use crate::audit_trail::{SessionEvent, USER_AUTHENTICATION};
use crate::operations::patient_audit::{AccessEntry, Looked, Purpose};
use crate::patient_access::PatientAccess;

/// The code system of the patient-friendly role categories.
pub const ROLE_CATEGORY_SYSTEM: &str = "urn:nrls:patient-role-category";
const ACT_REASON: &str = "http://terminology.hl7.org/CodeSystem/v3-ActReason";
const ODS: &str = "https://fhir.nhs.uk/Id/ods-organization-code";
const DCM: &str = "http://dicom.nema.org/resources/ontology/DCM";

fn purpose_code(purpose: &Purpose) -> (&'static str, &'static str) {
    match purpose {
        Purpose::DirectCare => ("TREAT", "treatment"),
        Purpose::Emergency { .. } => ("ETREAT", "Emergency Treatment"),
        Purpose::PatientRequest => ("PATRQT", "patient requested"),
        Purpose::Administration => ("HSYSADMIN", "health system administration"),
    }
}

/// The event type, subtype and action of what was done: BALP's "User
/// Authentication" for the patient's session, else a RESTful interaction
/// on the patient record.
fn kind(looked: &Looked) -> (Value, Value, &'static str) {
    let session = |event: SessionEvent| {
        let (system, code, display) = event.subtype();
        (
            json!({"system": DCM, "code": USER_AUTHENTICATION, "display": "User Authentication"}),
            json!({"system": system, "code": code, "display": display}),
            "E",
        )
    };
    let (action, interaction) = match looked {
        Looked::SignedIn => return session(SessionEvent::Login),
        Looked::SignedOut => return session(SessionEvent::Logout),
        Looked::TokenIssued => return session(SessionEvent::TokenIssued),
        other => action(other),
    };
    (
        json!({"system": DCM, "code": "110110", "display": "Patient Record"}),
        json!({"system": "http://hl7.org/fhir/restful-interaction", "code": interaction}),
        action,
    )
}

/// The DICOM-style action and the RESTful interaction of what was done.
fn action(looked: &Looked) -> (&'static str, &'static str) {
    match looked {
        Looked::OneRecord => ("R", "read"),
        Looked::SharingChoice { recorded: true } => ("U", "update"),
        Looked::SharingChoice { recorded: false } => ("D", "delete"),
        Looked::Written => ("U", "update"),
        Looked::Records { .. }
        | Looked::SharedCareRecord
        | Looked::AccessHistory
        | Looked::SignedIn
        | Looked::SignedOut
        | Looked::TokenIssued => ("E", "search-type"),
    }
}

/// One entry as an AuditEvent about `nhs_number` (the patient's own).
pub fn render(entry: &AccessEntry, nhs_number: &str, patient: &PatientAccess) -> Value {
    let (purpose, purpose_display) = purpose_code(&entry.purpose);
    let (kind, subtype, action) = kind(&entry.looked);
    let mut agent = json!({
        "type": {"coding": [{
            "system": ROLE_CATEGORY_SYSTEM,
            "code": entry.who.code(),
            "display": entry.who.phrase(),
        }]},
        "requestor": true,
    });
    if let Some(ods) = &entry.organisation {
        let mut who = json!({"identifier": {"system": ODS, "value": ods}});
        if let Some(name) = patient.organisation_name(ods) {
            who["display"] = json!(name);
        }
        agent["who"] = who;
    }
    json!({
        "resourceType": "AuditEvent",
        "type": kind,
        "subtype": [subtype],
        "action": action,
        "recorded": entry.when,
        // "0" success; "4" minor failure: refused, nothing was shown.
        "outcome": if entry.refused { "4" } else { "0" },
        "outcomeDesc": entry.looked.describe(entry.refused),
        "purposeOfEvent": [{
            "coding": [{"system": ACT_REASON, "code": purpose, "display": purpose_display}],
            "text": entry.purpose.describe(),
        }],
        "agent": [agent],
        "source": {"observer": {"display": "nrls, the national record locator"}},
        "entity": [{
            "what": {"identifier": {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": nhs_number}},
            "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "1", "display": "Person"},
            "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "1", "display": "Patient"},
            "description": entry.looked.describe(entry.refused),
        }],
    })
}
