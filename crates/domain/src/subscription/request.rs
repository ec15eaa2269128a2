//! Reads a `Subscription` body (R4, Backport IG profile) into what nrls
//! needs, listing EVERY problem at once, each with the FHIRPath of the
//! element at fault, so a client fixes its request in one round.

use serde_json::{Map, Value};

use super::{
    FILTER_CRITERIA_EXT, HEARTBEAT_EXT, PAYLOAD_CONTENT_EXT, PayloadContent, Spec, TIMEOUT_EXT,
    Topic,
};
use crate::catalogue::Catalogue;
use crate::issue::{ErrorCode, Issue, IssueType};
use crate::systems::{NHS_NUMBER, ODS_CODE};
use crate::{NhsNumber, OdsCode, Role};

/// Operator rules a body is checked against.
#[derive(Debug, Clone, Default)]
pub struct Rules<'a> {
    /// Hosts an `http` (not `https`) endpoint may name: for tests and local
    /// demos only.
    pub http_hosts: &'a [String],
    /// Longest time-out a subscriber may ask for, in seconds.
    pub max_timeout_secs: u32,
}

/// A subscription request that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub nhs_number: NhsNumber,
    pub spec_topic: Topic,
    pub types: Vec<String>,
    pub categories: Vec<String>,
    pub custodians: Vec<String>,
    pub endpoint: String,
    pub headers: Vec<String>,
    pub payload: PayloadContent,
    pub heartbeat_secs: u32,
    pub timeout_secs: Option<u32>,
    pub reason: String,
}

impl Request {
    /// The stored spec, for a subscription made in `role` for `organisation`.
    pub fn into_spec(self, role: Role, organisation: &OdsCode) -> Spec {
        Spec {
            topic: self.spec_topic,
            patient: self.nhs_number.to_string(),
            types: self.types,
            categories: self.categories,
            custodians: self.custodians,
            endpoint: self.endpoint,
            headers: self.headers,
            payload: self.payload,
            heartbeat_secs: self.heartbeat_secs,
            timeout_secs: self.timeout_secs,
            reason: self.reason,
            role,
            organisation: organisation.as_str().to_owned(),
        }
    }
}

/// Top-level elements nrls understands; anything else is refused rather
/// than silently ignored.
const KNOWN: &[&str] = &[
    "resourceType",
    "id",
    "meta",
    "text",
    "status",
    "reason",
    "criteria",
    "_criteria",
    "channel",
    "contact",
];
const CHANNEL_KNOWN: &[&str] = &[
    "type",
    "endpoint",
    "payload",
    "_payload",
    "header",
    "extension",
];

fn invalid(expression: impl Into<String>, why: impl Into<String>) -> Issue {
    Issue::new(
        ErrorCode::InvalidResource,
        IssueType::Invalid,
        expression,
        why,
    )
}

fn unsupported(expression: impl Into<String>, why: impl Into<String>) -> Issue {
    Issue::new(
        ErrorCode::InvalidResource,
        IssueType::NotSupported,
        expression,
        why,
    )
}

