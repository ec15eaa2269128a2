//! SQLite-specific: durability across reopen, group commit, and tampering
//! with the file directly, each way the issue lists.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rusqlite::{Connection, params};

use super::*;
use crate::chain::{Anchor, record_hash};
use crate::tests::{event, options, signer};
use crate::{TamperKind, VerifyError};

const POLICY: CheckpointPolicy = CheckpointPolicy {
    records: 10,
    seconds: 3600,
};

fn open(path: &Path) -> SqliteAuditLog {
    SqliteAuditLog::open(
        path,
        signer(),
        SqliteAuditOptions {
            max_batch: 64,
            checkpoints: POLICY,
            page_size: DEFAULT_PAGE_SIZE,
        },
    )
    .unwrap()
}

/// 35 records appended one by one: checkpoints at 10, 20, 30; 31..35 unsigned.
async fn written_log() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    let log = open(&path);
    for i in 0..35u32 {
        log.append(vec![event(
            if i % 2 == 0 { "app-a" } else { "app-b" },
            i % 3,
            i,
        )])
        .await
        .unwrap();
    }
    drop(log);
    (dir, path)
}

fn tamper(path: &Path, change: impl FnOnce(&Connection)) -> Result<VerifyReport, VerifyError> {
    let conn = Connection::open(path).unwrap();
    change(&conn);
    drop(conn);
    verify_file(path, &options())
}

fn first_bad(result: Result<VerifyReport, VerifyError>) -> (u64, TamperKind) {
    match result {
        Err(VerifyError::Tampered(t)) => (t.first_bad_seq, t.kind),
        other => panic!("expected tampering, got {other:?}"),
    }
}

struct Row {
    appended_at: String,
    event: String,
    prev: Vec<u8>,
}

/// The `appended_at` text a record hashes: stored as text, or as Unix ms.
const APPENDED_AT: &str = "ifnull(appended_ms, appended_at)";

fn appended_at(r: &rusqlite::Row<'_>, column: usize) -> rusqlite::Result<String> {
    Ok(match r.get::<_, rusqlite::types::Value>(column)? {
        rusqlite::types::Value::Integer(ms) => crate::compact::format_ms(ms as u64).unwrap(),
        rusqlite::types::Value::Text(text) => text,
        other => panic!("appended_at {other:?}"),
    })
}

fn row(conn: &Connection, seq: u64) -> Row {
    conn.query_row(
        &format!("SELECT {APPENDED_AT}, event, prev_hash FROM audit_records WHERE seq = ?1"),
        [seq as i64],
        |r| {
            Ok(Row {
                appended_at: appended_at(r, 0)?,
                event: r.get(1)?,
                prev: r.get(2)?,
            })
        },
    )
    .unwrap()
}

