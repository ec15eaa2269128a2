//! Group commit: one thread owns the write connection and commits writes in
//! batches, one transaction (and so one fsync) per batch.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use crate::compression::JsonCodec;
use crate::sqlite::setup::BackgroundCheckpoints;
use crate::{PointerWrite, StoreError};

use super::mutations::{self, OpError, WriteOp};
use super::row::sqlite_error;

/// How many writes the writer has run since the store opened, and in how many
/// transactions: `ops / batches` is the average batch size.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// Transactions the writer has run (committed or not).
    pub batches: u64,
    /// Writes those transactions carried, including writes that were rejected.
    pub ops: u64,
}

#[derive(Default)]
struct Counters {
    batches: AtomicU64,
    ops: AtomicU64,
}

struct Request {
    op: WriteOp,
    /// The JSON of the op's record, compressed by the caller (see `submit`).
    json: Option<Vec<u8>>,
    /// The request's audit record, kept with the write when it succeeds.
    audit: Option<Vec<u8>>,
    reply: oneshot::Sender<Result<(), StoreError>>,
}

/// The async side of the writer thread.
pub(super) struct Writer {
    /// `None` only while dropping: closing the channel is what stops the thread.
    requests: Option<mpsc::Sender<Request>>,
    thread: Option<JoinHandle<()>>,
    counters: Arc<Counters>,
    codec: Arc<JsonCodec>,
}

impl Writer {
    /// Starts the writer thread on `conn`. Batches hold at most `max_batch`
    /// writes (at least one).
    pub(super) fn spawn(
        conn: Connection,
        path: &Path,
        max_batch: usize,
        codec: Arc<JsonCodec>,
    ) -> Result<Writer, StoreError> {
        let max_batch = max_batch.max(1);
        let checkpoints = super::schema::background_checkpoints(&conn, path)?;
        // A bounded queue: when the disk cannot keep up, callers wait in
        // `submit` (asynchronously) instead of piling up memory. A few batches'
        // worth keeps the next batch full while one is committing.
        let (requests, receiver) = mpsc::channel(max_batch.saturating_mul(4));
        let counters = Arc::new(Counters::default());
        let thread_counters = Arc::clone(&counters);
        let thread_codec = Arc::clone(&codec);
        let thread = std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || {
                run(
                    conn,
                    receiver,
                    max_batch,
                    &thread_counters,
                    &thread_codec,
                    &checkpoints,
                )
            })
            .map_err(|e| StoreError::Unavailable(format!("cannot start the sqlite writer: {e}")))?;
        Ok(Writer {
            requests: Some(requests),
            thread: Some(thread),
            counters,
            codec,
        })
    }

    /// Queues `op` and waits until its batch has committed.
    ///
    /// The record's JSON is compressed here, on the caller's thread, so the
    /// one writer thread (which bounds write throughput) only runs SQL.
    ///
    /// If the caller stops waiting (its request was cancelled), the write still
    /// happens: it may already be in a batch being committed.
    pub(super) async fn submit(&self, op: WriteOp) -> Result<(), StoreError> {
        self.submit_audited(op, None).await
    }

    /// As [`Writer::submit`], keeping `audit` in the audit outbox in the
    /// write's own savepoint: the record commits exactly when the write does.
    pub(super) async fn submit_audited(
        &self,
        op: WriteOp,
        audit: Option<Vec<u8>>,
    ) -> Result<(), StoreError> {
        let stopped = || StoreError::Unavailable("the sqlite writer has stopped".into());
        let requests = self.requests.as_ref().ok_or_else(stopped)?;
        let json = match &op {
            WriteOp::Pointer(
                PointerWrite::Create { record, .. } | PointerWrite::Update { record, .. },
            ) => Some(
                self.codec
                    .compress(&record.json)
                    .map_err(|e| StoreError::Internal(e.to_string()))?,
            ),
            WriteOp::Pointer(PointerWrite::Delete { .. })
            | WriteOp::MarkDispatched { .. }
            | WriteOp::RemoveAuditOutbox { .. } => None,
        };
        let (reply, outcome) = oneshot::channel();
        requests
            .send(Request {
                op,
                json,
                audit,
                reply,
            })
            .await
            .map_err(|_| stopped())?;
        outcome.await.map_err(|_| stopped())?
    }

    /// False once the thread has ended, which only a panic can cause while
    /// the store is alive.
    pub(super) fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    pub(super) fn stats(&self) -> WriteStats {
        WriteStats {
            batches: self.counters.batches.load(Ordering::Relaxed),
            ops: self.counters.ops.load(Ordering::Relaxed),
        }
    }
}

