//! The audit database's connection settings and versioned schema, in its
//! own file (`audit.db`) so the pointer store's schema never mixes with it.

use std::time::Duration;

use rusqlite::{Connection, TransactionBehavior};

use crate::AuditError;

const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Append-only steps; `PRAGMA user_version` counts those applied.
const MIGRATIONS: &[&str] = &[
    // 1: records, their agents, checkpoints and alert acknowledgements.
    //
    // `seq` is assigned by the writer (last + 1), never by SQLite, so a gap
    // is always a deletion. `event` is the JSON exactly as hashed. The other
    // record columns are search indexes derived from `event`; `verify`
    // re-derives and compares them. The alert index is partial: only the
    // few alerting records cost an entry.
    "CREATE TABLE audit_records (
        seq INTEGER PRIMARY KEY,
        appended_at TEXT NOT NULL,
        event TEXT NOT NULL,
        prev_hash BLOB NOT NULL,
        hash BLOB NOT NULL,
        patient INTEGER NULL,
        outcome TEXT NOT NULL,
        recorded_ms INTEGER NOT NULL,
        alert TEXT NULL
    );
    CREATE INDEX audit_by_patient ON audit_records (patient, seq) WHERE patient IS NOT NULL;
    CREATE INDEX audit_alerts ON audit_records (seq) WHERE alert IS NOT NULL;
    CREATE TABLE audit_agents (
        agent TEXT NOT NULL,
        seq INTEGER NOT NULL,
        PRIMARY KEY (agent, seq)
    ) WITHOUT ROWID;
    CREATE INDEX audit_agents_by_seq ON audit_agents (seq);
    CREATE TABLE audit_checkpoints (
        seq INTEGER PRIMARY KEY,
        hash BLOB NOT NULL,
        interval INTEGER NOT NULL,
        created_at TEXT NOT NULL,
        key_id TEXT NOT NULL,
        signature BLOB NOT NULL
    );
    CREATE TABLE alert_acks (
        seq INTEGER PRIMARY KEY,
        acknowledged_by TEXT NOT NULL,
        acknowledged_at TEXT NOT NULL,
        note TEXT NULL
    );",
];

pub(super) fn sqlite_error(e: rusqlite::Error) -> AuditError {
    use rusqlite::ErrorCode;
    match e.sqlite_error_code() {
        Some(
            ErrorCode::DatabaseBusy
            | ErrorCode::DatabaseLocked
            | ErrorCode::DiskFull
            | ErrorCode::SystemIoFailure
            | ErrorCode::CannotOpen
            | ErrorCode::ReadOnly,
        ) => AuditError::Unavailable(e.to_string()),
        _ => AuditError::Internal(e.to_string()),
    }
}

/// The writer: WAL, and `synchronous=FULL` so an append acknowledged to the
/// caller survives a power cut (group commit keeps that affordable).
pub(super) fn configure_writer(conn: &Connection) -> Result<(), AuditError> {
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .map_err(sqlite_error)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(AuditError::Unavailable(format!(
            "the audit database file system does not support WAL (journal_mode is {mode})"
        )));
    }
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(sqlite_error)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(sqlite_error)
}

pub(super) fn configure_reader(conn: &Connection) -> Result<(), AuditError> {
    conn.busy_timeout(BUSY_TIMEOUT).map_err(sqlite_error)
}

pub(super) fn migrate(conn: &mut Connection) -> Result<(), AuditError> {
    let known = MIGRATIONS.len();
    loop {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sqlite_error)?;
        let current: i64 = tx
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(sqlite_error)?;
        let current = usize::try_from(current).map_err(|_| {
            AuditError::Internal(format!("audit schema version {current} is not valid"))
        })?;
        if current > known {
            return Err(AuditError::Internal(format!(
                "audit schema version {current} is newer than this nrls knows ({known})"
            )));
        }
        let Some(step) = MIGRATIONS.get(current) else {
            return Ok(());
        };
        tx.execute_batch(step).map_err(sqlite_error)?;
        tx.pragma_update(None, "user_version", current + 1)
            .map_err(sqlite_error)?;
        tx.commit().map_err(sqlite_error)?;
        tracing::info!(version = current + 1, "applied audit schema step");
    }
}
