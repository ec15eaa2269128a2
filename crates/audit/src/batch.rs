//! What the backends' group-commit writers share: the commands a writer
//! takes, how each is answered after its batch commits, and the counters.
//! Each backend runs batches its own way (a thread on a SQLite connection,
//! a task on a PostgreSQL pool); the contract to callers is the same.

use std::sync::atomic::{AtomicU64, Ordering};

use fhir::AuditEvent;
use tokio::sync::{mpsc, oneshot};

use crate::chain::{Hash, Links, PreparedEvent};
use crate::{Acknowledgement, AuditError, AuditFacts, Checkpoint};

/// Transactions run and commands they carried since open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// Transactions run.
    pub batches: u64,
    /// Commands (appends, acknowledgements, checkpoint requests) they carried.
    pub commands: u64,
    /// Records appended.
    pub records: u64,
}

#[derive(Default)]
pub(crate) struct Counters {
    batches: AtomicU64,
    commands: AtomicU64,
    records: AtomicU64,
}

impl Counters {
    pub(crate) fn batch(&self, commands: usize) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.commands.fetch_add(commands as u64, Ordering::Relaxed);
    }

    pub(crate) fn stats(&self) -> WriteStats {
        WriteStats {
            batches: self.batches.load(Ordering::Relaxed),
            commands: self.commands.load(Ordering::Relaxed),
            records: self.records.load(Ordering::Relaxed),
        }
    }
}

pub(crate) type Reply<T> = oneshot::Sender<Result<T, AuditError>>;

pub(crate) enum Command {
    Append {
        events: Vec<PreparedEvent>,
        reply: Reply<Vec<u64>>,
    },
    Acknowledge {
        seq: u64,
        ack: Acknowledgement,
        /// `ack.to_event(seq)`, prepared on the caller's thread (boxed:
        /// acknowledgements are rare, appends are not).
        event: Box<PreparedEvent>,
        reply: Reply<()>,
    },
    Checkpoint {
        reply: Reply<Option<Checkpoint>>,
    },
    Tick,
    /// Records moved from the pointer store's audit outbox (see
    /// [`crate::outbox`]), chained like an append. The backend first drops
    /// every entry it has already taken, inside the batch's transaction, so
    /// a move repeated after a crash appends nothing twice.
    Move {
        source: String,
        /// The highest outbox id of the request.
        through: u64,
        /// (outbox id, record), ids ascending.
        entries: Vec<(u64, PreparedEvent)>,
        reply: Reply<()>,
    },
}

/// The sending side of a writer's queue.
pub(crate) struct Queue {
    commands: Option<mpsc::Sender<Command>>,
}

impl Queue {
    pub(crate) fn new(commands: mpsc::Sender<Command>) -> Queue {
        Queue {
            commands: Some(commands),
        }
    }

    /// Queues one command and waits for its batch to commit.
    pub(crate) async fn send<T>(
        &self,
        command: impl FnOnce(Reply<T>) -> Command,
    ) -> Result<T, AuditError> {
        let stopped = || AuditError::Unavailable("the audit writer has stopped".into());
        let commands = self.commands.as_ref().ok_or_else(stopped)?;
        let (reply, outcome) = oneshot::channel();
        commands.send(command(reply)).await.map_err(|_| stopped())?;
        outcome.await.map_err(|_| stopped())?
    }

    /// Prepares `events` on the caller's thread (so the writer only hashes
    /// and writes), queues them and waits for their seqs.
    pub(crate) async fn append(&self, events: &[AuditEvent]) -> Result<Vec<u64>, AuditError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let events = events
            .iter()
            .map(PreparedEvent::new)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| AuditError::Serialise(e.to_string()))?;
        self.send(|reply| Command::Append { events, reply }).await
    }

    /// Encodes `facts` compactly on the caller's thread, queues them and
    /// waits for their seqs.
    pub(crate) async fn record(
        &self,
        node: &str,
        facts: &[AuditFacts],
    ) -> Result<Vec<u64>, AuditError> {
        if facts.is_empty() {
            return Ok(Vec::new());
        }
        let events = facts
            .iter()
            .map(|f| PreparedEvent::compact(f, node))
            .collect();
        self.send(|reply| Command::Append { events, reply }).await
    }

    /// Decodes outboxed records on the caller's thread, queues them and
    /// waits for their batch to commit.
    pub(crate) async fn record_moved(
        &self,
        source: &str,
        entries: Vec<(u64, Vec<u8>)>,
    ) -> Result<(), AuditError> {
        let (entries, through) = prepare_moved(entries)?;
        self.send(|reply| Command::Move {
            source: source.to_owned(),
            through,
            entries,
            reply,
        })
        .await
    }

    /// Queues an acknowledgement (with its chain record) and waits.
    pub(crate) async fn acknowledge(
        &self,
        seq: u64,
        ack: Acknowledgement,
    ) -> Result<(), AuditError> {
        let event = PreparedEvent::new(&ack.to_event(seq))
            .map(Box::new)
            .map_err(|e| AuditError::Serialise(e.to_string()))?;
        self.send(|reply| Command::Acknowledge {
            seq,
            ack,
            event,
            reply,
        })
        .await
    }

    /// A handle that does not keep the writer alive (for its ticker).
    pub(crate) fn downgrade(&self) -> Option<mpsc::WeakSender<Command>> {
        self.commands.as_ref().map(mpsc::Sender::downgrade)
    }

    /// Closes the queue: the writer drains what is queued, then stops.
    pub(crate) fn close(&mut self) {
        drop(self.commands.take());
    }
}

