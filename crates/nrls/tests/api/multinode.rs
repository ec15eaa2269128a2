//! Several app nodes on one PostgreSQL database: two real `nrls serve`
//! processes, started at once on an empty database (so they also race to
//! migrate it), take conflicting writes of the same pointers through both.
//! Exactly one of two conflicting writes wins, the loser is told why,
//! nothing is lost or duplicated, and a supersede is never half-applied.
//!
//! Also here, ignored by default: the bytes-per-pointer measurement behind
//! docs/scale-out.md.

use crate::support;
use crate::support::node;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use node::{Deployment, Node, Storage};
use serde_json::{Value, json};
use support::{CRISIS, Client, PRODUCER_DR, Reply, pointer, subject};
use testkit::postgres::TestDatabase;

/// Rounds of each race. Each round is one pair of conflicting requests.
const ROUNDS: usize = 12;

struct Cluster {
    deployment: Deployment,
    a: Node,
    b: Node,
    /// A producer client on each node (tokens from node A, used on both).
    on_a: Client,
    on_b: Client,
}

async fn cluster(database: &TestDatabase) -> Cluster {
    let deployment = Deployment::new(Storage::Postgres {
        url: database.url(),
        statement_timeout_ms: 5000,
    });
    let (a, b) = tokio::join!(deployment.start_node(), deployment.start_node());
    let on_a = deployment.producer(&a, &a).await;
    let on_b = deployment.producer(&b, &a).await;
    Cluster {
        deployment,
        a,
        b,
        on_a,
        on_b,
    }
}

/// Starts `first` and `second` at the same time; replies in that order.
/// Which is sent first alternates between calls, so neither node is always
/// ahead.
async fn race(
    first: impl Future<Output = Reply> + Send + 'static,
    second: impl Future<Output = Reply> + Send + 'static,
) -> (Reply, Reply) {
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    let (one, two) = if CALLS.fetch_add(1, Ordering::Relaxed).is_multiple_of(2) {
        let one = tokio::spawn(first);
        (one, tokio::spawn(second))
    } else {
        let two = tokio::spawn(second);
        (tokio::spawn(first), two)
    };
    let (one, two) = tokio::join!(one, two);
    (one.unwrap(), two.unwrap())
}

fn post(client: &Client, body: Value) -> impl Future<Output = Reply> + Send + 'static {
    let client = client.clone();
    async move { client.post_json(PRODUCER_DR, &body).await }
}

fn put_if_match(
    client: &Client,
    id: &str,
    body: Value,
    version: u32,
) -> impl Future<Output = Reply> + Send + 'static {
    let client = client.clone();
    let path = format!("{PRODUCER_DR}/{id}");
    async move {
        Client::send(
            client
                .request(reqwest::Method::PUT, &path)
                .header("content-type", "application/fhir+json")
                .header("If-Match", format!("W/\"{version}\""))
                .body(body.to_string()),
        )
        .await
    }
}

fn replacing(mut body: Value, target: &str) -> Value {
    body["relatesTo"] = json!([{"code": "replaces", "target": {"type": "DocumentReference", "identifier": {"value": target}}}]);
    body
}

/// Races won through node A and through node B, for the report.
static WINS: [AtomicUsize; 2] = [AtomicUsize::new(0), AtomicUsize::new(0)];

/// One reply of `pair` has `winner`, the other `loser`; returns (winner, loser).
fn one_wins<'a>(
    pair: &'a (Reply, Reply),
    winner: u16,
    loser: u16,
    what: &str,
) -> (&'a Reply, &'a Reply) {
    let (one, two) = pair;
    match (one.status, two.status) {
        (w, l) if w == winner && l == loser => {
            WINS[0].fetch_add(1, Ordering::Relaxed);
            (one, two)
        }
        (l, w) if w == winner && l == loser => {
            WINS[1].fetch_add(1, Ordering::Relaxed);
            (two, one)
        }
        _ => panic!(
            "{what}: expected one {winner} and one {loser}, got {} ({}) and {} ({})",
            one.status, one.text, two.status, two.text
        ),
    }
}

