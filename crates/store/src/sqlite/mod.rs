//! Embedded SQLite backend: one file, no server, durable on acknowledgement.
//!
//! How it is built, and why:
//!
//! - **WAL journal.** Readers see the last committed state and never wait for
//!   the writer, and the writer never waits for readers. `synchronous=FULL`
//!   syncs the WAL on every COMMIT, so a write acknowledged with a 2xx survives
//!   a power cut.
//! - **Group commit.** SQLite allows one writer at a time and an fsync costs far
//!   more than a pointer insert, so all writes go through one thread
//!   (`writer.rs`) that owns the write connection. It blocks for the first queued
//!   write, takes whatever else is already queued (up to
//!   [`SqliteOptions::max_batch`]) and commits them in one `BEGIN IMMEDIATE`
//!   transaction: one fsync for the whole batch. Callers get their answer only
//!   after that COMMIT returned.
//! - **One savepoint per write.** Inside the batch each write runs in its own
//!   SAVEPOINT: a write that breaks a rule (duplicate id, version conflict, bad
//!   supersede target...) is rolled back alone and gets its own error, while
//!   the others commit. A supersede's checks, its deletions and its insert share
//!   one savepoint, so they happen together or not at all. If the COMMIT itself
//!   fails, every write of the batch gets `Unavailable`: none was applied.
//! - **Read pool.** [`SqliteOptions::read_connections`] read-only connections,
//!   each behind a mutex (`reader.rs`). Reads are indexed point lookups that
//!   take microseconds, so they run inline in the async methods: handing them
//!   to `spawn_blocking` would cost more (a thread hop each way) than the
//!   query. [`PointerStore::count`] is the exception in cost (it scans the
//!   smallest index) and is meant for status pages and benchmarks only.
//! - **Compressed JSON** (`crate::compression`): each row's JSON is a zstd
//!   frame made with a dictionary trained on pointers (~106 bytes for a
//!   1.8 KB synthetic pointer); the dictionaries live in the file (`json_dictionaries`) and each row
//!   names its own, so rows written with an older dictionary, or before
//!   compression, stay readable. Compression runs on the caller's thread, not
//!   the writer's.
//! - **Versioned schema** (`schema.rs`): numbered steps applied at open, tracked
//!   in `PRAGMA user_version`; a file from a newer nrls is refused.
//! - **Bulk loads** (`bulk.rs`): `import` and export paging use a separate
//!   connection opened on first use, with one large transaction per batch.

mod bulk;
mod mutations;
mod reader;
mod row;
mod schema;
pub mod setup;
mod subscriptions;
mod writer;

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use domain::{NhsNumber, OdsCode, PointerId, PointerRecord, Supersede};
use rusqlite::Connection;

use crate::compression::JsonCodec;
use crate::{ImportOutcome, PointerEvent, PointerStore, PointerWrite, StoreError, StoredPointer};

use mutations::WriteOp;
use reader::ReadPool;
use writer::Writer;

pub use writer::WriteStats;

/// Tuning of a [`SqliteStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SqliteOptions {
    /// Most writes committed in one transaction (values below 1 count as 1).
    /// Larger batches share one fsync between more writes but make the first
    /// caller of a full batch wait for all of them. Default 256.
    pub max_batch: usize,
    /// Read-only connections in the read pool (values below 1 count as 1).
    /// About the number of runtime worker threads: reads run inline on them.
    /// Default 4.
    pub read_connections: usize,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            max_batch: 256,
            read_connections: 4,
        }
    }
}

/// A [`PointerStore`] in one SQLite file. Dropping it stops the writer thread
/// (after the batch in hand) and closes the file.
pub struct SqliteStore {
    // Fields drop in order: the bulk and read connections close first so the
    // writer's connection is the last one, which checkpoints the WAL into the
    // main file on close.
    bulk: bulk::Bulk,
    subscriptions: subscriptions::Lane,
    readers: ReadPool,
    writer: Writer,
}

impl SqliteStore {
    /// Opens the database at `path`, creating the file and its parent folders
    /// if needed, and brings its schema up to date.
    ///
    /// Fails with `Internal` if the file was written by a newer nrls (its
    /// schema version is beyond the ones this build knows), and `Unavailable`
    /// if it cannot be created, opened or put in WAL mode.
    pub fn open(path: &Path, options: SqliteOptions) -> Result<SqliteStore, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                StoreError::Unavailable(format!("cannot create {}: {e}", parent.display()))
            })?;
        }
        let mut conn = Connection::open(path).map_err(row::sqlite_error)?;
        schema::configure_writer(&conn)?;
        schema::migrate(&mut conn)?;
        let codec = Arc::new(JsonCodec::new().map_err(|e| StoreError::Internal(e.to_string()))?);
        schema::register_dictionaries(&conn, &codec)?;
        // Readers open after the migration, so they never see a half-built schema.
        let readers = ReadPool::open(path, options.read_connections, Arc::clone(&codec))?;
        let writer = Writer::spawn(conn, path, options.max_batch, Arc::clone(&codec))?;
        Ok(SqliteStore {
            bulk: bulk::Bulk::new(path.to_owned(), codec),
            subscriptions: subscriptions::Lane::new(path.to_owned()),
            readers,
            writer,
        })
    }

    /// Counts of write transactions and the writes they carried since open.
    pub fn stats(&self) -> WriteStats {
        self.writer.stats()
    }
}

