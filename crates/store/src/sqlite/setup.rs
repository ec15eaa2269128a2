//! What every nrls SQLite file shares (the pointer store's `nrls.db`, the
//! audit trail's `audit.db`, the access facts' `access.db`): connection
//! settings, the `user_version` migration runner, WAL checkpoints off the
//! commit path for the busy writers ([`BackgroundCheckpoints`]), and which
//! SQLite failures may pass (HTTP 503) and which are faults (500). Each
//! owner maps [`SetupError`] into its own error type.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
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
    /// A thread the file needs could not be started.
    #[error("cannot start a thread for {file}: {source}")]
    Thread {
        file: &'static str,
        source: std::io::Error,
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
            SetupError::NoWal { .. } | SetupError::Thread { .. } => true,
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

/// When a busy file's WAL is copied back into the database.
#[derive(Debug, Clone, Copy)]
pub struct CheckpointSchedule {
    /// How often the checkpoint thread copies what has been committed.
    pub period: Duration,
    /// Once the WAL holds this many frames, the writer catches the last
    /// few up itself between two batches, so that its next transaction
    /// starts the WAL again from its beginning.
    pub restart_frames: i64,
}

impl Default for CheckpointSchedule {
    /// Measured (docs/performance.md, "WAL checkpoints off the commit
    /// path"): 10 ms
    /// keeps each copy, and so the fsync of the database file that competes
    /// with the writer's WAL fsyncs, small; 1,000 frames (SQLite's own
    /// automatic threshold, 4 MiB) keeps the WAL in the page cache. 50 ms
    /// and 16,384 frames gave a longer p99.9. While nothing is committed the
    /// thread slows down to a round every 320 ms (`next_wait`).
    fn default() -> Self {
        CheckpointSchedule {
            period: Duration::from_millis(10),
            restart_frames: 1_000,
        }
    }
}

/// Checkpoints a WAL file from a thread of its own, so the writer never
/// does it inside a COMMIT. SQLite's automatic checkpoint runs in the
/// committing connection once the WAL passes 1,000 pages: it copies those
/// pages into the database and fsyncs it while every caller of that batch
/// and the next waits (it was most of the audited search's p99.9 and of
/// create's p99, see docs/performance.md). Here the writer only appends to
/// the WAL and fsyncs it; a passive checkpoint every `period` copies behind
/// it without taking its lock, and the WAL restarts from its beginning
/// whenever a checkpoint has caught up. A writer that never pauses long
/// enough for that is asked (at `restart_frames`) to copy the last few
/// frames itself, in [`BackgroundCheckpoints::after_batch`]. Durability is
/// unchanged: a commit is still durable once its WAL frames are synced.
pub struct BackgroundCheckpoints {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    catch_up: Arc<AtomicBool>,
}

impl BackgroundCheckpoints {
    /// Turns off `writer`'s automatic checkpoints and starts the thread,
    /// which checkpoints `path` through a connection of its own.
    pub fn start(
        writer: &Connection,
        path: &Path,
        file: &'static str,
        schedule: CheckpointSchedule,
    ) -> Result<BackgroundCheckpoints, SetupError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // The database file is synced after each checkpoint, before the WAL
        // may be overwritten: a power cut can lose nothing checkpointed.
        conn.pragma_update(None, "synchronous", "FULL")?;
        writer.pragma_update(None, "wal_autocheckpoint", 0)?;
        let (stop, stopped) = mpsc::channel::<()>();
        let catch_up = Arc::new(AtomicBool::new(false));
        let ask = Arc::clone(&catch_up);
        let thread = std::thread::Builder::new()
            .name(format!("checkpoint-{file}"))
            .spawn(move || {
                let mut wait = schedule.period;
                let mut last = None;
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(wait) {
                    match passive(&conn) {
                        Ok(progress) => {
                            if progress.frames >= schedule.restart_frames {
                                ask.store(true, Ordering::Relaxed);
                            }
                            wait = next_wait(wait, schedule.period, last, progress);
                            last = Some(progress);
                        }
                        // The next round tries again; the WAL keeps every
                        // commit meanwhile, so nothing is at risk.
                        Err(error) => {
                            tracing::warn!(file, %error, "background WAL checkpoint failed");
                            wait = schedule.period;
                        }
                    }
                }
            })
            .map_err(|source| SetupError::Thread { file, source })?;
        Ok(BackgroundCheckpoints {
            stop: Some(stop),
            thread: Some(thread),
            catch_up,
        })
    }

    /// Called by the writer between batches (after answering the last):
    /// when asked, it copies what the checkpoint thread has not yet, which
    /// is little, so that its next transaction restarts the WAL.
    pub fn after_batch(&self, writer: &Connection) {
        if self.catch_up.swap(false, Ordering::Relaxed)
            && let Err(error) = passive(writer)
        {
            tracing::warn!(%error, "WAL catch-up checkpoint failed");
        }
    }
}

