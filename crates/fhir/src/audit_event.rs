//! FHIR R4 `AuditEvent`, shaped by the IHE Basic Audit Log Patterns (BALP).
//! Only the elements nrls writes are modelled; anything else read back is
//! kept in `extra` so a stored event round-trips unchanged.

use serde::{Deserialize, Serialize};

use crate::datatypes::{CodeableConcept, Coding, Extra, Reference};

/// One audited request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    pub resource_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extension: Vec<serde_json::Value>,
    /// `rest` (RESTful operation) for every nrls event.
    #[serde(rename = "type")]
    pub kind: Coding,
    /// The FHIR interaction: `search-type`, `read`, `create`, `update`, `delete`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subtype: Vec<Coding>,
    /// `C`, `R`, `U`, `D` or `E` (execute, for searches).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// When the event was recorded (FHIR `instant`).
    pub recorded: String,
    /// `0` success, `4` minor failure (client error), `8` serious failure
    /// (server error), `12` major failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome_desc: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub purpose_of_event: Vec<CodeableConcept>,
    #[serde(default)]
    pub agent: Vec<AuditAgent>,
    pub source: AuditSource,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entity: Vec<AuditEntity>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// Someone (an app, a user, an organisation) who took part.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditAgent {
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<CodeableConcept>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub role: Vec<CodeableConcept>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub who: Option<Reference>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alt_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub requestor: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub purpose_of_use: Vec<CodeableConcept>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// The system that recorded the event.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditSource {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    pub observer: Reference,
    #[serde(rename = "type", default, skip_serializing_if = "Vec::is_empty")]
    pub kind: Vec<Coding>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// Something the event was about: the patient, a pointer, the query.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntity {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub what: Option<Reference>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<Coding>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<Coding>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub security_label: Vec<Coding>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The search query, base64 (FHIR `base64Binary`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub detail: Vec<AuditEntityDetail>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// A name/value pair about an entity, e.g. the `X-Request-Id`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntityDetail {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_string: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl AuditEvent {
    /// The agents whose `type` carries `code`.
    pub fn agents_of_type<'a>(&'a self, code: &'a str) -> impl Iterator<Item = &'a AuditAgent> {
        self.agent.iter().filter(move |a| {
            a.kind
                .as_ref()
                .is_some_and(|k| k.codings().iter().any(|c| c.code.as_deref() == Some(code)))
        })
    }

    /// The entities whose `type` code is `code` (e.g. `1` person, `2` system object).
    pub fn entities_of_type<'a>(&'a self, code: &'a str) -> impl Iterator<Item = &'a AuditEntity> {
        self.entity
            .iter()
            .filter(move |e| e.kind.as_ref().and_then(|k| k.code.as_deref()) == Some(code))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_unknown_elements() {
        let json = serde_json::json!({
            "resourceType": "AuditEvent",
            "type": { "system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest" },
            "recorded": "2026-01-01T00:00:00Z",
            "agent": [{ "requestor": true, "network": { "address": "127.0.0.1" } }],
            "source": { "observer": { "display": "nrls" } },
            "period": { "start": "2026-01-01T00:00:00Z" }
        });
        let event: AuditEvent = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(serde_json::to_value(&event).unwrap(), json);
    }
}
