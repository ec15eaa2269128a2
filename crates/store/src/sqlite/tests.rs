//! The conformance suite on SQLite, then what only SQLite has: a file that
//! outlives the process, a schema version, and group commit.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tempfile::TempDir;
use tokio::task::JoinHandle;

use super::{SqliteOptions, SqliteStore, WriteStats, schema};
use domain::{PointerRecord, Supersede};

use crate::conformance::{CUSTODIAN, Fixture, next_version, patient, pointer, supersede};
use crate::{PointerStore, StoreError};

crate::conformance_tests!(|| async {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&db_path(&dir), SqliteOptions::default()).unwrap();
    Fixture::with_guard(store, dir)
});

fn db_path(dir: &TempDir) -> PathBuf {
    dir.path().join("pointers.db")
}

fn open(path: &Path) -> SqliteStore {
    SqliteStore::open(path, SqliteOptions::default()).unwrap()
}

fn user_version(path: &Path) -> i64 {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.pragma_query_value(None, "user_version", |row| row.get(0))
        .unwrap()
}

/// Holds the database write lock from another connection, as another process
/// would, so the writer's next `BEGIN IMMEDIATE` waits and writes queue up.
struct WriteLock(rusqlite::Connection);

impl WriteLock {
    fn take(path: &Path) -> WriteLock {
        let conn = rusqlite::Connection::open(path).unwrap();
        conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        WriteLock(conn)
    }

    fn release(self) {
        self.0.execute_batch("COMMIT").unwrap();
    }
}

fn since(before: WriteStats, after: WriteStats) -> WriteStats {
    WriteStats {
        batches: after.batches - before.batches,
        ops: after.ops - before.ops,
    }
}

/// Long enough for queued work to reach the writer on a loaded 2-core machine.
const SETTLE: Duration = Duration::from_millis(150);

#[tokio::test]
async fn open_creates_missing_folders() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a/b/pointers.db");
    let store = open(&path);
    store.health().await.unwrap();
    assert_eq!(store.backend(), "sqlite");
    assert!(path.exists());
}

#[tokio::test]
async fn writes_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let mut kept = pointer(CUSTODIAN, "kept", 1);
    kept.master_identifier = Some("sys|doc-1".into());
    kept.security_labels = vec!["R".into()];
    let updated = pointer(CUSTODIAN, "updated", 1);
    let deleted = pointer(CUSTODIAN, "deleted", 1);
    let before = {
        let store = open(&path);
        for record in [&kept, &updated, &deleted] {
            store.create(record.clone(), Vec::new()).await.unwrap();
        }
        store.update(next_version(&updated), 1).await.unwrap();
        store.delete(&deleted.id, None).await.unwrap();
        store.patient_pointers(patient(1)).await.unwrap()
    };

    let store = open(&path);
    assert_eq!(store.patient_pointers(patient(1)).await.unwrap(), before);
    assert_eq!(store.get(&kept.id).await.unwrap(), Some(kept.clone()));
    assert_eq!(
        store.get(&updated.id).await.unwrap(),
        Some(next_version(&updated))
    );
    assert_eq!(store.get(&deleted.id).await.unwrap(), None);

    // The deleted pointer held the highest sequence; a reopen must not hand it out again.
    let after = pointer(CUSTODIAN, "after", 1);
    store.create(after.clone(), Vec::new()).await.unwrap();
    let newest = store.patient_pointers(patient(1)).await.unwrap();
    assert_eq!(newest[0].record, after);
    assert!(newest[0].seq > 3);
}

#[tokio::test]
async fn reopen_does_not_migrate_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let record = pointer(CUSTODIAN, "p", 1);
    open(&path)
        .create(record.clone(), Vec::new())
        .await
        .unwrap();
    let known = i64::try_from(schema::MIGRATIONS.len()).unwrap();
    assert_eq!(user_version(&path), known);

    for _ in 0..2 {
        let store = open(&path);
        assert_eq!(store.get(&record.id).await.unwrap(), Some(record.clone()));
        assert_eq!(user_version(&path), known);
    }
}

