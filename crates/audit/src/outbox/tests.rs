//! The outbox's guarantees: every kept record reaches the chain exactly
//! once (across repeated moves, restarts and a crash between the move and
//! the removal), and readers through [`OutboxedLog`] never miss one.

use std::path::Path;
use std::time::Duration;

use store::conformance::{CUSTODIAN, pointer};
use store::sqlite::SqliteStore;
use store::{AuditKept, PointerWrite, SharedStore};

use super::*;
use crate::sqlite::{SqliteAuditLog, SqliteAuditOptions};
use crate::tests::{NODE, facts, options, patient, signer};

fn entry(minute: u32) -> Vec<u8> {
    crate::compact::encode(&facts("app-a", 1, minute), NODE)
}

fn sqlite_log(dir: &Path) -> SharedAuditLog {
    Arc::new(
        SqliteAuditLog::open(
            &dir.join(crate::sqlite::FILE_NAME),
            signer(),
            SqliteAuditOptions::default(),
        )
        .unwrap(),
    )
}

fn sqlite_store(dir: &Path) -> SharedStore {
    Arc::new(SqliteStore::open(&dir.join("nrls.db"), Default::default()).unwrap())
}

async fn all_records(log: &dyn AuditLog) -> Vec<AuditRecord> {
    let query = AuditQuery {
        count: 1000,
        ..AuditQuery::default()
    };
    log.search(&query).await.unwrap().records
}

/// Keeps one audited create per minute in `store`'s outbox.
async fn keep(store: &SharedStore, minutes: std::ops::Range<u32>) {
    for minute in minutes {
        let write = PointerWrite::Create {
            record: pointer(CUSTODIAN, &format!("m{minute}"), 1),
            supersedes: Vec::new(),
        };
        let kept = store.write_audited(write, entry(minute)).await.unwrap();
        assert_eq!(kept, AuditKept::WithTheChange);
    }
}

async fn moves_each_record_once(log: &dyn AuditLog) {
    log.record_moved(SOURCE, vec![(2, entry(2)), (1, entry(1))])
        .await
        .unwrap();
    // A repeat of the same move plus one new record: only the new one lands.
    let again = vec![(1, entry(1)), (2, entry(2)), (3, entry(3))];
    log.record_moved(SOURCE, again).await.unwrap();
    log.record_moved(SOURCE, Vec::new()).await.unwrap();
    let records = all_records(log).await;
    assert_eq!(records.len(), 3);
    // Chained in outbox order, rendered as the events the facts make.
    for (seq, minute) in [(1, 1), (2, 2), (3, 3)] {
        let record = log.get(seq).await.unwrap().unwrap();
        assert_eq!(
            record.event().unwrap(),
            facts("app-a", 1, minute).to_event(NODE)
        );
    }
    let report = log.verify(&options()).await.unwrap();
    assert_eq!(report.records, 3);
}

#[tokio::test]
async fn memory_log_chains_each_moved_record_once() {
    let log = crate::memory::MemoryAuditLog::new(signer(), Default::default());
    moves_each_record_once(&log).await;
}

#[tokio::test]
async fn sqlite_log_chains_each_moved_record_once() {
    let dir = tempfile::tempdir().unwrap();
    moves_each_record_once(sqlite_log(dir.path()).as_ref()).await;
}

#[tokio::test]
async fn sqlite_log_remembers_what_it_took_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let log = sqlite_log(dir.path());
    let moved = vec![(1, entry(1)), (2, entry(2))];
    log.record_moved(SOURCE, moved.clone()).await.unwrap();
    drop(log);
    let log = sqlite_log(dir.path());
    log.record_moved(SOURCE, moved).await.unwrap();
    assert_eq!(all_records(log.as_ref()).await.len(), 2);
}

#[tokio::test]
async fn a_record_that_is_not_canonical_compact_bytes_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = sqlite_log(dir.path());
    let refused = log.record_moved(SOURCE, vec![(1, b"not a record".to_vec())]);
    assert!(matches!(refused.await, Err(AuditError::Internal(_))));
    assert!(all_records(log.as_ref()).await.is_empty());
}

#[tokio::test]
async fn a_read_through_the_outboxed_log_sees_every_kept_write() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path());
    let outbox = AuditOutbox::new(&store, sqlite_log(dir.path()));
    let log = OutboxedLog::new(Arc::clone(&outbox));
    keep(&store, 0..5).await;
    (0..5).for_each(|_| outbox.kept());
    assert_eq!(outbox.waiting(), 5);
    // No mover task runs here: the read itself moves them.
    let query = AuditQuery {
        patient: Some(patient(1)),
        ..AuditQuery::default()
    };
    assert_eq!(log.search(&query).await.unwrap().records.len(), 5);
    assert!(store.audit_outbox(10).await.unwrap().is_empty());
    assert_eq!(outbox.waiting(), 0);
    assert_eq!(log.verify(&options()).await.unwrap().records, 5);
}

