//! Building an `AuditEvent` from the facts of one request, following the IHE
//! Basic Audit Log Patterns: `type` is `rest`, `subtype` the FHIR interaction,
//! agents for the app, the user and the organisation, the patient and the
//! pointers as entities, the query base64-encoded, and the `X-Request-Id`.

use std::borrow::Cow;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use domain::NhsNumber;
use domain::access::{AccessBasis, Denial, Grant, PURPOSE_OF_USE_SYSTEM};
use fhir::{
    AuditAgent, AuditEntity, AuditEvent, AuditSource, CodeableConcept, Coding, Identifier,
    Reference,
};
use serde_json::json;

/// Code systems and identifiers written into events.
pub mod systems {
    #![allow(missing_docs)]
    pub const EVENT_TYPE: &str = "http://terminology.hl7.org/CodeSystem/audit-event-type";
    pub const INTERACTION: &str = "http://hl7.org/fhir/restful-interaction";
    pub const DCM: &str = "http://dicom.nema.org/resources/ontology/DCM";
    pub const PARTICIPATION: &str = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType";
    pub const ROLE_CLASS: &str = "http://terminology.hl7.org/CodeSystem/v3-RoleClass";
    pub const ENTITY_TYPE: &str = "http://terminology.hl7.org/CodeSystem/audit-entity-type";
    pub const OBJECT_ROLE: &str = "http://terminology.hl7.org/CodeSystem/object-role";
    pub const SOURCE_TYPE: &str = "http://terminology.hl7.org/CodeSystem/security-source-type";
    pub const BALP_ENTITY_TYPE: &str =
        "https://profiles.ihe.net/ITI/BALP/CodeSystem/BasicAuditEntityType";
    pub const NHS_NUMBER: &str = "https://fhir.nhs.uk/Id/nhs-number";
    pub const ODS: &str = "https://fhir.nhs.uk/Id/ods-organization-code";
    pub const USER_ID: &str = "https://fhir.nhs.uk/Id/sds-user-id";
    /// nrls's own: the OAuth client id of an onboarded app.
    pub const CLIENT_ID: &str = "urn:nrls:client-id";
    /// nrls's own: a national RBAC role code.
    pub const NRBAC_ROLE: &str = "urn:nrls:nrbac-role-code";
    /// nrls's own complex extension: how access was decided.
    pub const ACCESS_EXTENSION: &str = "urn:nrls:fhir:StructureDefinition:access-decision";
    /// nrls's own subtypes of DICOM "User Authentication" (the issue of an
    /// access token has no DICOM code).
    pub const SESSION_EVENT: &str = "urn:nrls:audit-session-event";
    /// The identifier system of an NHS login `sub` in an event's agents.
    pub const NHS_LOGIN_SUBJECT: &str = "https://login.nhs.uk/sub";
}

/// DICOM `110114`, the `AuditEvent.type` of [`SessionEvent`]s.
pub const USER_AUTHENTICATION: &str = "110114";

/// Events about a patient's NHS login session rather than their records:
/// BALP records authentication as DICOM `110114` "User Authentication"
/// with subtype `110122` Login or `110123` Logout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionEvent {
    /// Signing in with NHS login (success or failure).
    Login,
    /// Signing out.
    Logout,
    /// A patient token issued from the session (`POST /patient/token`).
    TokenIssued,
}

impl SessionEvent {
    const ALL: [SessionEvent; 3] = [
        SessionEvent::Login,
        SessionEvent::Logout,
        SessionEvent::TokenIssued,
    ];

    /// The `AuditEvent.subtype` coding: system, code, display.
    pub fn subtype(self) -> (&'static str, &'static str, &'static str) {
        match self {
            SessionEvent::Login => (systems::DCM, "110122", "Login"),
            SessionEvent::Logout => (systems::DCM, "110123", "Logout"),
            SessionEvent::TokenIssued => (systems::SESSION_EVENT, "token-issued", "Token issued"),
        }
    }

    /// Reads an event's `subtype` code back.
    pub fn of_code(code: &str) -> Option<SessionEvent> {
        Self::ALL.into_iter().find(|e| e.subtype().1 == code)
    }

    /// The compact record's code (part of format 2: never renumbered).
    pub(crate) fn code(self) -> u8 {
        match self {
            SessionEvent::Login => 1,
            SessionEvent::Logout => 2,
            SessionEvent::TokenIssued => 3,
        }
    }

