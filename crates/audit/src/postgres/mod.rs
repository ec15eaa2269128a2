//! The audit trail in the nrls PostgreSQL database (tables of the pointer
//! store's schema step 3), shared by every node: one hash chain, one set of
//! checkpoints, one place for a privacy officer or a patient to look.
//!
//! - **Appends** go through a per-node group-commit task (`writer.rs`) that
//!   runs each batch in one transaction which first locks the one-row
//!   `audit_head`: batches of all nodes extend the chain one after another,
//!   so seqs stay gapless and the chain stays linear, while a batch carries
//!   every append that queued on this node during the previous commit.
//! - **Reads and verify** (`reader.rs`) use the pool like any request; verify
//!   walks the chain in one `REPEATABLE READ` snapshot, fetching rows in
//!   chunks, and also holds the chain to `audit_head` (an anchor kept inside
//!   the database: cutting off the tail without rewinding the head shows).
//! - **Checkpoints** are signed by whichever node commits the batch that makes
//!   one due, with that node's key: `verify` needs the public key of each
//!   node's key, or every node shares one key file (`[audit] signing_key_file`).
//! - Uses the pointer store's pool ([`store::postgres::Database`]) and its
//!   deadlines: a database that is away makes appends fail with
//!   `Unavailable` (HTTP 503) on time, never hang.

mod reader;
mod writer;

use std::time::Duration;

use async_trait::async_trait;
use fhir::AuditEvent;
use store::StoreError;
use store::postgres::Database;

use crate::batch::{Command, WriteStats};
use crate::{
    Acknowledgement, Alert, AlertQuery, AuditError, AuditFacts, AuditLog, AuditPage, AuditQuery,
    AuditRecord, Checkpoint, CheckpointPolicy, CheckpointSigner, VerifyError, VerifyOptions,
    VerifyReport,
};

use writer::Writer;

/// The longest a verify walk may take.
const VERIFY_BUDGET: Duration = Duration::from_secs(3600);

/// Tuning of a [`PostgresAuditLog`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PostgresAuditOptions {
    /// Most commands per transaction. Default 512.
    pub max_batch: usize,
    /// When checkpoints are signed.
    pub checkpoints: CheckpointPolicy,
}

impl Default for PostgresAuditOptions {
    fn default() -> Self {
        PostgresAuditOptions {
            max_batch: 512,
            checkpoints: CheckpointPolicy::default(),
        }
    }
}

/// An [`AuditLog`] in the shared PostgreSQL database.
pub struct PostgresAuditLog {
    db: Database,
    writer: Writer,
}

/// The pool's answer in the audit trail's terms: the one place a store error
/// becomes an [`AuditError`] (this crate never raises a store error itself).
pub(crate) fn audit_error(error: StoreError) -> AuditError {
    match error {
        StoreError::Unavailable(m) => AuditError::Unavailable(m),
        other => AuditError::Internal(other.to_string()),
    }
}

impl PostgresAuditLog {
    /// Starts this node's writer on `db` (already migrated by the pointer
    /// store) and signs any tail a previous run left unsigned.
    pub async fn open(
        db: Database,
        signer: CheckpointSigner,
        options: PostgresAuditOptions,
    ) -> Result<PostgresAuditLog, AuditError> {
        let writer = Writer::spawn(db.clone(), signer, options).await?;
        Ok(PostgresAuditLog { db, writer })
    }

    /// Transactions and records this node wrote since open.
    pub fn stats(&self) -> WriteStats {
        self.writer.stats()
    }
}

/// Verifies the audit trail in `db` (for `nrls audit verify --database`).
pub async fn verify_database(
    db: &Database,
    options: &VerifyOptions,
) -> Result<VerifyReport, VerifyError> {
    reader::verify(db, options, VERIFY_BUDGET).await
}

/// Searches the audit trail in `db` (for `nrls audit search --database`).
pub async fn search_database(db: &Database, query: &AuditQuery) -> Result<AuditPage, AuditError> {
    reader::search(db, query).await
}

#[async_trait]
impl AuditLog for PostgresAuditLog {
    async fn append(&self, events: Vec<AuditEvent>) -> Result<Vec<u64>, AuditError> {
        self.writer.queue().append(&events).await
    }

    async fn record(&self, node: &str, facts: Vec<AuditFacts>) -> Result<Vec<u64>, AuditError> {
        self.writer.queue().record(node, &facts).await
    }

    async fn record_moved(
        &self,
        source: &str,
        entries: Vec<(u64, Vec<u8>)>,
    ) -> Result<(), AuditError> {
        self.writer.queue().record_moved(source, entries).await
    }

    async fn search(&self, query: &AuditQuery) -> Result<AuditPage, AuditError> {
        reader::search(&self.db, query).await
    }

    async fn get(&self, seq: u64) -> Result<Option<AuditRecord>, AuditError> {
        reader::get(&self.db, seq).await
    }

    async fn alerts(&self, query: &AlertQuery) -> Result<Vec<Alert>, AuditError> {
        reader::alerts(&self.db, query).await
    }

    async fn acknowledge(&self, seq: u64, ack: Acknowledgement) -> Result<(), AuditError> {
        self.writer.queue().acknowledge(seq, ack).await
    }

    async fn checkpoint(&self) -> Result<Option<Checkpoint>, AuditError> {
        self.writer
            .queue()
            .send(|reply| Command::Checkpoint { reply })
            .await
    }

    async fn verify(&self, options: &VerifyOptions) -> Result<VerifyReport, VerifyError> {
        verify_database(&self.db, options).await
    }

    async fn health(&self) -> Result<(), AuditError> {
        if !self.writer.is_running() {
            return Err(AuditError::Unavailable(
                "the audit writer has stopped".into(),
            ));
        }
        reader::ping(&self.db).await
    }

    fn backend(&self) -> &'static str {
        "postgres"
    }
}

#[cfg(test)]
mod tests;
