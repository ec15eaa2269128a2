//! Group commit for the audit log, as in the pointer store's writer: one
//! thread owns the write connection, takes every queued command (up to
//! `max_batch`), runs them in one `BEGIN IMMEDIATE` transaction and replies
//! only after COMMIT, so thousands of appends a second share a few fsyncs.
//! Chaining happens here too: only this thread ever extends the chain.
//!
//! A ticker thread asks for a checkpoint every `policy.seconds`, so an idle
//! node still signs its last records.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, mpsc as std_mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};
use store::sqlite::setup::BackgroundCheckpoints;
use tokio::sync::mpsc;

use crate::batch::{BatchOutcome, Command, Counters, Done, Queue, WriteStats, chain, deliver};
use crate::chain::{Appended, Body, ChainHead, GENESIS, Hash, PreparedEvent};
use crate::{Acknowledgement, AuditError, Checkpoint, CheckpointPolicy, CheckpointSigner};

use super::schema::sqlite_error;

pub(super) struct Writer {
    queue: Queue,
    thread: Option<JoinHandle<()>>,
    ticker: Option<(std_mpsc::Sender<()>, JoinHandle<()>)>,
    counters: Arc<Counters>,
}

struct Worker {
    conn: Connection,
    head: ChainHead,
    signer: CheckpointSigner,
    policy: CheckpointPolicy,
    names: Names,
    wal: BackgroundCheckpoints,
}

/// Ids of agent names in `audit_names`, cached: a busy node sees the same
/// few apps and organisations over and over.
#[derive(Default)]
struct Names {
    ids: HashMap<String, i64>,
}

/// Enough for every app and organisation of a region; past it the cache
/// starts again rather than grow without bound.
const NAME_CACHE: usize = 100_000;

impl Names {
    fn id(&mut self, conn: &Connection, name: &str) -> Result<i64, AuditError> {
        if let Some(&id) = self.ids.get(name) {
            return Ok(id);
        }
        conn.prepare_cached("INSERT OR IGNORE INTO audit_names (name) VALUES (?1)")
            .and_then(|mut s| s.execute([name]))
            .map_err(sqlite_error)?;
        let id: i64 = conn
            .prepare_cached("SELECT id FROM audit_names WHERE name = ?1")
            .and_then(|mut s| s.query_row([name], |row| row.get(0)))
            .map_err(sqlite_error)?;
        if self.ids.len() >= NAME_CACHE {
            self.ids.clear();
        }
        self.ids.insert(name.to_owned(), id);
        Ok(id)
    }

    /// A rolled-back batch may have added names: their ids are gone.
    fn forget(&mut self) {
        self.ids.clear();
    }
}

impl Writer {
    pub(super) fn spawn(
        conn: Connection,
        path: &Path,
        signer: CheckpointSigner,
        policy: CheckpointPolicy,
        max_batch: usize,
    ) -> Result<Writer, AuditError> {
        let max_batch = max_batch.max(1);
        let checkpoints = super::schema::background_checkpoints(&conn, path)?;
        let mut worker = Worker {
            head: load_head(&conn)?,
            conn,
            signer,
            policy,
            names: Names::default(),
            wal: checkpoints,
        };
        worker.sign_at_open()?;
        let (commands, receiver) = mpsc::channel(max_batch.saturating_mul(4));
        let counters = Arc::new(Counters::default());
        let thread_counters = Arc::clone(&counters);
        let unavailable = |e: std::io::Error| {
            AuditError::Unavailable(format!("cannot start the audit writer: {e}"))
        };
        let thread = std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || worker.run(receiver, max_batch, &thread_counters))
            .map_err(unavailable)?;
        let (stop, stopped) = std_mpsc::channel::<()>();
        let weak = commands.downgrade();
        let period = Duration::from_secs(policy.seconds.max(1));
        let ticker = std::thread::Builder::new()
            .name("audit-checkpoint-ticker".into())
            .spawn(move || {
                while let Err(std_mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(period) {
                    match weak.upgrade() {
                        // A full queue means the writer is busy and will
                        // check the time itself after its batch.
                        Some(sender) => drop(sender.try_send(Command::Tick)),
                        None => break,
                    }
                }
            })
            .map_err(unavailable)?;
        Ok(Writer {
            queue: Queue::new(commands),
            thread: Some(thread),
            ticker: Some((stop, ticker)),
            counters,
        })
    }