fn location_id(reply: &Reply) -> String {
    let location = reply.header("location").unwrap();
    location.rsplit('/').next().unwrap().to_owned()
}

/// The pointer ids a consumer sees for patient `n` through `client`.
async fn patient_ids(client: &Client, n: usize) -> BTreeSet<String> {
    entry_ids(client.consumer_search(&subject(n)).await)
}

/// The pointer ids of a successful search.
fn entry_ids(reply: Reply) -> BTreeSet<String> {
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.json()["entry"]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .map(|e| e["resource"]["id"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_on_one_database() {
    let database = TestDatabase::create_empty().await;
    let c = cluster(&database).await;
    let migrations = database
        .query_i64("SELECT count(*) FROM schema_migrations")
        .await;
    assert!(
        migrations >= 1,
        "both nodes started; the schema was applied once"
    );

    let mut expected: Vec<BTreeSet<String>> = vec![BTreeSet::new(); ROUNDS];

    // Same client-chosen id through both nodes: one 201, one 409.
    for (round, ids) in expected.iter_mut().enumerate() {
        let mut body = pointer("RR8", round, CRISIS);
        body["id"] = json!(format!("RR8-same-id-{round}"));
        let pair = race(post(&c.on_a, body.clone()), post(&c.on_b, body)).await;
        let (won, _) = one_wins(&pair, 201, 409, "same id");
        ids.insert(location_id(won));
    }

    // Same masterIdentifier, different ids: one 201, one 409.
    for (round, ids) in expected.iter_mut().enumerate() {
        let mut body = pointer("RR8", round, CRISIS);
        body["masterIdentifier"] =
            json!({"system": "urn:ietf:rfc:3986", "value": format!("urn:oid:1.2.{round}")});
        let pair = race(post(&c.on_a, body.clone()), post(&c.on_b, body)).await;
        let (won, _) = one_wins(&pair, 201, 409, "same masterIdentifier");
        ids.insert(location_id(won));
    }

    // Updates of one pointer at the same version: one 200, one 412.
    for (round, ids) in expected.iter_mut().enumerate() {
        let id = c.on_a.create(&pointer("RR8", round, CRISIS)).await;
        let mut doc = c.on_b.get(&format!("{PRODUCER_DR}/{id}")).await.json();
        doc["description"] = json!("written through A");
        let from_a = doc.clone();
        doc["description"] = json!("written through B");
        let pair = race(
            put_if_match(&c.on_a, &id, from_a, 1),
            put_if_match(&c.on_b, &id, doc, 1),
        )
        .await;
        let (won, _) = one_wins(&pair, 200, 412, "update at one version");
        let winner_wrote = if std::ptr::eq(won, &pair.0) { "A" } else { "B" };
        let stored = c.on_b.get(&format!("{PRODUCER_DR}/{id}")).await.json();
        assert_eq!(stored["meta"]["versionId"], "2");
        assert_eq!(
            stored["description"],
            format!("written through {winner_wrote}")
        );
        ids.insert(id);
    }

    // Two supersedes of one target: one 201; the loser's target is gone (422).
    for (round, ids) in expected.iter_mut().enumerate() {
        let target = c.on_a.create(&pointer("RR8", round, CRISIS)).await;
        let pair = race(
            post(&c.on_a, replacing(pointer("RR8", round, CRISIS), &target)),
            post(&c.on_b, replacing(pointer("RR8", round, CRISIS), &target)),
        )
        .await;
        let (won, lost) = one_wins(&pair, 201, 422, "two supersedes of one target");
        assert!(lost.text.contains("does not exist"), "{}", lost.text);
        assert_eq!(
            c.on_b.get(&format!("{PRODUCER_DR}/{target}")).await.status,
            404
        );
        ids.insert(location_id(won));
    }

    // A supersede racing an update of its target: either order is fine, but
    // the target always ends replaced and the new pointer always exists.
    for (round, ids) in expected.iter_mut().enumerate() {
        let target = c.on_a.create(&pointer("RR8", round, CRISIS)).await;
        let mut doc = c.on_a.get(&format!("{PRODUCER_DR}/{target}")).await.json();
        doc["description"] = json!("updated");
        let pair = race(
            post(&c.on_a, replacing(pointer("RR8", round, CRISIS), &target)),
            put_if_match(&c.on_b, &target, doc, 1),
        )
        .await;
        assert_eq!(pair.0.status, 201, "{}", pair.0.text);
        assert!(
            [200, 404].contains(&pair.1.status),
            "the update lost to the supersede: {} {}",
            pair.1.status,
            pair.1.text
        );
        assert_eq!(
            c.on_b.get(&format!("{PRODUCER_DR}/{target}")).await.status,
            404
        );
        ids.insert(location_id(&pair.0));
    }

    // Plain creates through both nodes at once: all land.
    let creates: Vec<_> = (0..2 * ROUNDS)
        .map(|i| {
            let client = if i.is_multiple_of(2) {
                &c.on_a
            } else {
                &c.on_b
            };
            tokio::spawn(post(client, pointer("RR8", i % ROUNDS, CRISIS)))
        })
        .collect();
    for (i, create) in creates.into_iter().enumerate() {
        let reply = create.await.unwrap();
        assert_eq!(reply.status, 201, "{}", reply.text);
        expected[i % ROUNDS].insert(location_id(&reply));
    }

    // Both nodes see exactly the winners: nothing lost, nothing duplicated.
    let readers = [
        c.deployment.consumer(&c.a, &c.b).await,
        c.deployment.consumer(&c.b, &c.a).await,
    ];
    for (n, ids) in expected.iter().enumerate() {
        for reader in &readers {
            assert_eq!(
                &patient_ids(reader, n).await,
                ids,
                "patient {n} via {}",
                reader.url
            );
        }
    }
    println!(
        "conflicting pairs: {} won through node A, {} through node B",
        WINS[0].load(Ordering::Relaxed),
        WINS[1].load(Ordering::Relaxed)
    );
    let total: usize = expected.iter().map(BTreeSet::len).sum();
    assert_eq!(total, ROUNDS * 7);
    for (table, rows) in [("pointers", total), ("pointer_ids", total)] {
        let count = database
            .query_i64(&format!("SELECT count(*) FROM {table}"))
            .await;
        assert_eq!(count, i64::try_from(rows).unwrap(), "rows in {table}");
    }
    assert_eq!(
        database
            .query_i64("SELECT count(*) FROM master_identifiers")
            .await,
        i64::try_from(ROUNDS).unwrap()
    );
}

/// The access facts and the audit trail live in the database too: an
/// objection recorded through one node applies on the other at once, an
/// AuditEvent written by one node is found through the other, and the two
/// nodes' records form one chain that `nrls audit verify --database` checks
/// with both nodes' checkpoint keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_share_access_facts_and_one_audit_trail() {
    let database = TestDatabase::create().await;
    let c = cluster(&database).await;
    let consumer_a = c.deployment.consumer(&c.a, &c.a).await;
    let consumer_b = c.deployment.consumer(&c.b, &c.a).await;
    let admin_a = c.deployment.admin(&c.a, &c.a).await;
    let admin_b = c.deployment.admin(&c.b, &c.b).await;
    let id = c.on_a.create(&pointer("RR8", 0, CRISIS)).await;
    let total = |reply: Reply| {
        assert_eq!(reply.status, 200, "{}", reply.text);
        reply.json()["total"].as_u64().unwrap()
    };
    assert_eq!(total(consumer_b.consumer_search(&subject(0)).await), 1);

    let objection = format!("/admin/patients/{}/objection", support::patient(0));
    let objected = admin_a
        .put_json(&objection, &json!({"note": "by letter"}))
        .await;
    assert!(objected.status < 300, "{}", objected.text);
    assert_eq!(
        total(consumer_b.consumer_search(&subject(0)).await),
        0,
        "the objection recorded through A applies on B"
    );
    let withdrawn = admin_b.delete(&objection).await;
    assert!(withdrawn.status < 300, "{}", withdrawn.text);
    assert_eq!(total(consumer_a.consumer_search(&subject(0)).await), 1);

    // A read through A is found in the trail through B, with its request id.
    let read = consumer_a
        .get(&format!("{}/{id}", support::CONSUMER_DR))
        .await;
    assert_eq!(read.status, 200, "{}", read.text);
    let read_id = read.header("x-request-id").unwrap();
    let events = admin_b
        .get(&format!(
            "/admin/FHIR/R4/AuditEvent?patient={}&_count=100",
            support::patient(0)
        ))
        .await;
    assert_eq!(events.status, 200, "{}", events.text);
    assert!(events.text.contains(&read_id), "{}", events.text);
    // Create, 3 searches, the objection, its withdrawal and the read: one
    // chain, whichever node wrote them.
    let entries = events.json()["entry"].as_array().map_or(0, Vec::len);
    assert_eq!(entries, 7, "{}", events.text);

    // Each node signs checkpoints with its own key (here: the final one of
    // a graceful shutdown, each after records the other node wrote).
    assert_eq!(total(consumer_a.consumer_search(&subject(0)).await), 1);
    let mut c = c;
    assert!(c.b.terminate().success(), "{}", c.b.log_text());
    assert_eq!(total(consumer_a.consumer_search(&subject(0)).await), 1);
    assert!(c.a.terminate().success(), "{}", c.a.log_text());
    let key = |node: &Node| {
        audit::CheckpointSigner::load(&node.data_dir.join("audit-signing-key"))
            .unwrap()
            .public()
            .to_hex()
    };
    let verify = |keys: &[String]| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_nrls"));
        command
            .args(["audit", "verify", "--database", database.url()])
            .env_remove("NRLS_DATABASE_URL");
        for key in keys {
            command.args(["--public-key", key]);
        }
        let output = command.output().unwrap();
        let text = String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr);
        (output.status.success(), text)
    };
    let (ok, out) = verify(&[key(&c.a), key(&c.b)]);
    assert!(ok, "{out}");
    let records = database
        .query_i64("SELECT count(*) FROM audit_records")
        .await;
    assert!(
        out.contains(&format!("audit trail OK: {records} records")),
        "{out}"
    );
    for only in [key(&c.a), key(&c.b)] {
        let (ok, out) = verify(&[only]);
        assert!(
            !ok && out.contains("TAMPERED"),
            "one node's key is not enough: {out}"
        );
    }
}

