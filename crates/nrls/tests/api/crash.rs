//! Crashes and database faults, black-box.
//!
//! - Crash: for each durable backend, a real `nrls serve` process is killed
//!   with SIGKILL again and again in the middle of a concurrent create load,
//!   then restarted; every pointer whose create was acknowledged (201) must
//!   be there and readable, and the store must open and answer as usual.
//!   SIGKILL loses the process, not the operating system's page cache, so
//!   this proves the acknowledgement order (no 201 before COMMIT) and crash
//!   recovery, not fsync against power loss; that rests on SQLite's
//!   `synchronous=FULL` and PostgreSQL's `synchronous_commit`.
//! - Faults: PostgreSQL unreachable or silent under load (through a proxy
//!   the test controls) and sessions killed under load: requests fail with a
//!   503 OperationOutcome within the time-out, never a 500 or a hang;
//!   `/_status` says the store is unavailable; service resumes by itself.

use crate::support;
use crate::support::node;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use node::{Deployment, Storage};
use nrls::config::Backend;
use support::{CRISIS, Client, PRODUCER_DR, Reply, TestServer, pointer};
use testkit::postgres::{Link, Proxy, TestDatabase};
use tokio::sync::Mutex;

/// Kill-and-restart cycles per backend.
const TRIALS: u32 = 5;
/// Concurrent clients creating pointers during each trial.
const WRITERS: usize = 8;

/// Creates pointers from `WRITERS` tasks until `stop`; returns the ids of
/// every create answered 201. Errors (the node died mid-request) are expected.
async fn create_load(producer: &Client, stop: Arc<AtomicBool>) -> Vec<String> {
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (producer, stop, acknowledged) = (
                producer.clone(),
                Arc::clone(&stop),
                Arc::clone(&acknowledged),
            );
            tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let body = pointer("RR8", (w * 1000 + n) % 97, CRISIS);
                    n += 1;
                    let sent = producer
                        .request(reqwest::Method::POST, PRODUCER_DR)
                        .header("content-type", "application/fhir+json")
                        .body(body.to_string())
                        .send()
                        .await;
                    let Ok(response) = sent else { break };
                    if response.status() == 201
                        && let Some(location) = response.headers().get("location")
                    {
                        let id = location.to_str().unwrap().rsplit('/').next().unwrap();
                        acknowledged.lock().await.push(id.to_owned());
                    }
                }
            })
        })
        .collect();
    // The kill happens outside; writers stop at their first failed request.
    for writer in writers {
        writer.await.unwrap();
    }
    Arc::try_unwrap(acknowledged).unwrap().into_inner()
}

