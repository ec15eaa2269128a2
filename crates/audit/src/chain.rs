//! The hash chain: how a record's hash is computed, how the writer extends
//! the chain, and how `verify` walks it and names the first bad record.
//!
//! A record is stored in one of two formats, and the chain hashes exactly
//! what is stored:
//!
//! - format 1, the `AuditEvent` JSON: `hash(n) = SHA-256(hash(n-1) ||
//!   "nrls-audit-record-v1\0" || seq(8, BE) || len(appended_at)(8, BE) ||
//!   appended_at || len(json)(8, BE) || json)`. Serialised once at append,
//!   never re-serialised. Acknowledgements, and events appended as events,
//!   are kept this way; so is every record written before format 2.
//! - format 2, the compact facts ([`crate::compact`]): the same with the tag
//!   `"nrls-audit-record-v2\0"` and the compact bytes in place of the JSON.
//!   Requests' records are kept this way; the `AuditEvent` is rendered from
//!   the facts when read.
//!
//! `hash(0)` = 32 zero bytes. The two tags keep a record of one format from
//! ever hashing like a record of the other.

use std::time::Instant;

use fhir::AuditEvent;
use sha2::{Digest, Sha256};

use crate::AuditError;
use crate::checkpoint::{Checkpoint, CheckpointKey, CheckpointSigner, hex};
use crate::event::AuditFacts;
use crate::fields::SearchFields;

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// The `prev_hash` of record 1.
pub const GENESIS: Hash = [0; 32];

const RECORD_TAG: &[u8] = b"nrls-audit-record-v1\0";
const COMPACT_TAG: &[u8] = b"nrls-audit-record-v2\0";

fn tagged_hash(tag: &[u8], prev: &Hash, seq: u64, appended_at: &str, body: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(tag);
    h.update(seq.to_be_bytes());
    h.update((appended_at.len() as u64).to_be_bytes());
    h.update(appended_at.as_bytes());
    h.update((body.len() as u64).to_be_bytes());
    h.update(body);
    h.finalize().into()
}

/// The chain hash of one format-1 (JSON) record.
pub fn record_hash(prev: &Hash, seq: u64, appended_at: &str, json: &str) -> Hash {
    tagged_hash(RECORD_TAG, prev, seq, appended_at, json.as_bytes())
}

/// The chain hash of one format-2 (compact) record.
pub fn compact_record_hash(prev: &Hash, seq: u64, appended_at: &str, compact: &[u8]) -> Hash {
    tagged_hash(COMPACT_TAG, prev, seq, appended_at, compact)
}

/// How a compact body starts when kept as text.
pub const COMPACT_TEXT_PREFIX: &str = "c2:";

/// What one record stores and the chain hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// Format 1: the `AuditEvent` JSON.
    Json(String),
    /// Format 2: the compact facts ([`crate::compact`]).
    Compact(Vec<u8>),
}

impl Body {
    /// The chain hash of a record with this body.
    pub fn hash(&self, prev: &Hash, seq: u64, appended_at: &str) -> Hash {
        match self {
            Body::Json(json) => record_hash(prev, seq, appended_at, json),
            Body::Compact(bytes) => compact_record_hash(prev, seq, appended_at, bytes),
        }
    }

    /// Reads a body kept as text, as PostgreSQL's `event` column held compact
    /// records before its schema step 7: [`COMPACT_TEXT_PREFIX`] and the
    /// base64 (no padding) of the facts, or JSON (which always starts with
    /// `{`). Text that is neither stays JSON, which verify then finds
    /// modified.
    pub fn from_text(text: String) -> Body {
        use base64::Engine;
        match text
            .strip_prefix(COMPACT_TEXT_PREFIX)
            .map(|b64| base64::engine::general_purpose::STANDARD_NO_PAD.decode(b64))
        {
            Some(Ok(bytes)) => Body::Compact(bytes),
            _ => Body::Json(text),
        }
    }

    /// The `AuditEvent` JSON: as stored, or rendered from the facts. A
    /// compact body that does not decode (a damaged file; verify names it)
    /// renders as `null`.
    pub fn render(&self) -> String {
        match self {
            Body::Json(json) => json.clone(),
            Body::Compact(bytes) => render_compact(bytes),
        }
    }
}

fn render_compact(bytes: &[u8]) -> String {
    match crate::compact::decode(bytes) {
        Ok((facts, node)) => {
            serde_json::to_string(&facts.to_event(&node)).unwrap_or_else(|_| "null".to_owned())
        }
        Err(error) => {
            tracing::warn!(%error, "an audit record does not decode");
            "null".to_owned()
        }
    }
}

/// One stored record of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// Position in the chain, from 1.
    pub seq: u64,
    /// When the record was appended (RFC 3339), part of the hash.
    pub appended_at: String,
    /// The `AuditEvent` JSON: exactly as hashed for a format-1 record,
    /// rendered from the facts for a format-2 one.
    pub event_json: String,
    /// The previous record's hash ([`GENESIS`] for seq 1).
    pub prev_hash: Hash,
    /// This record's chain hash ([`Body::hash`]).
    pub hash: Hash,
    /// The compact facts as stored and hashed, for a format-2 record;
    /// `None` for a format-1 record, whose JSON is what was hashed.
    pub compact: Option<Vec<u8>>,
}

