//! The conformance suite on PostgreSQL, each case on its own database cloned
//! from the migrated template; then what only this backend has: migrations
//! shared by several nodes, partitions, and faults of the database and the
//! network.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{PostgresOptions, PostgresStore, schema};
use crate::conformance::{CUSTODIAN, Fixture, next_version, pointer, supersede};
use crate::{PointerStore, StoreError};
use testkit::postgres::{Link, Proxy, TestDatabase};

crate::conformance_tests!(|| async {
    let database = TestDatabase::create().await;
    let store = PostgresStore::open(options(&database)).await.unwrap();
    Fixture::with_guard(store, database)
});

/// Options for a scratch database, as `TestDatabase::options` makes them
/// (that one returns the options type of testkit's own build of this crate).
fn options(database: &TestDatabase) -> PostgresOptions {
    PostgresOptions {
        pool_size: 4,
        ..PostgresOptions::new(database.url())
    }
}

async fn open(database: &TestDatabase) -> PostgresStore {
    PostgresStore::open(options(database)).await.unwrap()
}

/// Options with a short statement time-out, for fault tests.
fn impatient(url: &str) -> PostgresOptions {
    PostgresOptions {
        pool_size: 4,
        statement_timeout: Duration::from_millis(800),
        connect_timeout: Duration::from_millis(800),
        ..PostgresOptions::new(url)
    }
}

fn expect_unavailable<T: std::fmt::Debug>(result: Result<T, StoreError>, what: &str) {
    match result {
        Err(StoreError::Unavailable(_)) => {}
        other => panic!("{what}: expected Unavailable, got {other:?}"),
    }
}

#[tokio::test]
async fn nodes_starting_together_migrate_once() {
    let database = TestDatabase::create_empty().await;
    let opens: Vec<_> = (0..4)
        .map(|_| {
            let options = options(&database);
            tokio::spawn(async move { PostgresStore::open(options).await })
        })
        .collect();
    let mut stores = Vec::new();
    for open in opens {
        stores.push(open.await.unwrap().unwrap());
    }
    let known = i64::from(schema::known_version());
    assert_eq!(
        database
            .query_i64("SELECT count(*) FROM schema_migrations")
            .await,
        known
    );
    let record = pointer(CUSTODIAN, "p", 1);
    stores[0].create(record.clone(), Vec::new()).await.unwrap();
    assert_eq!(stores[3].get(&record.id).await.unwrap(), Some(record));

    drop(stores);
    open(&database).await.health().await.unwrap();
    assert_eq!(
        database
            .query_i64("SELECT max(version)::bigint FROM schema_migrations")
            .await,
        known
    );
}

#[tokio::test]
async fn schema_needing_a_newer_node_is_refused() {
    let database = TestDatabase::create().await;
    let future = schema::known_version() + 1;
    database
        .execute(&format!(
            "INSERT INTO schema_migrations (version, name, compatible_from)
             VALUES ({future}, 'from the future', {future})"
        ))
        .await;
    match PostgresStore::open(options(&database)).await {
        Err(StoreError::Internal(message)) => {
            assert!(message.contains("upgrade nrls"), "{message}")
        }
        Err(other) => panic!("expected Internal, got {other:?}"),
        Ok(_) => panic!("a schema needing a newer nrls must be refused"),
    }

    // An expand step from a newer node (compatible with this one) is fine.
    database
        .execute(&format!(
            "UPDATE schema_migrations SET compatible_from = {} WHERE version = {future}",
            future - 1
        ))
        .await;
    open(&database).await.health().await.unwrap();
}

/// `sslmode=require` encrypts the sessions (the local server has TLS on, as
/// Debian's PostgreSQL does out of the box).
#[tokio::test]
async fn tls_is_used_when_the_url_asks_for_it() {
    let database = TestDatabase::create().await;
    let url = format!(
        "{}?sslmode=require&application_name=nrls-tls-test",
        database.url()
    );
    let store = PostgresStore::open(PostgresOptions::new(url))
        .await
        .unwrap();
    store.health().await.unwrap();
    let record = pointer(CUSTODIAN, "tls-1", 1);
    store.create(record.clone(), Vec::new()).await.unwrap();
    assert_eq!(
        store.get(&record.id).await.unwrap().unwrap().json,
        record.json
    );
    let encrypted = database
        .query_i64(
            "SELECT count(*)::bigint FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) \
             WHERE ssl AND application_name = 'nrls-tls-test'",
        )
        .await;
    assert!(encrypted >= 1, "no encrypted nrls session found");
}

