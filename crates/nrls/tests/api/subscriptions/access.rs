//! Who may subscribe and hear: bad bodies, permissions, objections,
//! sensitive pointers, the audit trail, producers' own pointers.

use super::*;

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