#[tokio::test]
async fn newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    drop(open(&path));
    let future = schema::MIGRATIONS.len() + 1;
    rusqlite::Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", future)
        .unwrap();

    match SqliteStore::open(&path, SqliteOptions::default()) {
        Err(StoreError::Internal(message)) => assert!(message.contains("newer"), "{message}"),
        Err(other) => panic!("expected Internal, got {other:?}"),
        Ok(_) => panic!("a store from a newer schema must not open"),
    }
    assert_eq!(user_version(&path), i64::try_from(future).unwrap());
}

/// Dropping the store stops the writer and closes every connection: SQLite
/// then checkpoints and removes the WAL file.
#[tokio::test]
async fn drop_closes_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = open(&path);
    store
        .create(pointer(CUSTODIAN, "p", 1), Vec::new())
        .await
        .unwrap();
    assert!(dir.path().join("pointers.db-wal").exists());
    drop(store);
    assert!(!dir.path().join("pointers.db-wal").exists());
}

/// Writes queued while a commit is in progress share the next transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_share_transactions() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = Arc::new(open(&path));
    // Stands in for a slow fsync: the first batch cannot commit until released.
    let lock = WriteLock::take(&path);
    let tasks: Vec<_> = (0..200u32)
        .map(|i| {
            let record = pointer(CUSTODIAN, &format!("c{i}"), i % 7);
            spawn_write(&store, Write::Create(record, Vec::new()))
        })
        .collect();
    tokio::time::sleep(SETTLE).await;
    lock.release();
    for task in tasks {
        task.await.unwrap().unwrap();
    }

    let stats = store.stats();
    assert_eq!(stats.ops, 200);
    assert!(stats.batches < stats.ops, "{stats:?}");
    assert!(
        stats.batches <= 3,
        "the queued creates commit together: {stats:?}"
    );
    assert_eq!(store.count().await.unwrap(), 200);
}

/// One write of a test batch.
enum Write {
    Create(PointerRecord, Vec<Supersede>),
    Update(PointerRecord, u32),
}

fn spawn_write(store: &Arc<SqliteStore>, write: Write) -> JoinHandle<Result<(), StoreError>> {
    let store = Arc::clone(store);
    tokio::spawn(async move {
        match write {
            Write::Create(record, supersedes) => store.create(record, supersedes).await,
            Write::Update(record, expected) => store.update(record, expected).await,
        }
    })
}

/// Commits `writes` in one batch and returns their outcomes, in order. Another
/// connection holds the write lock (standing in for a slow commit) while a
/// lone write occupies the writer, so `writes` all queue up behind it.
async fn one_batch(
    store: &Arc<SqliteStore>,
    path: &Path,
    writes: Vec<Write>,
) -> Vec<Result<(), StoreError>> {
    let before = store.stats();
    let lock = WriteLock::take(path);
    let lone = pointer(CUSTODIAN, &format!("lone{}", before.ops), 99);
    let lone = spawn_write(store, Write::Create(lone, Vec::new()));
    tokio::time::sleep(SETTLE).await;
    let count = writes.len() as u64;
    let tasks: Vec<_> = writes.into_iter().map(|w| spawn_write(store, w)).collect();
    tokio::time::sleep(SETTLE).await;
    lock.release();

    lone.await.unwrap().unwrap();
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.unwrap());
    }
    let batched = WriteStats {
        batches: 2,
        ops: count + 1,
    };
    assert_eq!(
        since(before, store.stats()),
        batched,
        "the writes shared one batch"
    );
    outcomes
}

