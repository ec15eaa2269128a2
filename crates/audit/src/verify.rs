//! The walk of `verify`: records in ascending seq order, checked against
//! their hashes, their neighbours, the signed checkpoints, the checkpoint
//! interval (records and seconds) and the alert acknowledgements. It stops
//! at the first problem and names the first record that cannot be trusted.
//!
//! What the interval rules buy: without the signing key, nobody can make a
//! checkpoint, so a rewritten record must lie after the last checkpoint left
//! standing. Removing checkpoints to get there leaves a run of unsigned
//! records longer than `checkpoint_records` or older than
//! `checkpoint_seconds`, which a writer of this version never leaves.

use std::collections::{BTreeMap, HashSet};

use crate::acknowledgement::acknowledgement_of;
use crate::chain::{AuditRecord, GENESIS, Hash, Tamper, TamperKind, VerifyOptions, VerifyReport};
use crate::checkpoint::{Checkpoint, CheckpointVersion};
use crate::fields::{SearchFields, parse_instant_ms};
use crate::query::Acknowledgement;

/// A record as read back for verification, with its stored search fields.
#[derive(Debug, Clone)]
pub(crate) struct StoredRow {
    pub record: AuditRecord,
    pub fields: SearchFields,
}

/// A stored record's agents for comparison with its facts: the text agents
/// (`audit_agents`) and the names of its role columns. Each role is `None`
/// when its column is empty, `Some(None)` when it holds an id whose name is
/// gone, which reads as a name no event has, so verify flags it. One name
/// may fill two roles.
pub(crate) fn stored_agents(
    mut agents: Vec<String>,
    roles: [Option<Option<String>>; 3],
) -> Vec<String> {
    let mut named: Vec<String> = roles
        .into_iter()
        .flatten()
        .map(|name| name.unwrap_or_else(|| "\u{0}missing".to_owned()))
        .collect();
    named.sort_unstable();
    named.dedup();
    agents.extend(named);
    agents.sort_unstable();
    agents
}

fn bad<T>(first_bad_seq: u64, kind: TamperKind) -> Result<T, Tamper> {
    Err(Tamper {
        first_bad_seq,
        kind,
    })
}

/// Walks records in ascending seq order and stops at the first problem.
pub(crate) struct Verifier<'o> {
    options: &'o VerifyOptions,
    checkpoints: BTreeMap<u64, Checkpoint>,
    expected: u64,
    last: Hash,
    before_last: Hash,
    last_good_checkpoint: Option<Checkpoint>,
    checkpoints_seen: u64,
    /// `appended_at` of the first record after the last good checkpoint.
    unsigned_since_ms: Option<i64>,
    /// `appended_at` of the previous record.
    previous_ms: Option<i64>,
    /// `created_at` of the last good checkpoint: later records are newer.
    signed_at_ms: Option<i64>,
    now_ms: i64,
    tolerance_ms: i64,
    seconds_ms: i64,
    /// Seqs of records that raised an alert.
    alerts: HashSet<u64>,
    /// Acknowledgements as the chain records them, by alert seq.
    chain_acks: BTreeMap<u64, Acknowledgement>,
    /// Acknowledgements as `alert_acks` holds them, by alert seq.
    table_acks: BTreeMap<u64, Acknowledgement>,
}