/// With a CA file the server's certificate must chain to it: a CA that did
/// not sign it makes the connection fail rather than go unauthenticated.
#[tokio::test]
async fn tls_with_a_ca_file_authenticates_the_server() {
    let database = TestDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("other-ca.pem");
    let status = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=not-the-server-ca",
        ])
        .arg("-keyout")
        .arg(dir.path().join("key.pem"))
        .arg("-out")
        .arg(&ca)
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let mut options = PostgresOptions::new(format!("{}?sslmode=require", database.url()));
    options.ca_file = Some(ca);
    options.connect_timeout = std::time::Duration::from_secs(3);
    assert!(
        PostgresStore::open(options).await.is_err(),
        "an unverifiable server must be refused"
    );
}

/// Pointers spread over the partitions by NHS number, and a read by id or by
/// patient touches only its patient's partition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_touch_one_partition() {
    let database = TestDatabase::create().await;
    let store = open(&database).await;
    let records: Vec<_> = (0..64)
        .map(|i| pointer(CUSTODIAN, &format!("p{i}"), i))
        .collect();
    for record in &records {
        store.create(record.clone(), Vec::new()).await.unwrap();
    }
    let used = database
        .query_i64("SELECT count(DISTINCT tableoid)::bigint FROM pointers")
        .await;
    assert!(used > 8, "64 patients fall in {used} of 16 partitions");

    // Plans as the pool's prepared statements run them: generic (the pool's
    // sessions force it; with custom plans each execution was planned
    // again), with the partition chosen at execution time.
    // Nor parallel workers or JIT, which a generic plan made on stale
    // statistics chose for one patient's rows.
    for (setting, expected) in [
        ("plan_cache_mode", "force_generic_plan"),
        ("max_parallel_workers_per_gather", "0"),
        ("jit", "off"),
    ] {
        let value = store
            .database()
            .run(async |conn| {
                let row = conn.query_one(&format!("SHOW {setting}"), &[]).await?;
                Ok(row.try_get::<_, String>(0)?)
            })
            .await
            .unwrap();
        assert_eq!(value, expected, "{setting}");
    }
    let id = records[5].id.as_str();
    let nhs = super::row::nhs_to_sql(records[5].nhs_number);
    for (statement, argument) in [
        (super::reads::GET, format!("'{id}'")),
        (super::reads::PATIENT, nhs.to_string()),
    ] {
        let plan = database
            .query_text(&format!(
                "SET plan_cache_mode = force_generic_plan;
                 PREPARE q AS {statement};
                 EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) EXECUTE q({argument});"
            ))
            .await;
        let scanned: std::collections::HashSet<&str> = plan
            .lines()
            .filter(|l| !l.contains("never executed"))
            .filter_map(|l| l.split_whitespace().find(|w| w.starts_with("pointers_p")))
            .map(|w| &w[..12])
            .collect();
        assert_eq!(scanned.len(), 1, "one partition read:\n{plan}");
    }
}

/// A row lock held elsewhere outlasts the statement time-out: the write gives
/// up with `Unavailable` on time, and the next one succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_wait_times_out_as_unavailable() {
    let database = TestDatabase::create().await;
    let store = PostgresStore::open(impatient(database.url()))
        .await
        .unwrap();
    let record = pointer(CUSTODIAN, "p", 1);
    store.create(record.clone(), Vec::new()).await.unwrap();

    let blocker = database.session().await;
    blocker
        .batch_execute(&format!(
            "BEGIN; SELECT * FROM pointer_ids WHERE id = '{}' FOR UPDATE;",
            record.id
        ))
        .await
        .unwrap();
    let started = Instant::now();
    expect_unavailable(store.update(next_version(&record), 1).await, "update");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    blocker.batch_execute("ROLLBACK").await.unwrap();

    store.update(next_version(&record), 1).await.unwrap();
}

