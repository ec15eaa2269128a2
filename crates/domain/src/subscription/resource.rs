//! The stored subscription as an R4 `Subscription` (Backport profile), and
//! the topics as the IG's R4 `Basic` form of `SubscriptionTopic`.

use serde_json::{Value, json};

use super::{FILTER_CRITERIA_EXT, HEARTBEAT_EXT, PAYLOAD_CONTENT_EXT, Spec, TIMEOUT_EXT, Topic};
use crate::systems::{NHS_NUMBER, ODS_CODE};

/// Profile of the Subscription resources nrls serves.
pub const SUBSCRIPTION_PROFILE: &str =
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription";
const TOPIC_EXT: &str = "http://hl7.org/fhir/5.0/StructureDefinition/extension-SubscriptionTopic";

fn filter(text: String) -> Value {
    json!({"url": FILTER_CRITERIA_EXT, "valueString": format!("DocumentReference?{text}")})
}

/// `Subscription` as served: what was asked, and where delivery stands.
pub fn subscription(id: &str, spec: &Spec, status: &str, error: Option<&str>) -> Value {
    let mut filters = vec![filter(format!(
        "patient.identifier={NHS_NUMBER}|{}",
        spec.patient
    ))];
    if !spec.types.is_empty() {
        filters.push(filter(format!("type={}", spec.types.join(","))));
    }
    if !spec.categories.is_empty() {
        filters.push(filter(format!("category={}", spec.categories.join(","))));
    }
    if !spec.custodians.is_empty() {
        let codes: Vec<String> = spec
            .custodians
            .iter()
            .map(|c| format!("{ODS_CODE}|{c}"))
            .collect();
        filters.push(filter(format!("custodian.identifier={}", codes.join(","))));
    }
    let mut channel_ext = Vec::new();
    if spec.heartbeat_secs > 0 {
        channel_ext.push(json!({"url": HEARTBEAT_EXT, "valueUnsignedInt": spec.heartbeat_secs}));
    }
    if let Some(t) = spec.timeout_secs {
        channel_ext.push(json!({"url": TIMEOUT_EXT, "valueUnsignedInt": t}));
    }
    let mut channel = json!({
        "type": "rest-hook",
        "endpoint": spec.endpoint,
        "payload": "application/fhir+json",
        "_payload": {"extension": [{"url": PAYLOAD_CONTENT_EXT, "valueCode": spec.payload.as_str()}]},
    });
    if !spec.headers.is_empty() {
        channel["header"] = json!(spec.headers);
    }
    if !channel_ext.is_empty() {
        channel["extension"] = json!(channel_ext);
    }
    let mut resource = json!({
        "resourceType": "Subscription",
        "id": id,
        "meta": {"profile": [SUBSCRIPTION_PROFILE]},
        "status": status,
        "reason": spec.reason,
        "criteria": spec.topic.canonical(),
        "_criteria": {"extension": filters},
        "channel": channel,
    });
    if let Some(error) = error {
        resource["error"] = json!(error);
    }
    resource
}

/// A topic as the Backport IG's R4 `Basic` representation of a
/// `SubscriptionTopic`.
pub fn topic(topic: Topic) -> Value {
    let triggers: Vec<Value> = topic
        .interactions()
        .iter()
        .map(|i| json!({"url": "supportedInteraction", "valueCode": i}))
        .collect();
    let mut trigger = vec![
        json!({"url": "description", "valueMarkdown": topic.title()}),
        json!({"url": "resource", "valueUri": "http://hl7.org/fhir/StructureDefinition/DocumentReference"}),
    ];
    trigger.extend(triggers);
    let filter_by = |name: &str, doc: &str| {
        json!({"url": format!("{TOPIC_EXT}.canFilterBy"), "extension": [
            {"url": "description", "valueMarkdown": doc},
            {"url": "resource", "valueUri": "DocumentReference"},
            {"url": "filterParameter", "valueString": name},
        ]})
    };
    json!({
        "resourceType": "Basic",
        "id": topic.id(),
        "code": {"coding": [{"system": "http://hl7.org/fhir/fhir-types", "code": "SubscriptionTopic"}]},
        "extension": [
            {"url": format!("{TOPIC_EXT}.url"), "valueUri": topic.canonical()},
            {"url": format!("{TOPIC_EXT}.title"), "valueString": topic.title()},
            {"url": format!("{TOPIC_EXT}.status"), "valueCode": "active"},
            {"url": format!("{TOPIC_EXT}.resourceTrigger"), "extension": trigger},
            filter_by("patient.identifier", "Required: https://fhir.nhs.uk/Id/nhs-number|<NHS number>, one patient"),
            filter_by("type", "Pointer type(s) system|code, comma-separated = any of"),
            filter_by("category", "Category code(s) system|code, comma-separated = any of"),
            filter_by("custodian.identifier", "Custodian ODS code(s) https://fhir.nhs.uk/Id/ods-organization-code|<code>, comma-separated = any of"),
        ],
    })
}
