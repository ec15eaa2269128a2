//! Issue 15: subscriptions, end to end on the real server with real HTTP
//! receivers (`support::receiver`), on the embedded store and PostgreSQL:
//! the handshake, notification bundles checked against the Backport IG R4
//! notification profile's rules, event numbering and order, supersede as
//! one event, retries, 410, time-outs, `$events` replay, the access
//! re-check, sensitive pointers, bad bodies; and, with real processes,
//! kill -9 between commit and delivery and two nodes delivering once.

use std::collections::BTreeMap;
use std::time::Duration;

use nrls::config::{Backend, Config};
use serde_json::{Value, json};

use crate::support::node::{Deployment, Storage};
use crate::support::receiver::{Mode, Received, Receiver, parameter, status};
use crate::support::{CRISIS, Client, NHS, PRODUCER_DR, RESPECT, TestServer, patient, pointer};

mod access;
mod delivery;
mod processes;

const BACKENDS: [Backend; 2] = [Backend::Sqlite, Backend::Postgres];
const SUBSCRIPTION: &str = "/consumer/FHIR/R4/Subscription";
const BACKPORT: &str = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition";
const MIN_UPDATE: &str = "https://nrls.example.org/fhir/SubscriptionTopic/pointer-min-update";
const ALL_CHANGES: &str = "https://nrls.example.org/fhir/SubscriptionTopic/pointer-all-changes";
const WAIT: Duration = Duration::from_secs(15);

fn configure(c: &mut Config) {
    c.subscriptions.http_allowed_hosts = vec!["127.0.0.1".into()];
    c.subscriptions.poll_interval_ms = 20;
    c.subscriptions.retry_delays_ms = vec![100, 200];
    c.subscriptions.retry_window_ms = 60_000;
    c.subscriptions.timeout_seconds = 1;
    c.admin.clients = vec!["admin-app".into()];
    c.apps.push(auth::demo::app_config(
        "admin-app",
        "Privacy officer tool",
        vec![auth::OrganisationConfig {
            ods: "X26".into(),
            roles: vec!["consumer".into()],
            pointer_types: vec![CRISIS.into()],
        }],
    ));
}

async fn server(backend: Backend) -> TestServer {
    TestServer::start_with(backend, configure).await
}

fn filter(text: String) -> Value {
    json!({"url": format!("{BACKPORT}/backport-filter-criteria"), "valueString": text})
}

/// A subscription to patient `n`'s pointers of `type_key` (all types when
/// `None`), on `topic`, delivered to `endpoint` with `payload`.
fn body(n: usize, endpoint: &str, topic: &str, payload: &str, type_key: Option<&str>) -> Value {
    let mut filters = vec![filter(format!(
        "DocumentReference?patient.identifier={NHS}|{}",
        patient(n)
    ))];
    if let Some(t) = type_key {
        filters.push(filter(format!("DocumentReference?type={t}")));
    }
    json!({
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "ambulance service: tell us about crisis plans",
        "criteria": topic,
        "_criteria": {"extension": filters},
        "channel": {
            "type": "rest-hook",
            "endpoint": endpoint,
            "payload": "application/fhir+json",
            "_payload": {"extension": [{"url": format!("{BACKPORT}/backport-payload-content"), "valueCode": payload}]},
            "header": ["X-Api-Key: secret-123"]
        }
    })
}

async fn subscribe(consumer: &Client, body: &Value) -> String {
    let reply = consumer.post_json(SUBSCRIPTION, body).await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    let created = reply.json();
    assert_eq!(created["status"], "requested");
    assert!(
        reply
            .header("location")
            .unwrap()
            .ends_with(created["id"].as_str().unwrap())
    );
    created["id"].as_str().unwrap().to_owned()
}

/// The producer and consumer of `s`, and the consumer's subscription made
/// of `body`, once its handshake reached `receiver` (within `within`) and it
/// is active.
async fn active_subscription(
    s: &TestServer,
    receiver: &Receiver,
    body: &Value,
    within: Duration,
) -> (Client, Client, String) {
    let producer = s.client("producer-a", "RR8").await;
    let consumer = s.client("consumer", "RX9").await;
    let id = subscribe(&consumer, body).await;
    receiver
        .wait_for(within, "the handshake", |r| {
            r.iter().any(|x| x.kind() == "handshake")
        })
        .await;
    wait_status(&consumer, &id, "active").await;
    (producer, consumer, id)
}

async fn subscription_status(consumer: &Client, id: &str) -> (String, String) {
    let reply = consumer.get(&format!("{SUBSCRIPTION}/{id}")).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let v = reply.json();
    (
        v["status"].as_str().unwrap().to_owned(),
        v["error"].as_str().unwrap_or_default().to_owned(),
    )
}

