//! Connection settings and the versioned schema.
//!
//! `PRAGMA user_version` holds how many [`MIGRATIONS`] a database has had.
//! Steps are append-only: once released, a step's SQL never changes, because
//! databases already past it will never run it again.

use rusqlite::{Connection, OptionalExtension};

use crate::StoreError;
use crate::compression::{CURRENT, CURRENT_ID, JsonCodec};

use super::row::sqlite_error;
use super::setup;

/// The file, as errors and logs name it.
const FILE: &str = "nrls.db";

/// Numbered schema steps: step `i` (0-based) takes `user_version` from `i` to
/// `i + 1`.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: the pointers table.
    //
    // `seq` is AUTOINCREMENT so a deleted pointer's sequence is never handed
    // out again, even when it was the highest: search cursors ("below seq N")
    // must never skip or repeat a pointer. `nhs_number` is an INTEGER (at most
    // 8 bytes, against 10 for the text) because every search filters on it.
    // The patient index carries `seq` so a patient's pointers come out newest
    // first straight from the index, with no sort. The masterIdentifier index
    // is partial: most pointers have none, and those cost no index entry.
    "CREATE TABLE pointers (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        nhs_number INTEGER NOT NULL,
        custodian TEXT NOT NULL,
        type_key TEXT NOT NULL,
        master_identifier TEXT NULL,
        security_labels TEXT NOT NULL,
        version INTEGER NOT NULL,
        last_updated TEXT NOT NULL,
        json TEXT NOT NULL
    );
    CREATE INDEX pointers_by_patient ON pointers (nhs_number, seq);
    CREATE UNIQUE INDEX pointers_by_master_identifier
        ON pointers (custodian, master_identifier)
        WHERE master_identifier IS NOT NULL;",
    // 2: the subscription outbox (`store::outbox`). Each write adds its row in
    // its own savepoint, so a rejected write leaves none. Only pending rows
    // stay: dispatch deletes them, so the table stays small and needs no index
    // beyond its key. AUTOINCREMENT: a dispatched (deleted) event's number is
    // never handed out again.
    "CREATE TABLE pointer_events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        change TEXT NOT NULL,
        focus TEXT NOT NULL,
        additional_context TEXT NOT NULL,
        nhs_number INTEGER NOT NULL,
        custodian TEXT NOT NULL,
        type_key TEXT NOT NULL,
        security_labels TEXT NOT NULL,
        recorded_at TEXT NOT NULL
    );",
    // 3: compressed pointer JSON (`crate::compression`). Every dictionary rows
    // were compressed with stays in `json_dictionaries`, so a later nrls with
    // another dictionary still reads them. A row's `json` is a zstd frame
    // (BLOB) made with dictionary `json_dictionary`, or, for rows written
    // before this step, the plain TEXT with `json_dictionary` NULL.
    "CREATE TABLE json_dictionaries (
        id INTEGER PRIMARY KEY,
        dictionary BLOB NOT NULL
    );
    ALTER TABLE pointers ADD COLUMN json_dictionary INTEGER NULL;",
    // 4: subscriptions and their numbered notification events
    // (`store::subscriptions`). Fan-out looks subscriptions up by patient;
    // delivery claims due ones (a small table: a scan is fine). An event's key
    // is (subscription, number), the order it is delivered and replayed in.
    "CREATE TABLE subscriptions (
        id TEXT PRIMARY KEY,
        owner_app TEXT NOT NULL,
        nhs_number INTEGER NOT NULL,
        heartbeat_ms INTEGER NOT NULL,
        spec TEXT NOT NULL,
        created TEXT NOT NULL,
        status TEXT NOT NULL,
        error TEXT NULL,
        events_total INTEGER NOT NULL,
        delivered_through INTEGER NOT NULL,
        attempts INTEGER NOT NULL,
        next_attempt_ms INTEGER NOT NULL,
        last_sent_ms INTEGER NOT NULL,
        lease_owner TEXT NULL,
        lease_until_ms INTEGER NULL
    );
    CREATE INDEX subscriptions_by_patient ON subscriptions (nhs_number);
    CREATE INDEX subscriptions_by_owner ON subscriptions (owner_app);
    CREATE TABLE subscription_events (
        subscription TEXT NOT NULL,
        number INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        change TEXT NOT NULL,
        focus TEXT NOT NULL,
        additional_context TEXT NOT NULL,
        nhs_number INTEGER NOT NULL,
        custodian TEXT NOT NULL,
        type_key TEXT NOT NULL,
        security_labels TEXT NOT NULL,
        recorded_at TEXT NOT NULL,
        PRIMARY KEY (subscription, number)
    ) WITHOUT ROWID;",
    // 5: the audit outbox (`crate::audit_outbox`): an audited write's audit
    // record, committed with the write, until the audit log holds it. Only
    // waiting rows stay, so the table stays small. AUTOINCREMENT: the audit
    // log remembers the highest id it took, so an id must never come back.
    "CREATE TABLE audit_outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        entry BLOB NOT NULL
    );",
];

