//! Subscriptions (issue 15): FHIR R4 Subscriptions with the Subscriptions R5
//! Backport IG, for pointer changes (IHE DSUBm). Pure: what a topic covers,
//! what a filter matches, how a `Subscription` body is read
//! ([`request::parse`]), what a notification Bundle holds
//! ([`notification`]) and when a failed delivery is retried ([`retry`]).
//! Storage and delivery live in `store::subscriptions` and the binary.

pub mod notification;
pub mod request;
pub mod resource;
pub mod retry;

use serde::{Deserialize, Serialize};

use crate::catalogue::Catalogue;
use crate::{NhsNumber, OdsCode, Role};

/// The Backport IG's canonical base.
pub const BACKPORT: &str = "http://hl7.org/fhir/uv/subscriptions-backport";
/// `Subscription.criteria` extension carrying one filter.
pub const FILTER_CRITERIA_EXT: &str =
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-filter-criteria";
/// `Subscription.channel.payload` extension: how much each notification carries.
pub const PAYLOAD_CONTENT_EXT: &str =
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-payload-content";
/// `Subscription.channel` extension: heartbeat period in seconds.
pub const HEARTBEAT_EXT: &str =
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-heartbeat-period";
/// `Subscription.channel` extension: per-notification time-out in seconds.
pub const TIMEOUT_EXT: &str =
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-timeout";
/// Where nrls's own topics live.
pub const TOPIC_BASE: &str = "https://nrls.example.org/fhir/SubscriptionTopic";

/// What changes a subscription hears of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Topic {
    /// A pointer appears: created, or created replacing others (supersede).
    PointerCreated,
    /// DSUBm MinUpdate: created, superseded or withdrawn (deleted).
    PointerMinUpdate,
    /// Every change, in-place updates included.
    PointerAllChanges,
}

/// One change of a pointer, as a topic sees it (mirrors the outbox's kinds
/// without depending on the store).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Change {
    Created,
    Superseded,
    Updated,
    Deleted,
}

impl Topic {
    pub const ALL: [Topic; 3] = [
        Topic::PointerCreated,
        Topic::PointerMinUpdate,
        Topic::PointerAllChanges,
    ];

    /// The id of the topic (its `Basic` resource) and the last segment of
    /// its canonical.
    pub fn id(self) -> &'static str {
        match self {
            Topic::PointerCreated => "pointer-created",
            Topic::PointerMinUpdate => "pointer-min-update",
            Topic::PointerAllChanges => "pointer-all-changes",
        }
    }

    /// The canonical URL a `Subscription.criteria` names.
    pub fn canonical(self) -> String {
        format!("{TOPIC_BASE}/{}", self.id())
    }

    /// The topic a canonical names, if any.
    pub fn from_canonical(text: &str) -> Option<Topic> {
        Topic::ALL.into_iter().find(|t| t.canonical() == text)
    }

    pub fn title(self) -> &'static str {
        match self {
            Topic::PointerCreated => "A pointer was created (or created replacing others)",
            Topic::PointerMinUpdate => {
                "A pointer was created, superseded or withdrawn (IHE DSUBm MinUpdate)"
            }
            Topic::PointerAllChanges => "Any change to a pointer, in-place updates included",
        }
    }

    /// The FHIR interactions (`create`, `update`, `delete`) the topic covers.
    pub fn interactions(self) -> &'static [&'static str] {
        match self {
            Topic::PointerCreated => &["create"],
            Topic::PointerMinUpdate => &["create", "delete"],
            Topic::PointerAllChanges => &["create", "update", "delete"],
        }
    }

    /// Whether the topic covers `change`.
    pub fn covers(self, change: Change) -> bool {
        match self {
            Topic::PointerCreated => matches!(change, Change::Created | Change::Superseded),
            Topic::PointerMinUpdate => change != Change::Updated,
            Topic::PointerAllChanges => true,
        }
    }
}

/// How much of a pointer a notification carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PayloadContent {
    /// Nothing but the status: the subscriber asks `$events` or searches.
    Empty,
    /// The pointer's URL as `fullUrl`, no resource (the default).
    #[default]
    IdOnly,
    /// The DocumentReference itself.
    FullResource,
}

impl PayloadContent {
    pub fn as_str(self) -> &'static str {
        match self {
            PayloadContent::Empty => "empty",
            PayloadContent::IdOnly => "id-only",
            PayloadContent::FullResource => "full-resource",
        }
    }

    pub fn parse(text: &str) -> Option<PayloadContent> {
        Some(match text {
            "empty" => PayloadContent::Empty,
            "id-only" => PayloadContent::IdOnly,
            "full-resource" => PayloadContent::FullResource,
            _ => return None,
        })
    }
}

/// What a subscription asks for, as stored (`store::SubscriptionRecord::spec`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spec {
    pub topic: Topic,
    /// NHS number of the one patient.
    pub patient: String,
    /// `system|code` pointer types; empty for any.
    #[serde(default)]
    pub types: Vec<String>,
    /// Category codes (`system|code`); empty for any.
    #[serde(default)]
    pub categories: Vec<String>,
    /// Custodian ODS codes; empty for any.
    #[serde(default)]
    pub custodians: Vec<String>,
    pub endpoint: String,
    /// `Name: value` lines sent with every notification.
    #[serde(default)]
    pub headers: Vec<String>,
    pub payload: PayloadContent,
    /// Seconds; 0 for none.
    #[serde(default)]
    pub heartbeat_secs: u32,
    /// Seconds the endpoint has to answer; `None` for the server default.
    #[serde(default)]
    pub timeout_secs: Option<u32>,
    pub reason: String,
    /// The role the subscription was created in, and for which organisation:
    /// access is re-checked in that role at every delivery.
    pub role: Role,
    pub organisation: String,
}

/// What matching needs to know of one pointer change.
#[derive(Debug, Clone, Copy)]
pub struct ChangeFacts<'a> {
    pub change: Change,
    pub nhs_number: NhsNumber,
    pub type_key: &'a str,
    pub custodian: &'a OdsCode,
}

impl Spec {
    /// Reads a stored spec.
    pub fn from_json(text: &str) -> Option<Spec> {
        serde_json::from_str(text).ok()
    }

    /// The stored form.
    pub fn to_json(&self) -> String {
        // A struct of strings, numbers and enums always serialises.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Whether the change is one this subscription's topic and filters select
    /// (who may hear of it is the access policy's question, not this one).
    pub fn matches(&self, catalogue: &Catalogue, facts: &ChangeFacts<'_>) -> bool {
        if !self.topic.covers(facts.change) || self.patient != facts.nhs_number.to_string() {
            return false;
        }
        if !self.types.is_empty() && !self.types.iter().any(|t| t == facts.type_key) {
            return false;
        }
        if !self.custodians.is_empty()
            && !self
                .custodians
                .iter()
                .any(|c| c == facts.custodian.as_str())
        {
            return false;
        }
        if !self.categories.is_empty() {
            let Some(pointer_type) = catalogue.find_key(facts.type_key) else {
                return false;
            };
            let code = &pointer_type.category_code;
            return self
                .categories
                .iter()
                .any(|c| c.rsplit_once('|').map_or(c.as_str(), |(_, code)| code) == code);
        }
        true
    }
}

#[cfg(test)]
mod tests;
