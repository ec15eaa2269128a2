//! An in-memory audit log: the same chain and checkpoints as SQLite, for
//! tests and for `--store memory` runs. Nothing survives the process.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use fhir::AuditEvent;

use crate::chain::{ChainHead, GENESIS, PreparedEvent};
use crate::verify::{StoredRow, Verifier};
use crate::{
    Acknowledgement, Alert, AlertQuery, AuditError, AuditFacts, AuditLog, AuditPage, AuditQuery,
    AuditRecord, Checkpoint, CheckpointPolicy, CheckpointSigner, VerifyError, VerifyOptions,
    VerifyReport,
};

struct State {
    rows: Vec<StoredRow>,
    checkpoints: Vec<Checkpoint>,
    acks: HashMap<u64, Acknowledgement>,
    head: ChainHead,
    /// The highest audit outbox id taken from each source.
    moved: HashMap<String, u64>,
}

/// An [`AuditLog`] in memory.
pub struct MemoryAuditLog {
    state: Mutex<State>,
    signer: CheckpointSigner,
    policy: CheckpointPolicy,
}

impl MemoryAuditLog {
    /// An empty log whose checkpoints `signer` signs.
    pub fn new(signer: CheckpointSigner, policy: CheckpointPolicy) -> MemoryAuditLog {
        MemoryAuditLog {
            state: Mutex::new(State {
                rows: Vec::new(),
                checkpoints: Vec::new(),
                acks: HashMap::new(),
                head: ChainHead::new(0, GENESIS, 0),
                moved: HashMap::new(),
            }),
            signer,
            policy,
        }
    }

    // Nothing panics while holding the lock, and the state stays consistent
    // at every await-free step, so poisoning is ignored.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Chains `events` onto the head, then stores the checkpoints due:
    /// the same rules as the writers of the other backends.
    fn chain(&self, state: &mut State, events: Vec<PreparedEvent>, forced: bool) -> Vec<u64> {
        let appended_at = crate::event::now_rfc3339();
        let mut links = state.head.links(&self.policy);
        let mut seqs = Vec::with_capacity(events.len());
        for event in events {
            let (seq, prev_hash, hash) = links.push(&appended_at, &event.body);
            state.rows.push(StoredRow {
                // Rendered when read, as the other backends do.
                record: AuditRecord::stored(
                    seq,
                    appended_at.clone(),
                    event.body,
                    prev_hash,
                    hash,
                    false,
                ),
                fields: event.fields,
            });
            seqs.push(seq);
        }
        let checkpoints = state
            .head
            .checkpoints_for(&links, &self.signer, &self.policy, forced);
        state.head.advance(links.seq, links.hash);
        if let Some(last) = checkpoints.last() {
            state.head.checkpointed(last.seq);
        }
        state.checkpoints.extend(checkpoints);
        seqs
    }
}

/// A copy of `record` with its event JSON, rendered if compact.
fn rendered(record: &AuditRecord) -> AuditRecord {
    let mut copy = record.clone();
    if record.compact.is_some() {
        copy.event_json = record.body().render();
    }
    copy
}

#[async_trait]
impl AuditLog for MemoryAuditLog {
    async fn record(&self, node: &str, facts: Vec<AuditFacts>) -> Result<Vec<u64>, AuditError> {
        let prepared = facts
            .iter()
            .map(|f| PreparedEvent::compact(f, node))
            .collect();
        let mut state = self.lock();
        Ok(self.chain(&mut state, prepared, false))
    }

    async fn record_moved(
        &self,
        source: &str,
        entries: Vec<(u64, Vec<u8>)>,
    ) -> Result<(), AuditError> {
        let (entries, through) = crate::batch::prepare_moved(entries)?;
        let mut state = self.lock();
        let floor = state.moved.get(source).copied().unwrap_or(0);
        let events = entries
            .into_iter()
            .filter(|(id, _)| *id > floor)
            .map(|(_, event)| event)
            .collect();
        self.chain(&mut state, events, false);
        state.moved.insert(source.to_owned(), floor.max(through));
        Ok(())
    }

    async fn append(&self, events: Vec<AuditEvent>) -> Result<Vec<u64>, AuditError> {
        let prepared = events
            .iter()
            .map(PreparedEvent::new)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| AuditError::Serialise(e.to_string()))?;
        let mut state = self.lock();
        Ok(self.chain(&mut state, prepared, false))
    }

    async fn search(&self, query: &AuditQuery) -> Result<AuditPage, AuditError> {
        let state = self.lock();
        let count = query.count.max(1);
        let mut matching = state
            .rows
            .iter()
            .rev()
            .filter(|row| query.matches(row.record.seq, &row.fields));
        let records: Vec<AuditRecord> = matching
            .by_ref()
            .take(count)
            .map(|row| rendered(&row.record))
            .collect();
        let next_before_seq = match (matching.next(), records.last()) {
            (Some(_), Some(last)) => Some(last.seq),
            _ => None,
        };
        Ok(AuditPage {
            records,
            next_before_seq,
        })
    }

    async fn get(&self, seq: u64) -> Result<Option<AuditRecord>, AuditError> {
        let state = self.lock();
        Ok(seq
            .checked_sub(1)
            .and_then(|i| state.rows.get(usize::try_from(i).ok()?))
            .map(|row| rendered(&row.record)))
    }

    async fn alerts(&self, query: &AlertQuery) -> Result<Vec<Alert>, AuditError> {
        let state = self.lock();
        Ok(state
            .rows
            .iter()
            .rev()
            .filter(|row| query.before_seq.is_none_or(|b| row.record.seq < b))
            .filter_map(|row| {
                let kind = row.fields.alert.clone()?;
                let acknowledgement = state.acks.get(&row.record.seq).cloned();
                (!query.unacknowledged_only || acknowledgement.is_none()).then(|| Alert {
                    record: rendered(&row.record),
                    kind,
                    acknowledgement,
                })
            })
            .take(query.count.max(1))
            .collect())
    }

    async fn acknowledge(&self, seq: u64, ack: Acknowledgement) -> Result<(), AuditError> {
        let mut state = self.lock();
        let is_alert = seq
            .checked_sub(1)
            .and_then(|i| state.rows.get(usize::try_from(i).ok()?))
            .is_some_and(|row| row.fields.alert.is_some());
        if !is_alert {
            return Err(AuditError::AlertNotFound(seq));
        }
        if state.acks.contains_key(&seq) {
            return Err(AuditError::AlreadyAcknowledged(seq));
        }
        let event = PreparedEvent::new(&ack.to_event(seq))
            .map_err(|e| AuditError::Serialise(e.to_string()))?;
        self.chain(&mut state, vec![event], false);
        state.acks.insert(seq, ack);
        Ok(())
    }

    async fn checkpoint(&self) -> Result<Option<Checkpoint>, AuditError> {
        let mut state = self.lock();
        let before = state.checkpoints.len();
        self.chain(&mut state, Vec::new(), true);
        Ok(state
            .checkpoints
            .get(before..)
            .and_then(|new| new.last().cloned()))
    }

    async fn verify(&self, options: &VerifyOptions) -> Result<VerifyReport, VerifyError> {
        let state = self.lock();
        let acks = state.acks.iter().map(|(s, a)| (*s, a.clone())).collect();
        let mut verifier = Verifier::new(options, state.checkpoints.clone(), acks);
        for row in &state.rows {
            verifier.push(row)?;
        }
        Ok(verifier.finish()?)
    }

    async fn health(&self) -> Result<(), AuditError> {
        Ok(())
    }

    fn backend(&self) -> &'static str {
        "memory"
    }
}