async fn wait_status(consumer: &Client, id: &str, want: &str) -> String {
    let started = std::time::Instant::now();
    loop {
        let (status, error) = subscription_status(consumer, id).await;
        if status == want {
            return error;
        }
        assert!(
            started.elapsed() < WAIT,
            "subscription stayed {status} ({error}), wanted {want}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The rules of the Backport IG's R4 notification Bundle profile
/// (backport-subscription-notification-r4) and its status Parameters
/// (backport-subscription-status-r4), as assertions.
fn assert_notification_profile(bundle: &Value, subscription_id: &str, payload: &str) {
    assert_eq!(bundle["resourceType"], "Bundle");
    assert_eq!(
        bundle["type"], "history",
        "a notification is a history Bundle"
    );
    assert!(bundle["timestamp"].is_string());
    let entries = bundle["entry"].as_array().expect("entries");
    assert!(!entries.is_empty(), "the status is always the first entry");
    // R4 bdl-3/bdl-4: history entries carry request and response.
    for entry in entries {
        assert!(entry["request"]["method"].is_string(), "{entry}");
        assert!(entry["request"]["url"].is_string(), "{entry}");
        assert!(entry["response"]["status"].is_string(), "{entry}");
    }
    let params = status(bundle);
    assert_eq!(params["resourceType"], "Parameters");
    let names: Vec<&str> = params["parameter"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for required in [
        "subscription",
        "topic",
        "status",
        "type",
        "events-since-subscription-start",
    ] {
        assert_eq!(
            names.iter().filter(|n| **n == required).count(),
            1,
            "exactly one {required}: {names:?}"
        );
    }
    let reference = parameter(bundle, "subscription")["valueReference"]["reference"]
        .as_str()
        .unwrap();
    assert!(
        reference.ends_with(&format!("/Subscription/{subscription_id}")),
        "{reference}"
    );
    assert!(parameter(bundle, "topic")["valueCanonical"].is_string());
    let status_code = parameter(bundle, "status")["valueCode"].as_str().unwrap();
    assert!(["requested", "active", "error", "off"].contains(&status_code));
    let kind = parameter(bundle, "type")["valueCode"].as_str().unwrap();
    assert!(
        [
            "handshake",
            "heartbeat",
            "event-notification",
            "query-status",
            "query-event"
        ]
        .contains(&kind)
    );
    let since: i64 = parameter(bundle, "events-since-subscription-start")["valueString"]
        .as_str()
        .unwrap()
        .parse()
        .expect("events-since-subscription-start is a number in a string");
    let events: Vec<&Value> = params["parameter"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["name"] == "notification-event")
        .collect();
    if matches!(kind, "handshake" | "heartbeat") {
        assert!(events.is_empty(), "a {kind} carries no events");
    }
    for event in &events {
        let parts = event["part"].as_array().unwrap();
        let part = |name: &str| {
            parts
                .iter()
                .filter(|p| p["name"] == name)
                .collect::<Vec<_>>()
        };
        let number: i64 = part("event-number")[0]["valueString"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(number >= 1 && number <= since, "event {number} of {since}");
        assert_eq!(part("timestamp").len(), 1);
        assert_eq!(
            part("focus").len(),
            usize::from(payload != "empty"),
            "{event}"
        );
    }
    if payload == "empty" {
        assert_eq!(entries.len(), 1, "an empty payload names no resources");
    } else {
        assert_eq!(entries.len(), 1 + events.len(), "one entry per event focus");
        for entry in &entries[1..] {
            let has_resource = entry.get("resource").is_some();
            let deleted = entry["request"]["method"] == "DELETE";
            assert_eq!(
                has_resource,
                payload == "full-resource" && !deleted,
                "{entry}"
            );
        }
    }
}

/// Event numbers of the event notifications received, in arrival order.
fn numbers(events: &[Received]) -> Vec<i64> {
    events.iter().flat_map(Received::numbers).collect()
}

/// Every event received, as (its `notification-event` parameter, its
/// Bundle entry), across notifications (one may carry several).
fn flatten(events: &[Received]) -> Vec<(Value, Value)> {
    let mut flat = Vec::new();
    for event in events {
        let params = status(&event.body)["parameter"].as_array().unwrap();
        let entries = event.body["entry"].as_array().unwrap();
        let notified = params.iter().filter(|p| p["name"] == "notification-event");
        for (param, entry) in notified.zip(entries.iter().skip(1)) {
            flat.push((param.clone(), entry.clone()));
        }
    }
    flat
}

/// How many events (not notifications: one may carry several) arrived.
fn event_count(received: &[Received]) -> usize {
    received
        .iter()
        .filter(|x| x.kind() == "event-notification")
        .map(|x| x.numbers().len())
        .sum()
}