/// While a node waits for the migration lock (another node migrating), its
/// listener already answers: alive, not ready, and the API says 503 with an
/// OperationOutcome. When the lock is released the node finishes starting
/// and becomes ready by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_fails_while_migrations_run() {
    let database = TestDatabase::create().await;
    let migrating = database.session().await;
    migrating
        .execute(
            "SELECT pg_advisory_lock($1)",
            &[&testkit::postgres::MIGRATION_LOCK],
        )
        .await
        .unwrap();
    let deployment = Deployment::new(Storage::Postgres {
        url: database.url(),
        statement_timeout_ms: 5000,
    });
    let node = deployment.spawn_node();
    let get = |path: &'static str| {
        let http = deployment.http.clone();
        let url = format!("{}{path}", node.url);
        async move {
            match http.get(url).send().await {
                Ok(r) => Some((r.status().as_u16(), r.text().await.unwrap_or_default())),
                Err(_) => None,
            }
        }
    };
    let started = Instant::now();
    while get("/livez").await.is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{}",
            node.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Held for a while: the node stays in "starting", not failed, not ready.
    for _ in 0..3 {
        assert_eq!(get("/livez").await.unwrap().0, 200);
        let (status, body) = get("/readyz").await.unwrap();
        assert_eq!((status, body.contains("starting")), (503, true), "{body}");
        let (status, body) = get("/consumer/FHIR/R4/DocumentReference").await.unwrap();
        assert_eq!(status, 503, "{body}");
        assert!(body.contains("OperationOutcome"), "{body}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    migrating
        .execute(
            "SELECT pg_advisory_unlock($1)",
            &[&testkit::postgres::MIGRATION_LOCK],
        )
        .await
        .unwrap();
    let released = Instant::now();
    loop {
        if let Some((200, body)) = get("/readyz").await {
            assert!(body.contains("ready"), "{body}");
            break;
        }
        assert!(
            released.elapsed() < Duration::from_secs(20),
            "{}",
            node.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let consumer = deployment.consumer(&node, &node).await;
    assert_eq!(consumer.consumer_search(&subject(0)).await.status, 200);
}

/// A node whose audit trail cannot take appends is not ready, even with a
/// healthy pointer store: every patient-data request would fail with 503.
/// It is ready again as soon as the trail is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_fails_while_the_audit_trail_is_unavailable() {
    let database = TestDatabase::create().await;
    let deployment = Deployment::new(Storage::Postgres {
        url: database.url(),
        statement_timeout_ms: 2000,
    });
    let node = deployment.start_node().await;
    let consumer = deployment.consumer(&node, &node).await;
    let readyz = async || {
        let reply = deployment
            .http
            .get(format!("{}/readyz", node.url))
            .send()
            .await
            .unwrap();
        (reply.status().as_u16(), reply.text().await.unwrap())
    };
    let (status, body) = readyz().await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""audit":"postgres""#), "{body}");
    // The PostgreSQL pool is visible to monitoring (pool_size = 8 here).
    let scrape = deployment
        .http
        .get(format!("{}/metrics", node.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        scrape.contains("nrls_store_pool_max_connections 8"),
        "{scrape}"
    );
    assert!(
        scrape.contains("nrls_store_pool_connections{state=\"in_use\"}"),
        "{scrape}"
    );

    database
        .execute("ALTER TABLE audit_head RENAME TO audit_head_away")
        .await;
    let (status, body) = readyz().await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("audit_unavailable"), "{body}");
    let search = consumer.consumer_search(&subject(0)).await;
    assert_eq!(
        search.status, 503,
        "unaudited reads are refused: {}",
        search.text
    );

    database
        .execute("ALTER TABLE audit_head_away RENAME TO audit_head")
        .await;
    let (status, body) = readyz().await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(consumer.consumer_search(&subject(0)).await.status, 200);
}

/// With a read replica, consumer searches and reads go to it and everything
/// else to the primary. Replay is paused on a real streaming standby: a
/// pointer just created is returned to its producer (primary) but not yet to
/// consumers (replica), and appears for them once replay resumes. The
/// consumers' AuditEvents are written to the primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_reads_go_to_the_replica() {
    let pair = testkit::postgres::ReplicaPair::start().await;
    let (primary, replica) = (pair.primary_url(), pair.replica_url());
    let deployment = Deployment::new(Storage::Replicated {
        primary: &primary,
        replica: &replica,
    });
    let node = deployment.start_node().await;
    let producer = deployment.producer(&node, &node).await;
    let consumer = deployment.consumer(&node, &node).await;
    let ids = entry_ids;
    let first = producer.create(&pointer("RR8", 0, CRISIS)).await;
    pair.wait_caught_up().await;
    assert_eq!(
        ids(consumer.consumer_search(&subject(0)).await),
        BTreeSet::from([first.clone()])
    );

    pair.pause_replay().await;
    let second = producer.create(&pointer("RR8", 0, CRISIS)).await;
    let own = producer.get(&format!("{PRODUCER_DR}?{}", subject(0))).await;
    assert_eq!(
        ids(own),
        BTreeSet::from([first.clone(), second.clone()]),
        "the producer reads the primary"
    );
    assert_eq!(
        ids(consumer.consumer_search(&subject(0)).await),
        BTreeSet::from([first.clone()]),
        "consumers read the paused replica"
    );
    let read = consumer
        .get(&format!("{}/{second}", support::CONSUMER_DR))
        .await;
    assert_eq!(read.status, 404, "not replicated yet: {}", read.text);

    pair.resume_replay().await;
    pair.wait_caught_up().await;
    assert_eq!(
        ids(consumer.consumer_search(&subject(0)).await),
        BTreeSet::from([first, second.clone()])
    );
    let read = consumer
        .get(&format!("{}/{second}", support::CONSUMER_DR))
        .await;
    assert_eq!(read.status, 200, "{}", read.text);

    // The consumers' reads were audited, on the primary.
    let client = tokio_postgres::connect(&primary, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(client.1);
    let audited: i64 = client
        .0
        .query_one(
            "SELECT count(*) FROM audit_records
             WHERE client = (SELECT id FROM audit_names WHERE name = 'consumer')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    // A read of an id the replica does not hold yet names no patient, so
    // only the successful read is patient data.
    assert_eq!(audited, 4, "three searches and one read");
    let ready = deployment
        .http
        .get(format!("{}/readyz", node.url))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
}

/// A node whose database sessions are killed (a failover, a restart) keeps
/// serving without a restart, while the other node is unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_recover_from_lost_sessions() {
    let database = TestDatabase::create().await;
    let c = cluster(&database).await;
    let first = c.on_a.create(&pointer("RR8", 0, CRISIS)).await;
    assert!(database.terminate_sessions().await >= 1);

    let started = Instant::now();
    let mut statuses = Vec::new();
    loop {
        let reply = c
            .on_a
            .post_json(PRODUCER_DR, &pointer("RR8", 1, CRISIS))
            .await;
        statuses.push(reply.status);
        match reply.status {
            201 => break,
            503 => assert_eq!(reply.issue().0, "SERVICE_UNAVAILABLE", "{}", reply.text),
            other => panic!("after lost sessions: {other} {}", reply.text),
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{statuses:?}");
    }
    assert_eq!(
        c.on_b.get(&format!("{PRODUCER_DR}/{first}")).await.status,
        200
    );
    assert_eq!(
        c.on_a.get(&format!("{PRODUCER_DR}/{first}")).await.status,
        200
    );
}

/// Bytes per pointer on both backends, by table and index, for pointers as
/// `nrls::dataset` generates them. A measurement, not a check:
/// `cargo test -p nrls --test multinode -- --ignored --nocapture storage_per_pointer`
/// (`NRLS_MEASURE_POINTERS` sets how many; default 100 000).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement"]
async fn storage_per_pointer() {
    let count: usize = std::env::var("NRLS_MEASURE_POINTERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let records = measure::records(count);
    let json_bytes: usize = records.iter().map(|r| r.json.len()).sum();
    println!(
        "{count} pointers, average JSON {} bytes",
        json_bytes / count
    );
    measure::sqlite(&records).await;
    measure::postgres(&records).await;
}

mod measure {
    use std::sync::Arc;
    use std::time::Instant;

    use domain::catalogue::Catalogue;
    use domain::permissions::TypeSet;
    use domain::validation::{ValidationContext, validate};
    use domain::{OdsCode, PointerRecord};
    use nrls::dataset::Dataset;
    use store::PointerStore;
    use store::postgres::PostgresStore;
    use store::sqlite::{SqliteOptions, SqliteStore};
    use testkit::postgres::TestDatabase;

    const BATCH: usize = 2000;

    /// `count` valid pointers as the benchmark dataset generates them (1 to
    /// 20 per patient, mean about 3.3; every type; 200 custodians).
    pub fn records(count: usize) -> Vec<PointerRecord> {
        let catalogue = Catalogue::nrl_v3();
        let mut records = Vec::with_capacity(count);
        Dataset::new(count as u64, 1)
            .generate(|generated| {
                let value: serde_json::Value = serde_json::from_str(generated.json).unwrap();
                let ods = value["custodian"]["identifier"]["value"].as_str().unwrap();
                let custodian = OdsCode::parse(ods).unwrap();
                let doc: fhir::DocumentReference = serde_json::from_value(value).unwrap();
                let ctx = ValidationContext {
                    catalogue,
                    caller: &custodian,
                    permitted_types: TypeSet::all(catalogue),
                };
                let mut valid = validate(&doc, &ctx).unwrap();
                let id = valid.id.take().unwrap();
                records.push(
                    valid
                        .into_record(doc, id, 1, "2025-06-01T12:00:00Z")
                        .unwrap(),
                );
                Ok::<_, ()>(())
            })
            .unwrap();
        records
    }

    async fn load(store: &dyn PointerStore, records: &[PointerRecord]) {
        let started = Instant::now();
        for batch in records.chunks(BATCH) {
            let outcome = store.import(batch.to_vec()).await.unwrap();
            assert_eq!(outcome.imported as usize, batch.len(), "{outcome:?}");
        }
        println!(
            "{}: imported in {:.1} s",
            store.backend(),
            started.elapsed().as_secs_f64()
        );
    }

    fn per_pointer(bytes: i64, count: usize) -> f64 {
        bytes as f64 / count as f64
    }

    pub async fn sqlite(records: &[PointerRecord]) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nrls.db");
        {
            let store = Arc::new(SqliteStore::open(&path, SqliteOptions::default()).unwrap());
            load(store.as_ref(), records).await;
        }
        // Closed: the WAL is checkpointed into the file.
        let bytes = std::fs::metadata(&path).unwrap().len();
        println!(
            "sqlite: file {:.1} MB, {:.0} bytes/pointer",
            bytes as f64 / 1e6,
            per_pointer(i64::try_from(bytes).unwrap(), records.len())
        );
    }

    pub async fn postgres(records: &[PointerRecord]) {
        let database = TestDatabase::create().await;
        {
            let store = PostgresStore::open(database.options()).await.unwrap();
            load(&store, records).await;
        }
        database.execute("VACUUM ANALYZE").await;
        let n = records.len();
        let sum = |relations: &str, function: &str| {
            format!(
                "SELECT coalesce(sum({function}(c.oid)), 0)::bigint FROM pg_class c
                 WHERE c.relname ~ '{relations}'"
            )
        };
        let parts = [
            (
                "pointers heap (16 partitions, incl. TOAST)",
                sum("^pointers_p[0-9]+$", "pg_table_size"),
            ),
            (
                "  primary key (nhs_number, seq)",
                sum("^pointers_p[0-9]+_pkey$", "pg_relation_size"),
            ),
            (
                "  pointers_by_seq (export)",
                sum("^pointers_p[0-9]+_seq_idx$", "pg_relation_size"),
            ),
            ("pointer_ids heap", sum("^pointer_ids$", "pg_table_size")),
            (
                "  pointer_ids_pkey",
                sum("^pointer_ids_pkey$", "pg_relation_size"),
            ),
            (
                "master_identifiers heap",
                sum("^master_identifiers$", "pg_table_size"),
            ),
            (
                "  master_identifiers_pkey",
                sum("^master_identifiers_pkey$", "pg_relation_size"),
            ),
        ];
        let mut total = 0;
        for (name, sql) in parts {
            let bytes = database.query_i64(&sql).await;
            total += bytes;
            println!(
                "postgres: {name:45} {:8.1} bytes/pointer",
                per_pointer(bytes, n)
            );
        }
        let all = database
            .query_i64(
                "SELECT (coalesce(sum(pg_total_relation_size(c.oid)), 0))::bigint FROM pg_class c
                 WHERE c.relkind IN ('r') AND c.relname ~ '^(pointers_p[0-9]+|pointer_ids|master_identifiers)$'",
            )
            .await;
        println!(
            "postgres: {:45} {:8.1} bytes/pointer (sum of parts {:.1})",
            "total (pg_total_relation_size)",
            per_pointer(all, n),
            per_pointer(total, n)
        );
        let json = database
            .query_i64(
                "SELECT (coalesce(sum(octet_length(json)), 0)
                    + coalesce(sum(octet_length(json_zstd)), 0))::bigint FROM pointers",
            )
            .await;
        println!(
            "postgres: {:45} {:8.1} bytes/pointer",
            "of which JSON (text or zstd frame)",
            per_pointer(json, n)
        );
    }
}