/// Sessions killed under the store (a restart, a failover): calls fail with
/// `Unavailable` at worst, never `Internal`, and the pool recovers by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_sessions_are_replaced() {
    let database = TestDatabase::create().await;
    let store = Arc::new(open(&database).await);
    for i in 0..8 {
        store
            .create(pointer(CUSTODIAN, &format!("warm{i}"), i), Vec::new())
            .await
            .unwrap();
    }
    assert!(database.terminate_sessions().await >= 1);
    let mut failures = 0u64;
    for i in 0..20 {
        match store
            .create(pointer(CUSTODIAN, &format!("after{i}"), i), Vec::new())
            .await
        {
            Ok(()) => {}
            Err(StoreError::Unavailable(_)) => failures += 1,
            Err(other) => panic!("a lost session must be Unavailable, got {other:?}"),
        }
    }
    assert!(
        failures <= 4,
        "{failures} failures: at most one per pooled session"
    );
    store.health().await.unwrap();
    assert_eq!(store.count().await.unwrap(), 28 - failures);
}

/// A network that stops answering: every call ends in `Unavailable` within
/// the statement time-out plus a second, and the store recovers when the
/// network does. A network that refuses: `Unavailable` at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_network_fails_fast_and_recovers() {
    let database = TestDatabase::create().await;
    let (proxy, url) = Proxy::in_front_of(database.url()).await;
    let store = Arc::new(PostgresStore::open(impatient(&url)).await.unwrap());
    let record = pointer(CUSTODIAN, "p", 1);
    store.create(record.clone(), Vec::new()).await.unwrap();

    proxy.set(Link::Stalled);
    let started = Instant::now();
    let calls: Vec<_> = (0..6)
        .map(|i| {
            let store = Arc::clone(&store);
            let record = record.clone();
            tokio::spawn(async move {
                match i % 3 {
                    0 => store.get(&record.id).await.map(drop),
                    1 => {
                        store
                            .create(pointer(CUSTODIAN, &format!("s{i}"), 2), Vec::new())
                            .await
                    }
                    _ => store.health().await,
                }
            })
        })
        .collect();
    for call in calls {
        expect_unavailable(call.await.unwrap(), "call during a stall");
    }
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_millis(2500),
        "stalled calls took {waited:?}"
    );

    proxy.set(Link::Down);
    let started = Instant::now();
    expect_unavailable(store.get(&record.id).await, "get while refused");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );

    proxy.set(Link::Up);
    let back = Instant::now();
    loop {
        match store.get(&record.id).await {
            Ok(found) => {
                assert_eq!(found, Some(record.clone()));
                break;
            }
            Err(StoreError::Unavailable(_)) if back.elapsed() < Duration::from_secs(10) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(other) => panic!("no recovery: {other:?}"),
        }
    }
    store.health().await.unwrap();
}

#[tokio::test]
async fn unreachable_database_is_unavailable_at_open() {
    let (proxy, url) = Proxy::in_front_of(testkit::postgres::DEFAULT_URL).await;
    proxy.set(Link::Down);
    expect_unavailable(PostgresStore::open(impatient(&url)).await.map(drop), "open");
}

/// A supersede racing an update of its target: one order or the other, never
/// half of each, and never a target left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supersede_and_update_of_one_target_serialise() {
    let database = TestDatabase::create().await;
    let store = Arc::new(open(&database).await);
    for round in 0..20 {
        let old = pointer(CUSTODIAN, &format!("old{round}"), round);
        let new = pointer(CUSTODIAN, &format!("new{round}"), round);
        store.create(old.clone(), Vec::new()).await.unwrap();
        let superseding = {
            let store = Arc::clone(&store);
            let (new, target) = (new.clone(), supersede(&old));
            tokio::spawn(async move { store.create(new, vec![target]).await })
        };
        let updating = {
            let store = Arc::clone(&store);
            let next = next_version(&old);
            tokio::spawn(async move { store.update(next, 1).await })
        };
        superseding.await.unwrap().unwrap();
        match updating.await.unwrap() {
            Ok(()) | Err(StoreError::NotFound(_)) => {}
            Err(other) => panic!("update racing a supersede: {other:?}"),
        }
        assert_eq!(store.get(&old.id).await.unwrap(), None);
        assert_eq!(store.get(&new.id).await.unwrap(), Some(new));
    }
    let orphans = database
        .query_i64(
            "SELECT count(*) FROM pointer_ids i
             WHERE NOT EXISTS (SELECT 1 FROM pointers p WHERE p.nhs_number = i.nhs_number AND p.seq = i.seq)",
        )
        .await;
    assert_eq!(orphans, 0);
}

