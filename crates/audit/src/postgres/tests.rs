//! PostgreSQL-specific: one chain shared by several nodes, durability
//! across reopen, group commit, and tampering with the tables directly.

use std::sync::Arc;

use store::postgres::PostgresStore;
use testkit::postgres::TestDatabase;

use super::*;
use crate::TamperKind;
use crate::tests::{event, options, signer};

const POLICY: CheckpointPolicy = CheckpointPolicy {
    records: 10,
    seconds: 3600,
};

fn node_signer(node: u8) -> CheckpointSigner {
    CheckpointSigner::from_seed([node; 32])
}

async fn open_node(db: &TestDatabase, key: CheckpointSigner) -> PostgresAuditLog {
    open_with(db, key, POLICY).await
}

async fn open_with(
    db: &TestDatabase,
    key: CheckpointSigner,
    checkpoints: CheckpointPolicy,
) -> PostgresAuditLog {
    let pointers = PostgresStore::open(db.options()).await.unwrap();
    PostgresAuditLog::open(
        pointers.database(),
        key,
        PostgresAuditOptions {
            max_batch: 64,
            checkpoints,
        },
    )
    .await
    .unwrap()
}

/// The behaviour every backend shares, in JSON and in compact records.
#[tokio::test]
async fn postgres_backend_behaviour() {
    for compact in [false, true] {
        let db = TestDatabase::create().await;
        let log = open_with(&db, signer(), CheckpointPolicy::default()).await;
        crate::tests::all_behaviour(&log, compact).await;
    }
}

/// 35 records appended one by one: checkpoints at 10, 20, 30; 31..35 unsigned.
async fn written_log() -> (TestDatabase, PostgresAuditLog) {
    let db = TestDatabase::create().await;
    let log = open_node(&db, signer()).await;
    for i in 0..35u32 {
        let client = if i % 2 == 0 { "app-a" } else { "app-b" };
        log.append(vec![event(client, i % 3, i)]).await.unwrap();
    }
    (db, log)
}

fn first_bad(result: Result<VerifyReport, VerifyError>) -> (u64, TamperKind) {
    match result {
        Err(VerifyError::Tampered(t)) => (t.first_bad_seq, t.kind),
        other => panic!("expected tampering, got {other:?}"),
    }
}

#[tokio::test]
async fn an_untouched_log_verifies_and_reopening_continues_the_chain() {
    let (db, log) = written_log().await;
    let report = log.verify(&options()).await.unwrap();
    assert_eq!((report.records, report.checkpoints), (35, 3));
    assert_eq!(report.unsigned_tail, 5);
    drop(log);
    let log = open_node(&db, signer()).await;
    assert_eq!(
        log.append(vec![event("app-c", 0, 50)]).await.unwrap(),
        vec![36]
    );
    let report = log.verify(&options()).await.unwrap();
    // The tail left unsigned by the first run was signed at open.
    assert_eq!(report.last_checkpoint_seq, Some(35));
    assert_eq!(report.unsigned_tail, 1);
}

#[tokio::test]
async fn tampering_with_the_tables_is_named() {
    let (db, log) = written_log().await;
    // Modified content.
    db.execute("UPDATE audit_records SET event = replace(event, 'app-a', 'app-x') WHERE seq = 7")
        .await;
    assert_eq!(
        first_bad(log.verify(&options()).await),
        (7, TamperKind::ContentMismatch)
    );
    let (db, log) = written_log().await;
    // A search column edited to hide a record from a patient's search.
    db.execute("UPDATE audit_records SET patient = NULL WHERE seq = 12")
        .await;
    assert_eq!(
        first_bad(log.verify(&options()).await),
        (12, TamperKind::IndexMismatch)
    );
    let (db, log) = written_log().await;
    db.execute("DELETE FROM audit_agents WHERE seq = 13").await;
    assert_eq!(
        first_bad(log.verify(&options()).await),
        (13, TamperKind::IndexMismatch)
    );
    let (db, log) = written_log().await;
    db.execute("DELETE FROM audit_records WHERE seq = 20").await;
    assert_eq!(
        first_bad(log.verify(&options()).await),
        (20, TamperKind::Missing)
    );
}