/// Checks a `Subscription` body. Every problem is listed.
pub fn parse(
    body: &Value,
    catalogue: &Catalogue,
    rules: &Rules<'_>,
) -> Result<Request, Vec<Issue>> {
    let mut issues = Vec::new();
    let Some(object) = body.as_object() else {
        return Err(vec![invalid(
            "Subscription",
            "the body must be a JSON object",
        )]);
    };
    if object.get("resourceType").and_then(Value::as_str) != Some("Subscription") {
        issues.push(invalid(
            "Subscription.resourceType",
            "resourceType must be Subscription",
        ));
    }
    for key in object.keys().filter(|k| !KNOWN.contains(&k.as_str())) {
        issues.push(unsupported(
            format!("Subscription.{}", key.trim_start_matches('_')),
            format!("{key} is not supported by nrls subscriptions"),
        ));
    }
    match object.get("status").map(Value::as_str) {
        None | Some(Some("requested" | "active")) => {}
        _ => issues.push(invalid(
            "Subscription.status",
            "status must be requested (or active, treated as requested): the server sets it",
        )),
    }
    let reason = match object.get("reason").and_then(Value::as_str) {
        Some(r) if !r.trim().is_empty() => r.to_owned(),
        _ => {
            issues.push(Issue::required("Subscription.reason"));
            String::new()
        }
    };
    let topic = match object.get("criteria").and_then(Value::as_str) {
        Some(text) => Topic::from_canonical(text).or_else(|| {
            issues.push(Issue::new(
                ErrorCode::InvalidResource,
                IssueType::NotSupported,
                "Subscription.criteria",
                format!(
                    "criteria must be one of the topics: {}",
                    Topic::ALL.map(Topic::canonical).join(", ")
                ),
            ));
            None
        }),
        None => {
            issues.push(Issue::required("Subscription.criteria"));
            None
        }
    };
    let filters = filters(object, catalogue, &mut issues);
    let channel = channel(object, rules, &mut issues);
    match (topic, filters, channel) {
        (Some(spec_topic), Some(f), Some(c)) if issues.is_empty() => Ok(Request {
            nhs_number: f.nhs_number,
            spec_topic,
            types: f.types,
            categories: f.categories,
            custodians: f.custodians,
            endpoint: c.endpoint,
            headers: c.headers,
            payload: c.payload,
            heartbeat_secs: c.heartbeat_secs,
            timeout_secs: c.timeout_secs,
            reason,
        }),
        _ => Err(issues),
    }
}

struct Filters {
    nhs_number: NhsNumber,
    types: Vec<String>,
    categories: Vec<String>,
    custodians: Vec<String>,
}