/// A batch exercising every import rule, on a store already holding some of
/// its pointers: new records, a re-run of a stored record, a stored id with
/// other content, masterIdentifiers held by stored pointers and by earlier
/// records of the batch, and ids repeated within the batch.
async fn import_scenario(store: &dyn PointerStore) -> (crate::ImportOutcome, Vec<String>) {
    let with_master = |local: &str, n: u32, master: &str| {
        let mut record = pointer(CUSTODIAN, local, n);
        record.master_identifier = Some(master.to_owned());
        record
    };
    let stored = with_master("stored", 1, "sys|stored");
    let other = pointer(CUSTODIAN, "other", 2);
    store.create(stored.clone(), Vec::new()).await.unwrap();
    store.create(other.clone(), Vec::new()).await.unwrap();
    let mut changed = other.clone();
    changed.json = "{\"changed\":true}".into();
    let mut repeat_changed = pointer(CUSTODIAN, "fresh", 3);
    repeat_changed.json = "{\"repeat\":true}".into();
    let batch = vec![
        pointer(CUSTODIAN, "fresh", 3),
        stored.clone(),
        changed,
        with_master("taken", 4, "sys|stored"),
        with_master("first", 5, "sys|batch"),
        with_master("second", 6, "sys|batch"),
        pointer(CUSTODIAN, "fresh", 3),
        repeat_changed,
        with_master("second", 6, "sys|batch"),
        pointer(OTHER, "elsewhere", 7),
    ];
    let outcome = store.import(batch).await.unwrap();
    let mut state = Vec::new();
    for n in 0..8 {
        for s in store.patient_pointers(patient(n)).await.unwrap() {
            state.push(format!(
                "{}:{}:{:?}",
                s.record.id,
                s.record.json.len(),
                s.record.master_identifier
            ));
        }
    }
    (outcome, state)
}

const OTHER: &str = crate::conformance::OTHER_CUSTODIAN;
use crate::conformance::patient;

/// Bulk import decides exactly as the reference (one create per record) does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_matches_the_reference() {
    let database = TestDatabase::create().await;
    let postgres = open(&database).await;
    let reference = crate::memory::MemoryStore::new();
    let (expected, expected_state) = import_scenario(&reference).await;
    let (actual, actual_state) = import_scenario(&postgres).await;
    assert_eq!(actual, expected);
    assert_eq!(actual_state, expected_state);
    assert_eq!(expected.imported, 3, "{expected:?}");

    // A re-run of the same batch changes nothing.
    let again = import_scenario_rerun(&postgres).await;
    assert_eq!(again.imported, 0, "{again:?}");
    assert_eq!(
        postgres.count().await.unwrap(),
        reference.count().await.unwrap()
    );
}

async fn import_scenario_rerun(store: &dyn PointerStore) -> crate::ImportOutcome {
    store
        .import(vec![
            pointer(CUSTODIAN, "fresh", 3),
            pointer(OTHER, "elsewhere", 7),
        ])
        .await
        .unwrap()
}

/// Export pages come lowest sequence first, across partitions, optionally
/// for one custodian, as the reference's do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_pages_match_the_reference() {
    let database = TestDatabase::create().await;
    let postgres = open(&database).await;
    let reference = crate::memory::MemoryStore::new();
    for store in [&postgres as &dyn PointerStore, &reference] {
        for i in 0..30u32 {
            let custodian = if i.is_multiple_of(3) {
                OTHER
            } else {
                CUSTODIAN
            };
            store
                .create(pointer(custodian, &format!("p{i}"), i), Vec::new())
                .await
                .unwrap();
        }
        store
            .delete(&pointer(CUSTODIAN, "p4", 4).id, None)
            .await
            .unwrap();
    }
    let other = domain::OdsCode::parse(OTHER).unwrap();
    for custodian in [None, Some(&other)] {
        let expected = export_ids(&reference, custodian).await;
        assert_eq!(export_ids(&postgres, custodian).await, expected);
        assert!(expected.len() >= 10);
    }
}

/// Every id `pointers_after` pages out, in order, 7 to a page.
async fn export_ids(store: &dyn PointerStore, custodian: Option<&domain::OdsCode>) -> Vec<String> {
    let (mut after, mut ids) = (0, Vec::new());
    loop {
        let page = store.pointers_after(after, 7, custodian).await.unwrap();
        let Some(last) = page.last() else { break };
        after = last.seq;
        ids.extend(page.iter().map(|s| s.record.id.to_string()));
    }
    ids
}