/// What a checkpoint round found: the WAL's length and how much of it is
/// in the database file, in frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Progress {
    frames: i64,
    copied: i64,
}

/// Copies every committed frame no reader still needs into the database
/// file, without waiting for any lock.
fn passive(conn: &Connection) -> Result<Progress, rusqlite::Error> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
        Ok(Progress {
            frames: row.get(1)?,
            copied: row.get(2)?,
        })
    })
}

/// The longest an idle file's checkpoint thread sleeps.
const IDLE_WAIT: Duration = Duration::from_millis(320);

/// Back to `period` as soon as anything was committed; while nothing was
/// (the same WAL, all copied), the wait doubles up to [`IDLE_WAIT`], so an
/// idle node's thread wakes ~3 times a second instead of 100. The first
/// round after idling finds more to copy, and the writer catches up if it
/// passed `restart_frames` meanwhile.
fn next_wait(wait: Duration, period: Duration, last: Option<Progress>, now: Progress) -> Duration {
    let idle = last == Some(now) && now.frames == now.copied;
    if idle {
        (wait * 2).min(IDLE_WAIT.max(period))
    } else {
        period
    }
}

impl Drop for BackgroundCheckpoints {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("a WAL checkpoint thread panicked");
        }
    }
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
    fn the_checkpoint_thread_copies_the_wal_into_the_file_and_bounds_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let conn = Connection::open(&path).unwrap();
        configure_writer(&conn, "t.db").unwrap();
        conn.execute_batch("CREATE TABLE t (x BLOB)").unwrap();
        let schedule = CheckpointSchedule {
            period: Duration::from_millis(5),
            restart_frames: 64,
        };
        let checkpoints = BackgroundCheckpoints::start(&conn, &path, "t.db", schedule).unwrap();
        let auto: i64 = conn
            .pragma_query_value(None, "wal_autocheckpoint", |r| r.get(0))
            .unwrap();
        assert_eq!(auto, 0, "the writer no longer checkpoints in its commits");
        let wal = dir.path().join("t.db-wal");
        let mut largest_wal = 0;
        // 2,000 commits of 2 KiB: 8 MiB of WAL if nothing copied it back.
        for _ in 0..2_000 {
            conn.execute("INSERT INTO t (x) VALUES (zeroblob(2048))", [])
                .unwrap();
            checkpoints.after_batch(&conn);
            largest_wal = largest_wal.max(std::fs::metadata(&wal).unwrap().len());
        }
        assert!(
            largest_wal < 3 * 1024 * 1024,
            "the WAL restarts behind the writer (largest {largest_wal} bytes)"
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::fs::metadata(&path).unwrap().len() < 2_000 * 2048 {
            assert!(
                std::time::Instant::now() < deadline,
                "every commit reaches the database file without the writer checkpointing"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        drop(checkpoints);
    }

    #[test]
    fn an_idle_file_is_checkpointed_less_often_and_a_commit_brings_the_pace_back() {
        let period = Duration::from_millis(10);
        let all_copied = Progress {
            frames: 40,
            copied: 40,
        };
        let mut wait = period;
        let mut waits = Vec::new();
        for _ in 0..8 {
            wait = next_wait(wait, period, Some(all_copied), all_copied);
            waits.push(wait.as_millis());
        }
        assert_eq!(waits, [20, 40, 80, 160, 320, 320, 320, 320]);
        let committed = Progress {
            frames: 41,
            copied: 40,
        };
        assert_eq!(next_wait(wait, period, Some(all_copied), committed), period);
        let behind = Progress {
            frames: 40,
            copied: 30,
        };
        assert_eq!(next_wait(wait, period, Some(behind), behind), period);
        assert_eq!(next_wait(wait, period, None, all_copied), period);
    }

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