#[async_trait]
impl PointerStore for SqliteStore {
    async fn create(
        &self,
        record: PointerRecord,
        supersedes: Vec<Supersede>,
    ) -> Result<(), StoreError> {
        self.writer
            .submit(WriteOp::Pointer(PointerWrite::Create {
                record,
                supersedes,
            }))
            .await
    }

    async fn update(&self, record: PointerRecord, expected_version: u32) -> Result<(), StoreError> {
        self.writer
            .submit(WriteOp::Pointer(PointerWrite::Update {
                record,
                expected_version,
            }))
            .await
    }

    async fn delete(
        &self,
        id: &PointerId,
        expected_version: Option<u32>,
    ) -> Result<(), StoreError> {
        self.writer
            .submit(WriteOp::Pointer(PointerWrite::Delete {
                id: id.clone(),
                expected_version,
            }))
            .await
    }

    async fn get(&self, id: &PointerId) -> Result<Option<PointerRecord>, StoreError> {
        self.readers.get(id)
    }

    async fn patient_pointers(
        &self,
        nhs_number: NhsNumber,
    ) -> Result<Vec<StoredPointer>, StoreError> {
        self.readers.patient_pointers(nhs_number)
    }

    async fn import(&self, records: Vec<PointerRecord>) -> Result<ImportOutcome, StoreError> {
        self.bulk.import(records).await
    }

    async fn pointers_after(
        &self,
        after_seq: i64,
        limit: usize,
        custodian: Option<&OdsCode>,
    ) -> Result<Vec<StoredPointer>, StoreError> {
        self.bulk.pointers_after(after_seq, limit, custodian).await
    }

    async fn pending_events(&self, limit: usize) -> Result<Vec<PointerEvent>, StoreError> {
        self.readers.pending_events(limit)
    }

    async fn mark_dispatched(&self, seqs: &[i64]) -> Result<(), StoreError> {
        if seqs.is_empty() {
            return Ok(());
        }
        self.writer
            .submit(WriteOp::MarkDispatched {
                seqs: seqs.to_vec(),
            })
            .await
    }

    async fn write_audited(
        &self,
        write: crate::PointerWrite,
        audit: Vec<u8>,
    ) -> Result<crate::AuditKept, StoreError> {
        self.writer
            .submit_audited(write.into(), Some(audit))
            .await?;
        Ok(crate::AuditKept::WithTheChange)
    }

    async fn audit_outbox(&self, limit: usize) -> Result<Vec<crate::OutboxedAudit>, StoreError> {
        self.readers.audit_outbox(limit)
    }

    async fn remove_audit_outbox(&self, ids: &[u64]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        self.writer
            .submit(WriteOp::RemoveAuditOutbox { ids: ids.to_vec() })
            .await
    }

    async fn count(&self) -> Result<u64, StoreError> {
        self.readers.count()
    }

    async fn health(&self) -> Result<(), StoreError> {
        if !self.writer.is_running() {
            return Err(StoreError::Unavailable(
                "the sqlite writer has stopped".into(),
            ));
        }
        self.readers.health()
    }

    fn backend(&self) -> &'static str {
        "sqlite"
    }

    fn write_stats(&self) -> Option<crate::WriteStats> {
        Some(self.stats())
    }

    fn subscriptions(&self) -> Option<&dyn crate::SubscriptionStore> {
        Some(self)
    }
}

#[async_trait]
impl crate::SubscriptionStore for SqliteStore {
    async fn create_subscription(
        &self,
        record: crate::SubscriptionRecord,
    ) -> Result<(), StoreError> {
        self.subscriptions.create(record).await
    }

    async fn subscription(&self, id: &str) -> Result<Option<crate::Subscription>, StoreError> {
        self.subscriptions.get(id).await
    }

    async fn subscriptions_of(
        &self,
        owner_app: &str,
    ) -> Result<Vec<crate::Subscription>, StoreError> {
        self.subscriptions.of_owner(owner_app).await
    }

    async fn delete_subscription(&self, id: &str) -> Result<bool, StoreError> {
        self.subscriptions.delete(id).await
    }

    async fn reactivate(&self, id: &str) -> Result<bool, StoreError> {
        self.subscriptions.reactivate(id).await
    }

    async fn fan_out(&self, limit: usize, matcher: crate::Matcher) -> Result<usize, StoreError> {
        self.subscriptions.fan_out(limit, matcher).await
    }

    async fn claim_due(
        &self,
        node: &str,
        now_ms: i64,
        lease_ms: i64,
        limit: usize,
    ) -> Result<Vec<crate::Claim>, StoreError> {
        self.subscriptions
            .claim_due(node, now_ms, lease_ms, limit)
            .await
    }

    async fn finish_attempt(
        &self,
        id: &str,
        node: &str,
        state: &crate::DeliveryState,
    ) -> Result<bool, StoreError> {
        self.subscriptions.finish_attempt(id, node, state).await
    }

    async fn events(
        &self,
        id: &str,
        since: Option<i64>,
        until: Option<i64>,
        limit: usize,
    ) -> Result<Vec<crate::NotificationEvent>, StoreError> {
        self.subscriptions.events(id, since, until, limit).await
    }

    async fn purge_events(&self, before: &str) -> Result<u64, StoreError> {
        self.subscriptions.purge(before).await
    }
}

#[cfg(test)]
mod tests;