    /// Inverse of [`SessionEvent::code`].
    pub(crate) fn of_byte(code: u8) -> Option<SessionEvent> {
        Self::ALL.into_iter().find(|e| e.code() == code)
    }
}

/// The FHIR interaction audited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Interaction {
    /// A search (or count).
    Search,
    /// A read of one resource.
    Read,
    /// A create (supersede included).
    Create,
    /// An update.
    Update,
    /// A delete.
    Delete,
}

impl Interaction {
    /// The `restful-interaction` code.
    pub fn code(self) -> &'static str {
        match self {
            Interaction::Search => "search-type",
            Interaction::Read => "read",
            Interaction::Create => "create",
            Interaction::Update => "update",
            Interaction::Delete => "delete",
        }
    }

    /// The `AuditEvent.action` code: E(xecute) for searches, else CRUD.
    pub fn action(self) -> &'static str {
        match self {
            Interaction::Search => "E",
            Interaction::Read => "R",
            Interaction::Create => "C",
            Interaction::Update => "U",
            Interaction::Delete => "D",
        }
    }
}

/// `AuditEvent.outcome`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuditOutcome {
    /// `0`: the request succeeded.
    Success,
    /// `4`: refused or invalid (4xx, denials included).
    MinorFailure,
    /// `8`: our failure (5xx).
    SeriousFailure,
}

impl AuditOutcome {
    /// The FHIR code: `0`, `4` or `8`.
    pub fn code(self) -> &'static str {
        match self {
            AuditOutcome::Success => "0",
            AuditOutcome::MinorFailure => "4",
            AuditOutcome::SeriousFailure => "8",
        }
    }

    /// Reads a code written by [`AuditOutcome::code`].
    pub fn parse(code: &str) -> Option<AuditOutcome> {
        match code {
            "0" => Some(AuditOutcome::Success),
            "4" => Some(AuditOutcome::MinorFailure),
            "8" => Some(AuditOutcome::SeriousFailure),
            _ => None,
        }
    }

    /// From an HTTP status.
    pub fn of_status(status: u16) -> AuditOutcome {
        match status {
            0..=399 => AuditOutcome::Success,
            400..=499 => AuditOutcome::MinorFailure,
            _ => AuditOutcome::SeriousFailure,
        }
    }
}

/// The end user, when one was identified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditUser {
    /// The person id (ID token `sub`).
    pub person_id: String,
    /// The national RBAC role code the user acted in.
    pub role_code: Option<String>,
}

/// How access was decided, as the policy said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessFacts {
    /// `recorded`, `self-claimed` or `break-glass` (owned when read back
    /// from a stored record).
    pub basis: Cow<'static, str>,
    /// The reason given for a self-claim or break-glass.
    pub reason: Option<String>,
    /// The policy's reason code (a basis such as `BREAK_GLASS` or a denial).
    pub decision: Cow<'static, str>,
    /// A privacy-officer alert was raised (self-claimed or break-glass).
    pub alert: bool,
    /// Break-glass lifted a patient objection.
    pub objection_overridden: bool,
}

impl AccessFacts {
    /// The facts of an allowed request.
    pub fn granted(basis: &AccessBasis, grant: &Grant<'_>) -> AccessFacts {
        AccessFacts {
            basis: Cow::Borrowed(basis.kind()),
            reason: basis.reason().map(str::to_owned),
            decision: Cow::Borrowed(grant.basis.as_str()),
            alert: grant.alert.is_some(),
            objection_overridden: grant.objection_overridden,
        }
    }

    /// The facts of a denied request.
    pub fn denied(basis: &AccessBasis, denial: &Denial) -> AccessFacts {
        AccessFacts {
            basis: Cow::Borrowed(basis.kind()),
            reason: basis.reason().map(str::to_owned),
            decision: Cow::Borrowed(denial.reason.as_str()),
            alert: false,
            objection_overridden: false,
        }
    }

    /// The alert kind this decision raised, if any.
    pub fn alert_kind(&self) -> Option<&str> {
        self.alert.then_some(&*self.basis)
    }
}

