//! The patient's objection to sharing as a FHIR `Consent`, in the IHE
//! Privacy Consent on FHIR (PCF) shape: `scope` patient-privacy,
//! `provision.type` deny; `active` while the objection stands, `inactive`
//! once withdrawn. There is one such Consent per patient, with the id
//! [`CONSENT_ID`] (the API is about the signed-in patient only, so the id
//! needs no NHS number).

use domain::issue::{ErrorCode, Issue, IssueType};
use domain::systems::NHS_NUMBER;
use serde_json::{Value, json};
use store::access::Objection;

use crate::error::ApiError;

/// The id of the patient's sharing Consent.
pub const CONSENT_ID: &str = "objection";
pub const CONSENT_SCOPE: &str = "http://terminology.hl7.org/CodeSystem/consentscope";
/// The policy the objection is made under.
pub const OBJECTION_POLICY: &str = "urn:nrls:policy:objection-to-sharing";

/// What a Consent body asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentChoice {
    /// `active`: object to sharing; `inactive`: withdraw the objection.
    pub object: bool,
    /// `patient.identifier.value`, when given (checked by the caller
    /// against the signed-in patient).
    pub patient: Option<String>,
}

fn issue(code: ErrorCode, kind: IssueType, expression: &str, why: &str) -> Issue {
    Issue::new(code, kind, expression, why)
}

/// Checks a Consent body; every problem is reported, each naming its
/// element. `path_id` is the id a PUT names.
pub fn parse(body: &Value, path_id: Option<&str>) -> Result<ConsentChoice, ApiError> {
    let mut issues = Vec::new();
    if body.get("resourceType").and_then(Value::as_str) != Some("Consent") {
        issues.push(issue(
            ErrorCode::InvalidResource,
            IssueType::Invalid,
            "Consent.resourceType",
            "the body must be a Consent",
        ));
        return Err(ApiError::Rejected(issues));
    }
    let object = match body.get("status").and_then(Value::as_str) {
        Some("active") => Some(true),
        Some("inactive") => Some(false),
        _ => {
            issues.push(issue(
                ErrorCode::InvalidCodeValue,
                IssueType::CodeInvalid,
                "Consent.status",
                "status must be active (object to sharing) or inactive (withdraw the objection)",
            ));
            None
        }
    };
    let privacy = body
        .pointer("/scope/coding")
        .and_then(Value::as_array)
        .is_some_and(|codings| {
            codings.iter().any(|c| {
                c.get("system").and_then(Value::as_str) == Some(CONSENT_SCOPE)
                    && c.get("code").and_then(Value::as_str) == Some("patient-privacy")
            })
        });
    if !privacy {
        issues.push(issue(
            ErrorCode::InvalidCodeValue,
            IssueType::CodeInvalid,
            "Consent.scope",
            "scope must be patient-privacy (http://terminology.hl7.org/CodeSystem/consentscope)",
        ));
    }
    if body.pointer("/provision/type").and_then(Value::as_str) != Some("deny") {
        issues.push(issue(
            ErrorCode::InvalidCodeValue,
            IssueType::CodeInvalid,
            "Consent.provision.type",
            "provision.type must be deny: the only choice recorded here is an objection to sharing",
        ));
    }
    let patient = patient_identifier(body, &mut issues);
    if let (Some(path_id), Some(id)) = (path_id, body.get("id"))
        && id.as_str() != Some(path_id)
    {
        issues.push(issue(
            ErrorCode::InvalidResource,
            IssueType::Invalid,
            "Consent.id",
            "id must be the id in the URL",
        ));
    }
    match object {
        Some(object) if issues.is_empty() => Ok(ConsentChoice { object, patient }),
        _ => Err(ApiError::Rejected(issues)),
    }
}

fn patient_identifier(body: &Value, issues: &mut Vec<Issue>) -> Option<String> {
    let identifier = body.pointer("/patient/identifier")?;
    if identifier.get("system").and_then(Value::as_str) != Some(NHS_NUMBER) {
        issues.push(issue(
            ErrorCode::InvalidIdentifierSystem,
            IssueType::Invalid,
            "Consent.patient.identifier.system",
            "the patient is identified by NHS number (https://fhir.nhs.uk/Id/nhs-number)",
        ));
        return None;
    }
    let value = identifier.get("value").and_then(Value::as_str);
    match value.map(domain::NhsNumber::parse) {
        Some(Ok(_)) => value.map(str::to_owned),
        _ => {
            issues.push(issue(
                ErrorCode::InvalidNhsNumber,
                IssueType::Invalid,
                "Consent.patient.identifier.value",
                "not a valid NHS number",
            ));
            None
        }
    }
}

/// The Consent for `nhs_number`: `objection` when recorded, else inactive.
pub fn render(nhs_number: &str, objection: Option<&Objection>) -> Value {
    let mut consent = json!({
        "resourceType": "Consent",
        "id": CONSENT_ID,
        "status": if objection.is_some() { "active" } else { "inactive" },
        "scope": {"coding": [{"system": CONSENT_SCOPE, "code": "patient-privacy", "display": "Privacy Consent"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0", "display": "Patient Consent"}]}],
        "patient": {"identifier": {"system": NHS_NUMBER, "value": nhs_number}},
        "policy": [{"uri": OBJECTION_POLICY}],
        "provision": {"type": "deny"},
    });
    if let Some(objection) = objection {
        consent["dateTime"] = json!(objection.recorded_at);
    }
    consent
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> Value {
        json!({
            "resourceType": "Consent",
            "status": "active",
            "scope": {"coding": [{"system": CONSENT_SCOPE, "code": "patient-privacy"}]},
            "provision": {"type": "deny"},
            "patient": {"identifier": {"system": NHS_NUMBER, "value": "9990000018"}},
        })
    }

    fn expressions(body: &Value) -> Vec<String> {
        match parse(body, Some(CONSENT_ID)) {
            Err(ApiError::Rejected(issues)) => issues
                .into_iter()
                .flat_map(|i| i.expression.into_iter())
                .collect(),
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    #[test]
    fn a_pcf_objection_parses() {
        let choice = parse(&valid(), None).unwrap();
        assert_eq!(
            choice,
            ConsentChoice {
                object: true,
                patient: Some("9990000018".into())
            }
        );
        let mut withdraw = valid();
        withdraw["status"] = json!("inactive");
        assert!(!parse(&withdraw, Some(CONSENT_ID)).unwrap().object);
    }

    #[test]
    fn every_bad_element_is_named() {
        let mut body = valid();
        body["status"] = json!("draft");
        body["provision"]["type"] = json!("permit");
        body["scope"]["coding"][0]["code"] = json!("research");
        body["patient"]["identifier"]["value"] = json!("1234567890");
        body["id"] = json!("other");
        assert_eq!(
            expressions(&body),
            [
                "Consent.status",
                "Consent.scope",
                "Consent.provision.type",
                "Consent.patient.identifier.value",
                "Consent.id"
            ]
        );
        assert_eq!(
            expressions(&json!({"resourceType": "Patient"})),
            ["Consent.resourceType"]
        );
    }
}
