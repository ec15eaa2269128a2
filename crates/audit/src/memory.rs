//! An in-memory audit log: the same chain and checkpoints as SQLite, for
//! tests and for `--store memory` runs. Nothing survives the process.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use fhir::AuditEvent;

use crate::chain::{ChainHead, GENESIS, PreparedEvent, StoredRow, Verifier, record_hash};
use crate::{
    Acknowledgement, Alert, AlertQuery, AuditError, AuditLog, AuditPage, AuditQuery, AuditRecord,
    Checkpoint, CheckpointPolicy, CheckpointSigner, VerifyError, VerifyOptions, VerifyReport,
};

struct State {
    rows: Vec<StoredRow>,
    checkpoints: Vec<Checkpoint>,
    acks: HashMap<u64, Acknowledgement>,
    head: ChainHead,
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

    fn sign_if_due(&self, state: &mut State, tick: bool) -> Option<Checkpoint> {
        let checkpoint = state.head.sign_if_due(&self.signer, &self.policy, tick)?;
        state.head.checkpointed(checkpoint.seq);
        state.checkpoints.push(checkpoint.clone());
        Some(checkpoint)
    }
}

#[async_trait]
impl AuditLog for MemoryAuditLog {
    async fn append(&self, events: Vec<AuditEvent>) -> Result<Vec<u64>, AuditError> {
        let prepared = events
            .iter()
            .map(PreparedEvent::new)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| AuditError::Serialise(e.to_string()))?;
        let appended_at = crate::event::now_rfc3339();
        let mut state = self.lock();
        let mut seqs = Vec::with_capacity(prepared.len());
        for event in prepared {
            let prev = state.head.hash;
            let seq = state.head.seq + 1;
            let hash = record_hash(&prev, seq, &appended_at, &event.json);
            state.rows.push(StoredRow {
                record: AuditRecord {
                    seq,
                    appended_at: appended_at.clone(),
                    event_json: event.json,
                    prev_hash: prev,
                    hash,
                },
                fields: event.fields,
            });
            state.head.advance(seq, hash);
            seqs.push(seq);
        }
        self.sign_if_due(&mut state, false);
        Ok(seqs)
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
            .map(|row| row.record.clone())
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
            .map(|row| row.record.clone()))
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
                    record: row.record.clone(),
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
        state.acks.insert(seq, ack);
        Ok(())
    }

    async fn checkpoint(&self) -> Result<Option<Checkpoint>, AuditError> {
        let mut state = self.lock();
        Ok(self.sign_if_due(&mut state, true))
    }

    async fn verify(&self, options: &VerifyOptions) -> Result<VerifyReport, VerifyError> {
        let state = self.lock();
        let mut verifier = Verifier::new(options, state.checkpoints.clone());
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