/// What the HTTP layer knows about one request when it answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditFacts {
    /// What the request did.
    pub interaction: Interaction,
    /// How it ended.
    pub outcome: AuditOutcome,
    /// Short text: an error code on failure.
    pub outcome_desc: Option<String>,
    /// RFC 3339, UTC. [`now_rfc3339`] gives the current time.
    pub recorded: String,
    /// The `X-Request-Id`.
    pub request_id: Option<String>,
    /// The app's client id.
    pub client_id: String,
    /// ODS code the app acted for.
    pub organisation: Option<String>,
    /// The end user, when one was identified.
    pub user: Option<AuditUser>,
    /// The declared purpose of use code.
    pub purpose_of_use: Option<String>,
    /// The patient whose data was touched.
    pub patient: Option<NhsNumber>,
    /// `ResourceType/id` of each resource touched, e.g. `DocumentReference/X26-1`.
    pub resources: Vec<String>,
    /// The search's query string, stored base64 as BALP asks.
    pub query: Option<String>,
    /// The access decision, for consumer calls.
    pub access: Option<AccessFacts>,
    /// Not a RESTful operation: a patient's sign-in, sign-out or token.
    pub session: Option<SessionEvent>,
    /// The NHS login `sub` of the patient acting, when known.
    pub login_subject: Option<String>,
}

/// The current UTC time as FHIR `instant` (RFC 3339, millisecond precision).
pub fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    let millis = now.millisecond();
    let now = now.replace_millisecond(millis).unwrap_or(now);
    now.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_owned())
}

fn concept(system: &str, code: &str, display: &str) -> CodeableConcept {
    CodeableConcept {
        coding: Some(vec![Coding::new(system, code, display)]),
        ..Default::default()
    }
}

fn identified(system: &str, value: &str) -> Reference {
    Reference {
        identifier: Some(Identifier::new(system, value)),
        ..Default::default()
    }
}

impl AuditFacts {
    /// The `AuditEvent` for these facts; `node` names this nrls node (the
    /// source observer).
    pub fn to_event(&self, node: &str) -> AuditEvent {
        let mut event = self.restful_event(node);
        self.shape_session(&mut event);
        event
    }

    /// A session event is typed as DICOM "User Authentication", and the NHS
    /// login account that acted is named as the requesting agent; the other
    /// fields (outcome, purpose, patient, time) render as for any request.
    fn shape_session(&self, event: &mut AuditEvent) {
        if let Some(kind) = self.session {
            let (system, code, display) = kind.subtype();
            event.kind = Coding::new(systems::DCM, USER_AUTHENTICATION, "User Authentication");
            event.subtype = vec![Coding::new(system, code, display)];
            event.action = Some("E".to_owned());
        }
        if let Some(subject) = &self.login_subject {
            // The patient, not the app, asked.
            event.agent.iter_mut().for_each(|a| a.requestor = false);
            event.agent.push(AuditAgent {
                kind: Some(concept(
                    systems::PARTICIPATION,
                    "IRCP",
                    "information recipient",
                )),
                who: Some(identified(systems::NHS_LOGIN_SUBJECT, subject)),
                requestor: true,
                ..Default::default()
            });
        }
    }

    fn restful_event(&self, node: &str) -> AuditEvent {
        AuditEvent {
            resource_type: "AuditEvent".to_owned(),
            id: None,
            extension: self.access.iter().map(access_extension).collect(),
            kind: Coding::new(systems::EVENT_TYPE, "rest", "Restful Operation"),
            subtype: vec![Coding::new(
                systems::INTERACTION,
                self.interaction.code(),
                self.interaction.code(),
            )],
            action: Some(self.interaction.action().to_owned()),
            recorded: self.recorded.clone(),
            outcome: Some(self.outcome.code().to_owned()),
            outcome_desc: self.outcome_desc.clone(),
            purpose_of_event: self
                .purpose_of_use
                .iter()
                .map(|p| concept(PURPOSE_OF_USE_SYSTEM, p, p))
                .collect(),
            agent: self.agents(),
            source: AuditSource {
                site: None,
                observer: Reference {
                    display: Some(node.to_owned()),
                    ..Default::default()
                },
                kind: vec![Coding::new(systems::SOURCE_TYPE, "4", "Application Server")],
                extra: Default::default(),
            },
            entity: self.entities(),
            extra: Default::default(),
        }
    }

