//! Connection settings and the versioned schema.
//!
//! `PRAGMA user_version` holds how many [`MIGRATIONS`] a database has had.
//! Steps are append-only: once released, a step's SQL never changes, because
//! databases already past it will never run it again.

use std::time::Duration;

use rusqlite::{Connection, TransactionBehavior};

use crate::StoreError;

use super::row::sqlite_error;

/// How long a connection waits for a lock held by another connection (another
/// process such as an import or a backup, or a WAL checkpoint) before the
/// operation fails as `Unavailable`. Long enough to ride out a checkpoint,
/// short enough that a stuck lock surfaces as an error instead of a hang.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

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
];

/// Settings for the one connection that writes.
pub(super) fn configure_writer(conn: &Connection) -> Result<(), StoreError> {
    // WAL lets the read pool keep reading while the writer commits; without it
    // every commit would block every reader. The mode is stored in the file,
    // so readers opened later inherit it. Some file systems (network mounts)
    // cannot do WAL and SQLite silently stays in another mode: refuse those
    // rather than run with readers blocked behind the writer.
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .map_err(sqlite_error)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Unavailable(format!(
            "the database file system does not support WAL (journal_mode is {mode})"
        )));
    }
    // In WAL mode NORMAL only syncs at checkpoints, so a power cut can lose
    // commits already acknowledged to the client. FULL syncs the WAL on every
    // COMMIT; group commit is what makes that affordable (one fsync per batch).
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(sqlite_error)?;
    // No foreign keys in the schema, so `foreign_keys` stays at its default (off).
    conn.busy_timeout(BUSY_TIMEOUT).map_err(sqlite_error)
}

/// Settings for a read-only pool connection.
pub(super) fn configure_reader(conn: &Connection) -> Result<(), StoreError> {
    // WAL readers rarely wait, but they can: while another process recovers
    // the WAL, or on the first read after a crash.
    conn.busy_timeout(BUSY_TIMEOUT).map_err(sqlite_error)
}

/// Brings the schema up to date, one step per transaction.
///
/// Each step takes the write lock (`BEGIN IMMEDIATE`) before reading the
/// version, so two processes opening the same new file cannot both apply it.
/// A database whose version is newer than [`MIGRATIONS`] was written by a
/// newer nrls: refuse it rather than misread columns this binary does not know.
pub(super) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let known = MIGRATIONS.len();
    loop {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sqlite_error)?;
        let current: i64 = tx
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(sqlite_error)?;
        let current = usize::try_from(current).map_err(|_| {
            StoreError::Internal(format!("database schema version {current} is not valid"))
        })?;
        if current > known {
            return Err(StoreError::Internal(format!(
                "database schema version {current} is newer than this nrls knows ({known}); \
                 upgrade nrls to open it"
            )));
        }
        let Some(step) = MIGRATIONS.get(current) else {
            return Ok(());
        };
        tx.execute_batch(step).map_err(sqlite_error)?;
        tx.pragma_update(None, "user_version", current + 1)
            .map_err(sqlite_error)?;
        tx.commit().map_err(sqlite_error)?;
        tracing::info!(version = current + 1, "applied pointer store schema step");
    }
}
