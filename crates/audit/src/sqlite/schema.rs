//! The audit database's connection settings and versioned schema, in its
//! own file (`audit.db`) so the pointer store's schema never mixes with it.

use rusqlite::Connection;
use store::sqlite::setup::{self, SetupError};

use crate::AuditError;

/// Append-only steps; `PRAGMA user_version` counts those applied.
pub(super) const MIGRATIONS: &[&str] = &[
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
    // 2: compact records (issue 16). Format-2 records store their compact
    // facts as a BLOB in `event` (format-1 JSON stays TEXT: the value's
    // type is the format). Rows written from now on keep `appended_at` as
    // Unix ms in `appended_ms` (the hashed text renders back from it
    // exactly; `appended_at` is then ''). Agents of a format-2 record are
    // integer ids of `audit_names` in three columns, each with a partial
    // index, instead of text rows of `audit_agents` (kept for format-1
    // records: acknowledgements, and everything written before). The
    // patient index no longer repeats `seq`: an index entry ends with the
    // rowid, which is `seq`, so the order it gives is the same.
    "CREATE TABLE audit_names (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE
    );
    ALTER TABLE audit_records ADD COLUMN appended_ms INTEGER NULL;
    ALTER TABLE audit_records ADD COLUMN client INTEGER NULL;
    ALTER TABLE audit_records ADD COLUMN org INTEGER NULL;
    ALTER TABLE audit_records ADD COLUMN person INTEGER NULL;
    DROP INDEX audit_by_patient;
    CREATE INDEX audit_by_patient ON audit_records (patient) WHERE patient IS NOT NULL;
    CREATE INDEX audit_by_client ON audit_records (client) WHERE client IS NOT NULL;
    CREATE INDEX audit_by_org ON audit_records (org) WHERE org IS NOT NULL;
    CREATE INDEX audit_by_person ON audit_records (person) WHERE person IS NOT NULL;",
    // 3: the highest audit outbox id taken from each source (the pointer
    // store's `audit_outbox`), advanced in the transaction that chains the
    // records, so a move repeated after a crash appends nothing twice.
    "CREATE TABLE audit_moved (
        source TEXT PRIMARY KEY,
        through INTEGER NOT NULL
    ) WITHOUT ROWID;",
];

pub(super) fn sqlite_error(e: rusqlite::Error) -> AuditError {
    if setup::is_transient(&e) {
        AuditError::Unavailable(e.to_string())
    } else {
        AuditError::Internal(e.to_string())
    }
}

fn setup_error(error: SetupError) -> AuditError {
    match error {
        SetupError::Sqlite(e) => sqlite_error(e),
        other if other.is_transient() => AuditError::Unavailable(other.to_string()),
        other => AuditError::Internal(other.to_string()),
    }
}

/// Only a file without tables takes `size`, and only before WAL mode is set;
/// an existing file keeps its page size (changing it needs a VACUUM).
pub(super) fn choose_page_size(conn: &Connection, size: u32) -> Result<(), AuditError> {
    if !super::is_page_size(size) {
        return Err(AuditError::Internal(format!(
            "audit page size {size} is not a power of two from 512 to 65536"
        )));
    }
    conn.pragma_update(None, "page_size", size)
        .map_err(sqlite_error)
}

/// The writer: WAL, and `synchronous=FULL` so an append acknowledged to the
/// caller survives a power cut (group commit keeps that affordable).
pub(super) fn configure_writer(conn: &Connection) -> Result<(), AuditError> {
    setup::configure_writer(conn, super::FILE_NAME).map_err(setup_error)
}

/// The writer's WAL checkpoints, moved to a thread of their own.
pub(super) fn background_checkpoints(
    writer: &Connection,
    path: &std::path::Path,
) -> Result<setup::BackgroundCheckpoints, AuditError> {
    setup::BackgroundCheckpoints::start(
        writer,
        path,
        super::FILE_NAME,
        setup::CheckpointSchedule::default(),
    )
    .map_err(setup_error)
}

pub(super) fn configure_reader(conn: &Connection) -> Result<(), AuditError> {
    setup::configure_reader(conn).map_err(setup_error)
}

pub(super) fn migrate(conn: &mut Connection) -> Result<(), AuditError> {
    setup::migrate(conn, super::FILE_NAME, MIGRATIONS).map_err(setup_error)
}
