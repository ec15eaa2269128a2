//! Real `nrls serve` processes: kill -9 mid-delivery, and two nodes on one
//! PostgreSQL database.

use super::*;

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