/// Writes that break a rule are rolled back alone; the rest of their batch commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_write_does_not_spoil_its_batch() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = Arc::new(open(&path));
    let existing = pointer(CUSTODIAN, "existing", 1);
    let bumped = pointer(CUSTODIAN, "bumped", 1);
    for record in [&existing, &bumped] {
        store.create(record.clone(), Vec::new()).await.unwrap();
    }
    let (a, b, c) = (
        pointer(CUSTODIAN, "a", 2),
        pointer(CUSTODIAN, "b", 2),
        pointer(CUSTODIAN, "c", 2),
    );
    let missing = supersede(&pointer(CUSTODIAN, "missing", 2));

    let outcomes = one_batch(
        &store,
        &path,
        vec![
            Write::Create(a.clone(), Vec::new()),
            Write::Create(existing.clone(), Vec::new()),
            Write::Update(next_version(&existing), 5),
            Write::Create(b.clone(), vec![missing.clone()]),
            Write::Create(c.clone(), Vec::new()),
            Write::Update(next_version(&bumped), 1),
        ],
    )
    .await;
    let stale = StoreError::VersionConflict {
        id: existing.id.clone(),
        expected: 5,
        actual: 1,
    };
    assert_eq!(
        outcomes,
        vec![
            Ok(()),
            Err(StoreError::DuplicateId(existing.id.clone())),
            Err(stale),
            Err(StoreError::SupersedeTargetMissing(missing)),
            Ok(()),
            Ok(()),
        ]
    );
    assert_eq!(store.get(&a.id).await.unwrap(), Some(a.clone()));
    assert_eq!(store.get(&c.id).await.unwrap(), Some(c.clone()));
    assert_eq!(store.get(&b.id).await.unwrap(), None);
    assert_eq!(
        store.get(&existing.id).await.unwrap(),
        Some(existing.clone())
    );
    assert_eq!(
        store.get(&bumped.id).await.unwrap(),
        Some(next_version(&bumped))
    );
    assert_eq!(store.count().await.unwrap(), 5);
    // The outbox followed each write's savepoint: events for the committed
    // writes only. The writes before the batch come in commit order; within
    // the batch the order is the queue's, which the spawned tasks race for.
    let mut events: Vec<_> = store
        .pending_events(100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.change, e.focus))
        .collect();
    let lone = pointer(CUSTODIAN, "lone2", 99).id;
    use crate::PointerChange::{Created, Updated};
    let mut batched = events.split_off(3);
    assert_eq!(
        events,
        vec![
            (Created, existing.id.clone()),
            (Created, bumped.id.clone()),
            (Created, lone),
        ]
    );
    batched.sort_by(|x, y| x.1.as_str().cmp(y.1.as_str()));
    assert_eq!(
        batched,
        vec![
            (Created, a.id.clone()),
            (Updated, bumped.id.clone()),
            (Created, c.id.clone()),
        ]
    );
}

/// Events committed but not dispatched when the process stopped are still
/// pending after a reopen, and a dispatched one stays dispatched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let (first, second) = (pointer(CUSTODIAN, "a", 1), pointer(CUSTODIAN, "b", 1));
    let dispatched = {
        let store = open(&path);
        store.create(first.clone(), Vec::new()).await.unwrap();
        store.create(second.clone(), Vec::new()).await.unwrap();
        let events = store.pending_events(10).await.unwrap();
        store.mark_dispatched(&[events[0].seq]).await.unwrap();
        events[0].seq
    };
    let store = open(&path);
    let pending = store.pending_events(10).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].focus, second.id);
    store
        .create(pointer(CUSTODIAN, "c", 1), Vec::new())
        .await
        .unwrap();
    let seqs: Vec<i64> = store
        .pending_events(10)
        .await
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert!(seqs.iter().all(|&seq| seq > dispatched), "{seqs:?}");
}

/// Adds a trigger that fails inserts of `<CUSTODIAN>-poison` with `action`
/// (`ABORT`: that statement only; `ROLLBACK`: the whole transaction).
fn poison(path: &Path, action: &str) -> PointerRecord {
    let record = pointer(CUSTODIAN, "poison", 3);
    let sql = format!(
        "CREATE TRIGGER poison BEFORE INSERT ON pointers WHEN NEW.id = '{}'
         BEGIN SELECT RAISE({action}, 'poisoned'); END",
        record.id
    );
    rusqlite::Connection::open(path)
        .unwrap()
        .execute_batch(&sql)
        .unwrap();
    record
}

/// A write that SQLite itself fails (here a trigger) gets `Internal`, alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_statement_fails_only_its_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = Arc::new(open(&path));
    let poisoned = poison(&path, "ABORT");
    let (a, c) = (pointer(CUSTODIAN, "a", 3), pointer(CUSTODIAN, "c", 3));

    let outcomes = one_batch(
        &store,
        &path,
        vec![
            Write::Create(a.clone(), Vec::new()),
            Write::Create(poisoned.clone(), Vec::new()),
            Write::Create(c.clone(), Vec::new()),
        ],
    )
    .await;
    assert_eq!(outcomes[0], Ok(()));
    assert!(
        matches!(outcomes[1], Err(StoreError::Internal(_))),
        "{outcomes:?}"
    );
    assert_eq!(outcomes[2], Ok(()));
    assert_eq!(store.get(&poisoned.id).await.unwrap(), None);
    assert_eq!(store.get(&c.id).await.unwrap(), Some(c.clone()));
}