impl<'o> Verifier<'o> {
    pub(crate) fn new(
        options: &'o VerifyOptions,
        checkpoints: Vec<Checkpoint>,
        acks: Vec<(u64, Acknowledgement)>,
    ) -> Verifier<'o> {
        let now_ms = options
            .now_ms
            .or_else(|| parse_instant_ms(&crate::event::now_rfc3339()))
            .unwrap_or(i64::MAX);
        let seconds_ms = options.policy.seconds.max(1).saturating_mul(1000);
        Verifier {
            options,
            checkpoints: checkpoints.into_iter().map(|c| (c.seq, c)).collect(),
            expected: 1,
            last: GENESIS,
            before_last: GENESIS,
            last_good_checkpoint: None,
            checkpoints_seen: 0,
            unsigned_since_ms: None,
            previous_ms: None,
            signed_at_ms: None,
            now_ms,
            tolerance_ms: options.tolerance_ms(),
            seconds_ms: i64::try_from(seconds_ms).unwrap_or(i64::MAX),
            alerts: HashSet::new(),
            chain_acks: BTreeMap::new(),
            table_acks: acks.into_iter().collect(),
        }
    }

    fn version(&self, checkpoint: &Checkpoint) -> Option<CheckpointVersion> {
        self.options
            .keys
            .iter()
            .find_map(|k| k.version_of(checkpoint))
    }

    fn since_last_checkpoint(&self) -> u64 {
        self.last_good_checkpoint.as_ref().map_or(1, |c| c.seq + 1)
    }

    /// How long past the allowed `seconds` a record first unsigned at
    /// `since_ms` stayed unsigned until `until_ms`, if it did.
    fn overdue(&self, since_ms: i64, until_ms: i64) -> Option<TamperKind> {
        let unsigned = until_ms.saturating_sub(since_ms);
        (unsigned > self.seconds_ms.saturating_add(self.tolerance_ms)).then(|| {
            TamperKind::CheckpointOverdue {
                unsigned_for_seconds: u64::try_from(unsigned / 1000).unwrap_or(0),
            }
        })
    }

    pub(crate) fn push(&mut self, row: &StoredRow) -> Result<(), Tamper> {
        let r = &row.record;
        self.check_link(r)?;
        let modified = Tamper {
            first_bad_seq: r.seq,
            kind: TamperKind::ContentMismatch,
        };
        // A compact record is never an acknowledgement: those are JSON.
        let (fields, acknowledgement) = match &r.compact {
            Some(bytes) => {
                let (facts, _) = crate::compact::decode(bytes).map_err(|_| modified)?;
                (SearchFields::of_facts(&facts), None)
            }
            None => {
                let event = r.event().map_err(|_| modified)?;
                (SearchFields::of(&event), acknowledgement_of(&event))
            }
        };
        if fields != row.fields {
            return bad(r.seq, TamperKind::IndexMismatch);
        }
        self.check_time(r)?;
        if row.fields.alert.is_some() {
            self.alerts.insert(r.seq);
        }
        if let Some((alert_seq, ack)) = acknowledgement {
            // Writers acknowledge an alert once, after it was appended.
            if !self.alerts.contains(&alert_seq) || self.chain_acks.contains_key(&alert_seq) {
                return bad(r.seq, TamperKind::AcknowledgementMissing { alert_seq });
            }
            self.chain_acks.insert(alert_seq, ack);
        }
        if let Some(checkpoint) = self.checkpoints.remove(&r.seq) {
            self.check_checkpoint(r, checkpoint)?;
        }
        if let Some(anchor) = &self.options.anchor
            && anchor.seq == r.seq
            && anchor.hash != r.hash
        {
            return bad(self.since_last_checkpoint(), TamperKind::AnchorMismatch);
        }
        self.before_last = self.last;
        self.last = r.hash;
        self.expected += 1;
        Ok(())
    }

    /// The record's own hash and its link to the previous record.
    fn check_link(&self, r: &AuditRecord) -> Result<(), Tamper> {
        if r.seq != self.expected {
            // Rows come in seq order and seq is unique, so a different seq is
            // always a gap: the expected record is gone.
            return bad(self.expected, TamperKind::Missing);
        }
        let self_consistent = r.hash_at(&r.prev_hash, r.seq) == r.hash;
        let linked = r.prev_hash == self.last;
        match (self_consistent, linked) {
            (true, true) => Ok(()),
            (true, false) if r.seq > 1 && r.prev_hash == self.before_last => {
                bad(r.seq - 1, TamperKind::Inserted)
            }
            (true, false) if r.seq > 1 => bad(r.seq - 1, TamperKind::RewrittenPredecessor),
            (true, false) => bad(r.seq, TamperKind::ContentMismatch),
            (false, _) => {
                let was = |seq| r.hash_at(&r.prev_hash, seq) == r.hash;
                // Renumbered up by one: something was inserted before it.
                if r.seq > 1 && was(r.seq - 1) && r.prev_hash == self.before_last {
                    return bad(r.seq - 1, TamperKind::Inserted);
                }
                // Moved down: a deletion before it, or a swap with its neighbour.
                if was(r.seq + 1) {
                    return bad(r.seq, TamperKind::Reordered);
                }
                bad(r.seq, TamperKind::ContentMismatch)
            }
        }
    }

    /// `appended_at` only moves forward (within the tolerance), never past
    /// now, and never before the checkpoint that precedes the record.
    fn check_time(&mut self, r: &AuditRecord) -> Result<(), Tamper> {
        let Some(at) = parse_instant_ms(&r.appended_at) else {
            return bad(r.seq, TamperKind::TimeOutOfOrder);
        };
        let floor = self.previous_ms.max(self.signed_at_ms);
        if at > self.now_ms.saturating_add(self.tolerance_ms)
            || floor.is_some_and(|f| at < f.saturating_sub(self.tolerance_ms))
        {
            return bad(r.seq, TamperKind::TimeOutOfOrder);
        }
        self.previous_ms = Some(at);
        self.unsigned_since_ms.get_or_insert(at);
        Ok(())
    }

    fn check_checkpoint(&mut self, r: &AuditRecord, checkpoint: Checkpoint) -> Result<(), Tamper> {
        let run_start = self.since_last_checkpoint();
        let Some(version) = self.version(&checkpoint) else {
            return bad(
                r.seq,
                TamperKind::BadCheckpointSignature {
                    checkpoint_seq: r.seq,
                },
            );
        };
        if checkpoint.hash != r.hash {
            return bad(
                run_start,
                TamperKind::CheckpointMismatch {
                    checkpoint_seq: r.seq,
                },
            );
        }
        // A version-2 signer never lets a run exceed the interval it signs,
        // so a longer run means checkpoints inside it were deleted.
        let run = r.seq + 1 - run_start;
        if version != CheckpointVersion::V1 && run > checkpoint.interval.max(1) {
            return bad(run_start, TamperKind::CheckpointMissing);
        }
        let signed_at = parse_instant_ms(&checkpoint.created_at);
        // A checkpoint signed at start closes what a crashed run left
        // unsigned: late by nature, so only the record interval holds.
        if version != CheckpointVersion::Recovered
            && let (Some(since), Some(signed_at)) = (self.unsigned_since_ms, signed_at)
            && let Some(kind) = self.overdue(since, signed_at)
        {
            return bad(run_start, kind);
        }
        self.signed_at_ms = signed_at.or(self.signed_at_ms);
        self.unsigned_since_ms = None;
        self.checkpoints_seen += 1;
        self.last_good_checkpoint = Some(checkpoint);
        Ok(())
    }

    pub(crate) fn finish(self) -> Result<VerifyReport, Tamper> {
        let last_seq = self.expected - 1;
        // Checkpoints beyond the end: trusted ones prove records were cut off.
        if let Some(beyond) = self.checkpoints.values().next() {
            let kind = if self.version(beyond).is_some() {
                TamperKind::Truncated {
                    covered_up_to: beyond.seq,
                }
            } else {
                TamperKind::BadCheckpointSignature {
                    checkpoint_seq: beyond.seq,
                }
            };
            return bad(last_seq + 1, kind);
        }
        if let Some(anchor) = &self.options.anchor
            && anchor.seq > last_seq
        {
            return bad(
                last_seq + 1,
                TamperKind::Truncated {
                    covered_up_to: anchor.seq,
                },
            );
        }
        let signed_up_to = self.last_good_checkpoint.as_ref().map_or(0, |c| c.seq);
        let unsigned_tail = last_seq - signed_up_to;
        // The interval the last checkpoint signed is the one its writer
        // kept; before any checkpoint, the deployment's.
        let allowed = self
            .last_good_checkpoint
            .as_ref()
            .map_or(self.options.policy.records, |c| c.interval);
        if unsigned_tail >= allowed.max(1) {
            return bad(signed_up_to + 1, TamperKind::CheckpointMissing);
        }
        self.check_acks()?;
        // A live node signs its tail every `seconds`; a stopped one signed
        // it at shutdown (or does at its next start, after a crash).
        if let Some(since) = self.unsigned_since_ms
            && let Some(kind) = self.overdue(since, self.now_ms)
        {
            return bad(signed_up_to + 1, kind);
        }
        Ok(VerifyReport {
            records: last_seq,
            checkpoints: self.checkpoints_seen,
            last_seq,
            last_hash: self.last,
            last_checkpoint_seq: self.last_good_checkpoint.map(|c| c.seq),
            unsigned_tail,
        })
    }

    /// `alert_acks` says exactly what the chain's acknowledgement records say.
    fn check_acks(&self) -> Result<(), Tamper> {
        for (&alert_seq, ack) in &self.table_acks {
            if self.chain_acks.get(&alert_seq) != Some(ack) {
                return bad(
                    alert_seq,
                    TamperKind::AcknowledgementNotInChain { alert_seq },
                );
            }
        }
        if let Some(&alert_seq) = self
            .chain_acks
            .keys()
            .find(|seq| !self.table_acks.contains_key(seq))
        {
            return bad(alert_seq, TamperKind::AcknowledgementMissing { alert_seq });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::{CheckpointPolicy, record_hash};
    use crate::checkpoint::CheckpointSigner;
    use crate::tests::{event, options_for, signer};

    /// Two records appended at 10:00 and a checkpoint over them signed at
    /// 12:00 (a node that crashed at 10:00 and started again at 12:00).
    fn late_checkpoint(version: CheckpointVersion) -> Result<VerifyReport, Tamper> {
        let signer: CheckpointSigner = signer();
        let mut rows = Vec::new();
        let mut prev = GENESIS;
        for seq in 1..=2u64 {
            let json = serde_json::to_string(&event("a", 0, seq as u32)).unwrap();
            let appended_at = "2026-03-01T10:00:00.000Z".to_owned();
            let hash = record_hash(&prev, seq, &appended_at, &json);
            let record = AuditRecord {
                seq,
                appended_at,
                event_json: json,
                prev_hash: prev,
                hash,
                compact: None,
            };
            let fields = SearchFields::of(&record.event().unwrap());
            rows.push(StoredRow { record, fields });
            prev = hash;
        }
        let checkpoint = signer.sign_as(version, 2, prev, 10, "2026-03-01T12:00:00.000Z".into());
        let options = VerifyOptions {
            now_ms: parse_instant_ms("2026-03-01T12:00:01Z"),
            ..options_for(CheckpointPolicy {
                records: 10,
                seconds: 60,
            })
        };
        let mut verifier = Verifier::new(&options, vec![checkpoint], Vec::new());
        for row in &rows {
            verifier.push(row)?;
        }
        verifier.finish()
    }

    #[test]
    fn a_late_checkpoint_is_overdue_unless_signed_at_start_after_a_crash() {
        let late = late_checkpoint(CheckpointVersion::V2).unwrap_err();
        assert_eq!(late.first_bad_seq, 1);
        assert!(
            matches!(late.kind, TamperKind::CheckpointOverdue { .. }),
            "{late:?}"
        );
        let recovered = late_checkpoint(CheckpointVersion::Recovered).unwrap();
        assert_eq!(recovered.last_checkpoint_seq, Some(2));
    }
}
