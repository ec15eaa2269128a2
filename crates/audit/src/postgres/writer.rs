//! This node's group-commit writer on PostgreSQL: a task takes every queued
//! command (up to `max_batch`), runs them in one transaction and answers
//! only after COMMIT. The transaction locks `audit_head` first, reads where
//! the chain ends (another node may have moved it), chains and inserts the
//! batch's records with one statement per table, signs a checkpoint if one
//! is due, moves the head and commits.
//!
//! A ticker asks for a checkpoint every `policy.seconds`, so an idle node
//! still signs the records it (or a node that died) left unsigned.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_postgres::{Object, Transaction};
use store::postgres::{Database, OpError};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_postgres::types::ToSql;

use crate::batch::{BatchOutcome, Command, Counters, Done, Queue, WriteStats, chain, deliver};
use crate::chain::{AgentRoles, Appended, Body, ChainHead, Hash, Links, PreparedEvent};
use crate::{Acknowledgement, AuditError, Checkpoint, CheckpointPolicy, CheckpointSigner};

use super::{PostgresAuditOptions, audit_error};

/// The chain head, locked, with the last checkpointed seq: one round trip.
const LOCK_HEAD: &str = "SELECT h.seq, h.hash,
    coalesce((SELECT max(seq) FROM audit_checkpoints), 0)
    FROM audit_head h WHERE h.id = 1 FOR UPDATE OF h";
const LAST_CHECKPOINT: &str =
    "SELECT seq, \"interval\" FROM audit_checkpoints ORDER BY seq DESC LIMIT 1";
const INSERT_RECORDS: &str = "INSERT INTO audit_records
    (seq, appended_at, appended_ms, event, body, prev_hash, hash, patient, outcome, recorded_ms,
     alert, client, org, person)
    SELECT s, $2, $3, e, b, p, h, pt, o, r, a, c, g, pe
    FROM unnest($1::bigint[], $4::text[], $5::bytea[], $6::bytea[], $7::bytea[], $8::bigint[],
                $9::text[], $10::bigint[], $11::text[], $12::int[], $13::int[], $14::int[])
        AS t(s, e, b, p, h, pt, o, r, a, c, g, pe)";
/// Ids of the given names, adding those not there yet. Run after the head
/// is locked, so no other node's batch is adding names meanwhile and the
/// second half sees every name committed before; the first half returns
/// those this statement adds (invisible to the second).
const NAME_IDS: &str = "WITH wanted AS (SELECT unnest($1::text[]) AS name),
    added AS (INSERT INTO audit_names (name) SELECT name FROM wanted
              ON CONFLICT (name) DO NOTHING RETURNING id, name)
    SELECT id, name FROM added
    UNION ALL
    SELECT n.id, n.name FROM audit_names n WHERE n.name IN (SELECT name FROM wanted)";
const INSERT_AGENTS: &str = "INSERT INTO audit_agents (agent, seq)
    SELECT * FROM unnest($1::text[], $2::bigint[]) ON CONFLICT DO NOTHING";