    fn agents(&self) -> Vec<AuditAgent> {
        let purpose: Vec<CodeableConcept> = self
            .purpose_of_use
            .iter()
            .map(|p| concept(PURPOSE_OF_USE_SYSTEM, p, p))
            .collect();
        let mut agents = vec![AuditAgent {
            kind: Some(concept(systems::DCM, "110150", "Application")),
            who: Some(identified(systems::CLIENT_ID, &self.client_id)),
            requestor: self.user.is_none(),
            purpose_of_use: if self.user.is_none() {
                purpose.clone()
            } else {
                vec![]
            },
            ..Default::default()
        }];
        if let Some(user) = &self.user {
            agents.push(AuditAgent {
                kind: Some(concept(
                    systems::PARTICIPATION,
                    "IRCP",
                    "information recipient",
                )),
                role: user
                    .role_code
                    .iter()
                    .map(|r| concept(systems::NRBAC_ROLE, r, r))
                    .collect(),
                who: Some(identified(systems::USER_ID, &user.person_id)),
                requestor: true,
                purpose_of_use: purpose,
                ..Default::default()
            });
        }
        if let Some(ods) = &self.organisation {
            agents.push(AuditAgent {
                kind: Some(concept(systems::ROLE_CLASS, "PROV", "healthcare provider")),
                who: Some(identified(systems::ODS, ods)),
                requestor: false,
                ..Default::default()
            });
        }
        agents
    }

    fn entities(&self) -> Vec<AuditEntity> {
        let mut entities = Vec::with_capacity(3 + self.resources.len());
        if let Some(patient) = self.patient {
            entities.push(AuditEntity {
                what: Some(identified(
                    systems::NHS_NUMBER,
                    &format!("{:010}", patient.as_u64()),
                )),
                kind: Some(Coding::new(systems::ENTITY_TYPE, "1", "Person")),
                role: Some(Coding::new(systems::OBJECT_ROLE, "1", "Patient")),
                ..Default::default()
            });
        }
        for resource in &self.resources {
            entities.push(AuditEntity {
                what: Some(Reference {
                    reference: Some(resource.clone()),
                    ..Default::default()
                }),
                kind: Some(Coding::new(systems::ENTITY_TYPE, "2", "System Object")),
                role: Some(Coding::new(systems::OBJECT_ROLE, "4", "Domain Resource")),
                ..Default::default()
            });
        }
        if let Some(query) = &self.query {
            entities.push(AuditEntity {
                kind: Some(Coding::new(systems::ENTITY_TYPE, "2", "System Object")),
                role: Some(Coding::new(systems::OBJECT_ROLE, "24", "Query")),
                query: Some(STANDARD.encode(query)),
                ..Default::default()
            });
        }
        if let Some(request_id) = &self.request_id {
            entities.push(AuditEntity {
                what: Some(Reference {
                    identifier: Some(Identifier {
                        value: Some(request_id.clone()),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                kind: Some(Coding::new(
                    systems::BALP_ENTITY_TYPE,
                    "XrequestId",
                    "X-Request-Id",
                )),
                ..Default::default()
            });
        }
        entities
    }
}

fn access_extension(access: &AccessFacts) -> serde_json::Value {
    let mut parts = vec![
        json!({ "url": "basis", "valueCode": access.basis }),
        json!({ "url": "decision", "valueCode": access.decision }),
        json!({ "url": "alert", "valueBoolean": access.alert }),
    ];
    if let Some(reason) = &access.reason {
        parts.push(json!({ "url": "reason", "valueString": reason }));
    }
    if access.objection_overridden {
        parts.push(json!({ "url": "objectionOverridden", "valueBoolean": true }));
    }
    json!({ "url": systems::ACCESS_EXTENSION, "extension": parts })
}

/// Reads back the access decision extension of a stored event.
pub fn access_of(event: &AuditEvent) -> Option<(String, Option<String>, bool)> {
    let ext = event
        .extension
        .iter()
        .find(|e| e.get("url").and_then(|u| u.as_str()) == Some(systems::ACCESS_EXTENSION))?;
    let parts = ext.get("extension")?.as_array()?;
    let part = |name: &str| {
        parts
            .iter()
            .find(|p| p.get("url").and_then(|u| u.as_str()) == Some(name))
    };
    let basis = part("basis")?.get("valueCode")?.as_str()?.to_owned();
    let reason = part("reason")
        .and_then(|p| p.get("valueString"))
        .and_then(|v| v.as_str())
        .map(str::to_owned);
    let alert = part("alert")
        .and_then(|p| p.get("valueBoolean"))
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    Some((basis, reason, alert))
}