/// When the transaction itself is lost mid-batch, no write of the batch is
/// applied and every one of them is told `Unavailable`; the store goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_transaction_fails_the_whole_batch() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = Arc::new(open(&path));
    let poisoned = poison(&path, "ROLLBACK");
    let (a, c) = (pointer(CUSTODIAN, "a", 3), pointer(CUSTODIAN, "c", 3));

    let outcomes = one_batch(
        &store,
        &path,
        vec![
            Write::Create(a.clone(), Vec::new()),
            Write::Create(poisoned, Vec::new()),
            Write::Create(c.clone(), Vec::new()),
        ],
    )
    .await;
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, Err(StoreError::Unavailable(_)))),
        "{outcomes:?}"
    );
    assert_eq!(store.get(&a.id).await.unwrap(), None);
    assert_eq!(store.get(&c.id).await.unwrap(), None);
    store.create(c.clone(), Vec::new()).await.unwrap();
    assert_eq!(store.get(&c.id).await.unwrap(), Some(c.clone()));
}

/// Reads go to the committed state and do not wait while another connection
/// holds the write lock with uncommitted changes.
#[tokio::test]
async fn reads_do_not_wait_for_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = open(&path);
    let committed = pointer(CUSTODIAN, "committed", 1);
    store.create(committed.clone(), Vec::new()).await.unwrap();

    let lock = WriteLock::take(&path);
    lock.0.execute("DELETE FROM pointers", []).unwrap();
    let started = std::time::Instant::now();
    assert_eq!(
        store.get(&committed.id).await.unwrap(),
        Some(committed.clone())
    );
    assert_eq!(store.count().await.unwrap(), 1);
    assert!(started.elapsed() < Duration::from_secs(1));
    drop(lock);
    assert_eq!(
        store.count().await.unwrap(),
        1,
        "the other connection's delete was never committed"
    );
}

/// Bytes on disk per pointer, by table and index, for ~1 KB DocumentReferences.
/// A measurement, not a check: `cargo test -p store --release -- --ignored
/// --nocapture storage_per_pointer`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement"]
async fn storage_per_pointer() {
    const POINTERS: u32 = 20_000;
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = Arc::new(open(&path));
    let tasks: Vec<_> = (0..POINTERS)
        .map(|i| {
            let mut record = pointer(CUSTODIAN, &format!("{i:010}"), i / 3);
            let padding = 1024usize.saturating_sub(record.json.len() + 20);
            record
                .json
                .insert_str(1, &format!("\"description\":\"{}\",", "x".repeat(padding)));
            record.master_identifier =
                (i % 2 == 0).then(|| format!("urn:ietf:rfc:3986|urn:uuid:{i:032}"));
            spawn_write(&store, Write::Create(record, Vec::new()))
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let json_bytes: i64 = {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.query_row("SELECT sum(length(json)) FROM pointers", [], |r| r.get(0))
            .unwrap()
    };
    println!(
        "{:?}; average JSON {} bytes",
        store.stats(),
        json_bytes / i64::from(POINTERS)
    );
    drop(store);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let mut statement = conn
        .prepare("SELECT name, sum(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC")
        .unwrap();
    let rows = statement
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
        .unwrap();
    let mut total = 0;
    for row in rows {
        let (name, bytes) = row.unwrap();
        total += bytes;
        println!(
            "{name:40} {:7.1} bytes/pointer",
            bytes as f64 / f64::from(POINTERS)
        );
    }
    println!(
        "{:40} {:7.1} bytes/pointer",
        "total",
        total as f64 / f64::from(POINTERS)
    );
}

/// A file at schema step 2 (before compression) with one plain-text row.
fn file_before_compression(path: &Path, record: &PointerRecord) {
    let mut conn = rusqlite::Connection::open(path).unwrap();
    super::setup::migrate(&mut conn, "nrls.db", &schema::MIGRATIONS[..2]).unwrap();
    conn.execute(
        "INSERT INTO pointers (id, nhs_number, custodian, type_key, master_identifier,
            security_labels, version, last_updated, json)
         VALUES (?1, ?2, ?3, ?4, NULL, '', 1, ?5, ?6)",
        rusqlite::params![
            record.id.as_str(),
            super::row::nhs_to_sql(record.nhs_number),
            record.custodian.as_str(),
            record.type_key,
            record.last_updated,
            record.json,
        ],
    )
    .unwrap();
}

fn stored_json(path: &Path, id: &str) -> (String, usize, Option<i64>) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.query_row(
        "SELECT typeof(json), length(CAST(json AS BLOB)), json_dictionary FROM pointers WHERE id = ?1",
        [id],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )
    .unwrap()
}