const MOVE_HEAD: &str = "UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1";
const INSERT_CHECKPOINT: &str = "INSERT INTO audit_checkpoints
    (seq, hash, \"interval\", created_at, key_id, signature) VALUES ($1, $2, $3, $4, $5, $6)
    ON CONFLICT (seq) DO UPDATE SET hash = EXCLUDED.hash, \"interval\" = EXCLUDED.\"interval\",
        created_at = EXCLUDED.created_at, key_id = EXCLUDED.key_id, signature = EXCLUDED.signature";
const ALERT_STATE: &str = "SELECT r.alert IS NOT NULL, a.seq IS NOT NULL
    FROM audit_records r LEFT JOIN alert_acks a ON a.seq = r.seq WHERE r.seq = $1";
const INSERT_ACK: &str = "INSERT INTO alert_acks (seq, acknowledged_by, acknowledged_at, note)
    VALUES ($1, $2, $3, $4)";

pub(super) struct Writer {
    queue: Queue,
    task: JoinHandle<()>,
    ticker: JoinHandle<()>,
    counters: Arc<Counters>,
}

struct Worker {
    db: Database,
    signer: CheckpointSigner,
    policy: CheckpointPolicy,
    /// When this node last signed: the "unsigned for `seconds`" rule is
    /// judged per node, and every node's ticker forces one anyway.
    checkpointed_at: Instant,
    /// Ids of agent names in `audit_names`, as committed: names are never
    /// renamed or removed, so an id once committed stays right.
    names: HashMap<String, i32>,
}

impl Writer {
    pub(super) async fn spawn(
        db: Database,
        signer: CheckpointSigner,
        options: PostgresAuditOptions,
    ) -> Result<Writer, AuditError> {
        let max_batch = options.max_batch.max(1);
        let mut worker = Worker {
            db,
            signer,
            policy: options.checkpoints,
            checkpointed_at: Instant::now(),
            names: HashMap::new(),
        };
        worker.sign_at_open().await?;
        let (commands, receiver) = mpsc::channel(max_batch.saturating_mul(4));
        let counters = Arc::new(Counters::default());
        let task = tokio::spawn(worker.run(receiver, max_batch, Arc::clone(&counters)));
        let queue = Queue::new(commands);
        let weak = queue.downgrade();
        let period = Duration::from_secs(options.checkpoints.seconds.max(1));
        let ticker = tokio::spawn(async move {
            let mut interval = tokio::time::interval(period);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            interval.tick().await;
            loop {
                interval.tick().await;
                match weak.as_ref().and_then(mpsc::WeakSender::upgrade) {
                    // A full queue means the writer is busy and will check
                    // the time itself after its batch.
                    Some(sender) => drop(sender.try_send(Command::Tick)),
                    None => break,
                }
            }
        });
        Ok(Writer {
            queue,
            task,
            ticker,
            counters,
        })
    }

    pub(super) fn queue(&self) -> &Queue {
        &self.queue
    }

    pub(super) fn is_running(&self) -> bool {
        !self.task.is_finished()
    }

    pub(super) fn stats(&self) -> WriteStats {
        self.counters.stats()
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // The task drains what is queued, then ends on its own.
        self.ticker.abort();
        self.queue.close();
    }
}

impl Worker {
    /// Signs the unsigned tail at once, and records the interval now in
    /// force when it differs from the last checkpoint's.
    async fn sign_at_open(&mut self) -> Result<(), AuditError> {
        let (signer, policy) = (&self.signer, &self.policy);
        let signed = self
            .db
            .run(async |conn| {
                let tx = conn.transaction().await?;
                let (seq, hash, _) = lock_head(&tx).await?;
                let last = tx.query_opt(LAST_CHECKPOINT, &[]).await?;
                let (checkpointed, interval) = match last {
                    Some(row) => (seq_of(row.try_get(0)?), Some(seq_of(row.try_get(1)?))),
                    None => (0, None),
                };
                if seq == 0 || (seq == checkpointed && interval == Some(policy.records)) {
                    return Ok(None);
                }
                let checkpoint =
                    ChainHead::new(seq, hash, checkpointed).sign_recovered(signer, policy);
                insert_checkpoint(&tx, &checkpoint).await?;
                tx.commit().await?;
                Ok(Some(checkpoint))
            })
            .await
            .map_err(audit_error)?;
        if let Some(checkpoint) = signed {
            crate::batch::log_checkpoint(&checkpoint);
            self.checkpointed_at = Instant::now();
        }
        Ok(())
    }

    async fn run(
        mut self,
        mut receiver: mpsc::Receiver<Command>,
        max_batch: usize,
        counters: Arc<Counters>,
    ) {
        let mut batch = Vec::with_capacity(max_batch);
        while receiver.recv_many(&mut batch, max_batch).await > 0 {
            counters.batch(batch.len());
            let (signer, policy, checkpointed_at, names) = (
                &self.signer,
                &self.policy,
                self.checkpointed_at,
                &self.names,
            );
            let outcome = self
                .db
                .run(async |conn| {
                    commit(conn, &mut batch, signer, policy, checkpointed_at, names).await
                })
                .await
                .map_err(audit_error);
            match outcome {
                Ok((mut outcome, added)) => {
                    if !outcome.checkpoints.is_empty() {
                        self.checkpointed_at = Instant::now();
                    }
                    // Only once committed: a rolled-back batch's ids are gone.
                    self.names.extend(added);
                    deliver(&mut batch, Ok(&mut outcome), &counters);
                }
                // Nothing was committed (or, if the connection died during
                // COMMIT, perhaps it was: the callers are told it failed and
                // answer 503; a record of a request that failed is harmless).
                Err(error) => deliver(&mut batch, Err(error), &counters),
            }
        }
        tracing::debug!("audit writer stopped");
    }
}

fn seq_of(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

fn sql_seq(seq: u64) -> Result<i64, OpError> {
    i64::try_from(seq).map_err(|_| OpError::Corrupt("audit seq overflow".into()))
}

/// `(seq, hash, last checkpointed seq)` of the chain, locked until commit.
async fn lock_head(tx: &Transaction<'_>) -> Result<(u64, Hash, u64), OpError> {
    let statement = tx.prepare_cached(LOCK_HEAD).await?;
    let row = tx.query_one(&statement, &[]).await?;
    let hash: Vec<u8> = row.try_get(1)?;
    let hash = Hash::try_from(hash.as_slice())
        .map_err(|_| OpError::Corrupt("the audit head hash is not 32 bytes".into()))?;
    Ok((seq_of(row.try_get(0)?), hash, seq_of(row.try_get(2)?)))
}

/// The ids of a batch's agent names: those committed before, and those
/// this batch adds.
struct NameIds<'n> {
    committed: &'n HashMap<String, i32>,
    added: HashMap<String, i32>,
}

impl NameIds<'_> {
    fn id(&self, name: &str) -> Result<i32, OpError> {
        self.committed
            .get(name)
            .or_else(|| self.added.get(name))
            .copied()
            .ok_or_else(|| OpError::Corrupt(format!("no audit_names id for {name:?}")))
    }

    fn of(&self, name: Option<&str>) -> Result<Option<i32>, OpError> {
        name.map(|n| self.id(n)).transpose()
    }
}

