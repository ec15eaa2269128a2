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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_then_numbered_events_in_order() {
    for backend in BACKENDS {
        let s = server(backend).await;
        let receiver = Receiver::start(Mode::Ok).await;
        let producer = s.client("producer-a", "RR8").await;
        let consumer = s.client("consumer", "RX9").await;
        let id = subscribe(
            &consumer,
            &body(0, &receiver.url, MIN_UPDATE, "id-only", None),
        )
        .await;
        receiver
            .wait_for(WAIT, "the handshake", |r| {
                r.iter().any(|x| x.kind() == "handshake")
            })
            .await;
        wait_status(&consumer, &id, "active").await;
        let handshake = &receiver.received()[0];
        assert_notification_profile(&handshake.body, &id, "id-only");
        assert_eq!(
            parameter(&handshake.body, "status")["valueCode"],
            "requested"
        );
        assert_eq!(handshake.headers["x-api-key"], "secret-123");
        assert_eq!(handshake.headers["content-type"], "application/fhir+json");

        let a = producer.create(&pointer("RR8", 0, RESPECT)).await;
        let b = producer.create(&pointer("RR8", 0, CRISIS)).await;
        // Not this patient: no event.
        producer.create(&pointer("RR8", 1, RESPECT)).await;
        let mut replacing = pointer("RR8", 0, RESPECT);
        replacing["relatesTo"] =
            json!([{"code": "replaces", "target": {"identifier": {"value": a}}}]);
        let c = producer.create(&replacing).await;
        let deleted = producer.delete(&format!("{PRODUCER_DR}/{b}")).await;
        assert_eq!(deleted.status, 200, "{}", deleted.text);

        receiver
            .wait_for(WAIT, "four events", |r| event_count(r) >= 4)
            .await;
        let events = receiver.events();
        assert_eq!(
            numbers(&events),
            vec![1, 2, 3, 4],
            "{backend:?}: in order, no gaps"
        );
        for event in &events {
            assert_notification_profile(&event.body, &id, "id-only");
        }
        let focus: Vec<String> = events.iter().flat_map(Received::focus_ids).collect();
        assert_eq!(focus, vec![a.clone(), b.clone(), c.clone(), b.clone()]);
        // The supersede is ONE event: the new pointer, the replaced one as context.
        let flat = flatten(&events);
        let (supersede, _) = &flat[2];
        let context: Vec<&str> = supersede["part"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["name"] == "additional-context")
            .map(|p| p["valueReference"]["reference"].as_str().unwrap())
            .collect();
        assert_eq!(context.len(), 1);
        assert!(context[0].ends_with(&a));
        assert_eq!(flat[3].1["request"]["method"], "DELETE");

        // $status and $events.
        let st = consumer.get(&format!("{SUBSCRIPTION}/{id}/$status")).await;
        assert_eq!(st.status, 200, "{}", st.text);
        let st = st.json();
        let params = &st["entry"][0]["resource"];
        let since = params["parameter"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "events-since-subscription-start")
            .unwrap();
        assert_eq!(since["valueString"], "4");
        let replay = consumer
            .get(&format!(
                "{SUBSCRIPTION}/{id}/$events?eventsSinceNumber=2&eventsUntilNumber=3"
            ))
            .await;
        assert_eq!(replay.status, 200, "{}", replay.text);
        let replay = replay.json();
        assert_notification_profile(&replay, &id, "id-only");
        assert_eq!(parameter(&replay, "type")["valueCode"], "query-event");
        let replayed = Received {
            body: replay,
            headers: Default::default(),
            at: std::time::Instant::now(),
        };
        assert_eq!(replayed.numbers(), vec![2, 3]);
        assert_eq!(replayed.focus_ids(), vec![b.clone(), c.clone()]);
        let bad = consumer
            .get(&format!("{SUBSCRIPTION}/{id}/$events?since=1"))
            .await;
        assert_eq!(bad.status, 400, "{}", bad.text);

        // Listed for its owner only; another app cannot see it.
        let mine = consumer.get(SUBSCRIPTION).await.json();
        assert_eq!(mine["total"], 1);
        let other = s.client("consumer-crisis", "RX9").await;
        assert_eq!(other.get(&format!("{SUBSCRIPTION}/{id}")).await.status, 404);
        assert_eq!(other.get(SUBSCRIPTION).await.json()["total"], 0);
        // Delivered notifications are in /metrics.
        let metrics = s.anonymous().get("/metrics").await.text;
        assert!(
            metrics.contains(
                "nrls_subscription_delivery_attempts_total{kind=\"event-notification\",outcome=\"delivered\"}"
            ),
            "{metrics}"
        );
        // Deleted: gone, and nothing more is delivered.
        assert_eq!(
            consumer
                .delete(&format!("{SUBSCRIPTION}/{id}"))
                .await
                .status,
            200
        );
        assert_eq!(
            consumer.get(&format!("{SUBSCRIPTION}/{id}")).await.status,
            404
        );
        s.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_resource_payload_and_topics_filter() {
    let s = server(Backend::Sqlite).await;
    let receiver = Receiver::start(Mode::Ok).await;
    let producer = s.client("producer-a", "RR8").await;
    let consumer = s.client("consumer", "RX9").await;
    // Created topic, ReSPECT forms only.
    let created_topic = "https://nrls.example.org/fhir/SubscriptionTopic/pointer-created";
    let id = subscribe(
        &consumer,
        &body(
            0,
            &receiver.url,
            created_topic,
            "full-resource",
            Some(RESPECT),
        ),
    )
    .await;
    wait_status(&consumer, &id, "active").await;
    producer.create(&pointer("RR8", 0, CRISIS)).await;
    let respect = producer.create(&pointer("RR8", 0, RESPECT)).await;
    // Delivered before it goes: a pointer deleted before its notification
    // is sent is named without its (gone) content.
    receiver
        .wait_for(WAIT, "the first event", |r| {
            r.iter().any(|x| x.kind() == "event-notification")
        })
        .await;
    let deleted = producer.delete(&format!("{PRODUCER_DR}/{respect}")).await;
    assert_eq!(deleted.status, 200);
    let last = producer.create(&pointer("RR8", 0, RESPECT)).await;
    receiver
        .wait_for(WAIT, "two events", |r| event_count(r) >= 2)
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let events = receiver.events();
    assert_eq!(
        numbers(&events),
        vec![1, 2],
        "crisis plan and the delete are not on this topic"
    );
    for event in &events {
        assert_notification_profile(&event.body, &id, "full-resource");
    }
    let flat = flatten(&events);
    assert_eq!(flat[1].1["resource"]["id"], last.as_str());
    assert_eq!(flat[1].1["resource"]["resourceType"], "DocumentReference");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_retried_410_is_not_and_reactivation_resumes() {
    for backend in BACKENDS {
        let s = server(backend).await;
        let producer = s.client("producer-a", "RR8").await;
        let consumer = s.client("consumer", "RX9").await;

        // 500 then 200: the same event, same number, delivered on a retry.
        let flaky = Receiver::start(Mode::FailEvents(2)).await;
        let id = subscribe(
            &consumer,
            &body(0, &flaky.url, ALL_CHANGES, "id-only", None),
        )
        .await;
        wait_status(&consumer, &id, "active").await;
        let first = producer.create(&pointer("RR8", 0, RESPECT)).await;
        flaky
            .wait_for(WAIT, "three attempts", |r| event_count(r) >= 3)
            .await;
        let attempts = flaky.events();
        assert_eq!(numbers(&attempts), vec![1, 1, 1], "{backend:?}");
        assert!(
            attempts
                .iter()
                .all(|a| a.focus_ids() == vec![first.clone()])
        );
        assert!(
            attempts[1].at - attempts[0].at >= Duration::from_millis(90),
            "backoff waited"
        );
        assert_eq!(
            subscription_status(&consumer, &id).await,
            ("active".into(), String::new())
        );

        // 410: error at once, no retry, events kept for $events.
        let gone = Receiver::start(Mode::GoneEvents).await;
        let id = subscribe(&consumer, &body(2, &gone.url, ALL_CHANGES, "id-only", None)).await;
        wait_status(&consumer, &id, "active").await;
        let p = producer.create(&pointer("RR8", 2, RESPECT)).await;
        let error = wait_status(&consumer, &id, "error").await;
        assert!(
            error.contains("410") && error.contains("not retried"),
            "{error}"
        );
        producer.create(&pointer("RR8", 2, CRISIS)).await;
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(numbers(&gone.events()), vec![1], "no retry after 410");
        let replay = consumer
            .get(&format!("{SUBSCRIPTION}/{id}/$events"))
            .await
            .json();
        let replayed = Received {
            body: replay,
            headers: Default::default(),
            at: std::time::Instant::now(),
        };
        assert_eq!(replayed.numbers(), vec![1, 2], "events stay available");
        assert_eq!(replayed.focus_ids()[0], p);
        // Only the subscriber reactivates: a new handshake, then delivery resumes at event 1.
        gone.set_mode(Mode::Ok);
        let put = consumer
            .put_json(
                &format!("{SUBSCRIPTION}/{id}"),
                &json!({"resourceType": "Subscription", "id": id, "status": "requested"}),
            )
            .await;
        assert_eq!(put.status, 200, "{}", put.text);
        gone.wait_for(WAIT, "events 1 and 2 again", |r| {
            numbers(
                &r.iter()
                    .filter(|x| x.kind() == "event-notification")
                    .cloned()
                    .collect::<Vec<_>>(),
            )
            .ends_with(&[1, 2])
        })
        .await;
        wait_status(&consumer, &id, "active").await;
        s.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_endpoint_times_out_then_gives_up_after_the_window() {
    let s = TestServer::start_with(Backend::Sqlite, |c| {
        configure(c);
        c.subscriptions.retry_window_ms = 300;
    })
    .await;
    let receiver = Receiver::start(Mode::HangEvents).await;
    let producer = s.client("producer-a", "RR8").await;
    let consumer = s.client("consumer", "RX9").await;
    let id = subscribe(
        &consumer,
        &body(0, &receiver.url, ALL_CHANGES, "id-only", None),
    )
    .await;
    wait_status(&consumer, &id, "active").await;
    producer.create(&pointer("RR8", 0, RESPECT)).await;
    let error = wait_status(&consumer, &id, "error").await;
    assert!(
        error.contains("gave up") && error.contains("did not answer"),
        "{error}"
    );
    // 100 ms and 200 ms retries fit the 300 ms window; the third would not.
    assert_eq!(numbers(&receiver.events()), vec![1, 1, 1]);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_failure_is_an_error_with_the_reason() {
    let s = server(Backend::Sqlite).await;
    let receiver = Receiver::start(Mode::FailAll).await;
    let consumer = s.client("consumer", "RX9").await;
    let id = subscribe(
        &consumer,
        &body(0, &receiver.url, ALL_CHANGES, "id-only", None),
    )
    .await;
    let error = wait_status(&consumer, &id, "error").await;
    assert!(
        error.contains("handshake failed") && error.contains("500"),
        "{error}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objection_stops_delivery_with_a_reason_and_sensitive_pointers_never_notify() {
    for backend in BACKENDS {
        let s = server(backend).await;
        let receiver = Receiver::start(Mode::Ok).await;
        let producer = s.client("producer-a", "RR8").await;
        let consumer = s.client("consumer", "RX9").await;
        let id = subscribe(
            &consumer,
            &body(0, &receiver.url, ALL_CHANGES, "id-only", None),
        )
        .await;
        wait_status(&consumer, &id, "active").await;
        // A sensitive pointer: this app-only subscriber could never see it.
        let mut secret = pointer("RR8", 0, RESPECT);
        secret["meta"] = json!({"security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}]});
        producer.create(&secret).await;
        let open = producer.create(&pointer("RR8", 0, RESPECT)).await;
        receiver
            .wait_for(WAIT, "the open pointer", |r| {
                r.iter().any(|x| x.kind() == "event-notification")
            })
            .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let events = receiver.events();
        assert_eq!(
            numbers(&events),
            vec![1],
            "{backend:?}: the sensitive pointer has no event"
        );
        assert_eq!(events[0].focus_ids(), vec![open.clone()]);
        // The delivered notification and the subscription's creation are audited.
        let admin = s.client("admin-app", "X26").await;
        let audit = admin
            .get(&format!(
                "/admin/FHIR/R4/AuditEvent?patient={}&_count=100",
                patient(0)
            ))
            .await;
        assert_eq!(audit.status, 200, "{}", audit.text);
        let entries = audit.json()["entry"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let delivered: Vec<String> = entries
            .iter()
            .map(|e| e.to_string())
            .filter(|text| text.contains(&format!("subscription-{id}-1")))
            .collect();
        assert_eq!(
            delivered.len(),
            1,
            "{backend:?}: one audit record for the notification"
        );
        assert!(delivered[0].contains(&open));
        assert!(
            audit.text.contains(&format!("Subscription/{id}")),
            "creation audited"
        );

        // The patient objects: the next delivery stops with the reason.
        let admin = s.client("admin-app", "X26").await;
        let objected = admin
            .put_json(
                &format!("/admin/patients/{}/objection", patient(0)),
                &json!({"note": "patient asked"}),
            )
            .await;
        assert!(objected.status < 300, "{}", objected.text);
        producer.create(&pointer("RR8", 0, CRISIS)).await;
        let error = wait_status(&consumer, &id, "error").await;
        assert!(error.contains("objected"), "{error}");
        assert_eq!(
            numbers(&receiver.events()),
            vec![1],
            "nothing sent after the objection"
        );
        s.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_subscriptions_are_400_with_every_problem_and_403_for_what_the_app_may_not_see() {
    let s = server(Backend::Sqlite).await;
    let consumer = s.client("consumer", "RX9").await;
    let bad = json!({
        "resourceType": "Subscription",
        "criteria": "http://example.org/not-a-topic",
        "end": "2030-01-01T00:00:00Z",
        "_criteria": {"extension": [filter("DocumentReference?author=x".into())]},
        "channel": {"type": "email", "endpoint": "http://elsewhere.example/hook", "header": ["nocolon"]}
    });
    let reply = consumer.post_json(SUBSCRIPTION, &bad).await;
    assert_eq!(reply.status, 400, "{}", reply.text);
    let expressions: Vec<String> = reply.issues().into_iter().map(|(_, e)| e).collect();
    for expected in [
        "Subscription.end",
        "Subscription.reason",
        "Subscription.criteria",
        "Subscription.criteria.extension[0].value",
        "Subscription.criteria.extension",
        "Subscription.channel.type",
        "Subscription.channel.endpoint",
        "Subscription.channel.header[0]",
    ] {
        assert!(
            expressions.iter().any(|e| e == expected),
            "{expected} missing: {expressions:?}"
        );
    }
    // A type the app may not use: 403.
    let crisis_only = s.client("consumer-crisis", "RX9").await;
    let receiver = Receiver::start(Mode::Ok).await;
    let reply = crisis_only
        .post_json(
            SUBSCRIPTION,
            &body(0, &receiver.url, ALL_CHANGES, "id-only", Some(RESPECT)),
        )
        .await;
    assert_eq!(reply.status, 403, "{}", reply.text);
    // Unknown subscriptions and unsupported updates.
    assert_eq!(
        consumer.get(&format!("{SUBSCRIPTION}/nope")).await.status,
        404
    );
    let id = subscribe(
        &consumer,
        &body(0, &receiver.url, ALL_CHANGES, "id-only", None),
    )
    .await;
    let put = consumer
        .put_json(
            &format!("{SUBSCRIPTION}/{id}"),
            &json!({"resourceType": "Subscription", "status": "off"}),
        )
        .await;
    assert_eq!(put.status, 400, "{}", put.text);
    // The topics and the capability statement.
    let topics = consumer.get("/consumer/FHIR/R4/Basic").await.json();
    assert_eq!(topics["total"], 3);
    let capability = s.anonymous().get("/consumer/FHIR/R4/metadata").await.json();
    let text = capability.to_string();
    assert!(
        text.contains("backport-subscription-server-r4") && text.contains(MIN_UPDATE),
        "{text}"
    );
    s.stop().await;
}

/// Pointers created (in order) while the endpoint hangs, so none is
/// acknowledged; the process is killed -9 mid-delivery; after a restart (the
/// dead process's lease expires and is taken over) every event arrives,
/// numbered 1..n in creation order.
async fn kill_between_commit_and_delivery(deployment: &Deployment) {
    let receiver = Receiver::start(Mode::Ok).await;
    let mut node = deployment.start_node().await;
    let producer = deployment.producer(&node, &node).await;
    let consumer = deployment.consumer(&node, &node).await;
    let id = subscribe(
        &consumer,
        &body(0, &receiver.url, ALL_CHANGES, "id-only", None),
    )
    .await;
    wait_status(&consumer, &id, "active").await;
    receiver.set_mode(Mode::HangEvents);
    let mut created = Vec::new();
    for _ in 0..10 {
        created.push(producer.create(&pointer("RR8", 0, RESPECT)).await);
    }
    receiver
        .wait_for(WAIT, "a delivery in flight", |r| {
            r.iter().any(|x| x.kind() == "event-notification")
        })
        .await;
    node.kill();
    receiver.set_mode(Mode::Ok);
    let node = deployment.start_node().await;
    receiver
        .wait_for(
            Duration::from_secs(30),
            "every event after the restart",
            |r| {
                let got: std::collections::BTreeSet<i64> =
                    r.iter().flat_map(Received::numbers).collect();
                got.len() == created.len()
            },
        )
        .await;
    // At least once: a repeat is allowed, a gap or a reordering is not.
    let mut first_seen: BTreeMap<i64, String> = BTreeMap::new();
    let mut order = Vec::new();
    for event in receiver.events() {
        for (n, focus) in event.numbers().into_iter().zip(event.focus_ids()) {
            if first_seen.insert(n, focus.clone()).is_none() {
                order.push(n);
            } else {
                assert_eq!(first_seen[&n], focus, "a redelivery keeps its number");
            }
        }
    }
    let expected: Vec<i64> = (1..=created.len() as i64).collect();
    assert_eq!(order, expected, "delivered in order, none lost");
    assert_eq!(first_seen.into_values().collect::<Vec<_>>(), created);
    drop(node);
}

fn subscriptions_config() -> &'static str {
    "\n[subscriptions]\nhttp_allowed_hosts = [\"127.0.0.1\"]\npoll_interval_ms = 200\nretry_delays_ms = [100]\ntimeout_seconds = 1\nlease_seconds = 3\n"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_kill_9_between_commit_and_delivery_loses_nothing() {
    let deployment = Deployment::new(Storage::Sqlite);
    deployment.append_config(subscriptions_config());
    kill_between_commit_and_delivery(&deployment).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_kill_9_between_commit_and_delivery_loses_nothing() {
    let database = testkit::postgres::TestDatabase::create().await;
    let deployment = Deployment::new(Storage::Postgres {
        url: database.url(),
        statement_timeout_ms: 5000,
    });
    deployment.append_config(subscriptions_config());
    kill_between_commit_and_delivery(&deployment).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_postgres_nodes_deliver_each_event_once() {
    let database = testkit::postgres::TestDatabase::create().await;
    let deployment = Deployment::new(Storage::Postgres {
        url: database.url(),
        statement_timeout_ms: 5000,
    });
    deployment.append_config(
        "\n[subscriptions]\nhttp_allowed_hosts = [\"127.0.0.1\"]\npoll_interval_ms = 20\n",
    );
    let receiver = Receiver::start(Mode::Ok).await;
    let one = deployment.start_node().await;
    let two = deployment.start_node().await;
    let consumer = deployment.consumer(&one, &one).await;
    let id = subscribe(
        &consumer,
        &body(0, &receiver.url, ALL_CHANGES, "id-only", None),
    )
    .await;
    wait_status(&consumer, &id, "active").await;
    let producers = [
        deployment.producer(&one, &one).await,
        deployment.producer(&two, &one).await,
    ];
    let mut created = Vec::new();
    for i in 0..30 {
        created.push(producers[i % 2].create(&pointer("RR8", 0, RESPECT)).await);
    }
    receiver
        .wait_for(WAIT, "30 events", |r| event_count(r) >= 30)
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let events = receiver.events();
    let expected: Vec<i64> = (1..=30).collect();
    assert_eq!(numbers(&events), expected, "each event once, in order");
    let handshakes = receiver
        .received()
        .iter()
        .filter(|r| r.kind() == "handshake")
        .count();
    assert_eq!(handshakes, 1);
    assert_eq!(
        events
            .iter()
            .flat_map(Received::focus_ids)
            .collect::<Vec<_>>(),
        created
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producers_subscribe_to_their_own_pointers_only() {
    let s = server(Backend::Sqlite).await;
    let receiver = Receiver::start(Mode::Ok).await;
    let producer = s.client("producer-a", "RR8").await;
    let other = s.client("producer-b", "RYJ").await;
    let reply = producer
        .post_json(
            "/producer/FHIR/R4/Subscription",
            &body(3, &receiver.url, ALL_CHANGES, "id-only", None),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    let id = reply.json()["id"].as_str().unwrap().to_owned();
    assert!(
        reply
            .header("location")
            .unwrap()
            .contains("/producer/FHIR/R4/Subscription/")
    );
    receiver
        .wait_for(WAIT, "the handshake", |r| {
            r.iter().any(|x| x.kind() == "handshake")
        })
        .await;
    // Another custodian's pointer for the same patient is not the producer's to hear of.
    other.create(&pointer("RYJ", 3, CRISIS)).await;
    let own = producer.create(&pointer("RR8", 3, RESPECT)).await;
    receiver
        .wait_for(WAIT, "its own pointer", |r| event_count(r) >= 1)
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let events = receiver.events();
    assert_eq!(numbers(&events), vec![1]);
    assert_eq!(events[0].focus_ids(), vec![own]);
    assert_notification_profile(&events[0].body, &id, "id-only");
    let focus = &flatten(&events)[0].1["fullUrl"];
    assert!(
        focus
            .as_str()
            .unwrap()
            .contains("/producer/FHIR/R4/DocumentReference/"),
        "{focus}"
    );
    // Listed under the producer API, for its app.
    let listed = producer.get("/producer/FHIR/R4/Subscription").await.json();
    assert_eq!(listed["total"], 1);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_come_at_the_requested_period() {
    let s = server(Backend::Sqlite).await;
    let receiver = Receiver::start(Mode::Ok).await;
    let consumer = s.client("consumer", "RX9").await;
    let mut b = body(4, &receiver.url, ALL_CHANGES, "id-only", None);
    b["channel"]["extension"] =
        json!([{"url": format!("{BACKPORT}/backport-heartbeat-period"), "valueUnsignedInt": 1}]);
    let id = subscribe(&consumer, &b).await;
    receiver
        .wait_for(WAIT, "two heartbeats", |r| {
            r.iter().filter(|x| x.kind() == "heartbeat").count() >= 2
        })
        .await;
    let beats: Vec<Received> = receiver
        .received()
        .into_iter()
        .filter(|r| r.kind() == "heartbeat")
        .collect();
    for beat in &beats {
        assert_notification_profile(&beat.body, &id, "id-only");
    }
    let gap = beats[1].at - beats[0].at;
    assert!(
        gap >= Duration::from_millis(900) && gap < Duration::from_secs(3),
        "{gap:?}"
    );
    s.stop().await;
}