/// The `backport-filter-criteria` extensions: `DocumentReference?name=value`
/// (the resource prefix is optional), values comma-separated (any of).
fn filters(
    object: &Map<String, Value>,
    catalogue: &Catalogue,
    issues: &mut Vec<Issue>,
) -> Option<Filters> {
    let extensions = object
        .get("_criteria")
        .and_then(|c| c.get("extension"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut patients: Vec<NhsNumber> = Vec::new();
    let mut types = Vec::new();
    let mut categories = Vec::new();
    let mut custodians = Vec::new();
    let mut patient_seen = false;
    for (i, extension) in extensions.iter().enumerate() {
        let at = format!("Subscription.criteria.extension[{i}]");
        if extension.get("url").and_then(Value::as_str) != Some(FILTER_CRITERIA_EXT) {
            issues.push(unsupported(
                &at,
                format!("only {FILTER_CRITERIA_EXT} extensions are supported on criteria"),
            ));
            continue;
        }
        let Some(text) = extension.get("valueString").and_then(Value::as_str) else {
            issues.push(invalid(format!("{at}.value"), "a filter is a valueString"));
            continue;
        };
        let text = text.strip_prefix("DocumentReference?").unwrap_or(text);
        let Some((name, values)) = text.split_once('=') else {
            issues.push(invalid(format!("{at}.value"), "a filter is name=value"));
            continue;
        };
        let at = format!("{at}.value");
        let values: Vec<&str> = values.split(',').map(str::trim).collect();
        match name.trim() {
            "patient.identifier" | "patient:identifier" | "subject:identifier" | "subject.identifier" => {
                if patient_seen || values.len() != 1 {
                    issues.push(invalid(&at, "a subscription is for exactly one patient"));
                }
                patient_seen = true;
                for v in values {
                    match v.split_once('|') {
                        Some((NHS_NUMBER, n)) => match NhsNumber::parse(n) {
                            Ok(n) => patients.push(n),
                            Err(e) => issues.push(Issue::new(ErrorCode::InvalidNhsNumber, IssueType::Invalid, &at, format!("patient.identifier: {e}"))),
                        },
                        _ => issues.push(Issue::new(ErrorCode::InvalidIdentifierSystem, IssueType::Invalid, &at, format!("patient.identifier must be {NHS_NUMBER}|<NHS number>"))),
                    }
                }
            }
            "type" => {
                for v in values {
                    if catalogue.find_key(v).is_some() {
                        types.push(v.to_owned());
                    } else {
                        issues.push(Issue::new(ErrorCode::InvalidCodeValue, IssueType::CodeInvalid, &at, format!("type {v} is not a pointer type (system|code)")));
                    }
                }
            }
            "category" => {
                for v in values {
                    match v.split_once('|') {
                        Some((system, code)) if catalogue.is_category(system, code) => categories.push(v.to_owned()),
                        _ => issues.push(Issue::new(ErrorCode::InvalidCodeValue, IssueType::CodeInvalid, &at, format!("category {v} is not a pointer category (system|code)"))),
                    }
                }
            }
            "custodian.identifier" | "custodian:identifier" => {
                for v in values {
                    match v.split_once('|').and_then(|(s, c)| (s == ODS_CODE).then_some(c)).and_then(OdsCode::parse) {
                        Some(ods) => custodians.push(ods.as_str().to_owned()),
                        None => issues.push(Issue::new(ErrorCode::InvalidIdentifierValue, IssueType::Invalid, &at, format!("custodian.identifier must be {ODS_CODE}|<ODS code>"))),
                    }
                }
            }
            other => issues.push(unsupported(&at, format!("filter {other} is not supported: use patient.identifier, type, category or custodian.identifier"))),
        }
    }
    if !patient_seen {
        issues.push(Issue::new(
            ErrorCode::InvalidResource,
            IssueType::Required,
            "Subscription.criteria.extension",
            format!("a {FILTER_CRITERIA_EXT} extension with DocumentReference?patient.identifier={NHS_NUMBER}|<NHS number> is required"),
        ));
    }
    Some(Filters {
        nhs_number: *patients.first()?,
        types,
        categories,
        custodians,
    })
}

struct Channel {
    endpoint: String,
    headers: Vec<String>,
    payload: PayloadContent,
    heartbeat_secs: u32,
    timeout_secs: Option<u32>,
}

fn channel(
    object: &Map<String, Value>,
    rules: &Rules<'_>,
    issues: &mut Vec<Issue>,
) -> Option<Channel> {
    let Some(channel) = object.get("channel").and_then(Value::as_object) else {
        issues.push(Issue::required("Subscription.channel"));
        return None;
    };
    let before = issues.len();
    for key in channel
        .keys()
        .filter(|k| !CHANNEL_KNOWN.contains(&k.as_str()))
    {
        issues.push(unsupported(
            format!("Subscription.channel.{}", key.trim_start_matches('_')),
            format!("channel.{key} is not supported"),
        ));
    }
    match channel.get("type").and_then(Value::as_str) {
        Some("rest-hook") => {}
        Some(other) => issues.push(unsupported(
            "Subscription.channel.type",
            format!("channel type {other} is not supported: only rest-hook"),
        )),
        None => issues.push(Issue::required("Subscription.channel.type")),
    }
    let endpoint = match channel.get("endpoint").and_then(Value::as_str) {
        Some(url) => {
            if let Err(why) = check_endpoint(url, rules) {
                issues.push(invalid("Subscription.channel.endpoint", why));
            }
            url.to_owned()
        }
        None => {
            issues.push(Issue::required("Subscription.channel.endpoint"));
            String::new()
        }
    };
    match channel.get("payload").map(Value::as_str) {
        None | Some(Some("application/fhir+json" | "application/json")) => {}
        _ => issues.push(unsupported(
            "Subscription.channel.payload",
            "payload must be application/fhir+json",
        )),
    }
    let mut payload = PayloadContent::default();
    for (i, ext) in extensions(channel.get("_payload").and_then(|p| p.get("extension")))
        .iter()
        .enumerate()
    {
        let at = format!("Subscription.channel.payload.extension[{i}]");
        if ext.get("url").and_then(Value::as_str) != Some(PAYLOAD_CONTENT_EXT) {
            issues.push(unsupported(
                &at,
                format!("only {PAYLOAD_CONTENT_EXT} is supported here"),
            ));
            continue;
        }
        match ext
            .get("valueCode")
            .and_then(Value::as_str)
            .and_then(PayloadContent::parse)
        {
            Some(p) => payload = p,
            None => issues.push(invalid(
                format!("{at}.value"),
                "payload content must be empty, id-only or full-resource",
            )),
        }
    }
    let mut headers = Vec::new();
    match channel.get("header") {
        None => {}
        Some(Value::Array(lines)) => {
            for (i, line) in lines.iter().enumerate() {
                match line.as_str().filter(|l| valid_header(l)) {
                    Some(l) => headers.push(l.to_owned()),
                    None => issues.push(invalid(
                        format!("Subscription.channel.header[{i}]"),
                        "a header is \"Name: value\" (a token name, printable value)",
                    )),
                }
            }
        }
        Some(_) => issues.push(invalid(
            "Subscription.channel.header",
            "header is a list of strings",
        )),
    }
    let mut heartbeat_secs = 0;
    let mut timeout_secs = None;
    for (i, ext) in extensions(channel.get("extension")).iter().enumerate() {
        let at = format!("Subscription.channel.extension[{i}]");
        let value = ext
            .get("valueUnsignedInt")
            .and_then(Value::as_u64)
            .and_then(|v| u32::try_from(v).ok());
        match (ext.get("url").and_then(Value::as_str), value) {
            (Some(HEARTBEAT_EXT), Some(v)) => heartbeat_secs = v,
            (Some(TIMEOUT_EXT), Some(v)) if v >= 1 && v <= rules.max_timeout_secs.max(1) => timeout_secs = Some(v),
            (Some(TIMEOUT_EXT), _) => issues.push(invalid(format!("{at}.value"), format!("timeout must be 1 to {} seconds", rules.max_timeout_secs.max(1)))),
            (Some(HEARTBEAT_EXT), _) => issues.push(invalid(format!("{at}.value"), "heartbeat period is a valueUnsignedInt of seconds")),
            _ => issues.push(unsupported(&at, "only the backport heartbeat-period and timeout extensions are supported on channel")),
        }
    }
    (issues.len() == before).then_some(Channel {
        endpoint,
        headers,
        payload,
        heartbeat_secs,
        timeout_secs,
    })
}

fn extensions(value: Option<&Value>) -> Vec<Value> {
    value.and_then(Value::as_array).cloned().unwrap_or_default()
}

/// `https://host...`, or `http://host...` for an allowed host.
fn check_endpoint(url: &str, rules: &Rules<'_>) -> Result<(), String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or("endpoint must be an absolute URL")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit('@').next().unwrap_or("");
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        host_port.split(':').next().unwrap_or("")
    };
    if host.is_empty() || url.chars().any(char::is_whitespace) {
        return Err("endpoint must be an absolute URL with a host".into());
    }
    match scheme {
        "https" => Ok(()),
        "http"
            if rules
                .http_hosts
                .iter()
                .any(|h| h.eq_ignore_ascii_case(host)) =>
        {
            Ok(())
        }
        "http" => Err(format!(
            "endpoint must use https (http only for the configured hosts; {host} is not one)"
        )),
        _ => Err("endpoint must be an https URL".into()),
    }
}

/// `Name: value`, name a token, value printable ASCII.
fn valid_header(line: &str) -> bool {
    let Some((name, value)) = line.split_once(':') else {
        return false;
    };
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    !name.is_empty()
        && name.chars().all(token)
        && value
            .chars()
            .all(|c| c == ' ' || c == '\t' || c.is_ascii_graphic())
}