/// As `written_log`, in compact records (requests' facts).
async fn compact_log() -> (TestDatabase, PostgresAuditLog) {
    let db = TestDatabase::create().await;
    let log = open_node(&db, signer()).await;
    for i in 0..35u32 {
        let client = if i % 2 == 0 { "app-a" } else { "app-b" };
        let facts = crate::tests::facts(client, i % 3, i);
        log.record(crate::tests::NODE, vec![facts]).await.unwrap();
    }
    (db, log)
}

#[tokio::test]
async fn tampering_with_compact_records_is_named() {
    let (db, log) = compact_log().await;
    assert_eq!(log.verify(&options()).await.unwrap().records, 35);
    let record = log.get(7).await.unwrap().unwrap();
    assert!(record.compact.is_some());
    assert_eq!(
        record.event().unwrap(),
        crate::tests::facts("app-a", 0, 6).to_event(crate::tests::NODE)
    );
    // Stored as bytes in `body`, not as text in `event`.
    assert_eq!(
        db.query_i64("SELECT count(*) FROM audit_records WHERE body IS NOT NULL AND event = ''")
            .await,
        35
    );
    // Modified content: one more byte.
    db.execute("UPDATE audit_records SET body = body || '\\x00'::bytea WHERE seq = 7")
        .await;
    assert_eq!(
        first_bad(log.verify(&options()).await),
        (7, TamperKind::ContentMismatch)
    );
    let (db, log) = compact_log().await;
    db.execute("UPDATE audit_records SET patient = NULL WHERE seq = 12")
        .await;
    assert_eq!(
        first_bad(log.verify(&options()).await),
        (12, TamperKind::IndexMismatch)
    );
    // An agent's id removed, pointed at another name, or its name edited.
    let (db, log) = compact_log().await;
    db.execute("UPDATE audit_records SET client = NULL WHERE seq = 13")
        .await;
    assert_eq!(
        first_bad(log.verify(&options()).await),
        (13, TamperKind::IndexMismatch)
    );
    let (db, log) = compact_log().await;
    db.execute(
        "UPDATE audit_records SET org = (SELECT id FROM audit_names WHERE name = 'app-a')
         WHERE seq = 14",
    )
    .await;
    assert_eq!(
        first_bad(log.verify(&options()).await),
        (14, TamperKind::IndexMismatch)
    );
    let (db, log) = compact_log().await;
    db.execute("UPDATE audit_names SET name = 'app-x' WHERE name = 'app-b'")
        .await;
    assert_eq!(
        first_bad(log.verify(&options()).await),
        (2, TamperKind::IndexMismatch)
    );
    // The appended time, kept as ms, moved by a millisecond.
    let (db, log) = compact_log().await;
    db.execute("UPDATE audit_records SET appended_ms = appended_ms + 1 WHERE seq = 15")
        .await;
    assert_eq!(
        first_bad(log.verify(&options()).await),
        (15, TamperKind::ContentMismatch)
    );
    let (db, log) = compact_log().await;
    db.execute("DELETE FROM audit_records WHERE seq = 20").await;
    assert_eq!(
        first_bad(log.verify(&options()).await),
        (20, TamperKind::Missing)
    );
}