/// Looks up (adding where new) the role names of `batch`'s compact records
/// that `committed` does not hold yet.
async fn name_ids<'n>(
    tx: &Transaction<'_>,
    batch: &[Command],
    committed: &'n HashMap<String, i32>,
) -> Result<NameIds<'n>, OpError> {
    let mut wanted: Vec<&str> = batch
        .iter()
        .flat_map(|command| -> Box<dyn Iterator<Item = &PreparedEvent> + '_> {
            match command {
                Command::Append { events, .. } => Box::new(events.iter()),
                Command::Move { entries, .. } => Box::new(entries.iter().map(|(_, e)| e)),
                _ => Box::new(std::iter::empty()),
            }
        })
        .filter_map(|event| event.roles.as_ref())
        .flat_map(AgentRoles::all)
        .filter(|name| !committed.contains_key(*name))
        .collect();
    let mut added = HashMap::new();
    if !wanted.is_empty() {
        wanted.sort_unstable();
        wanted.dedup();
        let statement = tx.prepare_cached(NAME_IDS).await?;
        for row in tx.query(&statement, &[&wanted]).await? {
            added.insert(row.try_get::<_, String>(1)?, row.try_get::<_, i32>(0)?);
        }
    }
    Ok(NameIds { committed, added })
}

/// The batch's records as column arrays, bound once for one INSERT.
#[derive(Default)]
struct Columns<'a> {
    seq: Vec<i64>,
    /// A JSON record's event; `''` for a compact record.
    event: Vec<String>,
    /// A compact record's facts.
    body: Vec<Option<&'a [u8]>>,
    prev_hash: Vec<Vec<u8>>,
    hash: Vec<Vec<u8>>,
    patient: Vec<Option<i64>>,
    outcome: Vec<&'a str>,
    recorded_ms: Vec<i64>,
    alert: Vec<Option<&'a str>>,
    client: Vec<Option<i32>>,
    org: Vec<Option<i32>>,
    person: Vec<Option<i32>>,
    /// Agents with no role column: every agent of a JSON record, and any
    /// of a compact record not in its three (a patient's NHS login account).
    agent: Vec<&'a str>,
    agent_seq: Vec<i64>,
}

