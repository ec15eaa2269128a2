//! The hash chain: how a record's hash is computed, how the writer extends
//! the chain, and how `verify` walks it and names the first bad record.
//!
//! `hash(n) = SHA-256(hash(n-1) || "nrls-audit-record-v1\0" || seq(8, BE)
//! || len(appended_at)(8, BE) || appended_at || len(json)(8, BE) || json)`,
//! with `hash(0)` = 32 zero bytes. The JSON is hashed exactly as stored:
//! it is serialised once at append and never re-serialised.

use std::time::Instant;

use fhir::AuditEvent;
use sha2::{Digest, Sha256};

use crate::checkpoint::{Checkpoint, CheckpointKey, CheckpointSigner, hex};
use crate::fields::SearchFields;

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// The `prev_hash` of record 1.
pub const GENESIS: Hash = [0; 32];

const RECORD_TAG: &[u8] = b"nrls-audit-record-v1\0";

/// The chain hash of one record.
pub fn record_hash(prev: &Hash, seq: u64, appended_at: &str, json: &str) -> Hash {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(RECORD_TAG);
    h.update(seq.to_be_bytes());
    h.update((appended_at.len() as u64).to_be_bytes());
    h.update(appended_at.as_bytes());
    h.update((json.len() as u64).to_be_bytes());
    h.update(json.as_bytes());
    h.finalize().into()
}

/// One stored record of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// Position in the chain, from 1.
    pub seq: u64,
    /// When the record was appended (RFC 3339), part of the hash.
    pub appended_at: String,
    /// The `AuditEvent`, exactly as hashed.
    pub event_json: String,
    /// The previous record's hash ([`GENESIS`] for seq 1).
    pub prev_hash: Hash,
    /// This record's chain hash ([`record_hash`]).
    pub hash: Hash,
}

impl AuditRecord {
    /// The stored event, parsed.
    pub fn event(&self) -> Result<AuditEvent, serde_json::Error> {
        serde_json::from_str(&self.event_json)
    }
}

/// An event ready to append: serialised, with its search fields. Built on
/// the caller's thread so the single writer thread only hashes and writes.
#[derive(Debug, Clone)]
pub(crate) struct PreparedEvent {
    pub json: String,
    pub fields: SearchFields,
}

impl PreparedEvent {
    pub(crate) fn new(event: &AuditEvent) -> Result<PreparedEvent, serde_json::Error> {
        Ok(PreparedEvent {
            json: serde_json::to_string(event)?,
            fields: SearchFields::of(event),
        })
    }
}

/// When the writer signs a checkpoint: after a batch that leaves `records`
/// or more unsigned records, or any unsigned record older than `seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointPolicy {
    /// Default 1000.
    pub records: u64,
    /// Default 60.
    pub seconds: u64,
}

impl Default for CheckpointPolicy {
    fn default() -> Self {
        CheckpointPolicy {
            records: 1000,
            seconds: 60,
        }
    }
}

/// The end of the chain, as the single writer sees it.
#[derive(Debug)]
pub(crate) struct ChainHead {
    pub seq: u64,
    pub hash: Hash,
    pub checkpointed_seq: u64,
    pub checkpointed_at: Instant,
}

impl ChainHead {
    pub(crate) fn new(seq: u64, hash: Hash, checkpointed_seq: u64) -> ChainHead {
        ChainHead {
            seq,
            hash,
            checkpointed_seq,
            checkpointed_at: Instant::now(),
        }
    }

    pub(crate) fn advance(&mut self, seq: u64, hash: Hash) {
        self.seq = seq;
        self.hash = hash;
    }

    /// Whether a checkpoint is due, given the policy and whether this is a
    /// timer tick (any unsigned record then counts).
    fn checkpoint_due(&self, policy: &CheckpointPolicy, tick: bool) -> bool {
        let unsigned = self.seq - self.checkpointed_seq;
        unsigned > 0
            && (tick
                || unsigned >= policy.records
                || self.checkpointed_at.elapsed().as_secs() >= policy.seconds)
    }

    pub(crate) fn sign(&self, signer: &CheckpointSigner, policy: &CheckpointPolicy) -> Checkpoint {
        signer.sign(
            self.seq,
            self.hash,
            policy.records,
            crate::event::now_rfc3339(),
        )
    }

