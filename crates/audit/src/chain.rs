//! The hash chain: how a record's hash is computed, how the writer extends
//! the chain, and how `verify` walks it and names the first bad record.
//!
//! `hash(n) = SHA-256(hash(n-1) || "nrls-audit-record-v1\0" || seq(8, BE)
//! || len(appended_at)(8, BE) || appended_at || len(json)(8, BE) || json)`,
//! with `hash(0)` = 32 zero bytes. The JSON is hashed exactly as stored:
//! it is serialised once at append and never re-serialised.

use std::collections::BTreeMap;
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
    /// With no checkpoint at all, more records than this is tampering
    /// (someone removed every checkpoint). Default: the policy's `records`.
    pub max_unsigned: Option<u64>,
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

/// A record as read back for verification, with its stored search fields.
#[derive(Debug, Clone)]
pub(crate) struct StoredRow {
    pub record: AuditRecord,
    pub fields: SearchFields,
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
}

impl<'o> Verifier<'o> {
    pub(crate) fn new(options: &'o VerifyOptions, checkpoints: Vec<Checkpoint>) -> Verifier<'o> {
        Verifier {
            options,
            checkpoints: checkpoints.into_iter().map(|c| (c.seq, c)).collect(),
            expected: 1,
            last: GENESIS,
            before_last: GENESIS,
            last_good_checkpoint: None,
            checkpoints_seen: 0,
        }
    }

    fn trusted(&self, checkpoint: &Checkpoint) -> bool {
        self.options.keys.iter().any(|k| k.verifies(checkpoint))
    }

    fn since_last_checkpoint(&self) -> u64 {
        self.last_good_checkpoint.as_ref().map_or(1, |c| c.seq + 1)
    }

    pub(crate) fn push(&mut self, row: &StoredRow) -> Result<(), Tamper> {
        let r = &row.record;
        let bad = |first_bad_seq, kind| {
            Err(Tamper {
                first_bad_seq,
                kind,
            })
        };
        if r.seq != self.expected {
            // Rows come in seq order and seq is unique, so a different seq is
            // always a gap: the expected record is gone.
            return bad(self.expected, TamperKind::Missing);
        }
        let self_consistent =
            record_hash(&r.prev_hash, r.seq, &r.appended_at, &r.event_json) == r.hash;
        let linked = r.prev_hash == self.last;
        match (self_consistent, linked) {
            (true, true) => {}
            (true, false) if r.seq > 1 && r.prev_hash == self.before_last => {
                return bad(r.seq - 1, TamperKind::Inserted);
            }
            (true, false) if r.seq > 1 => return bad(r.seq - 1, TamperKind::RewrittenPredecessor),
            (true, false) => return bad(r.seq, TamperKind::ContentMismatch),
            (false, _) => {
                let was =
                    |seq| record_hash(&r.prev_hash, seq, &r.appended_at, &r.event_json) == r.hash;
                // Renumbered up by one: something was inserted before it.
                if r.seq > 1 && was(r.seq - 1) && r.prev_hash == self.before_last {
                    return bad(r.seq - 1, TamperKind::Inserted);
                }
                // Moved down: a deletion before it, or a swap with its neighbour.
                if was(r.seq + 1) {
                    return bad(r.seq, TamperKind::Reordered);
                }
                return bad(r.seq, TamperKind::ContentMismatch);
            }
        }
        let derived = r
            .event()
            .map(|event| SearchFields::of(&event))
            .map_err(|_| Tamper {
                first_bad_seq: r.seq,
                kind: TamperKind::ContentMismatch,
            })?;
        if derived != row.fields {
            return bad(r.seq, TamperKind::IndexMismatch);
        }
        if let Some(checkpoint) = self.checkpoints.remove(&r.seq) {
            if !self.trusted(&checkpoint) {
                return bad(
                    r.seq,
                    TamperKind::BadCheckpointSignature {
                        checkpoint_seq: r.seq,
                    },
                );
            }
            if checkpoint.hash != r.hash {
                return bad(
                    self.since_last_checkpoint(),
                    TamperKind::CheckpointMismatch {
                        checkpoint_seq: r.seq,
                    },
                );
            }
            self.checkpoints_seen += 1;
            self.last_good_checkpoint = Some(checkpoint);
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

    pub(crate) fn finish(self) -> Result<VerifyReport, Tamper> {
        let last_seq = self.expected - 1;
        // Checkpoints beyond the end: trusted ones prove records were cut off.
        if let Some(beyond) = self.checkpoints.values().next() {
            let kind = if self.trusted(beyond) {
                TamperKind::Truncated {
                    covered_up_to: beyond.seq,
                }
            } else {
                TamperKind::BadCheckpointSignature {
                    checkpoint_seq: beyond.seq,
                }
            };
            return Err(Tamper {
                first_bad_seq: last_seq + 1,
                kind,
            });
        }
        if let Some(anchor) = &self.options.anchor
            && anchor.seq > last_seq
        {
            return Err(Tamper {
                first_bad_seq: last_seq + 1,
                kind: TamperKind::Truncated {
                    covered_up_to: anchor.seq,
                },
            });
        }
        let signed_up_to = self.last_good_checkpoint.as_ref().map_or(0, |c| c.seq);
        let unsigned_tail = last_seq - signed_up_to;
        let allowed = match &self.last_good_checkpoint {
            Some(c) => c.interval,
            None => self
                .options
                .max_unsigned
                .unwrap_or(CheckpointPolicy::default().records),
        };
        if unsigned_tail >= allowed.max(1) {
            return Err(Tamper {
                first_bad_seq: signed_up_to + 1,
                kind: TamperKind::CheckpointMissing,
            });
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
}