/// Runs the kill-restart trials on `deployment`; returns every acknowledged
/// id, after checking each one is readable on a fresh node.
async fn crash_trials(name: &str, deployment: &Deployment) -> BTreeSet<String> {
    let mut acknowledged = BTreeSet::new();
    for trial in 0..TRIALS {
        let mut node = deployment.start_node().await;
        let producer = deployment.producer(&node, &node).await;
        let stop = Arc::new(AtomicBool::new(false));
        let load = tokio::spawn({
            let stop = Arc::clone(&stop);
            async move { create_load(&producer, stop).await }
        });
        // Vary the moment of death between trials.
        tokio::time::sleep(Duration::from_millis(700 + 150 * u64::from(trial))).await;
        node.kill();
        stop.store(true, Ordering::Relaxed);
        let ids = load.await.unwrap();
        println!(
            "{name}: trial {trial}: killed after {} acknowledged creates",
            ids.len()
        );
        assert!(
            !ids.is_empty(),
            "trial {trial} acknowledged nothing:\n{}",
            node.log_text()
        );
        acknowledged.extend(ids);
    }

    let node = deployment.start_node().await;
    let producer = deployment.producer(&node, &node).await;
    let mut verified = 0;
    for id in &acknowledged {
        let reply = producer.get(&format!("{PRODUCER_DR}/{id}")).await;
        assert_eq!(
            reply.status, 200,
            "acknowledged pointer {id} lost: {}",
            reply.text
        );
        assert_eq!(reply.json()["id"], id.as_str());
        verified += 1;
    }
    // Searches read the same rows through the patient index.
    let consumer = deployment.consumer(&node, &node).await;
    let mut searched = 0;
    for n in 0..97 {
        let reply = consumer.consumer_search(&support::subject(n)).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        searched += reply.json()["total"].as_u64().unwrap_or(0);
    }
    println!(
        "{name}: {TRIALS} kills, {} creates acknowledged, {verified} verified readable, \
         {searched} found by search (unacknowledged creates may also have landed)",
        acknowledged.len()
    );
    assert!(searched >= acknowledged.len() as u64);
    acknowledged
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_survives_kill_9_under_load() {
    let deployment = Deployment::new(Storage::Sqlite);
    let acknowledged = crash_trials("sqlite", &deployment).await;
    // The file opens cleanly outside the server, with every pointer in it.
    let store = store::sqlite::SqliteStore::open(
        &deployment.data_dir().join("nrls.db"),
        store::sqlite::SqliteOptions::default(),
    )
    .unwrap();
    use store::PointerStore;
    store.health().await.unwrap();
    assert!(store.count().await.unwrap() >= acknowledged.len() as u64);
    assert!(store.audit_outbox(10).await.unwrap().is_empty());
    drop(store);
    let log = audit::sqlite::SqliteAuditLog::open_in(
        &deployment.data_dir(),
        audit::sqlite::SqliteAuditOptions::default(),
    )
    .unwrap();
    assert_every_create_audited(&deployment, &log, &acknowledged).await;
}

/// Each create's audit record commits with its pointer (the audit outbox)
/// and is moved into the trail afterwards; a kill between the two must lose
/// none, because every node start moves what the last one left. And the
/// chain still verifies, with the deployment's key.
async fn assert_every_create_audited(
    deployment: &Deployment,
    log: &dyn audit::AuditLog,
    acknowledged: &BTreeSet<String>,
) {
    let audited = audited_creates(log).await;
    let missing: Vec<_> = acknowledged.difference(&audited).collect();
    assert!(
        missing.is_empty(),
        "acknowledged creates without their audit record: {missing:?}"
    );
    assert!(!acknowledged.is_empty());
    let options = audit::VerifyOptions {
        keys: node_keys(deployment),
        ..audit::VerifyOptions::default()
    };
    let report = log.verify(&options).await;
    assert!(report.is_ok(), "{report:?}");
}

/// The checkpoint keys of every node of `deployment`: the shared data
/// folder's, and each node's own (nodes with a folder each).
fn node_keys(deployment: &Deployment) -> Vec<audit::CheckpointKey> {
    let data = deployment.data_dir();
    let folders = std::fs::read_dir(data.parent().unwrap())
        .unwrap()
        .map(|entry| entry.unwrap().path());
    std::iter::once(data.clone())
        .chain(folders)
        .map(|folder| folder.join(audit::sqlite::KEY_FILE_NAME))
        .filter(|file| file.exists())
        .map(|file| {
            audit::CheckpointSigner::load_or_create(&file)
                .unwrap()
                .public()
        })
        .collect()
}

/// The pointer ids of every successful create in the trail.
async fn audited_creates(log: &dyn audit::AuditLog) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    let mut query = audit::AuditQuery {
        count: 1000,
        ..audit::AuditQuery::default()
    };
    loop {
        let page = log.search(&query).await.unwrap();
        for record in &page.records {
            let event = record.event().unwrap();
            let created = event
                .subtype
                .iter()
                .any(|c| c.code.as_deref() == Some("create"))
                && event.outcome.as_deref() == Some("0");
            if created {
                ids.extend(
                    event
                        .entity
                        .iter()
                        .filter_map(|e| e.what.as_ref()?.reference.clone()),
                );
            }
        }
        match (page.records.last(), page.records.len() == query.count) {
            (Some(last), true) => query.before_seq = Some(last.seq),
            _ => return ids,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_survives_kill_9_under_load() {
    let database = TestDatabase::create().await;
    let deployment = Deployment::new(Storage::Postgres {
        url: database.url(),
        statement_timeout_ms: 5000,
    });
    let acknowledged = crash_trials("postgres", &deployment).await;
    let count = |sql: &'static str| database.query_i64(sql);
    let pointers = count("SELECT count(*) FROM pointers").await;
    assert!(pointers >= i64::try_from(acknowledged.len()).unwrap());
    assert_eq!(count("SELECT count(*) FROM pointer_ids").await, pointers);
    let orphans = count(
        "SELECT count(*) FROM pointer_ids i WHERE NOT EXISTS
           (SELECT 1 FROM pointers p WHERE p.nhs_number = i.nhs_number AND p.seq = i.seq)",
    )
    .await;
    assert_eq!(orphans, 0, "every id row has its pointer");
    assert_eq!(count("SELECT count(*) FROM audit_outbox").await, 0);
    let pointers = store::postgres::PostgresStore::open(database.options())
        .await
        .unwrap();
    let key = audit::CheckpointSigner::load_or_create(
        &deployment.data_dir().join(audit::sqlite::KEY_FILE_NAME),
    )
    .unwrap();
    let log = audit::postgres::PostgresAuditLog::open(
        pointers.database(),
        key,
        audit::postgres::PostgresAuditOptions::default(),
    )
    .await
    .unwrap();
    assert_every_create_audited(&deployment, &log, &acknowledged).await;
}

/// What a request during a fault must get: a 503 OperationOutcome saying
/// the store is unavailable, with nothing of PostgreSQL's in it.
fn assert_unavailable(reply: &Reply, what: &str) {
    assert_eq!(reply.status, 503, "{what}: {}", reply.text);
    assert_eq!(
        reply.issue().0,
        "SERVICE_UNAVAILABLE",
        "{what}: {}",
        reply.text
    );
    let text = reply.text.to_lowercase();
    for leak in ["postgres", "sql", "db error", "connection"] {
        assert!(
            !text.contains(leak),
            "{what} leaks internals: {}",
            reply.text
        );
    }
}

async fn status(server: &TestServer) -> (u16, String) {
    let reply = server.anonymous().get("/_status").await;
    (reply.status, reply.text)
}

/// PostgreSQL behind a proxy: silent network, refused network, recovery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_database_is_503_then_recovers() {
    let (proxy, _) = Proxy::in_front_of(&testkit::postgres::admin_url()).await;
    let server = TestServer::start_with(Backend::Postgres, |c| {
        let url = c.store.database_url.take().unwrap();
        c.store.database_url = Some(proxy.route(&url));
        c.store.statement_timeout_ms = 1000;
        c.store.connect_timeout_ms = 1000;
    })
    .await;
    let producer = server.client("producer-a", "RR8").await;
    let consumer = server.client("consumer", "RX9").await;
    let kept = producer.create(&pointer("RR8", 0, CRISIS)).await;
    let path = format!("{PRODUCER_DR}/{kept}");

    // Silent: every kind of request ends in 503 within time-out + margin.
    proxy.set(Link::Stalled);
    let started = Instant::now();
    let requests: Vec<_> = (0..6)
        .map(|i| {
            let (producer, consumer, path) = (producer.clone(), consumer.clone(), path.clone());
            tokio::spawn(async move {
                match i % 3 {
                    0 => producer.get(&path).await,
                    1 => {
                        producer
                            .post_json(PRODUCER_DR, &pointer("RR8", 1, CRISIS))
                            .await
                    }
                    _ => consumer.consumer_search(&support::subject(0)).await,
                }
            })
        })
        .collect();
    for request in requests {
        assert_unavailable(
            &request.await.unwrap(),
            "request while the database is silent",
        );
    }
    // About one deadline (statement time-out + 1 s = 2 s): the audit record
    // of a failed request is written after its 503, so the caller does not
    // wait for the silent database a second time (which, with the trail in
    // PostgreSQL, took this past 4 s under load).
    assert!(
        started.elapsed() < Duration::from_millis(3500),
        "{:?}",
        started.elapsed()
    );
    let (code, text) = status(&server).await;
    assert_eq!(code, 503, "{text}");
    assert!(text.contains("unavailable"), "{text}");

    // Refused: 503 at once.
    proxy.set(Link::Down);
    let started = Instant::now();
    assert_unavailable(&producer.get(&path).await, "request while refused");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    // Back: the same server serves again, no restart.
    proxy.set(Link::Up);
    let back = Instant::now();
    while producer.get(&path).await.status != 200 {
        assert!(back.elapsed() < Duration::from_secs(10), "no recovery");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status(&server).await.0, 200);
    producer.create(&pointer("RR8", 2, CRISIS)).await;
    server.stop().await;
}

/// Sessions killed while creates are in flight (a restart or failover of
/// the database): each create is 201 or 503, never anything else; every 201
/// is stored; creates succeed again without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_sessions_under_load_are_503_then_recover() {
    let server = TestServer::start(Backend::Postgres).await;
    let database = server.database.as_ref().unwrap();
    let producer = server.client("producer-a", "RR8").await;
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (producer, stop) = (producer.clone(), Arc::clone(&stop));
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let reply = producer
                        .post_json(PRODUCER_DR, &pointer("RR8", (w * 100 + n) % 13, CRISIS))
                        .await;
                    n += 1;
                    if reply.status == 503 {
                        assert_unavailable(&reply, "create while sessions die");
                    }
                    let id = (reply.status == 201).then(|| {
                        reply
                            .header("location")
                            .unwrap()
                            .rsplit('/')
                            .next()
                            .unwrap()
                            .to_owned()
                    });
                    seen.push((reply.status, id));
                }
                seen
            })
        })
        .collect();
    let mut killed = 0;
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        killed += database.terminate_sessions().await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let mut statuses = std::collections::BTreeMap::new();
    let mut stored = Vec::new();
    for writer in writers {
        for (status, id) in writer.await.unwrap() {
            *statuses.entry(status).or_insert(0) += 1;
            stored.extend(id);
        }
    }
    println!("{killed} sessions killed; statuses {statuses:?}");
    assert!(
        statuses.keys().all(|s| [201, 503].contains(s)),
        "{statuses:?}"
    );
    for id in &stored {
        assert_eq!(
            producer.get(&format!("{PRODUCER_DR}/{id}")).await.status,
            200,
            "{id}"
        );
    }
    producer.create(&pointer("RR8", 0, CRISIS)).await;
    assert_eq!(status(&server).await.0, 200);
    server.stop().await;
}