    /// The checkpoint a writer signs at start over the tail a previous run
    /// left unsigned (after a crash its records waited longer than
    /// `seconds`; verify holds them to the record interval only).
    pub(crate) fn sign_recovered(
        &self,
        signer: &CheckpointSigner,
        policy: &CheckpointPolicy,
    ) -> Checkpoint {
        signer.sign_as(
            crate::CheckpointVersion::Recovered,
            self.seq,
            self.hash,
            policy.records,
            crate::event::now_rfc3339(),
        )
    }

    /// A cursor that extends the chain from this head.
    pub(crate) fn links(&self, policy: &CheckpointPolicy) -> Links {
        Links {
            seq: self.seq,
            hash: self.hash,
            unsigned: self.seq - self.checkpointed_seq.min(self.seq),
            records: policy.records.max(1),
            due: Vec::new(),
        }
    }

    /// The checkpoints to store with a batch that extended this head by
    /// `links`: one at each record that completed an interval (so no run of
    /// unsigned records is ever longer than `policy.records`, which verify
    /// holds the chain to), then one at the new head when time or a command
    /// (`forced`) asks for it.
    pub(crate) fn checkpoints_for(
        &self,
        links: &Links,
        signer: &CheckpointSigner,
        policy: &CheckpointPolicy,
        forced: bool,
    ) -> Vec<Checkpoint> {
        let created_at = crate::event::now_rfc3339();
        let mut checkpoints: Vec<Checkpoint> = links
            .due
            .iter()
            .map(|&(seq, hash)| signer.sign(seq, hash, policy.records, created_at.clone()))
            .collect();
        let head = ChainHead {
            seq: links.seq,
            hash: links.hash,
            checkpointed_seq: checkpoints.last().map_or(self.checkpointed_seq, |c| c.seq),
            checkpointed_at: self.checkpointed_at,
        };
        checkpoints.extend(head.sign_if_due(signer, policy, forced));
        checkpoints
    }

    /// The checkpoint to store with a batch that leaves the chain at this
    /// head, when one is due (`forced`: a command asked for one).
    pub(crate) fn sign_if_due(
        &self,
        signer: &CheckpointSigner,
        policy: &CheckpointPolicy,
        forced: bool,
    ) -> Option<Checkpoint> {
        self.checkpoint_due(policy, forced)
            .then(|| self.sign(signer, policy))
    }

    pub(crate) fn checkpointed(&mut self, seq: u64) {
        self.checkpointed_seq = seq;
        self.checkpointed_at = Instant::now();
    }
}

/// Extends the chain record by record, noting each record that completes
/// an interval of `records` unsigned records: a checkpoint is due there.
#[derive(Debug)]
pub(crate) struct Links {
    /// The last record chained.
    pub seq: u64,
    /// Its hash.
    pub hash: Hash,
    unsigned: u64,
    records: u64,
    /// `(seq, hash)` of each record that completed an interval.
    pub due: Vec<(u64, Hash)>,
}

impl Links {
    /// Chains one more record; returns its seq, previous hash and hash.
    pub(crate) fn push(&mut self, appended_at: &str, json: &str) -> (u64, Hash, Hash) {
        let prev = self.hash;
        self.seq += 1;
        self.hash = record_hash(&prev, self.seq, appended_at, json);
        self.unsigned += 1;
        if self.unsigned >= self.records {
            self.due.push((self.seq, self.hash));
            self.unsigned = 0;
        }
        (self.seq, prev, self.hash)
    }
}

/// A checkpoint held outside the audit file (from logs or monitoring):
/// `verify` then also detects a tail truncated together with its checkpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    /// The record the anchor vouches for.
    pub seq: u64,
    /// Its chain hash.
    pub hash: Hash,
}

impl Anchor {
    /// Reads `seq:hexhash`, as [`Checkpoint::anchor_text`] writes it.
    pub fn parse(text: &str) -> Option<Anchor> {
        let (seq, hash) = text.trim().split_once(':')?;
        Some(Anchor {
            seq: seq.parse().ok()?,
            hash: crate::checkpoint::unhex(hash)?.try_into().ok()?,
        })
    }
}