/// Creates per second through one store by pool size, 64 concurrent callers,
/// 3 s each. A measurement, not a check (it backs the `pool_size` default):
/// `cargo test -p store --release -- --ignored --nocapture pool_size_throughput`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement"]
async fn pool_size_throughput() {
    for pool_size in [1, 2, 4, 8, 16, 32] {
        let database = TestDatabase::create().await;
        let store = Arc::new(
            PostgresStore::open(PostgresOptions {
                pool_size,
                ..options(&database)
            })
            .await
            .unwrap(),
        );
        let until = Instant::now() + Duration::from_secs(3);
        let callers: Vec<_> = (0..64u32)
            .map(|c| {
                let store = Arc::clone(&store);
                tokio::spawn(async move {
                    let mut done = 0u32;
                    while Instant::now() < until {
                        let local = format!("c{c}n{done}");
                        store
                            .create(pointer(CUSTODIAN, &local, c * 1000 + done), Vec::new())
                            .await
                            .unwrap();
                        done += 1;
                    }
                    done
                })
            })
            .collect();
        let mut total = 0;
        for caller in callers {
            total += caller.await.unwrap();
        }
        println!(
            "pool_size {pool_size:2}: {:6.0} creates/s",
            f64::from(total) / 3.0
        );
    }
}

/// A reading tool opens without migrating: an empty database is refused with
/// advice and left untouched; a migrated one opens.
#[tokio::test]
async fn open_without_migrating_only_checks() {
    let empty = TestDatabase::create_empty().await;
    let check_only = |url: &str| PostgresOptions {
        migrate: false,
        ..PostgresOptions::new(url)
    };
    let refused = PostgresStore::open(check_only(empty.url())).await;
    match refused {
        Err(StoreError::Internal(message)) => {
            assert!(message.contains("no nrls schema"), "{message}");
        }
        Err(other) => panic!("unexpected error: {other}"),
        Ok(_) => panic!("an empty database was accepted"),
    }
    assert_eq!(
        empty
            .query_i64("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
            .await,
        0,
        "nothing was created"
    );
    let migrated = TestDatabase::create().await;
    let store = PostgresStore::open(check_only(migrated.url()))
        .await
        .unwrap();
    assert_eq!(store.count().await.unwrap(), 0);
}

/// How a pointer's JSON is kept: (`json` is NULL, bytes of `json_zstd`,
/// `json_dictionary`).
async fn stored_json(database: &TestDatabase, id: &str) -> (bool, Option<i32>, Option<i64>) {
    let row = database
        .session()
        .await
        .query_one(
            "SELECT json IS NULL, length(json_zstd), json_dictionary FROM pointers
             WHERE (nhs_number, seq) = (SELECT nhs_number, seq FROM pointer_ids WHERE id = $1)",
            &[&id],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1), row.get(2))
}