/// Moves every record from `from` on by `delta` seqs (highest first when
/// moving up, so the primary key never collides).
fn renumber(conn: &Connection, from: u64, delta: i64) {
    let mut seqs: Vec<i64> = conn
        .prepare("SELECT seq FROM audit_records WHERE seq >= ?1 ORDER BY seq")
        .unwrap()
        .query_map([from as i64], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    if delta > 0 {
        seqs.reverse();
    }
    for seq in seqs {
        conn.execute(
            "UPDATE audit_records SET seq = ?1 WHERE seq = ?2",
            params![seq + delta, seq],
        )
        .unwrap();
    }
}

#[tokio::test]
async fn an_untouched_log_verifies() {
    let (_dir, path) = written_log().await;
    let report = verify_file(&path, &options()).unwrap();
    assert_eq!(report.records, 35);
    assert_eq!(report.checkpoints, 3);
    assert_eq!(report.last_checkpoint_seq, Some(30));
    assert_eq!(report.unsigned_tail, 5);
}

#[tokio::test]
async fn a_modified_record_is_named() {
    let (_dir, path) = written_log().await;
    let result = tamper(&path, |c| {
        c.execute(
            "UPDATE audit_records SET event = replace(event, 'app-a', 'app-x') WHERE seq = 13",
            [],
        )
        .unwrap();
    });
    assert_eq!(first_bad(result), (13, TamperKind::ContentMismatch));
}

#[tokio::test]
async fn a_modified_and_rehashed_record_is_named() {
    let (_dir, path) = written_log().await;
    let result = tamper(&path, |c| {
        let old = row(c, 13);
        let event = old.event.replace("req-", "rex-");
        let prev: [u8; 32] = old.prev.try_into().unwrap();
        let hash = record_hash(&prev, 13, &old.appended_at, &event);
        c.execute(
            "UPDATE audit_records SET event = ?1, hash = ?2 WHERE seq = 13",
            params![event, hash.as_slice()],
        )
        .unwrap();
    });
    assert_eq!(first_bad(result), (13, TamperKind::RewrittenPredecessor));
}

#[tokio::test]
async fn an_edited_search_column_is_named() {
    let (_dir, path) = written_log().await;
    let result = tamper(&path, |c| {
        c.execute(
            "DELETE FROM audit_agents WHERE seq = 17 AND agent = 'app-a'",
            [],
        )
        .unwrap();
    });
    assert_eq!(first_bad(result), (17, TamperKind::IndexMismatch));
}

#[tokio::test]
async fn a_rechained_log_is_caught_by_the_next_checkpoint() {
    let (_dir, path) = written_log().await;
    let result = tamper(&path, |c| {
        // Rewrite record 13 and rebuild every later hash: the chain is then
        // self-consistent and only checkpoint 20's signature disagrees.
        let mut prev: [u8; 32] = row(c, 13).prev.try_into().unwrap();
        for seq in 13..=35u64 {
            let old = row(c, seq);
            let event = if seq == 13 {
                old.event.replace("req-", "rex-")
            } else {
                old.event
            };
            let hash = record_hash(&prev, seq, &old.appended_at, &event);
            c.execute(
                "UPDATE audit_records SET event = ?1, prev_hash = ?2, hash = ?3 WHERE seq = ?4",
                params![event, prev.as_slice(), hash.as_slice(), seq as i64],
            )
            .unwrap();
            prev = hash;
        }
    });
    // The first bad record lies after checkpoint 10 and at or before 20.
    assert_eq!(
        first_bad(result),
        (11, TamperKind::CheckpointMismatch { checkpoint_seq: 20 })
    );
}

#[tokio::test]
async fn a_deleted_record_is_named() {
    let (_dir, path) = written_log().await;
    let result = tamper(&path, |c| {
        c.execute("DELETE FROM audit_records WHERE seq = 12", [])
            .unwrap();
    });
    assert_eq!(first_bad(result), (12, TamperKind::Missing));
}

#[tokio::test]
async fn a_deletion_hidden_by_renumbering_is_named() {
    let (_dir, path) = written_log().await;
    let result = tamper(&path, |c| {
        c.execute("DELETE FROM audit_records WHERE seq = 12", [])
            .unwrap();
        renumber(c, 13, -1);
    });
    assert_eq!(first_bad(result), (12, TamperKind::Reordered));
}

#[tokio::test]
async fn an_inserted_record_is_named() {
    let (_dir, path) = written_log().await;
    let result = tamper(&path, |c| {
        // Make room at 12 and insert a well-formed record chained to 11.
        renumber(c, 12, 1);
        let template = row(c, 13);
        let prev: [u8; 32] = conn_hash(c, 11);
        let event = template.event.replace("app-a", "intruder");
        let hash = record_hash(&prev, 12, &template.appended_at, &event);
        c.execute(
            "INSERT INTO audit_records (seq, appended_at, appended_ms, event, prev_hash, hash, patient, outcome, recorded_ms, alert)
             SELECT 12, appended_at, appended_ms, ?1, ?2, ?3, patient, outcome, recorded_ms, alert FROM audit_records WHERE seq = 13",
            params![event, prev.as_slice(), hash.as_slice()],
        )
        .unwrap();
    });
    assert_eq!(first_bad(result), (12, TamperKind::Inserted));

    // A crude insertion (a record with a made-up hash) past the end.
    let (_dir, path) = written_log().await;
    let result = tamper(&path, |c| {
        c.execute(
            "INSERT INTO audit_records (seq, appended_at, appended_ms, event, prev_hash, hash, patient, outcome, recorded_ms, alert)
             SELECT 36, appended_at, appended_ms, event, hash, hash, patient, outcome, recorded_ms, alert FROM audit_records WHERE seq = 35",
            [],
        )
        .unwrap();
    });
    assert_eq!(first_bad(result), (36, TamperKind::ContentMismatch));
}

fn conn_hash(c: &Connection, seq: u64) -> [u8; 32] {
    let hash: Vec<u8> = c
        .query_row(
            "SELECT hash FROM audit_records WHERE seq = ?1",
            [seq as i64],
            |r| r.get(0),
        )
        .unwrap();
    hash.try_into().unwrap()
}

#[tokio::test]
async fn swapped_records_are_named() {
    let (_dir, path) = written_log().await;
    let result = tamper(&path, |c| {
        c.execute("UPDATE audit_records SET seq = 2000 WHERE seq = 14", [])
            .unwrap();
        c.execute("UPDATE audit_records SET seq = 14 WHERE seq = 15", [])
            .unwrap();
        c.execute("UPDATE audit_records SET seq = 15 WHERE seq = 2000", [])
            .unwrap();
    });
    assert_eq!(first_bad(result), (14, TamperKind::Reordered));

    // Far apart: 14 and 20 exchange places.
    let (_dir, path) = written_log().await;
    let result = tamper(&path, |c| {
        c.execute("UPDATE audit_records SET seq = 2000 WHERE seq = 14", [])
            .unwrap();
        c.execute("UPDATE audit_records SET seq = 14 WHERE seq = 20", [])
            .unwrap();
        c.execute("UPDATE audit_records SET seq = 20 WHERE seq = 2000", [])
            .unwrap();
    });
    assert_eq!(first_bad(result), (14, TamperKind::ContentMismatch));
}

#[tokio::test]
async fn truncation_past_a_checkpoint_is_named() {
    let (_dir, path) = written_log().await;
    let result = tamper(&path, |c| {
        c.execute("DELETE FROM audit_records WHERE seq > 25", [])
            .unwrap();
    });
    assert_eq!(
        first_bad(result),
        (26, TamperKind::Truncated { covered_up_to: 30 })
    );
}

#[tokio::test]
async fn truncation_with_its_checkpoints_needs_an_anchor() {
    // Cutting only unsigned records (after checkpoint 30) leaves a valid
    // chain: undetectable from the file alone.
    let (_dir, path) = written_log().await;
    let anchor = Anchor {
        seq: 35,
        hash: conn_hash(&Connection::open(&path).unwrap(), 35),
    };
    let quiet = tamper(&path, |c| {
        c.execute("DELETE FROM audit_records WHERE seq > 32", [])
            .unwrap();
    });
    assert_eq!(quiet.unwrap().records, 32);
    // An anchor kept elsewhere (the checkpoint log line) catches it.
    let with_anchor = VerifyOptions {
        anchor: Some(anchor),
        ..options()
    };
    let (seq, kind) = first_bad(verify_file(&path, &with_anchor));
    assert_eq!(
        (seq, kind),
        (33, TamperKind::Truncated { covered_up_to: 35 })
    );

    // Deleting checkpoints as well as records: too many unsigned records
    // remain, unless the cut is shorter than one interval.
    let (_dir, path) = written_log().await;
    let result = tamper(&path, |c| {
        c.execute("DELETE FROM audit_checkpoints WHERE seq >= 20", [])
            .unwrap();
    });
    assert_eq!(first_bad(result), (11, TamperKind::CheckpointMissing));
}

#[tokio::test]
async fn reopening_continues_the_chain_and_signs_the_old_tail() {
    let (_dir, path) = written_log().await;
    let log = open(&path);
    let seqs = log.append(vec![event("app-c", 0, 50)]).await.unwrap();
    assert_eq!(seqs, vec![36]);
    let report = log.verify(&options()).await.unwrap();
    assert_eq!(report.last_checkpoint_seq, Some(35));
    assert_eq!(report.unsigned_tail, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_share_transactions() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(open(&dir.path().join(FILE_NAME)));
    // All appends start together, as under load, whatever the scheduler does.
    let start = Arc::new(tokio::sync::Barrier::new(1000));
    let tasks: Vec<_> = (0..1000u32)
        .map(|i| {
            let log = Arc::clone(&log);
            let start = Arc::clone(&start);
            tokio::spawn(async move {
                start.wait().await;
                log.append(vec![event("load", i % 7, i % 60)]).await
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let stats = log.stats();
    assert_eq!(stats.records, 1000);
    assert!(
        stats.batches < 500,
        "{stats:?}: appends did not share commits"
    );
    let report = log.verify(&options()).await.unwrap();
    assert_eq!(report.records, 1000);
}

/// Recomputes every record's `prev_hash` and `hash` from its content, as an
/// attacker with write access but without the key would after an edit.
fn rechain(conn: &Connection) {
    let rows: Vec<(i64, String, crate::Body)> = conn
        .prepare(&format!(
            "SELECT seq, {APPENDED_AT}, event FROM audit_records ORDER BY seq"
        ))
        .unwrap()
        .query_map([], |r| {
            let body = match r.get::<_, rusqlite::types::Value>(2)? {
                rusqlite::types::Value::Blob(bytes) => crate::Body::Compact(bytes),
                rusqlite::types::Value::Text(json) => crate::Body::Json(json),
                other => panic!("event {other:?}"),
            };
            Ok((r.get(0)?, appended_at(r, 1)?, body))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let mut prev = crate::chain::GENESIS;
    for (seq, appended_at, body) in rows {
        let hash = body.hash(&prev, seq as u64, &appended_at);
        conn.execute(
            "UPDATE audit_records SET prev_hash = ?1, hash = ?2 WHERE seq = ?3",
            params![prev.as_slice(), hash.as_slice(), seq],
        )
        .unwrap();
        prev = hash;
    }
}

/// 35 records as in `written_log`, the 5th a break-glass search whose
/// reason is "collapsed", and the alert left open.
async fn log_with_break_glass() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    let log = open(&path);
    for i in 0..35u32 {
        let event = if i == 4 {
            crate::tests::break_glass_because("collapsed", i)
        } else {
            event("app-a", i % 3, i)
        };
        log.append(vec![event]).await.unwrap();
    }
    drop(log);
    (dir, path)
}

/// The attack of issue 11: every checkpoint deleted, a break-glass reason
/// changed from "collapsed" to "routine", the hashes re-chained. Verify
/// holds the trail to the deployment's interval and fails.
#[tokio::test]
async fn a_rewritten_and_rechained_trail_without_checkpoints_fails() {
    let (_dir, path) = log_with_break_glass().await;
    let conn = Connection::open(&path).unwrap();
    conn.execute("DELETE FROM audit_checkpoints", []).unwrap();
    let edited = conn
        .execute(
            "UPDATE audit_records SET event = replace(event, '\"collapsed\"', '\"routine\"') WHERE seq = 5",
            [],
        )
        .unwrap();
    assert_eq!(edited, 1);
    rechain(&conn);
    drop(conn);
    // Held to the records interval: 35 unsigned records, 10 allowed.
    let result = verify_file(&path, &crate::tests::options_for(POLICY));
    assert_eq!(first_bad(result), (1, TamperKind::CheckpointMissing));
    // A verifier told only the default 1,000 records still sees records
    // left unsigned longer than checkpoint_seconds once that has passed.
    let now = crate::fields::parse_instant_ms(&crate::event::now_rfc3339()).unwrap();
    let later = VerifyOptions {
        now_ms: Some(now + 2 * 3600 * 1000),
        ..crate::tests::options_for(POLICY)
    };
    let default_records = VerifyOptions {
        policy: CheckpointPolicy {
            records: 1000,
            ..POLICY
        },
        ..later
    };
    let (seq, kind) = first_bad(verify_file(&path, &default_records));
    assert_eq!(seq, 1);
    assert!(
        matches!(kind, TamperKind::CheckpointOverdue { .. }),
        "{kind:?}"
    );
}

#[tokio::test]
async fn deleting_a_checkpoint_inside_the_trail_is_named() {
    let (_dir, path) = written_log().await;
    let result = tamper(&path, |c| {
        c.execute("DELETE FROM audit_checkpoints WHERE seq = 20", [])
            .unwrap();
    });
    // 11..30 is one run of 20 under a checkpoint that promises 10.
    assert_eq!(first_bad(result), (11, TamperKind::CheckpointMissing));
}

#[tokio::test]
async fn alert_acknowledgements_are_held_to_the_chain() {
    let (_dir, path) = log_with_break_glass().await;
    // An inserted row that would hide the open alert.
    let result = tamper(&path, |c| {
        c.execute(
            "INSERT INTO alert_acks (seq, acknowledged_by, acknowledged_at, note) VALUES (5, 'po', '2026-03-01T10:00:00Z', 'fine')",
            [],
        )
        .unwrap();
    });
    assert_eq!(
        first_bad(result),
        (5, TamperKind::AcknowledgementNotInChain { alert_seq: 5 })
    );

    // A real acknowledgement verifies; editing or deleting its row fails.
    let (_dir, path) = log_with_break_glass().await;
    let log = open(&path);
    let ack = Acknowledgement {
        by: "po".into(),
        at: crate::event::now_rfc3339(),
        note: Some("justified".into()),
    };
    log.acknowledge(5, ack).await.unwrap();
    log.verify(&options()).await.unwrap();
    drop(log);
    let edited = tamper(&path, |c| {
        c.execute("UPDATE alert_acks SET note = 'other' WHERE seq = 5", [])
            .unwrap();
    });
    assert_eq!(
        first_bad(edited),
        (5, TamperKind::AcknowledgementNotInChain { alert_seq: 5 })
    );
    let removed = tamper(&path, |c| {
        c.execute("DELETE FROM alert_acks WHERE seq = 5", [])
            .unwrap();
    });
    assert_eq!(
        first_bad(removed),
        (5, TamperKind::AcknowledgementMissing { alert_seq: 5 })
    );
}

/// 35 compact records as in `written_log` (requests' facts, not events),
/// with a JSON record at 18, as a trail written across the upgrade holds.
async fn compact_log() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    let log = open(&path);
    for i in 0..35u32 {
        let client = if i % 2 == 0 { "app-a" } else { "app-b" };
        if i == 17 {
            log.append(vec![event(client, i % 3, i)]).await.unwrap();
        } else {
            let f = crate::tests::facts(client, i % 3, i);
            log.record(crate::tests::NODE, vec![f]).await.unwrap();
        }
    }
    drop(log);
    (dir, path)
}

fn compact_body(conn: &Connection, seq: u64) -> Vec<u8> {
    conn.query_row(
        "SELECT event FROM audit_records WHERE seq = ?1",
        [seq as i64],
        |r| r.get(0),
    )
    .unwrap()
}

#[tokio::test]
async fn compact_records_verify_and_each_kind_of_tampering_is_named() {
    let (_dir, path) = compact_log().await;
    let report = verify_file(&path, &options()).unwrap();
    assert_eq!(report.records, 35);

    // One byte of a compact record changed.
    let (_dir, path) = compact_log().await;
    let result = tamper(&path, |c| {
        let mut bytes = compact_body(c, 13);
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        c.execute(
            "UPDATE audit_records SET event = ?1 WHERE seq = 13",
            params![bytes],
        )
        .unwrap();
    });
    assert_eq!(first_bad(result), (13, TamperKind::ContentMismatch));

    // Re-encoded with another request id and re-hashed: its successor names it.
    let (_dir, path) = compact_log().await;
    let result = tamper(&path, |c| {
        let (mut facts, node) = crate::compact::decode(&compact_body(c, 13)).unwrap();
        facts.request_id = Some("rex-forged".into());
        let bytes = crate::compact::encode(&facts, &node);
        let old = row_appended(c, 13);
        let prev: [u8; 32] = conn_hash(c, 12);
        let hash = crate::chain::compact_record_hash(&prev, 13, &old, &bytes);
        c.execute(
            "UPDATE audit_records SET event = ?1, hash = ?2 WHERE seq = 13",
            params![bytes, hash.as_slice()],
        )
        .unwrap();
    });
    assert_eq!(first_bad(result), (13, TamperKind::RewrittenPredecessor));

    // Another client without its index column: the index disagrees.
    let (_dir, path) = compact_log().await;
    let result = tamper(&path, |c| {
        let (mut facts, node) = crate::compact::decode(&compact_body(c, 13)).unwrap();
        facts.client_id = "app-x".into();
        let bytes = crate::compact::encode(&facts, &node);
        c.execute(
            "UPDATE audit_records SET event = ?1 WHERE seq = 13",
            params![bytes],
        )
        .unwrap();
        rechain(c);
    });
    assert_eq!(first_bad(result), (13, TamperKind::IndexMismatch));

    // An agent column pointed at another name, or the name itself renamed:
    // the record would vanish from a search by its app.
    let (_dir, path) = compact_log().await;
    let result = tamper(&path, |c| {
        c.execute(
            "UPDATE audit_records SET client = (SELECT id FROM audit_names WHERE name = 'app-b') WHERE seq = 13",
            [],
        )
        .unwrap();
    });
    assert_eq!(first_bad(result), (13, TamperKind::IndexMismatch));
    let (_dir, path) = compact_log().await;
    let result = tamper(&path, |c| {
        c.execute(
            "UPDATE audit_names SET name = 'app-z' WHERE name = 'app-a'",
            [],
        )
        .unwrap();
    });
    assert_eq!(first_bad(result), (1, TamperKind::IndexMismatch));

    // A compact record turned into text (the format changed under the hash).
    let (_dir, path) = compact_log().await;
    let result = tamper(&path, |c| {
        c.execute(
            "UPDATE audit_records SET event = CAST(event AS TEXT) WHERE seq = 20",
            [],
        )
        .unwrap();
    });
    assert_eq!(first_bad(result), (20, TamperKind::ContentMismatch));

    // Deleted: named as before.
    let (_dir, path) = compact_log().await;
    let result = tamper(&path, |c| {
        c.execute("DELETE FROM audit_records WHERE seq = 13", [])
            .unwrap();
    });
    assert_eq!(first_bad(result), (13, TamperKind::Missing));
}

fn row_appended(conn: &Connection, seq: u64) -> String {
    conn.query_row(
        &format!("SELECT {APPENDED_AT} FROM audit_records WHERE seq = ?1"),
        [seq as i64],
        |r| appended_at(r, 0),
    )
    .unwrap()
}

/// The target of issue 16: an audited consumer search costs at most 300
/// bytes of `audit.db`, indexes included (pages in use after 5,000 searches
/// by 1,000 patients, as a busy node writes them: in batches).
#[tokio::test]
async fn an_audited_search_costs_at_most_300_bytes_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    let log = open(&path);
    let searches = 5_000u32;
    for batch in 0..searches / 100 {
        let facts = (0..100)
            .map(|i| {
                let n = batch * 100 + i;
                let patient = crate::tests::patient(n % 1000);
                AuditFacts {
                    interaction: crate::Interaction::Search,
                    outcome: crate::AuditOutcome::Success,
                    outcome_desc: None,
                    recorded: crate::now_rfc3339(),
                    request_id: Some(format!("00000000-0000-4000-8000-{n:012x}")),
                    client_id: "bench-consumer".into(),
                    organisation: Some("RX9".into()),
                    user: None,
                    purpose_of_use: None,
                    patient: Some(patient),
                    // 3.45 pointers per patient on average in the bench data.
                    resources: (0..(1 + n % 6))
                        .map(|k| format!("DocumentReference/RA{}-g1p{n:x}n{k}", n % 10))
                        .collect(),
                    query: Some(format!(
                        "subject%3Aidentifier=https%3A%2F%2Ffhir.nhs.uk%2FId%2Fnhs-number%7C{}",
                        patient.as_u64()
                    )),
                    access: Some(crate::AccessFacts {
                        basis: "recorded".into(),
                        reason: None,
                        decision: "TRUSTED_APP".into(),
                        alert: false,
                        objection_overridden: false,
                    }),
                    session: None,
                    login_subject: None,
                }
            })
            .collect();
        log.record("nrls", facts).await.unwrap();
    }
    drop(log);
    let conn = Connection::open(&path).unwrap();
    let pragma = |name: &str| -> i64 { conn.pragma_query_value(None, name, |r| r.get(0)).unwrap() };
    let used = (pragma("page_count") - pragma("freelist_count")) * pragma("page_size");
    let per_search = used / i64::from(searches);
    assert!(per_search <= 300, "{per_search} bytes per audited search");
    drop(conn);
    verify_file(&path, &options()).unwrap();
}

/// A trail written before schema step 2 (JSON records, `appended_at` as
/// text, agents as text rows) is migrated in place at open, keeps
/// verifying, and continues with compact records; searches find both.
#[tokio::test]
async fn a_trail_from_before_compact_records_migrates_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch(super::schema::MIGRATIONS[0]).unwrap();
    conn.pragma_update(None, "user_version", 1).unwrap();
    let mut prev = crate::chain::GENESIS;
    let appended_at = crate::now_rfc3339();
    for seq in 1..=3u64 {
        let event = event("app-old", 0, seq as u32);
        let json = serde_json::to_string(&event).unwrap();
        let fields = crate::fields::SearchFields::of(&event);
        let hash = record_hash(&prev, seq, &appended_at, &json);
        conn.execute(
            "INSERT INTO audit_records (seq, appended_at, event, prev_hash, hash, patient, outcome, recorded_ms, alert)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, NULL)",
            params![seq as i64, appended_at, json, prev.as_slice(), hash.as_slice(),
                    fields.patient.map(|p| p as i64), fields.outcome, fields.recorded_ms],
        )
        .unwrap();
        for agent in &fields.agents {
            conn.execute(
                "INSERT INTO audit_agents (agent, seq) VALUES (?1, ?2)",
                params![agent, seq as i64],
            )
            .unwrap();
        }
        prev = hash;
    }
    drop(conn);

    let log = open(&path);
    let facts = crate::tests::facts("app-new", 0, 9);
    assert_eq!(
        log.record(crate::tests::NODE, vec![facts]).await.unwrap(),
        vec![4]
    );
    log.checkpoint().await.unwrap();
    let report = log.verify(&options()).await.unwrap();
    assert_eq!(report.records, 4);
    let by = |agent: &str| AuditQuery {
        agent: Some(agent.to_owned()),
        ..AuditQuery::default()
    };
    let seqs = |page: AuditPage| page.records.iter().map(|r| r.seq).collect::<Vec<_>>();
    assert_eq!(
        seqs(log.search(&by("app-old")).await.unwrap()),
        vec![3, 2, 1]
    );
    assert_eq!(seqs(log.search(&by("app-new")).await.unwrap()), vec![4]);
    // Both kinds name the organisation; newest first across the formats.
    assert_eq!(
        seqs(log.search(&by("RX1")).await.unwrap()),
        vec![4, 3, 2, 1]
    );
    let patient = AuditQuery {
        patient: Some(crate::tests::patient(0)),
        ..AuditQuery::default()
    };
    assert_eq!(seqs(log.search(&patient).await.unwrap()), vec![4, 3, 2, 1]);
    let old = log.get(2).await.unwrap().unwrap();
    assert!(old.compact.is_none());
    assert_eq!(old.event().unwrap(), event("app-old", 0, 2));
}

#[tokio::test]
async fn a_new_file_takes_the_chosen_page_size_and_an_existing_file_keeps_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let page_size = |path: &Path| -> i64 {
        Connection::open(path)
            .unwrap()
            .pragma_query_value(None, "page_size", |r| r.get(0))
            .unwrap()
    };
    let with = |size| SqliteAuditOptions {
        max_batch: 64,
        checkpoints: POLICY,
        page_size: size,
    };
    let path = dir.path().join(FILE_NAME);
    let log = SqliteAuditLog::open(&path, signer(), with(2048)).unwrap();
    log.append(vec![event("app-a", 1, 1)]).await.unwrap();
    drop(log);
    assert_eq!(page_size(&path), 2048);
    let log = SqliteAuditLog::open(&path, signer(), with(8192)).unwrap();
    log.append(vec![event("app-a", 2, 2)]).await.unwrap();
    drop(log);
    assert_eq!(page_size(&path), 2048, "an existing file keeps its pages");
    verify_file(&path, &options()).unwrap();
    assert!(SqliteAuditLog::open(&dir.path().join("b.db"), signer(), with(3000)).is_err());
}
