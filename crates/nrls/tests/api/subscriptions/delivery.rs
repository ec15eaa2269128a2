//! Delivery on one server: handshake, numbering and order, the profile
//! rules, payloads and topics, retries, 410, time-outs, heartbeats.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_then_numbered_events_in_order() {
    for backend in BACKENDS {
        let s = server(backend).await;
        let receiver = Receiver::start(Mode::Ok).await;
        let subscription = body(0, &receiver.url, MIN_UPDATE, "id-only", None);
        let (producer, consumer, id) =
            active_subscription(&s, &receiver, &subscription, WAIT).await;
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
        // Once the acknowledgement is recorded, the retry note is gone.
        let started = std::time::Instant::now();
        while subscription_status(&consumer, &id).await != ("active".into(), String::new()) {
            assert!(started.elapsed() < WAIT, "the retry note stayed");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }

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

/// With the poll a minute away, this node's own commits start a delivery
/// round at once: a new subscription's handshake and a pointer's event
/// arrive within seconds, on both backends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_commits_wake_delivery_without_waiting_for_the_poll() {
    let quick = Duration::from_secs(5);
    for backend in BACKENDS {
        let s = TestServer::start_with(backend, |c| {
            configure(c);
            c.subscriptions.poll_interval_ms = 60_000;
        })
        .await;
        let receiver = Receiver::start(Mode::Ok).await;
        // The handshake within `quick`: no poll would come in time.
        let subscription = body(0, &receiver.url, MIN_UPDATE, "id-only", None);
        let (producer, _, _) = active_subscription(&s, &receiver, &subscription, quick).await;
        let created = producer.create(&pointer("RR8", 0, RESPECT)).await;
        receiver
            .wait_for(quick, "the event, without a poll", |r| event_count(r) >= 1)
            .await;
        let focus: Vec<String> = receiver
            .events()
            .iter()
            .flat_map(Received::focus_ids)
            .collect();
        assert_eq!(focus, vec![created], "{backend:?}");
    }
}