#[tokio::test]
async fn a_closed_store_fails_a_drain_only_while_records_this_node_kept_wait() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path());
    let outbox = AuditOutbox::new(&store, sqlite_log(dir.path()));
    keep(&store, 0..2).await;
    (0..2).for_each(|_| outbox.kept());
    outbox.drain().await.unwrap();
    // Shutdown: the store closes after the last drain; the final
    // checkpoint's drain has nothing left to move.
    drop(store);
    outbox.drain().await.unwrap();
    // A record kept after that drain cannot be moved now: said, not hidden.
    outbox.kept();
    assert!(matches!(
        outbox.drain().await,
        Err(AuditError::Unavailable(_))
    ));
}

#[tokio::test]
async fn a_crash_between_the_move_and_the_removal_appends_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path());
    let log = sqlite_log(dir.path());
    keep(&store, 0..3).await;
    // The move committed, then the process died before the store forgot
    // the records: they are in both places.
    let waiting = store.audit_outbox(10).await.unwrap();
    let entries = waiting.into_iter().map(|e| (e.id, e.entry)).collect();
    log.record_moved(SOURCE, entries).await.unwrap();
    // And one more was kept that no move ever saw.
    keep(&store, 3..4).await;
    drop((store, log));

    let store = sqlite_store(dir.path());
    let log = sqlite_log(dir.path());
    let outbox = AuditOutbox::new(&store, Arc::clone(&log));
    outbox.drain().await.unwrap();
    assert!(store.audit_outbox(10).await.unwrap().is_empty());
    let recorded: Vec<String> = all_records(log.as_ref())
        .await
        .iter()
        .map(|r| r.event().unwrap().recorded)
        .collect();
    let expected: Vec<String> = (0..4u32)
        .rev()
        .map(|m| facts("app-a", 1, m).recorded)
        .collect();
    assert_eq!(recorded, expected);
}

#[tokio::test]
async fn the_mover_task_moves_kept_records_without_a_reader() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path());
    let log = sqlite_log(dir.path());
    let outbox = AuditOutbox::new(&store, Arc::clone(&log));
    let task = outbox.spawn();
    keep(&store, 0..3).await;
    (0..3).for_each(|_| outbox.kept());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !store.audit_outbox(10).await.unwrap().is_empty() {
        assert!(std::time::Instant::now() < deadline, "never moved");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(all_records(log.as_ref()).await.len(), 3);
    task.abort();
}

/// PostgreSQL: the store's outbox and the chain share one database; a move
/// deletes the rows it chains in its own transaction.
mod postgres {
    use store::postgres::PostgresStore;
    use testkit::postgres::TestDatabase;

    use super::*;
    use crate::postgres::{PostgresAuditLog, PostgresAuditOptions};

    async fn node(db: &TestDatabase) -> (SharedStore, SharedAuditLog) {
        let store = PostgresStore::open(db.options()).await.unwrap();
        let log =
            PostgresAuditLog::open(store.database(), signer(), PostgresAuditOptions::default())
                .await
                .unwrap();
        (Arc::new(store), Arc::new(log))
    }

    #[tokio::test]
    async fn a_repeated_move_chains_each_record_once() {
        let db = TestDatabase::create().await;
        let (store, log) = node(&db).await;
        keep(&store, 0..3).await;
        let waiting = store.audit_outbox(10).await.unwrap();
        let entries: Vec<_> = waiting.into_iter().map(|e| (e.id, e.entry)).collect();
        log.record_moved(SOURCE, entries.clone()).await.unwrap();
        // The move took the rows: the store has nothing left to hand out,
        // and the same move again (a mover that crashed before removing)
        // appends nothing.
        assert!(store.audit_outbox(10).await.unwrap().is_empty());
        log.record_moved(SOURCE, entries).await.unwrap();
        assert_eq!(all_records(log.as_ref()).await.len(), 3);
        assert_eq!(log.verify(&options()).await.unwrap().records, 3);
    }

    #[tokio::test]
    async fn two_nodes_moving_at_once_chain_each_record_once() {
        let db = TestDatabase::create().await;
        let (store_a, log_a) = node(&db).await;
        let (store_b, log_b) = node(&db).await;
        keep(&store_a, 0..40).await;
        let a = AuditOutbox::new(&store_a, Arc::clone(&log_a));
        let b = AuditOutbox::new(&store_b, log_b);
        let (moved_a, moved_b) = tokio::join!(a.drain(), b.drain());
        moved_a.unwrap();
        moved_b.unwrap();
        assert!(store_a.audit_outbox(10).await.unwrap().is_empty());
        let records = all_records(log_a.as_ref()).await;
        assert_eq!(records.len(), 40);
        let query = AuditQuery {
            patient: Some(patient(1)),
            count: 100,
            ..AuditQuery::default()
        };
        // A write acknowledged by node B is in a search on node A at once,
        // whether or not B's mover has run.
        keep(&store_b, 40..45).await;
        let log = OutboxedLog::new(a);
        assert_eq!(log.search(&query).await.unwrap().records.len(), 45);
    }
}