#[tokio::test]
async fn new_rows_are_stored_compressed_with_their_dictionary() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = open(&path);
    let record = pointer(CUSTODIAN, "compressed", 1);
    store.create(record.clone(), Vec::new()).await.unwrap();
    let imported = pointer(CUSTODIAN, "imported", 1);
    store.import(vec![imported.clone()]).await.unwrap();
    for r in [&record, &imported] {
        let (kind, bytes, dictionary) = stored_json(&path, r.id.as_str());
        assert_eq!(
            (kind.as_str(), dictionary),
            ("blob", Some(crate::compression::CURRENT_ID))
        );
        assert!(bytes * 2 < r.json.len(), "{bytes} of {}", r.json.len());
        assert_eq!(store.get(&r.id).await.unwrap().as_ref(), Some(r));
    }
    // An update rewrites the row compressed, and reads back as written.
    let updated = next_version(&record);
    store.update(updated.clone(), 1).await.unwrap();
    assert_eq!(store.get(&record.id).await.unwrap(), Some(updated));
    assert_eq!(stored_json(&path, record.id.as_str()).0, "blob");
}

#[tokio::test]
async fn rows_written_before_compression_stay_readable_and_writable() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let old = pointer(CUSTODIAN, "old", 1);
    file_before_compression(&path, &old);

    let store = open(&path);
    assert_eq!(stored_json(&path, old.id.as_str()).0, "text");
    crate::conformance::row_from_before_compression_reads_as_before(&store, &old).await;
    // Delete reads the old row back for its outbox event.
    store.delete(&old.id, None).await.unwrap();
    let events = store.pending_events(10).await.unwrap();
    assert_eq!(events.last().unwrap().focus, old.id);
}

#[tokio::test]
async fn a_dictionary_added_by_another_process_is_loaded_on_first_use() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = open(&path);
    // Another process (a later nrls) stores dictionary 2 and a row made with it.
    let record = pointer(CUSTODIAN, "later", 1);
    let dictionary = record.json.replace("later", "earlier").into_bytes();
    let frame = crate::compression::frame_made_with(&dictionary, &record.json);
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute(
            "INSERT INTO json_dictionaries (id, dictionary) VALUES (2, ?1)",
            [&dictionary],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO pointers (id, nhs_number, custodian, type_key, master_identifier,
                security_labels, version, last_updated, json, json_dictionary)
             VALUES (?1, ?2, ?3, ?4, NULL, '', 1, ?5, ?6, 2)",
            rusqlite::params![
                record.id.as_str(),
                super::row::nhs_to_sql(record.nhs_number),
                record.custodian.as_str(),
                record.type_key,
                record.last_updated,
                frame,
            ],
        )
        .unwrap();
    }
    assert_eq!(store.get(&record.id).await.unwrap(), Some(record));
}

#[tokio::test]
async fn a_row_naming_an_unknown_dictionary_is_an_internal_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = open(&path);
    let record = pointer(CUSTODIAN, "orphan", 1);
    store.create(record.clone(), Vec::new()).await.unwrap();
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute("UPDATE pointers SET json_dictionary = 99", [])
            .unwrap();
    }
    assert!(matches!(
        store.get(&record.id).await,
        Err(StoreError::Internal(_))
    ));
}

#[tokio::test]
async fn a_file_whose_dictionary_differs_from_this_builds_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    drop(open(&path));
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute(
            "UPDATE json_dictionaries SET dictionary = x'00' WHERE id = 1",
            [],
        )
        .unwrap();
    }
    assert!(matches!(
        SqliteStore::open(&path, SqliteOptions::default()),
        Err(StoreError::Internal(_))
    ));
}