impl<'a> Columns<'a> {
    fn push(
        &mut self,
        seq: i64,
        event: &'a PreparedEvent,
        prev: &Hash,
        hash: &Hash,
        names: &NameIds<'_>,
    ) -> Result<(), OpError> {
        self.seq.push(seq);
        match &event.body {
            Body::Json(json) => {
                self.event.push(json.clone());
                self.body.push(None);
            }
            Body::Compact(bytes) => {
                self.event.push(String::new());
                self.body.push(Some(bytes));
            }
        }
        self.prev_hash.push(prev.to_vec());
        self.hash.push(hash.to_vec());
        self.patient
            .push(event.fields.patient.and_then(|p| i64::try_from(p).ok()));
        self.outcome.push(&event.fields.outcome);
        self.recorded_ms.push(event.fields.recorded_ms);
        self.alert.push(event.fields.alert.as_deref());
        let roles = event.roles.as_ref();
        self.client
            .push(names.of(roles.map(|r| r.client.as_str()))?);
        self.org
            .push(names.of(roles.and_then(|r| r.org.as_deref()))?);
        self.person
            .push(names.of(roles.and_then(|r| r.person.as_deref()))?);
        for agent in &event.fields.agents {
            if !roles.is_some_and(|r| r.names(agent)) {
                self.agent.push(agent);
                self.agent_seq.push(seq);
            }
        }
        Ok(())
    }
}

async fn commit(
    conn: &mut Object,
    batch: &mut [Command],
    signer: &CheckpointSigner,
    policy: &CheckpointPolicy,
    checkpointed_at: Instant,
    committed_names: &HashMap<String, i32>,
) -> Result<(BatchOutcome, HashMap<String, i32>), OpError> {
    let tx = conn.transaction().await?;
    let (first_seq, first_hash, checkpointed) = lock_head(&tx).await?;
    take_moved(&tx, batch).await?;
    let batch = &*batch;
    let names = name_ids(&tx, batch, committed_names).await?;
    let mut head = ChainHead::new(first_seq, first_hash, checkpointed);
    head.checkpointed_at = checkpointed_at;
    let appended = Appended::now();
    let appended_at = appended.text.as_str();
    let mut columns = Columns::default();
    let mut chained = chain(
        batch,
        head.links(policy),
        appended_at,
        |seq, event, prev, hash| columns.push(sql_seq(seq)?, event, prev, hash, &names),
    )?;
    if chained.links.seq > first_seq {
        insert(&tx, &columns, &appended, &chained.links).await?;
    }
    // After the records, so one may name a record of this very batch;
    // each accepted acknowledgement is chained as a record of its own.
    let mut acks = Columns::default();
    for (command, result) in batch.iter().zip(chained.results.iter_mut()) {
        if let Command::Acknowledge {
            seq, ack, event, ..
        } = command
        {
            *result = match acknowledge(&tx, *seq, ack).await? {
                Ok(()) => {
                    let (ack_seq, prev, hash) = chained.links.push(appended_at, &event.body);
                    acks.push(sql_seq(ack_seq)?, event, &prev, &hash, &names)?;
                    Ok(Done::Unit)
                }
                Err(refused) => Err(refused),
            };
        }
    }
    if !acks.seq.is_empty() {
        insert(&tx, &acks, &appended, &chained.links).await?;
    }
    let checkpoints = head.checkpoints_for(&chained.links, signer, policy, chained.forced);
    for checkpoint in &checkpoints {
        insert_checkpoint(&tx, checkpoint).await?;
    }
    tx.commit().await?;
    let outcome = BatchOutcome {
        first_seq,
        seq: chained.links.seq,
        hash: chained.links.hash,
        checkpoints,
        results: chained.results,
    };
    Ok((outcome, names.added))
}