/// What `verify` needs besides the log.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// Public keys whose checkpoints are trusted (the node's own, plus any
    /// retired ones). A checkpoint signed by another key is tampering.
    pub keys: Vec<CheckpointKey>,
    /// An externally kept checkpoint; see [`Anchor`].
    pub anchor: Option<Anchor>,
    /// The deployment's checkpoint interval (`[audit] checkpoint_records`
    /// and `checkpoint_seconds`). `records` bounds the unsigned records
    /// before the first checkpoint; after one, the interval it signed holds.
    /// `seconds` bounds how long any record may stay unsigned.
    pub policy: CheckpointPolicy,
    /// Slack on every time comparison: clocks of nodes sharing a database
    /// differ, and a tick waits for the batch in flight. Default 0 means
    /// [`DEFAULT_TOLERANCE_SECONDS`].
    pub tolerance_seconds: u64,
    /// "Now" in Unix milliseconds, for the age of the unsigned tail (tests);
    /// `None`: the current time.
    pub now_ms: Option<i64>,
}

/// Default slack of the time rules, in seconds.
pub const DEFAULT_TOLERANCE_SECONDS: u64 = 30;

impl VerifyOptions {
    pub(crate) fn tolerance_ms(&self) -> i64 {
        let seconds = match self.tolerance_seconds {
            0 => DEFAULT_TOLERANCE_SECONDS,
            s => s,
        };
        i64::try_from(seconds.saturating_mul(1000)).unwrap_or(i64::MAX)
    }
}

/// A sound log, summarised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Records walked.
    pub records: u64,
    /// Checkpoints whose signature and hash matched.
    pub checkpoints: u64,
    /// The last record's seq (0 for an empty log).
    pub last_seq: u64,
    /// The last record's hash: with `last_seq`, an anchor for next time.
    pub last_hash: Hash,
    /// The last good checkpoint.
    pub last_checkpoint_seq: Option<u64>,
    /// Records after the last checkpoint: protected by the chain only, so a
    /// truncation of these alone is undetectable without an anchor.
    pub unsigned_tail: u64,
}

impl VerifyReport {
    /// `last_hash` in hex, as `--anchor` takes it.
    pub fn last_hash_hex(&self) -> String {
        hex(&self.last_hash)
    }
}

/// How the log was found to be tampered with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TamperKind {
    /// A record is missing: deleted, later records keeping their numbers.
    Missing,
    /// A record sits at a seq it was not written at, one below its own:
    /// records before it were deleted and the rest renumbered, or two
    /// neighbours were swapped.
    Reordered,
    /// A record's hash does not match its content: modified.
    ContentMismatch,
    /// A record is intact but its successor committed to a different hash:
    /// it was rewritten and re-hashed.
    RewrittenPredecessor,
    /// A record that does not belong: later records were renumbered up to
    /// make room for it.
    Inserted,
    /// The search columns disagree with the hashed JSON.
    IndexMismatch,
    /// A signed checkpoint disagrees with the chain: records from this one
    /// up to `checkpoint_seq` were rewritten and re-chained.
    CheckpointMismatch {
        /// The checkpoint that disagrees.
        checkpoint_seq: u64,
    },
    /// A checkpoint's signature is not from a trusted key.
    BadCheckpointSignature {
        /// The forged checkpoint.
        checkpoint_seq: u64,
    },
    /// Records a signed checkpoint (or the anchor) covers are gone.
    Truncated {
        /// How far the checkpoint or anchor says the log went.
        covered_up_to: u64,
    },
    /// More unsigned records than the interval allows: checkpoints removed.
    CheckpointMissing,
    /// Records stayed unsigned longer than `checkpoint_seconds` (plus the
    /// tolerance): checkpoints removed, or (the tail only) a node that
    /// stopped without its final checkpoint and has not been started since.
    CheckpointOverdue {
        /// Seconds the first such record stayed (or has been) unsigned.
        unsigned_for_seconds: u64,
    },
    /// A record's `appended_at` runs backwards, into the future, or before
    /// the checkpoint that precedes it: the record was rewritten.
    TimeOutOfOrder,
    /// An `alert_acks` row without its acknowledgement record in the chain
    /// (inserted to hide an open alert), or one that differs from it.
    AcknowledgementNotInChain {
        /// The alert the row claims to acknowledge.
        alert_seq: u64,
    },
    /// An acknowledgement record in the chain whose `alert_acks` row is
    /// gone or names something that is not an open alert.
    AcknowledgementMissing {
        /// The alert the chain says was acknowledged.
        alert_seq: u64,
    },
    /// The anchor's hash differs from the record at its seq.
    AnchorMismatch,
}

/// Tampering, and the first record affected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("audit log tampered with: first bad record is seq {first_bad_seq} ({kind:?})")]
pub struct Tamper {
    /// The first record that cannot be trusted.
    pub first_bad_seq: u64,
    /// What was found there.
    pub kind: TamperKind,
}
