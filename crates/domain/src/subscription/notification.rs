//! Notification Bundles as the Backport IG's R4 notification profile has
//! them: a `history` Bundle whose first entry is the `Parameters`
//! subscription status (subscription, topic, status, type,
//! events-since-subscription-start, one notification-event per event), then,
//! unless the payload is `empty`, one entry per event focus.

use serde_json::{Value, json};

use super::{PayloadContent, Topic};

/// Profile of the notification Bundle.
pub const NOTIFICATION_PROFILE: &str = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription-notification-r4";
/// Profile of its first entry.
pub const STATUS_PROFILE: &str = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription-status-r4";

/// `type` of a notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Handshake,
    Heartbeat,
    EventNotification,
    /// `$status`.
    QueryStatus,
    /// `$events`.
    QueryEvent,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Handshake => "handshake",
            Kind::Heartbeat => "heartbeat",
            Kind::EventNotification => "event-notification",
            Kind::QueryStatus => "query-status",
            Kind::QueryEvent => "query-event",
        }
    }
}

/// The subscription's side of a status.
#[derive(Debug, Clone)]
pub struct Status<'a> {
    /// Absolute URL of the Subscription.
    pub subscription_url: &'a str,
    pub topic: Topic,
    /// `requested`, `active` or `error`.
    pub status: &'a str,
    pub kind: Kind,
    pub events_since_start: i64,
    /// Why the subscription is in `error`.
    pub error: Option<&'a str>,
}

/// One event as a notification carries it.
#[derive(Debug, Clone)]
pub struct Event {
    pub number: i64,
    /// When the change committed (RFC 3339).
    pub timestamp: String,
    /// Absolute URL of the pointer the event is about.
    pub focus_url: String,
    /// Absolute URLs of the pointers a supersede replaced.
    pub context_urls: Vec<String>,
    /// The pointer was deleted (withdrawn): no resource can follow.
    pub deleted: bool,
    /// The DocumentReference, for `full-resource` payloads the subscriber may read.
    pub resource: Option<Value>,
}

/// The `Parameters` status resource.
pub fn status_parameters(status: &Status<'_>, events: &[Event], payload: PayloadContent) -> Value {
    let mut parameters = vec![
        json!({"name": "subscription", "valueReference": {"reference": status.subscription_url}}),
        json!({"name": "topic", "valueCanonical": status.topic.canonical()}),
        json!({"name": "status", "valueCode": status.status}),
        json!({"name": "type", "valueCode": status.kind.as_str()}),
        json!({"name": "events-since-subscription-start", "valueString": status.events_since_start.to_string()}),
    ];
    for event in events {
        let mut part = vec![
            json!({"name": "event-number", "valueString": event.number.to_string()}),
            json!({"name": "timestamp", "valueInstant": event.timestamp}),
        ];
        // An empty payload names no resources at all: the subscriber asks.
        if payload != PayloadContent::Empty {
            part.push(json!({"name": "focus", "valueReference": {"reference": event.focus_url}}));
            for url in &event.context_urls {
                part.push(
                    json!({"name": "additional-context", "valueReference": {"reference": url}}),
                );
            }
        }
        parameters.push(json!({"name": "notification-event", "part": part}));
    }
    if let Some(error) = status.error {
        parameters.push(json!({"name": "error", "valueCodeableConcept": {"text": error}}));
    }
    json!({
        "resourceType": "Parameters",
        "meta": {"profile": [STATUS_PROFILE]},
        "parameter": parameters,
    })
}

/// The notification Bundle. `id` is a fresh UUID, `timestamp` now.
pub fn bundle(
    id: &str,
    timestamp: &str,
    status: &Status<'_>,
    events: &[Event],
    payload: PayloadContent,
) -> Value {
    let mut entries = vec![json!({
        "fullUrl": format!("urn:uuid:{id}-status"),
        "resource": status_parameters(status, events, payload),
        "request": {"method": "GET", "url": format!("{}/$status", status.subscription_url)},
        "response": {"status": "200"},
    })];
    if payload != PayloadContent::Empty {
        for event in events {
            let (method, code) = if event.deleted {
                ("DELETE", "204")
            } else {
                ("PUT", "200")
            };
            let mut entry = json!({
                "fullUrl": event.focus_url,
                "request": {"method": method, "url": event.focus_url},
                "response": {"status": code},
            });
            if payload == PayloadContent::FullResource
                && let Some(resource) = &event.resource
            {
                entry["resource"] = resource.clone();
            }
            entries.push(entry);
        }
    }
    json!({
        "resourceType": "Bundle",
        "id": id,
        "meta": {"profile": [NOTIFICATION_PROFILE]},
        "type": "history",
        "timestamp": timestamp,
        "entry": entries,
    })
}