#[tokio::test]
async fn a_truncated_tail_is_caught_by_the_chain_head() {
    let (db, log) = written_log().await;
    // The unsigned tail (31..35) removed: no checkpoint covers it, but the
    // head row still says 35.
    db.execute("DELETE FROM audit_records WHERE seq > 32").await;
    let (seq, kind) = first_bad(log.verify(&options()).await);
    assert_eq!(seq, 33);
    assert!(
        matches!(kind, TamperKind::Truncated { covered_up_to: 35 }),
        "{kind:?}"
    );
    // Rewinding the head too leaves it to the external anchor.
    db.execute(
        "UPDATE audit_head SET seq = 32, hash = (SELECT hash FROM audit_records WHERE seq = 32)",
    )
    .await;
    log.verify(&options()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_extend_one_chain() {
    let db = TestDatabase::create().await;
    let nodes = [
        Arc::new(open_node(&db, node_signer(1)).await),
        Arc::new(open_node(&db, node_signer(2)).await),
    ];
    // Both nodes' appends start together, as under load.
    let start = Arc::new(tokio::sync::Barrier::new(400));
    let tasks: Vec<_> = (0..400u32)
        .map(|i| {
            let log = Arc::clone(&nodes[(i % 2) as usize]);
            let start = Arc::clone(&start);
            tokio::spawn(async move {
                start.wait().await;
                log.append(vec![event("load", i % 7, i % 60)]).await
            })
        })
        .collect();
    let mut seqs = Vec::new();
    for task in tasks {
        seqs.extend(task.await.unwrap().unwrap());
    }
    seqs.sort_unstable();
    assert_eq!(
        seqs,
        (1..=400).collect::<Vec<u64>>(),
        "seqs are unique and gapless"
    );
    let stats: Vec<WriteStats> = nodes.iter().map(|n| n.stats()).collect();
    assert_eq!(stats[0].records + stats[1].records, 400);
    assert!(
        stats[0].batches + stats[1].batches < 300,
        "{stats:?}: appends did not share commits"
    );
    // Checkpoints are signed by both nodes' keys; verify needs both.
    let both = VerifyOptions {
        keys: vec![node_signer(1).public(), node_signer(2).public()],
        ..VerifyOptions::default()
    };
    let report = nodes[0].verify(&both).await.unwrap();
    assert_eq!(report.records, 400);
    // A checkpoint signed by node 2 is not trusted by a verifier that
    // knows only node 1's key.
    nodes[0].append(vec![event("late", 1, 1)]).await.unwrap();
    let by_two = nodes[1].checkpoint().await.unwrap().unwrap();
    assert_eq!(by_two.seq, 401);
    let one = VerifyOptions {
        keys: vec![node_signer(1).public()],
        ..VerifyOptions::default()
    };
    let (_, kind) = first_bad(nodes[0].verify(&one).await);
    assert!(
        matches!(kind, TamperKind::BadCheckpointSignature { .. }),
        "{kind:?}"
    );
    nodes[0].verify(&both).await.unwrap();
}

/// A network that stops answering: appends end in `Unavailable` within the
/// statement time-out plus a second, never hang; the log recovers with the
/// network, and the chain stays sound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_network_fails_appends_on_time_and_recovers() {
    use std::time::{Duration, Instant};
    use testkit::postgres::{Link, Proxy};

    let db = TestDatabase::create().await;
    let (proxy, url) = Proxy::in_front_of(db.url()).await;
    let mut impatient = store::postgres::PostgresOptions::new(url);
    impatient.statement_timeout = Duration::from_millis(500);
    impatient.connect_timeout = Duration::from_millis(500);
    let pointers = PostgresStore::open(impatient).await.unwrap();
    let log = PostgresAuditLog::open(
        pointers.database(),
        signer(),
        PostgresAuditOptions::default(),
    )
    .await
    .unwrap();
    log.append(vec![event("a", 0, 1)]).await.unwrap();

    proxy.set(Link::Stalled);
    let started = Instant::now();
    let lost = log.append(vec![event("a", 0, 2)]).await;
    assert!(matches!(lost, Err(AuditError::Unavailable(_))), "{lost:?}");
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "{:?}",
        started.elapsed()
    );

    proxy.set(Link::Up);
    let back = Instant::now();
    loop {
        match log.append(vec![event("a", 0, 3)]).await {
            Ok(_) => break,
            Err(AuditError::Unavailable(_)) if back.elapsed() < Duration::from_secs(10) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(other) => panic!("no recovery: {other:?}"),
        }
    }
    log.verify(&options()).await.unwrap();
}

/// Recomputes every record's hashes and the head from the content, as an
/// attacker with write access but without the key would after an edit.
async fn rechain(db: &TestDatabase) {
    let client = db.session().await;
    let rows = client
        .query(
            "SELECT seq, appended_at, event, appended_ms FROM audit_records ORDER BY seq",
            &[],
        )
        .await
        .unwrap();
    let mut prev = crate::chain::GENESIS;
    let mut last = 0i64;
    for row in rows {
        let (seq, appended_at, event): (i64, String, String) = (row.get(0), row.get(1), row.get(2));
        // Since step 7 the time the chain hashed is kept as ms.
        let appended_at = match row.get::<_, Option<i64>>(3) {
            Some(ms) => crate::compact::format_ms(ms as u64).unwrap(),
            None => appended_at,
        };
        let hash = crate::chain::record_hash(&prev, seq as u64, &appended_at, &event);
        client
            .execute(
                "UPDATE audit_records SET prev_hash = $1, hash = $2 WHERE seq = $3",
                &[&prev.as_slice(), &hash.as_slice(), &seq],
            )
            .await
            .unwrap();
        prev = hash;
        last = seq;
    }
    client
        .execute(
            "UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1",
            &[&last, &prev.as_slice()],
        )
        .await
        .unwrap();
}

