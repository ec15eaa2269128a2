#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use proptest::prelude::*;
use serde_json::{Value, json};

use super::notification::{self, Event, Kind, Status};
use super::request::{Rules, parse};
use super::retry::{RetrySchedule, is_permanent};
use super::*;

const PATIENT: &str = "9999999999";
const RESPECT: &str = "http://snomed.info/sct|1382601000000107";

fn catalogue() -> &'static Catalogue {
    Catalogue::nrl_v3()
}

fn rules() -> Rules<'static> {
    static HOSTS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    Rules {
        http_hosts: HOSTS.get_or_init(|| vec!["127.0.0.1".to_owned()]),
        max_timeout_secs: 60,
    }
}

fn filter(text: &str) -> Value {
    json!({"url": FILTER_CRITERIA_EXT, "valueString": text})
}

fn body() -> Value {
    json!({
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "Ambulance service: crisis plans",
        "criteria": Topic::PointerMinUpdate.canonical(),
        "_criteria": {"extension": [
            filter(&format!("DocumentReference?patient.identifier=https://fhir.nhs.uk/Id/nhs-number|{PATIENT}")),
            filter(&format!("type={RESPECT}")),
        ]},
        "channel": {
            "type": "rest-hook",
            "endpoint": "https://ambulance.example/notify",
            "payload": "application/fhir+json",
            "_payload": {"extension": [{"url": PAYLOAD_CONTENT_EXT, "valueCode": "full-resource"}]},
            "header": ["Authorization: Bearer abc"],
            "extension": [{"url": HEARTBEAT_EXT, "valueUnsignedInt": 60}]
        }
    })
}

#[test]
fn a_full_request_parses() {
    let request = parse(&body(), catalogue(), &rules()).unwrap();
    assert_eq!(request.nhs_number.to_string(), PATIENT);
    assert_eq!(request.spec_topic, Topic::PointerMinUpdate);
    assert_eq!(request.types, vec![RESPECT.to_owned()]);
    assert_eq!(request.payload, PayloadContent::FullResource);
    assert_eq!(request.heartbeat_secs, 60);
    assert_eq!(
        request.headers,
        vec!["Authorization: Bearer abc".to_owned()]
    );
}

#[test]
fn every_problem_is_listed_with_its_element() {
    let bad = json!({
        "resourceType": "Subscription",
        "criteria": "http://example.org/nope",
        "end": "2030-01-01",
        "_criteria": {"extension": [filter("type=http://snomed.info/sct|1"), filter("author=x")]},
        "channel": {"type": "websocket", "endpoint": "http://elsewhere.example/x", "header": ["no colon"]}
    });
    let issues = parse(&bad, catalogue(), &rules()).unwrap_err();
    let expressions: Vec<&str> = issues
        .iter()
        .filter_map(|i| i.expression.as_deref())
        .collect();
    for expected in [
        "Subscription.end",
        "Subscription.reason",
        "Subscription.criteria",
        "Subscription.criteria.extension[0].value",
        "Subscription.criteria.extension[1].value",
        "Subscription.criteria.extension",
        "Subscription.channel.type",
        "Subscription.channel.endpoint",
        "Subscription.channel.header[0]",
    ] {
        assert!(
            expressions.contains(&expected),
            "{expected} missing from {expressions:?}"
        );
    }
}

#[test]
fn http_only_for_allowed_hosts() {
    let mut b = body();
    b["channel"]["endpoint"] = json!("http://127.0.0.1:9000/hook");
    assert!(parse(&b, catalogue(), &rules()).is_ok());
    b["channel"]["endpoint"] = json!("http://127.0.0.2:9000/hook");
    assert!(parse(&b, catalogue(), &rules()).is_err());
    b["channel"]["endpoint"] = json!("ftp://127.0.0.1/hook");
    assert!(parse(&b, catalogue(), &rules()).is_err());
}

#[test]
fn one_patient_only() {
    let mut b = body();
    b["_criteria"]["extension"][0] = filter(&format!(
        "patient.identifier=https://fhir.nhs.uk/Id/nhs-number|{PATIENT},https://fhir.nhs.uk/Id/nhs-number|{PATIENT}"
    ));
    let issues = parse(&b, catalogue(), &rules()).unwrap_err();
    assert!(
        issues
            .iter()
            .any(|i| i.diagnostics.contains("exactly one patient"))
    );
}

fn facts<'a>(change: Change, type_key: &'a str, custodian: &'a OdsCode) -> ChangeFacts<'a> {
    ChangeFacts {
        change,
        nhs_number: NhsNumber::parse(PATIENT).unwrap(),
        type_key,
        custodian,
    }
}