fn store_error(error: setup::SetupError) -> StoreError {
    match error {
        setup::SetupError::Sqlite(e) => sqlite_error(e),
        other if other.is_transient() => StoreError::Unavailable(other.to_string()),
        other => StoreError::Internal(other.to_string()),
    }
}

/// Settings for the one connection that writes.
pub(super) fn configure_writer(conn: &Connection) -> Result<(), StoreError> {
    // No foreign keys in the schema, so `foreign_keys` stays at its default (off).
    setup::configure_writer(conn, FILE).map_err(store_error)
}

/// The writer's WAL checkpoints, moved to a thread of their own.
pub(super) fn background_checkpoints(
    writer: &Connection,
    path: &std::path::Path,
) -> Result<setup::BackgroundCheckpoints, StoreError> {
    setup::BackgroundCheckpoints::start(writer, path, FILE, setup::CheckpointSchedule::default())
        .map_err(store_error)
}

/// Settings for a read-only pool connection.
pub(super) fn configure_reader(conn: &Connection) -> Result<(), StoreError> {
    setup::configure_reader(conn).map_err(store_error)
}

/// Brings the schema up to date (see [`setup::migrate`]).
pub(super) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    setup::migrate(conn, FILE, MIGRATIONS).map_err(store_error)
}

/// Stores this build's dictionary if the file lacks it (a new file, or one
/// from before it shipped), then teaches `codec` every stored dictionary.
/// A stored dictionary under [`CURRENT_ID`] that differs from this build's is
/// refused: rows compressed with one would not decode with the other.
pub(super) fn register_dictionaries(
    conn: &Connection,
    codec: &JsonCodec,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT OR IGNORE INTO json_dictionaries (id, dictionary) VALUES (?1, ?2)",
        rusqlite::params![CURRENT_ID, CURRENT],
    )
    .map_err(sqlite_error)?;
    load_dictionaries(conn, codec)?;
    Ok(())
}

/// Teaches `codec` every dictionary stored in the file.
pub(super) fn load_dictionaries(conn: &Connection, codec: &JsonCodec) -> Result<(), StoreError> {
    let mut statement = conn
        .prepare_cached("SELECT id, dictionary FROM json_dictionaries")
        .map_err(sqlite_error)?;
    let rows = statement
        .query_map([], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, Vec<u8>>(1)?))
        })
        .map_err(sqlite_error)?;
    for row in rows {
        let (id, dictionary) = row.map_err(sqlite_error)?;
        codec
            .learn_stored(id, &dictionary)
            .map_err(|e| StoreError::Internal(format!("{FILE}: {e}")))?;
    }
    Ok(())
}

/// Loads dictionary `id` from the file into `codec`; false if the file has none.
pub(super) fn load_dictionary(
    conn: &Connection,
    codec: &JsonCodec,
    id: i64,
) -> rusqlite::Result<bool> {
    let stored: Option<Vec<u8>> = conn
        .prepare_cached("SELECT dictionary FROM json_dictionaries WHERE id = ?1")?
        .query_row([id], |row| row.get(0))
        .optional()?;
    Ok(stored.is_some_and(|d| codec.learn_stored(id, &d).is_ok()))
}
