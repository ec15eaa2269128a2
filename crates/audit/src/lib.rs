//! The nrls audit trail: one FHIR `AuditEvent` per request that touches
//! patient data, in an append-only log that shows any tampering.
//!
//! - [`event`] builds the `AuditEvent` (IHE BALP) from a request's facts.
//! - [`chain`] links each record to the previous one by SHA-256, and walks
//!   the chain in `verify`, naming the first bad record.
//! - [`checkpoint`] signs the chain head with the node's Ed25519 key every
//!   [`CheckpointPolicy::records`] records or [`CheckpointPolicy::seconds`].
//! - [`AuditLog`] is the storage contract; [`postgres::PostgresAuditLog`]
//!   (tables in the shared nrls database, one chain for every node),
//!   [`sqlite::SqliteAuditLog`] (its own `audit.db`, WAL, `synchronous=FULL`,
//!   group commit) and [`memory::MemoryAuditLog`] implement it.
//!
//! Privacy-officer alerts are not stored separately: an event whose access
//! decision raised an alert (self-claimed, break-glass) *is* the alert, so an
//! alert exists exactly when its audit record does. An acknowledgement is a
//! record of the chain too ([`acknowledgement`]); the `alert_acks` table is
//! its index, which `verify` holds to the chain.

pub mod acknowledgement;
mod batch;
pub mod chain;
pub mod checkpoint;
pub mod compact;
pub mod event;
pub mod fields;
pub mod memory;
pub mod outbox;
pub mod postgres;
mod query;
pub mod sqlite;
mod verify;

use std::sync::Arc;

use async_trait::async_trait;
use fhir::AuditEvent;

pub use batch::WriteStats;
pub use chain::{
    Anchor, AuditRecord, Body, CheckpointPolicy, DEFAULT_TOLERANCE_SECONDS, Hash, Tamper,
    TamperKind, VerifyOptions, VerifyReport,
};
pub use checkpoint::{Checkpoint, CheckpointKey, CheckpointSigner, CheckpointVersion};
pub use event::{
    AccessFacts, AuditFacts, AuditOutcome, AuditUser, Interaction, SessionEvent,
    USER_AUTHENTICATION, now_rfc3339,
};
pub use query::{Acknowledgement, Alert, AlertQuery, AuditCursor, AuditPage, AuditQuery};

/// Why an audit operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuditError {
    /// The log cannot be written or read now; the request must fail (503):
    /// a response without its audit record is not allowed.
    #[error("audit log unavailable: {0}")]
    Unavailable(String),
    /// A fault of ours (a bug or a corrupt file): 500.
    #[error("audit log failure: {0}")]
    Internal(String),
    /// The checkpoint key cannot be read, created or parsed.
    #[error("audit signing key: {0}")]
    Key(String),
    /// No record with this seq raised an alert: 404.
    #[error("no alert with seq {0}")]
    AlertNotFound(u64),
    /// Each alert is acknowledged once: 409.
    #[error("alert {0} is already acknowledged")]
    AlreadyAcknowledged(u64),
    /// An event that cannot become JSON (never for events built by `AuditFacts`).
    #[error("an audit event could not be serialised: {0}")]
    Serialise(String),
}

/// Why `verify` failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The log was tampered with; the first bad record is named.
    #[error(transparent)]
    Tampered(#[from] Tamper),
    /// The log could not be read.
    #[error(transparent)]
    Storage(#[from] AuditError),
}

/// The audit log contract. Every backend keeps the same chain and checkpoint
/// rules (see `chain`) and passes the same behaviour tests.
#[async_trait]
pub trait AuditLog: Send + Sync + 'static {
    /// Appends events in order and returns their sequence numbers. Durable
    /// before it returns: the HTTP layer answers only after this is `Ok`.
    async fn append(&self, events: Vec<AuditEvent>) -> Result<Vec<u64>, AuditError>;

    /// Appends the facts of requests observed by `node`, in order, as
    /// compact records (format 2, see [`compact`]); reads render each as
    /// `facts.to_event(node)`. Durable before it returns, as `append`.
    async fn record(&self, node: &str, facts: Vec<AuditFacts>) -> Result<Vec<u64>, AuditError>;

    /// Chains records moved from the pointer store's audit outbox
    /// (`entries`: outbox id and compact record, see [`outbox`]), skipping,
    /// in the same transaction, every entry the log already took, so a
    /// move repeated after a crash appends nothing twice. Durable before it
    /// returns, as `append`.
    ///
    /// How a backend knows what it took: SQLite keeps the highest outbox id
    /// per `source` (the embedded store hands ids out in commit order);
    /// PostgreSQL deletes each outbox row in the transaction that chains it
    /// (there a lower id may commit after a higher one).
    ///
    /// The default refuses: a backend overrides it when its node's store
    /// keeps an audit outbox.
    async fn record_moved(
        &self,
        source: &str,
        entries: Vec<(u64, Vec<u8>)>,
    ) -> Result<(), AuditError> {
        let _ = (source, entries);
        Err(AuditError::Internal(format!(
            "the {} audit log takes no records from an outbox",
            self.backend()
        )))
    }

    /// Records matching `query`, newest first, one page.
    async fn search(&self, query: &AuditQuery) -> Result<AuditPage, AuditError>;

    /// One record.
    async fn get(&self, seq: u64) -> Result<Option<AuditRecord>, AuditError>;

    /// Alerts (events that raised one), newest first.
    async fn alerts(&self, query: &AlertQuery) -> Result<Vec<Alert>, AuditError>;

    /// Marks an alert as reviewed. Each alert is acknowledged once. The
    /// acknowledgement is appended to the chain as its own record
    /// ([`Acknowledgement::to_event`]) in the same transaction.
    async fn acknowledge(&self, seq: u64, ack: Acknowledgement) -> Result<(), AuditError>;

    /// Signs a checkpoint now if any record is unsigned (e.g. at shutdown).
    async fn checkpoint(&self) -> Result<Option<Checkpoint>, AuditError>;

    /// Walks the whole chain and every checkpoint.
    async fn verify(&self, options: &VerifyOptions) -> Result<VerifyReport, VerifyError>;

    /// Checks the log can take appends.
    async fn health(&self) -> Result<(), AuditError>;

    /// Short name of the backend, e.g. `sqlite`.
    fn backend(&self) -> &'static str;
}

/// A shared handle on any backend.
pub type SharedAuditLog = Arc<dyn AuditLog>;

#[cfg(test)]
mod tests;