/// Takes each move's records out of the pointer store's audit outbox (the
/// table is in this database), keeping only the entries whose row this
/// transaction deleted: a row another node's move took first, or a repeat
/// of a move that committed, is gone, so nothing is chained twice. Ids are
/// not a high-water mark here: a lower id may commit after a higher one.
async fn take_moved(tx: &Transaction<'_>, batch: &mut [Command]) -> Result<(), OpError> {
    for command in batch {
        if let Command::Move { entries, .. } = command {
            let ids: Vec<i64> = entries
                .iter()
                .filter_map(|(id, _)| i64::try_from(*id).ok())
                .collect();
            let statement = tx
                .prepare_cached("DELETE FROM audit_outbox WHERE id = ANY($1) RETURNING id")
                .await?;
            let taken: std::collections::HashSet<u64> = tx
                .query(&statement, &[&ids])
                .await?
                .iter()
                .map(|row| row.try_get::<_, i64>(0).map(seq_of))
                .collect::<Result<_, _>>()?;
            entries.retain(|(id, _)| taken.contains(id));
        }
    }
    Ok(())
}

/// Inserts `columns` and moves the head to `links`: prepared once per
/// connection and sent together, one round trip for the three writes
/// (tokio-postgres pipelines concurrent queries).
async fn insert(
    tx: &Transaction<'_>,
    columns: &Columns<'_>,
    appended: &Appended,
    links: &Links,
) -> Result<(), OpError> {
    let (records, agents, head) = tokio::try_join!(
        tx.prepare_cached(INSERT_RECORDS),
        tx.prepare_cached(INSERT_AGENTS),
        tx.prepare_cached(MOVE_HEAD),
    )?;
    let head_seq = sql_seq(links.seq)?;
    let head_hash = links.hash.as_slice();
    // The text is kept only when the ms would not render back to it.
    let appended_at = if appended.ms.is_some() {
        ""
    } else {
        appended.text.as_str()
    };
    let record_params: [&(dyn ToSql + Sync); 14] = [
        &columns.seq,
        &appended_at,
        &appended.ms,
        &columns.event,
        &columns.body,
        &columns.prev_hash,
        &columns.hash,
        &columns.patient,
        &columns.outcome,
        &columns.recorded_ms,
        &columns.alert,
        &columns.client,
        &columns.org,
        &columns.person,
    ];
    let head_params: [&(dyn ToSql + Sync); 2] = [&head_seq, &head_hash];
    let insert_records = tx.execute(&records, &record_params);
    let insert_agents = async {
        if columns.agent.is_empty() {
            return Ok(0);
        }
        tx.execute(&agents, &[&columns.agent, &columns.agent_seq])
            .await
    };
    let move_head = tx.execute(&head, &head_params);
    tokio::try_join!(insert_records, insert_agents, move_head)?;
    Ok(())
}

async fn insert_checkpoint(tx: &Transaction<'_>, checkpoint: &Checkpoint) -> Result<(), OpError> {
    tx.execute(
        INSERT_CHECKPOINT,
        &[
            &sql_seq(checkpoint.seq)?,
            &checkpoint.hash.as_slice(),
            &i64::try_from(checkpoint.interval).unwrap_or(i64::MAX),
            &checkpoint.created_at,
            &checkpoint.key_id,
            &checkpoint.signature.as_slice(),
        ],
    )
    .await?;
    Ok(())
}

/// `Ok(Err(..))`: refused (unknown alert, acknowledged already); `Err`: the
/// batch failed.
async fn acknowledge(
    tx: &Transaction<'_>,
    seq: u64,
    ack: &Acknowledgement,
) -> Result<Result<(), AuditError>, OpError> {
    let Ok(sql) = i64::try_from(seq) else {
        return Ok(Err(AuditError::AlertNotFound(seq)));
    };
    let state = tx.query_opt(ALERT_STATE, &[&sql]).await?;
    let (alert, acknowledged) = match state {
        Some(row) => (row.try_get::<_, bool>(0)?, row.try_get::<_, bool>(1)?),
        None => (false, false),
    };
    if !alert {
        return Ok(Err(AuditError::AlertNotFound(seq)));
    }
    if acknowledged {
        return Ok(Err(AuditError::AlreadyAcknowledged(seq)));
    }
    tx.execute(INSERT_ACK, &[&sql, &ack.by, &ack.at, &ack.note])
        .await?;
    Ok(Ok(()))
}