impl AuditRecord {
    /// A record read back from storage; `render`: fill `event_json` from a
    /// compact body (verify needs only the body).
    pub(crate) fn stored(
        seq: u64,
        appended_at: String,
        body: Body,
        prev_hash: Hash,
        hash: Hash,
        render: bool,
    ) -> AuditRecord {
        let (event_json, compact) = match body {
            Body::Json(json) => (json, None),
            Body::Compact(bytes) => {
                let json = if render {
                    render_compact(&bytes)
                } else {
                    String::new()
                };
                (json, Some(bytes))
            }
        };
        AuditRecord {
            seq,
            appended_at,
            event_json,
            prev_hash,
            hash,
            compact,
        }
    }

    /// What was stored and hashed.
    pub fn body(&self) -> Body {
        match &self.compact {
            Some(bytes) => Body::Compact(bytes.clone()),
            None => Body::Json(self.event_json.clone()),
        }
    }

    /// This record's hash as its content says, were it at `seq` after `prev`.
    pub(crate) fn hash_at(&self, prev: &Hash, seq: u64) -> Hash {
        match &self.compact {
            Some(bytes) => compact_record_hash(prev, seq, &self.appended_at, bytes),
            None => record_hash(prev, seq, &self.appended_at, &self.event_json),
        }
    }

    /// The stored event, parsed.
    pub fn event(&self) -> Result<AuditEvent, serde_json::Error> {
        serde_json::from_str(&self.event_json)
    }
}

/// A record ready to append: its body, with its search fields. Built on
/// the caller's thread so the single writer thread only hashes and writes.
#[derive(Debug, Clone)]
pub(crate) struct PreparedEvent {
    pub body: Body,
    pub fields: SearchFields,
    /// Which agent is which, for a compact record (backends may index the
    /// three by role); `None` for a JSON record.
    pub roles: Option<AgentRoles>,
}

/// The agents of a compact record by role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AgentRoles {
    pub client: String,
    pub org: Option<String>,
    pub person: Option<String>,
}

impl AgentRoles {
    /// The names that fill a role.
    pub(crate) fn all(&self) -> impl Iterator<Item = &str> {
        [
            Some(self.client.as_str()),
            self.org.as_deref(),
            self.person.as_deref(),
        ]
        .into_iter()
        .flatten()
    }

    /// Whether one of the three roles is `agent`.
    pub(crate) fn names(&self, agent: &str) -> bool {
        self.all().any(|name| name == agent)
    }
}

/// A batch's `appended_at`, and as Unix ms when it renders back exactly
/// (always, for the text `now_rfc3339` writes): backends then store the
/// integer instead of 24 bytes of text.
pub(crate) struct Appended {
    pub text: String,
    pub ms: Option<i64>,
}

impl Appended {
    pub(crate) fn now() -> Appended {
        let text = crate::event::now_rfc3339();
        let ms = crate::compact::recorded_ms(&text).and_then(|ms| i64::try_from(ms).ok());
        Appended { text, ms }
    }
}

impl PreparedEvent {
    /// A format-1 record of `event`.
    pub(crate) fn new(event: &AuditEvent) -> Result<PreparedEvent, serde_json::Error> {
        Ok(PreparedEvent {
            body: Body::Json(serde_json::to_string(event)?),
            fields: SearchFields::of(event),
            roles: None,
        })
    }

    /// A format-2 record of `facts` observed by `node`: no JSON is built.
    pub(crate) fn compact(facts: &AuditFacts, node: &str) -> PreparedEvent {
        PreparedEvent::of_facts(crate::compact::encode(facts, node), facts)
    }

    /// The format-2 record whose canonical bytes are `bytes` (as
    /// `compact::encode` made them, e.g. kept in the store's audit outbox).
    pub(crate) fn from_compact(bytes: Vec<u8>) -> Result<PreparedEvent, AuditError> {
        let (facts, node) = crate::compact::decode(&bytes)
            .map_err(|e| AuditError::Internal(format!("an outboxed audit record: {e}")))?;
        // Chained exactly as given: re-encoding must not change a byte.
        if crate::compact::encode(&facts, &node) != bytes {
            return Err(AuditError::Internal(
                "an outboxed audit record is not in canonical form".into(),
            ));
        }
        Ok(PreparedEvent::of_facts(bytes, &facts))
    }

    fn of_facts(bytes: Vec<u8>, facts: &AuditFacts) -> PreparedEvent {
        PreparedEvent {
            body: Body::Compact(bytes),
            fields: SearchFields::of_facts(facts),
            roles: Some(AgentRoles {
                client: facts.client_id.clone(),
                org: facts.organisation.clone(),
                person: facts.user.as_ref().map(|u| u.person_id.clone()),
            }),
        }
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
    pub(crate) fn push(&mut self, appended_at: &str, body: &Body) -> (u64, Hash, Hash) {
        let prev = self.hash;
        self.seq += 1;
        self.hash = body.hash(&prev, self.seq, appended_at);
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