/// Stores `record` as a node of schema step 8 did: its JSON as text, with no
/// frame and no dictionary.
async fn store_as_text(
    database: &TestDatabase,
    record: &domain::PointerRecord,
    frame: Option<(&[u8], i64)>,
) {
    let session = database.session().await;
    let nhs = super::row::nhs_to_sql(record.nhs_number);
    let seq: i64 = session
        .query_one(
            "INSERT INTO pointer_ids (id, nhs_number, seq)
             VALUES ($1, $2, nextval('pointer_seq')) RETURNING seq",
            &[&record.id.as_str(), &nhs],
        )
        .await
        .unwrap()
        .get(0);
    let (text, zstd, dictionary) = match frame {
        Some((frame, dictionary)) => (None, Some(frame), Some(dictionary)),
        None => (Some(record.json.as_str()), None, None),
    };
    session
        .execute(
            "INSERT INTO pointers (nhs_number, seq, version, id, custodian, type_key,
                master_identifier, security_labels, last_updated, json, json_zstd, json_dictionary)
             VALUES ($1, $2, 1, $3, $4, $5, NULL, '{}', $6, $7, $8, $9)",
            &[
                &nhs,
                &seq,
                &record.id.as_str(),
                &record.custodian.as_str(),
                &record.type_key,
                &record.last_updated,
                &text,
                &zstd,
                &dictionary,
            ],
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn new_rows_are_stored_compressed_with_their_dictionary() {
    let database = TestDatabase::create().await;
    let store = open(&database).await;
    let record = pointer(CUSTODIAN, "compressed", 1);
    store.create(record.clone(), Vec::new()).await.unwrap();
    let imported = pointer(CUSTODIAN, "imported", 1);
    store.import(vec![imported.clone()]).await.unwrap();
    for r in [&record, &imported] {
        let (text_null, bytes, dictionary) = stored_json(&database, r.id.as_str()).await;
        assert!(text_null, "{} kept its text", r.id.as_str());
        assert_eq!(dictionary, Some(crate::compression::CURRENT_ID));
        let bytes = usize::try_from(bytes.unwrap()).unwrap();
        assert!(bytes * 2 < r.json.len(), "{bytes} of {}", r.json.len());
        assert_eq!(store.get(&r.id).await.unwrap().as_ref(), Some(r));
    }
    // An update rewrites the row compressed, and reads back as written.
    let updated = next_version(&record);
    store.update(updated.clone(), 1).await.unwrap();
    assert_eq!(store.get(&record.id).await.unwrap(), Some(updated));
    assert!(stored_json(&database, record.id.as_str()).await.0);
}

#[tokio::test]
async fn rows_written_before_compression_stay_readable_and_writable() {
    let database = TestDatabase::create().await;
    let store = open(&database).await;
    let old = pointer(CUSTODIAN, "old", 1);
    store_as_text(&database, &old, None).await;
    crate::conformance::row_from_before_compression_reads_as_before(&store, &old).await;
    // Other content under its id is a duplicate.
    let mut changed = old.clone();
    changed.json = changed.json.replace("old", "changed");
    let clash = store.import(vec![changed]).await.unwrap();
    assert!(matches!(
        clash.rejected[..],
        [(0, StoreError::DuplicateId(_))]
    ));
    // An update of an old row writes it compressed.
    let updated = next_version(&old);
    store.update(updated.clone(), 1).await.unwrap();
    assert_eq!(store.get(&old.id).await.unwrap(), Some(updated));
    assert!(stored_json(&database, old.id.as_str()).await.0);
}

#[tokio::test]
async fn a_dictionary_added_by_another_node_is_loaded_on_first_use() {
    let database = TestDatabase::create().await;
    let store = open(&database).await;
    // Another node (a later nrls) stores dictionary 2 and rows made with it.
    let read = pointer(CUSTODIAN, "later", 1);
    let imported = pointer(CUSTODIAN, "later-imported", 2);
    let dictionary = read.json.replace("later", "earlier").into_bytes();
    database
        .session()
        .await
        .execute(
            "INSERT INTO json_dictionaries (id, dictionary) VALUES (2, $1)",
            &[&dictionary],
        )
        .await
        .unwrap();
    for record in [&read, &imported] {
        let frame = crate::compression::frame_made_with(&dictionary, &record.json);
        store_as_text(&database, record, Some((&frame, 2))).await;
    }
    // The import compares with a row of dictionary 2 before any read loaded it.
    let again = store.import(vec![imported.clone()]).await.unwrap();
    assert_eq!((again.imported, again.already_present), (0, 1));
    let other = open(&database).await;
    assert_eq!(other.get(&read.id).await.unwrap(), Some(read));
    // A dictionary nobody stored is damage: an internal error, not a panic.
    database
        .execute("UPDATE pointers SET json_dictionary = 99")
        .await;
    match other.get(&imported.id).await {
        Err(StoreError::Internal(message)) => assert!(message.contains("99"), "{message}"),
        unexpected => panic!("expected Internal, got {unexpected:?}"),
    }
}

/// A database whose dictionary 1 is not this build's would decode no row
/// this build wrote: the store refuses to open on it.
#[tokio::test]
async fn a_database_whose_dictionary_differs_from_this_builds_is_refused() {
    let database = TestDatabase::create().await;
    drop(open(&database).await);
    database
        .execute("UPDATE json_dictionaries SET dictionary = '\\x00' WHERE id = 1")
        .await;
    match PostgresStore::open(options(&database)).await {
        Err(StoreError::Internal(message)) => assert!(message.contains("differs"), "{message}"),
        Err(other) => panic!("expected Internal, got {other:?}"),
        Ok(_) => panic!("a database with another dictionary 1 was opened"),
    }
}