    pub(super) fn queue(&self) -> &Queue {
        &self.queue
    }

    pub(super) fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    pub(super) fn stats(&self) -> WriteStats {
        self.counters.stats()
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if let Some((stop, ticker)) = self.ticker.take() {
            drop(stop);
            if ticker.join().is_err() {
                tracing::error!("the audit checkpoint ticker panicked");
            }
        }
        self.queue.close();
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the audit writer thread panicked");
        }
    }
}

fn load_head(conn: &Connection) -> Result<ChainHead, AuditError> {
    let last: Option<(i64, Vec<u8>)> = conn
        .query_row(
            "SELECT seq, hash FROM audit_records ORDER BY seq DESC LIMIT 1",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()
        .map_err(sqlite_error)?;
    let checkpointed: Option<i64> = conn
        .query_row("SELECT max(seq) FROM audit_checkpoints", [], |row| {
            row.get(0)
        })
        .map_err(sqlite_error)?;
    let (seq, hash) = match last {
        Some((seq, hash)) => (
            u64::try_from(seq).map_err(|_| AuditError::Internal("negative audit seq".into()))?,
            Hash::try_from(hash.as_slice())
                .map_err(|_| AuditError::Internal("an audit hash is not 32 bytes".into()))?,
        ),
        None => (0, GENESIS),
    };
    let checkpointed = checkpointed
        .and_then(|s| u64::try_from(s).ok())
        .unwrap_or(0);
    Ok(ChainHead::new(seq, hash, checkpointed))
}

impl Worker {
    /// Signs the previous run's unsigned tail at once, and records the
    /// interval now in force (verify holds the tail to the last signed one).
    fn sign_at_open(&mut self) -> Result<(), AuditError> {
        if self.head.seq == 0 {
            return Ok(());
        }
        let interval: Option<i64> = self
            .conn
            .query_row(
                "SELECT interval FROM audit_checkpoints ORDER BY seq DESC LIMIT 1",
                [],
                |row| row.get(0),
            )
            .optional()
            .map_err(sqlite_error)?;
        let same_interval =
            interval.and_then(|i| u64::try_from(i).ok()) == Some(self.policy.records);
        if self.head.seq > self.head.checkpointed_seq || !same_interval {
            let checkpoint = self.head.sign_recovered(&self.signer, &self.policy);
            insert_checkpoint(&self.conn, &checkpoint, true)?;
            self.head.checkpointed(checkpoint.seq);
            crate::batch::log_checkpoint(&checkpoint);
        }
        Ok(())
    }

    fn run(mut self, mut receiver: mpsc::Receiver<Command>, max_batch: usize, counters: &Counters) {
        let mut batch = Vec::with_capacity(max_batch);
        while receiver.blocking_recv_many(&mut batch, max_batch) > 0 {
            counters.batch(batch.len());
            self.commit(&mut batch, counters);
            self.wal.after_batch(&self.conn);
        }
        tracing::debug!("audit writer stopped");
    }

    /// Runs one batch; every command is answered.
    fn commit(&mut self, batch: &mut Vec<Command>, counters: &Counters) {
        match self.try_commit(batch) {
            Ok(mut outcome) => {
                self.head.advance(outcome.seq, outcome.hash);
                if let Some(checkpoint) = outcome.checkpoints.last() {
                    self.head.checkpointed(checkpoint.seq);
                }
                deliver(batch, Ok(&mut outcome), counters);
            }
            Err(error) => {
                self.names.forget();
                if !self.conn.is_autocommit()
                    && let Err(e) = self.conn.execute_batch("ROLLBACK")
                {
                    tracing::error!(error = %e, "audit rollback failed");
                }
                deliver(batch, Err(error), counters);
            }
        }
    }

    fn try_commit(&mut self, batch: &mut [Command]) -> Result<BatchOutcome, AuditError> {
        let conn = &self.conn;
        let names = &mut self.names;
        conn.execute_batch("BEGIN IMMEDIATE")
            .map_err(sqlite_error)?;
        let moved = drop_taken(conn, batch)?;
        let batch = &*batch;
        let appended = Appended::now();
        let appended_at = &appended.text;
        let first_seq = self.head.seq;
        let mut chained = chain(
            batch,
            self.head.links(&self.policy),
            appended_at,
            |seq, event, prev, hash| insert_record(conn, names, seq, &appended, event, prev, hash),
        )?;
        // After the records, so one may name a record of this very batch;
        // each accepted acknowledgement is chained as a record of its own.
        for (command, result) in batch.iter().zip(chained.results.iter_mut()) {
            if let Command::Acknowledge {
                seq, ack, event, ..
            } = command
            {
                *result = match acknowledge(conn, *seq, ack)? {
                    Ok(()) => {
                        let (ack_seq, prev, hash) = chained.links.push(appended_at, &event.body);
                        insert_record(conn, names, ack_seq, &appended, event, &prev, &hash)?;
                        Ok(Done::Unit)
                    }
                    Err(refused) => Err(refused),
                };
            }
        }
        let checkpoints =
            self.head
                .checkpoints_for(&chained.links, &self.signer, &self.policy, chained.forced);
        for checkpoint in &checkpoints {
            insert_checkpoint(conn, checkpoint, false)?;
        }
        for (source, through) in &moved {
            let through = sql_seq(*through)?;
            conn.prepare_cached(
                "INSERT INTO audit_moved (source, through) VALUES (?1, ?2)
                 ON CONFLICT (source) DO UPDATE SET through = max(through, excluded.through)",
            )
            .and_then(|mut s| s.execute(params![source, through]))
            .map_err(sqlite_error)?;
        }
        conn.execute_batch("COMMIT").map_err(sqlite_error)?;
        Ok(BatchOutcome {
            first_seq,
            seq: chained.links.seq,
            hash: chained.links.hash,
            checkpoints,
            results: chained.results,
        })
    }
}

/// Drops from each move of `batch` the entries its source's records were
/// already taken through (by an earlier move that committed, perhaps in
/// another process, before a crash kept the store from forgetting them),
/// and returns each source's new high-water mark. Runs inside the batch's
/// transaction, which holds the write lock, so no other writer can take the
/// same entries meanwhile.
fn drop_taken(
    conn: &Connection,
    batch: &mut [Command],
) -> Result<HashMap<String, u64>, AuditError> {
    let mut taken: HashMap<String, u64> = HashMap::new();
    for command in batch {
        if let Command::Move {
            source,
            through,
            entries,
            ..
        } = command
        {
            let floor = match taken.get(source.as_str()) {
                Some(floor) => *floor,
                None => stored_through(conn, source)?,
            };
            entries.retain(|(id, _)| *id > floor);
            taken.insert(source.clone(), floor.max(*through));
        }
    }
    Ok(taken)
}

fn stored_through(conn: &Connection, source: &str) -> Result<u64, AuditError> {
    let through: Option<i64> = conn
        .prepare_cached("SELECT through FROM audit_moved WHERE source = ?1")
        .and_then(|mut s| s.query_row([source], |row| row.get(0)).optional())
        .map_err(sqlite_error)?;
    Ok(through.and_then(|t| u64::try_from(t).ok()).unwrap_or(0))
}

fn sql_seq(seq: u64) -> Result<i64, AuditError> {
    i64::try_from(seq).map_err(|_| AuditError::Internal("audit seq overflow".into()))
}

fn insert_record(
    conn: &Connection,
    names: &mut Names,
    seq: u64,
    appended: &Appended,
    event: &PreparedEvent,
    prev: &Hash,
    hash: &Hash,
) -> Result<(), AuditError> {
    let seq = sql_seq(seq)?;
    let patient = event.fields.patient.and_then(|p| i64::try_from(p).ok());
    // JSON as TEXT, compact records as BLOB: the column's type is the format.
    let body: &dyn rusqlite::ToSql = match &event.body {
        Body::Json(json) => json,
        Body::Compact(bytes) => bytes,
    };
    let appended_at = if appended.ms.is_some() {
        ""
    } else {
        &appended.text
    };
    let (mut client, mut org, mut person) = (None, None, None);
    if let Some(roles) = &event.roles {
        client = Some(names.id(conn, &roles.client)?);
        org = roles
            .org
            .as_deref()
            .map(|n| names.id(conn, n))
            .transpose()?;
        person = roles
            .person
            .as_deref()
            .map(|n| names.id(conn, n))
            .transpose()?;
    }
    conn.prepare_cached(
        "INSERT INTO audit_records (seq, appended_at, appended_ms, event, prev_hash, hash, patient, outcome, recorded_ms, alert, client, org, person)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    )
    .and_then(|mut s| {
        s.execute(params![
            seq,
            appended_at,
            appended.ms,
            body,
            prev.as_slice(),
            hash.as_slice(),
            patient,
            event.fields.outcome,
            event.fields.recorded_ms,
            event.fields.alert,
            client,
            org,
            person,
        ])
    })
    .map_err(sqlite_error)?;
    // A compact record's agents are its three role columns, and any agent
    // without a role column (a patient's NHS login account) goes in
    // `audit_agents` like a JSON record's.
    let mut unnamed = event
        .fields
        .agents
        .iter()
        .filter(|a| !event.roles.as_ref().is_some_and(|r| r.names(a)))
        .peekable();
    if unnamed.peek().is_some() {
        let mut agents = conn
            .prepare_cached("INSERT OR IGNORE INTO audit_agents (agent, seq) VALUES (?1, ?2)")
            .map_err(sqlite_error)?;
        for agent in unnamed {
            agents.execute(params![agent, seq]).map_err(sqlite_error)?;
        }
    }
    Ok(())
}

fn insert_checkpoint(
    conn: &Connection,
    checkpoint: &Checkpoint,
    replace: bool,
) -> Result<(), AuditError> {
    let sql = if replace {
        "INSERT OR REPLACE INTO audit_checkpoints (seq, hash, interval, created_at, key_id, signature) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
    } else {
        "INSERT INTO audit_checkpoints (seq, hash, interval, created_at, key_id, signature) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
    };
    conn.prepare_cached(sql)
        .and_then(|mut s| {
            s.execute(params![
                sql_seq(checkpoint.seq).unwrap_or(i64::MAX),
                checkpoint.hash.as_slice(),
                i64::try_from(checkpoint.interval).unwrap_or(i64::MAX),
                checkpoint.created_at,
                checkpoint.key_id,
                checkpoint.signature.as_slice(),
            ])
        })
        .map(drop)
        .map_err(sqlite_error)
}

/// `Ok(Err(..))`: refused (unknown alert, acknowledged already); `Err`: the
/// batch failed.
fn acknowledge(
    conn: &Connection,
    seq: u64,
    ack: &Acknowledgement,
) -> Result<Result<(), AuditError>, AuditError> {
    let sql = sql_seq(seq)?;
    let state: Option<(Option<String>, Option<i64>)> = conn
        .prepare_cached(
            "SELECT r.alert, a.seq FROM audit_records r LEFT JOIN alert_acks a ON a.seq = r.seq WHERE r.seq = ?1",
        )
        .and_then(|mut s| s.query_row([sql], |row| Ok((row.get(0)?, row.get(1)?))).optional())
        .map_err(sqlite_error)?;
    match state {
        None | Some((None, _)) => Ok(Err(AuditError::AlertNotFound(seq))),
        Some((Some(_), Some(_))) => Ok(Err(AuditError::AlreadyAcknowledged(seq))),
        Some((Some(_), None)) => {
            conn.prepare_cached(
                "INSERT INTO alert_acks (seq, acknowledged_by, acknowledged_at, note) VALUES (?1, ?2, ?3, ?4)",
            )
            .and_then(|mut s| s.execute(params![sql, ack.by, ack.at, ack.note]))
            .map_err(sqlite_error)?;
            Ok(Ok(()))
        }
    }
}