/// Outboxed records as the writer chains them, sorted by outbox id, and
/// the highest id among them.
pub(crate) fn prepare_moved(
    mut entries: Vec<(u64, Vec<u8>)>,
) -> Result<(Vec<(u64, PreparedEvent)>, u64), AuditError> {
    entries.sort_by_key(|(id, _)| *id);
    entries.dedup_by_key(|(id, _)| *id);
    let through = entries.last().map_or(0, |(id, _)| *id);
    let prepared = entries
        .into_iter()
        .map(|(id, bytes)| PreparedEvent::from_compact(bytes).map(|event| (id, event)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((prepared, through))
}

pub(crate) enum Done {
    Seqs(Vec<u64>),
    Unit,
}

/// A batch's appends, chained onto the head in queue order.
pub(crate) struct Chained {
    /// The chain after the batch's appends; acknowledgement records are
    /// chained onto it next.
    pub links: Links,
    /// A command asked for a checkpoint (a caller's, or the ticker's).
    pub forced: bool,
    /// One per command. Acknowledgements are `Unit` here: the backend
    /// decides them once the batch's records are stored.
    pub results: Vec<Result<Done, AuditError>>,
}

/// Gives every event of every append in `batch` the next seq and its chain
/// hash, extending `links`, and hands each new record to `store` (seq,
/// event, previous hash, hash). The one place a batch extends the chain,
/// whichever backend stores it.
pub(crate) fn chain<'b, E>(
    batch: &'b [Command],
    mut links: Links,
    appended_at: &str,
    mut store: impl FnMut(u64, &'b PreparedEvent, &Hash, &Hash) -> Result<(), E>,
) -> Result<Chained, E> {
    let mut forced = false;
    let mut results = Vec::with_capacity(batch.len());
    for command in batch {
        results.push(match command {
            Command::Append { events, .. } => {
                let mut seqs = Vec::with_capacity(events.len());
                for event in events {
                    let (seq, prev, hash) = links.push(appended_at, &event.body);
                    store(seq, event, &prev, &hash)?;
                    seqs.push(seq);
                }
                Ok(Done::Seqs(seqs))
            }
            Command::Checkpoint { .. } | Command::Tick => {
                forced = true;
                Ok(Done::Unit)
            }
            Command::Acknowledge { .. } => Ok(Done::Unit),
            Command::Move { entries, .. } => {
                for (_, event) in entries {
                    let (seq, prev, hash) = links.push(appended_at, &event.body);
                    store(seq, event, &prev, &hash)?;
                }
                Ok(Done::Unit)
            }
        });
    }
    Ok(Chained {
        links,
        forced,
        results,
    })
}

/// What one committed batch did.
pub(crate) struct BatchOutcome {
    /// The chain head before the batch.
    pub first_seq: u64,
    /// The chain head after it.
    pub seq: u64,
    pub hash: Hash,
    /// Signed in the batch, in seq order.
    pub checkpoints: Vec<Checkpoint>,
    /// One per command, in order.
    pub results: Vec<Result<Done, AuditError>>,
}

/// Answers every command of a batch: with its own result after a commit, or
/// with the failure when nothing was committed. Counters move first, so a
/// caller that got its answer sees its records counted.
pub(crate) fn deliver(
    batch: &mut Vec<Command>,
    outcome: Result<&mut BatchOutcome, AuditError>,
    counters: &Counters,
) {
    match outcome {
        Ok(outcome) => {
            outcome.checkpoints.iter().for_each(log_checkpoint);
            counters
                .records
                .fetch_add(outcome.seq - outcome.first_seq, Ordering::Relaxed);
            for (command, result) in batch.drain(..).zip(outcome.results.drain(..)) {
                answer(command, result, outcome.checkpoints.last());
            }
        }
        Err(error) => {
            tracing::error!(%error, commands = batch.len(), "audit batch failed; nothing committed");
            let message = error.to_string();
            for command in batch.drain(..) {
                answer(command, Err(AuditError::Unavailable(message.clone())), None);
            }
        }
    }
}

fn answer(command: Command, result: Result<Done, AuditError>, checkpoint: Option<&Checkpoint>) {
    // A caller that stopped waiting gets nothing; its write stands.
    match command {
        Command::Append { reply, .. } => {
            let _ = reply.send(result.map(|d| match d {
                Done::Seqs(seqs) => seqs,
                Done::Unit => Vec::new(),
            }));
        }
        Command::Acknowledge { reply, .. } => {
            let _ = reply.send(result.map(drop));
        }
        Command::Checkpoint { reply } => {
            let _ = reply.send(result.map(|_| checkpoint.cloned()));
        }
        Command::Tick => {}
        Command::Move { reply, .. } => {
            let _ = reply.send(result.map(drop));
        }
    }
}

pub(crate) fn log_checkpoint(checkpoint: &Checkpoint) {
    // The external witness of the chain: ship these lines somewhere the
    // audit store's owner cannot edit, and pass the latest to verify --anchor.
    tracing::info!(anchor = %checkpoint.anchor_text(), key_id = %checkpoint.key_id, "audit checkpoint signed");
}