impl Drop for Writer {
    /// Closes the queue, then waits for the thread to finish the batch in hand
    /// and close its connection, so the file is released when the store is.
    fn drop(&mut self) {
        drop(self.requests.take());
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the sqlite writer thread panicked");
        }
    }
}

fn run(
    conn: Connection,
    mut receiver: mpsc::Receiver<Request>,
    max_batch: usize,
    counters: &Counters,
    codec: &JsonCodec,
    checkpoints: &BackgroundCheckpoints,
) {
    let mut batch = Vec::with_capacity(max_batch);
    // Blocks for the first request, then takes whatever else is already queued
    // (up to `max_batch`) without waiting: an idle store commits a lone write at
    // once, a busy one shares each fsync between many writes. Returns 0 once
    // every sender is gone, which ends the thread.
    while receiver.blocking_recv_many(&mut batch, max_batch) > 0 {
        let outcomes = commit_batch(&conn, &batch, codec);
        counters.batches.fetch_add(1, Ordering::Relaxed);
        counters
            .ops
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        for (request, outcome) in batch.drain(..).zip(outcomes) {
            // The caller may have gone away; its write stands regardless.
            let _ = request.reply.send(outcome);
        }
        checkpoints.after_batch(&conn);
    }
    tracing::debug!("sqlite writer stopped");
}

/// Runs a batch in one transaction and returns each write's outcome, in order.
/// Outcomes are only handed out after COMMIT succeeded: an `Ok` is durable.
fn commit_batch(
    conn: &Connection,
    batch: &[Request],
    codec: &JsonCodec,
) -> Vec<Result<(), StoreError>> {
    match try_commit_batch(conn, batch, codec) {
        Ok(outcomes) => outcomes,
        Err(error) => {
            // The transaction may already be gone (SQLite rolls back by itself
            // on some I/O errors); roll back only what is left.
            if !conn.is_autocommit()
                && let Err(e) = conn.execute_batch("ROLLBACK")
            {
                tracing::error!(error = %e, "sqlite rollback failed");
            }
            tracing::error!(%error, writes = batch.len(), "sqlite batch failed; nothing committed");
            // A failed BEGIN, savepoint or COMMIT leaves nothing of the batch
            // applied (SQLite rolls back a COMMIT that fails), so every caller
            // gets the same retryable error, whatever its own outcome was.
            let message = match error {
                StoreError::Unavailable(m) | StoreError::Internal(m) => m,
                other => other.to_string(),
            };
            vec![Err(StoreError::Unavailable(message)); batch.len()]
        }
    }
}

/// Each write runs in its own SAVEPOINT, so a rejected write is undone alone
/// and the rest of the batch still commits. `Err` means the whole batch failed.
fn try_commit_batch(
    conn: &Connection,
    batch: &[Request],
    codec: &JsonCodec,
) -> Result<Vec<Result<(), StoreError>>, StoreError> {
    let exec = |sql: &str| -> Result<(), StoreError> {
        conn.prepare_cached(sql)
            .and_then(|mut s| s.execute([]))
            .map(drop)
            .map_err(sqlite_error)
    };
    // IMMEDIATE takes the write lock up front, so a competing process makes
    // BEGIN wait (busy_timeout) instead of failing a write half-way through.
    exec("BEGIN IMMEDIATE")?;
    let mut outcomes = Vec::with_capacity(batch.len());
    for request in batch {
        exec("SAVEPOINT write_op")?;
        let applied =
            mutations::apply(conn, &request.op, request.json.as_deref(), codec).and_then(|()| {
                match &request.audit {
                    Some(entry) => mutations::keep_audit(conn, entry),
                    None => Ok(()),
                }
            });
        let outcome = match applied {
            Ok(()) => Ok(()),
            Err(OpError::Rejected(error)) => Err(error),
            Err(OpError::Sqlite(error)) => {
                let error = sqlite_error(error);
                // Lock, I/O and disk-full errors put the whole transaction in
                // doubt (SQLite may have rolled it back already): fail the batch.
                if matches!(error, StoreError::Unavailable(_)) || conn.is_autocommit() {
                    return Err(error);
                }
                Err(error)
            }
        };
        if outcome.is_err() {
            exec("ROLLBACK TO write_op")?;
        }
        exec("RELEASE write_op")?;
        outcomes.push(outcome);
    }
    exec("COMMIT")?;
    Ok(outcomes)
}
