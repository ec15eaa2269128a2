//! What every nrls SQLite file shares (the pointer store's `nrls.db`, the
//! audit trail's `audit.db`, the access facts' `access.db`): connection
//! settings, the `user_version` migration runner, and which SQLite failures
//! may pass (HTTP 503) and which are faults (500). Each owner maps
//! [`SetupError`] into its own error type.

use std::time::Duration;

use rusqlite::{Connection, ErrorCode, TransactionBehavior};

/// How long a connection waits for a lock held by another connection (another
/// process such as an import or a backup, or a WAL checkpoint) before the
/// operation fails. Long enough to ride out a checkpoint, short enough that a
/// stuck lock surfaces as an error instead of a hang.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a file could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The file system cannot do WAL (a network mount, say).
    #[error("the file system of {file} does not support WAL (journal_mode is {mode})")]
    NoWal { file: &'static str, mode: String },
    /// Written by a newer nrls: refused rather than misread.
    #[error(
        "{file} schema version {found} is newer than this nrls knows ({known}); upgrade nrls to open it"
    )]
    TooNew {
        file: &'static str,
        found: i64,
        known: usize,
    },
    /// SQLite itself failed.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

impl SetupError {
    /// Whether trying again later may succeed (the disk, a lock, the file
    /// system), as opposed to a fault of the file or of nrls.
    pub fn is_transient(&self) -> bool {
        match self {
            SetupError::NoWal { .. } => true,
            SetupError::TooNew { .. } => false,
            SetupError::Sqlite(e) => is_transient(e),
        }
    }
}

/// Whether a SQLite failure may pass: busy or locked, I/O, a full disk, a
/// file that cannot be opened or written now, memory.
pub fn is_transient(error: &rusqlite::Error) -> bool {
    matches!(
        error.sqlite_error_code(),
        Some(
            ErrorCode::DatabaseBusy
                | ErrorCode::DatabaseLocked
                | ErrorCode::SystemIoFailure
                | ErrorCode::DiskFull
                | ErrorCode::CannotOpen
                | ErrorCode::ReadOnly
                | ErrorCode::PermissionDenied
                | ErrorCode::OutOfMemory
                | ErrorCode::FileLockingProtocolFailed
        )
    )
}

/// Settings for the one connection that writes a file.
pub fn configure_writer(conn: &Connection, file: &'static str) -> Result<(), SetupError> {
    // WAL lets readers keep reading while the writer commits; without it
    // every commit would block every reader. The mode is stored in the file,
    // so readers opened later inherit it. Some file systems (network mounts)
    // cannot do WAL and SQLite silently stays in another mode: refuse those
    // rather than run with readers blocked behind the writer.
    let mode: String =
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(SetupError::NoWal { file, mode });
    }
    // In WAL mode NORMAL only syncs at checkpoints, so a power cut can lose
    // commits already acknowledged to the client. FULL syncs the WAL on every
    // COMMIT; group commit is what makes that affordable (one fsync per batch).
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    Ok(())
}

/// Settings for a read-only connection.
pub fn configure_reader(conn: &Connection) -> Result<(), SetupError> {
    // WAL readers rarely wait, but they can: while another process recovers
    // the WAL, or on the first read after a crash.
    conn.busy_timeout(BUSY_TIMEOUT)?;
    Ok(())
}

/// Brings a file's schema up to date: `steps[i]` takes `user_version` from
/// `i` to `i + 1`, one step per transaction. Steps are append-only: once
/// released, a step's SQL never changes.
///
/// Each step takes the write lock (`BEGIN IMMEDIATE`) before reading the
/// version, so two processes opening the same new file cannot both apply it.
/// A file whose version is beyond `steps` was written by a newer nrls.
pub fn migrate(
    conn: &mut Connection,
    file: &'static str,
    steps: &[&str],
) -> Result<(), SetupError> {
    loop {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let found: i64 = tx.pragma_query_value(None, "user_version", |row| row.get(0))?;
        let step = usize::try_from(found).ok().filter(|s| *s <= steps.len());
        let Some(current) = step else {
            return Err(SetupError::TooNew {
                file,
                found,
                known: steps.len(),
            });
        };
        let Some(sql) = steps.get(current) else {
            return Ok(());
        };
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", current + 1)?;
        tx.commit()?;
        tracing::info!(file, version = current + 1, "applied schema step");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEPS: &[&str] = &["CREATE TABLE a (x INTEGER)", "CREATE TABLE b (y INTEGER)"];

    #[test]
    fn steps_apply_once_and_a_newer_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let mut conn = Connection::open(&path).unwrap();
        configure_writer(&conn, "t.db").unwrap();
        migrate(&mut conn, "t.db", &STEPS[..1]).unwrap();
        migrate(&mut conn, "t.db", STEPS).unwrap();
        migrate(&mut conn, "t.db", STEPS).unwrap();
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, 2);
        let err = migrate(&mut conn, "t.db", &STEPS[..1]).unwrap_err();
        assert!(matches!(
            err,
            SetupError::TooNew {
                found: 2,
                known: 1,
                ..
            }
        ));
        assert!(!err.is_transient());
    }
}