#[test]
fn topics_and_filters_select_changes() {
    let ods = OdsCode::parse("Y05868").unwrap();
    let org = OdsCode::parse("RX898").unwrap();
    let mut spec = parse(&body(), catalogue(), &rules())
        .unwrap()
        .into_spec(Role::Consumer, &org);
    let c = catalogue();
    assert!(spec.matches(c, &facts(Change::Created, RESPECT, &ods)));
    assert!(spec.matches(c, &facts(Change::Superseded, RESPECT, &ods)));
    assert!(spec.matches(c, &facts(Change::Deleted, RESPECT, &ods)));
    assert!(!spec.matches(c, &facts(Change::Updated, RESPECT, &ods)));
    assert!(!spec.matches(
        c,
        &facts(Change::Created, "http://snomed.info/sct|736253002", &ods)
    ));
    spec.custodians = vec!["RX898".into()];
    assert!(!spec.matches(c, &facts(Change::Created, RESPECT, &ods)));
    spec.custodians.clear();
    spec.types.clear();
    let respect_category = c.find_key(RESPECT).unwrap().category_code.clone();
    spec.categories = vec![format!("http://snomed.info/sct|{respect_category}")];
    assert!(spec.matches(c, &facts(Change::Created, RESPECT, &ods)));
    spec.patient = "9999999997".into();
    assert!(!spec.matches(c, &facts(Change::Created, RESPECT, &ods)));
    assert_eq!(Spec::from_json(&spec.to_json()), Some(spec));
    assert!(Topic::PointerAllChanges.covers(Change::Updated));
    assert!(!Topic::PointerCreated.covers(Change::Deleted));
}

#[test]
fn notification_bundle_follows_the_backport_profile() {
    let status = Status {
        subscription_url: "https://nrls.example/consumer/FHIR/R4/Subscription/s1",
        topic: Topic::PointerCreated,
        status: "active",
        kind: Kind::EventNotification,
        events_since_start: 2,
        error: None,
    };
    let event = Event {
        number: 2,
        timestamp: "2025-01-01T00:00:00.000Z".into(),
        focus_url: "https://nrls.example/consumer/FHIR/R4/DocumentReference/Y05868-new".into(),
        context_urls: vec![
            "https://nrls.example/consumer/FHIR/R4/DocumentReference/Y05868-old".into(),
        ],
        deleted: false,
        resource: Some(json!({"resourceType": "DocumentReference", "id": "Y05868-new"})),
    };
    let b = notification::bundle(
        "b1",
        "2025-01-01T00:00:01.000Z",
        &status,
        &[event],
        PayloadContent::FullResource,
    );
    assert_eq!(b["type"], "history");
    assert_eq!(b["meta"]["profile"][0], notification::NOTIFICATION_PROFILE);
    let entries = b["entry"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    for entry in entries {
        assert!(entry["request"]["method"].is_string() && entry["response"]["status"].is_string());
    }
    let params = &entries[0]["resource"];
    assert_eq!(params["resourceType"], "Parameters");
    let names: Vec<&str> = params["parameter"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "subscription",
            "topic",
            "status",
            "type",
            "events-since-subscription-start",
            "notification-event"
        ]
    );
    let parts = params["parameter"][5]["part"].as_array().unwrap();
    let part_names: Vec<&str> = parts.iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(
        part_names,
        ["event-number", "timestamp", "focus", "additional-context"]
    );
    assert_eq!(parts[0]["valueString"], "2");
    assert_eq!(entries[1]["resource"]["id"], "Y05868-new");

    let empty = notification::bundle(
        "b2",
        "2025-01-01T00:00:01.000Z",
        &status,
        &[],
        PayloadContent::Empty,
    );
    assert_eq!(empty["entry"].as_array().unwrap().len(), 1);
}

#[test]
fn retries_follow_the_schedule_then_stop() {
    let schedule = RetrySchedule::default();
    assert_eq!(schedule.next_delay(1, 0.0), Some(Duration::from_secs(10)));
    assert_eq!(schedule.next_delay(2, 0.0), Some(Duration::from_secs(30)));
    assert_eq!(schedule.next_delay(4, 0.0), Some(Duration::from_secs(300)));
    assert_eq!(
        schedule.next_delay(10, 0.0),
        Some(Duration::from_secs(3600))
    );
    assert_eq!(schedule.next_delay(40, 0.0), None);
    assert!(schedule.next_delay(1, 0.99).unwrap() < Duration::from_secs(12));
    assert!(is_permanent(410) && is_permanent(400) && !is_permanent(500) && !is_permanent(429));
}

proptest! {
    #[test]
    fn parse_never_panics(text in ".{0,200}", endpoint in ".{0,40}") {
        let mut b = body();
        b["_criteria"]["extension"][1] = filter(&text);
        b["channel"]["endpoint"] = json!(endpoint);
        let _ = parse(&b, catalogue(), &rules());
    }

    #[test]
    fn retry_delays_grow_and_end(failures in 1u32..200, jitter in 0.0f64..1.0) {
        let schedule = RetrySchedule::default();
        if let Some(d) = schedule.next_delay(failures, jitter) {
            prop_assert!(d >= Duration::from_secs(10));
            prop_assert!(d <= Duration::from_secs(3600 + 720));
        }
        prop_assert!(schedule.next_delay(failures + 1, 0.0) .is_none() || schedule.next_delay(failures, 0.0).is_some());
    }
}
