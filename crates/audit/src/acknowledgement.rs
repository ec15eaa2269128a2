//! An alert acknowledgement is itself a record of the chain: the writer
//! appends this event in the transaction that writes the `alert_acks` row,
//! and `verify` holds every row to its record. An `alert_acks` row inserted
//! by hand (to hide an open break-glass alert) has no record and fails.

use fhir::AuditEvent;
use serde_json::json;

use crate::event::{AuditFacts, AuditOutcome, Interaction};
use crate::query::Acknowledgement;

/// nrls's own complex extension: which alert was acknowledged, by whom,
/// when, and the note, exactly as in `alert_acks`.
pub const ACK_EXTENSION: &str = "urn:nrls:fhir:StructureDefinition:alert-acknowledgement";

/// The observer named in acknowledgement records: the audit trail itself.
const OBSERVER: &str = "nrls-audit-trail";

impl Acknowledgement {
    /// The chain record of this acknowledgement of the alert at `alert_seq`.
    pub fn to_event(&self, alert_seq: u64) -> AuditEvent {
        let facts = AuditFacts {
            interaction: Interaction::Update,
            outcome: AuditOutcome::Success,
            outcome_desc: None,
            recorded: self.at.clone(),
            request_id: None,
            client_id: self.by.clone(),
            organisation: None,
            user: None,
            purpose_of_use: None,
            patient: None,
            resources: vec![format!("AuditEvent/{alert_seq}")],
            query: None,
            access: None,
            session: None,
            login_subject: None,
        };
        let mut event = facts.to_event(OBSERVER);
        let mut parts = vec![
            json!({ "url": "alert", "valueUnsignedInt": alert_seq }),
            json!({ "url": "by", "valueString": self.by }),
            json!({ "url": "at", "valueInstant": self.at }),
        ];
        if let Some(note) = &self.note {
            parts.push(json!({ "url": "note", "valueString": note }));
        }
        event
            .extension
            .push(json!({ "url": ACK_EXTENSION, "extension": parts }));
        event
    }
}

/// The acknowledgement a chain record carries, if it is one.
pub fn acknowledgement_of(event: &AuditEvent) -> Option<(u64, Acknowledgement)> {
    let ext = event
        .extension
        .iter()
        .find(|e| e.get("url").and_then(|u| u.as_str()) == Some(ACK_EXTENSION))?;
    let parts = ext.get("extension")?.as_array()?;
    let part = |name: &str, key: &str| {
        parts
            .iter()
            .find(|p| p.get("url").and_then(|u| u.as_str()) == Some(name))
            .and_then(|p| p.get(key))
    };
    let alert_seq = part("alert", "valueUnsignedInt")?.as_u64()?;
    let text = |name: &str, key: &str| part(name, key).and_then(|v| v.as_str()).map(str::to_owned);
    Some((
        alert_seq,
        Acknowledgement {
            by: text("by", "valueString")?,
            at: text("at", "valueInstant")?,
            note: text("note", "valueString"),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_acknowledgement_round_trips_through_its_event() {
        let ack = Acknowledgement {
            by: "privacy-app".into(),
            at: "2026-03-01T10:00:00.000Z".into(),
            note: Some("justified".into()),
        };
        let event = ack.to_event(7);
        assert_eq!(acknowledgement_of(&event), Some((7, ack.clone())));
        let plain = Acknowledgement { note: None, ..ack };
        assert_eq!(acknowledgement_of(&plain.to_event(8)), Some((8, plain)));
        let fields = crate::fields::SearchFields::of(&event);
        assert_eq!(fields.agents, vec!["privacy-app".to_owned()]);
        assert_eq!(fields.alert, None);
    }
}