/// The attack of issue 11 on PostgreSQL: checkpoints deleted, a
/// break-glass reason changed from "collapsed" to "routine", the chain and
/// its head re-computed. Verify fails; an `alert_acks` row inserted to hide
/// the open alert fails too.
#[tokio::test]
async fn a_rewritten_and_rechained_trail_and_a_forged_acknowledgement_fail() {
    let db = TestDatabase::create().await;
    let log = open_node(&db, signer()).await;
    for i in 0..35u32 {
        let event = if i == 4 {
            crate::tests::break_glass_because("collapsed", i)
        } else {
            event("app-a", i % 3, i)
        };
        log.append(vec![event]).await.unwrap();
    }
    let policy = crate::tests::options_for(POLICY);
    log.verify(&policy).await.unwrap();
    db.execute(
        "INSERT INTO alert_acks (seq, acknowledged_by, acknowledged_at, note) VALUES (5, 'po', '2026-03-01T10:00:00Z', 'fine')",
    )
    .await;
    assert_eq!(
        first_bad(log.verify(&policy).await),
        (5, TamperKind::AcknowledgementNotInChain { alert_seq: 5 })
    );
    db.execute("DELETE FROM alert_acks").await;

    db.execute("DELETE FROM audit_checkpoints").await;
    db.execute(
        "UPDATE audit_records SET event = replace(event, '\"collapsed\"', '\"routine\"') WHERE seq = 5",
    )
    .await;
    rechain(&db).await;
    assert_eq!(
        first_bad(log.verify(&policy).await),
        (1, TamperKind::CheckpointMissing)
    );
    // With the default 1,000 records, the age of the unsigned records
    // gives it away once checkpoint_seconds has passed.
    let now = crate::fields::parse_instant_ms(&crate::event::now_rfc3339()).unwrap();
    let later = VerifyOptions {
        now_ms: Some(now + 2 * 3600 * 1000),
        policy: CheckpointPolicy {
            records: 1000,
            ..POLICY
        },
        ..policy
    };
    let (seq, kind) = first_bad(log.verify(&later).await);
    assert_eq!(seq, 1);
    assert!(
        matches!(kind, TamperKind::CheckpointOverdue { .. }),
        "{kind:?}"
    );
}

/// Records written before schema step 7 (a compact body as base64 text in
/// `event`, agents as rows of `audit_agents`, `appended_at` as text) still
/// read, search and verify beside the ones written after it.
#[tokio::test]
async fn compact_records_from_before_step_7_verify_and_are_found() {
    let (db, log) = compact_log().await;
    db.execute(
        "INSERT INTO audit_agents (agent, seq)
         SELECT n.name, r.seq FROM audit_records r
         JOIN audit_names n ON n.id IN (r.client, r.org, r.person) WHERE r.seq <= 10",
    )
    .await;
    // As the writer formatted the time (`now_rfc3339`: no fraction when the
    // milliseconds are zero, otherwise exactly as many digits as needed).
    db.execute(
        "UPDATE audit_records SET
            event = 'c2:' || rtrim(translate(encode(body, 'base64'), E'\\n', ''), '='),
            body = NULL, client = NULL, org = NULL, person = NULL,
            appended_at = rtrim(rtrim(to_char(timestamp 'epoch' + appended_ms * interval '1 millisecond',
                'YYYY-MM-DD\"T\"HH24:MI:SS.MS'), '0'), '.') || 'Z',
            appended_ms = NULL
         WHERE seq <= 10",
    )
    .await;
    assert_eq!(log.verify(&options()).await.unwrap().records, 35);
    let record = log.get(3).await.unwrap().unwrap();
    assert!(record.compact.is_some());
    assert_eq!(
        record.event().unwrap(),
        crate::tests::facts("app-a", 2, 2).to_event(crate::tests::NODE)
    );
    let by = |agent: &str| crate::AuditQuery {
        agent: Some(agent.to_owned()),
        count: 100,
        ..crate::AuditQuery::default()
    };
    assert_eq!(log.search(&by("app-a")).await.unwrap().records.len(), 18);
    assert_eq!(log.search(&by("RX1")).await.unwrap().records.len(), 35);
}
