//! PostgreSQL backend: the production store, shared by any number of stateless
//! nrls nodes.
//!
//! How it is built, and why:
//!
//! - **Sharded by NHS number.** Every query nrls makes is keyed by NHS number
//!   or by pointer id. `pointers` is hash-partitioned on `nhs_number`, its
//!   primary key `(nhs_number, seq)` leads with it, and a pointer id is
//!   resolved to its `(nhs_number, seq)` through the small `pointer_ids`
//!   table, so a read by id touches one partition and never scans the others.
//!   The same keys distribute with Citus (distribution column `nhs_number`);
//!   see `schema.rs` and docs/scale-out.md.
//! - **One transaction per write, READ COMMITTED.** Every write first locks
//!   the `pointer_ids` rows of the pointers it touches (a new id by inserting
//!   it, existing ids with `FOR UPDATE`, in id order), then reads and changes
//!   the pointer rows in later statements, which see everything committed
//!   before the lock was granted. Two writers of one pointer therefore run one
//!   after the other: the second sees the first's version (optimistic
//!   concurrency), a superseded target that is gone, or an id already taken.
//!   A supersede's checks, deletions and insert share the transaction.
//! - **Durable on `Ok`.** A write returns only after its COMMIT returned. With
//!   `synchronous_commit` on (forced for nrls sessions if the server turns it
//!   off), the commit is on disk; PostgreSQL groups concurrent commits into
//!   one WAL flush, so no group commit of our own is needed.
//! - **Bounded waits.** A bounded pool (`deadpool-postgres`), a connect
//!   timeout, `statement_timeout` set on every session, and a deadline of
//!   `statement_timeout` + 1 s on each whole operation, pool wait included, so
//!   a lost network (where the server cannot cancel anything) still ends in
//!   `Unavailable` on time. A connection whose operation timed out or failed
//!   at the connection level is discarded, not returned to the pool; the pool
//!   opens fresh ones when the database is back, with no restart.
//! - **Errors.** Rule breaks map to their [`StoreError`]; a deadlock is
//!   retried (up to three attempts); connection loss, timeouts and server
//!   shutdowns are `Unavailable` (HTTP 503); anything else is `Internal`.
//!   Messages carry PostgreSQL's error text, never SQL or values.
//! - **Versioned migrations** (`schema.rs`) run at open under an advisory lock,
//!   so several nodes may start at once.
//! - **TLS** with rustls when the URL asks (`sslmode=prefer`/`require`),
//!   verified against `ca_file` when given; see `tls.rs`.

mod dictionaries;
mod error;
mod import;
mod reads;
pub(crate) mod row;
mod schema;
mod session;
mod subscriptions;
mod tls;
mod writes;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::Pool;
use domain::{NhsNumber, OdsCode, PointerId, PointerRecord, Supersede};

use crate::compression::JsonCodec;
use crate::{
    ImportOutcome, PointerEvent, PointerStore, PointerWrite, PoolStats, StoreError, StoredPointer,
};

pub use error::OpError;
pub use schema::{MIGRATION_LOCK, migrations_fingerprint};
pub use session::{Deadline, settle};

/// Applies the migrations `options`' database lacks and returns: for the
/// scratch-database templates of tests (crate `testkit`), which need the
/// schema without a store.
///
/// # Errors
/// The URL is invalid, the server unreachable, or a step failed.
pub async fn migrate(options: &PostgresOptions) -> Result<(), StoreError> {
    let config = session::base_config(options)?;
    let tls = session::tls(options, &config)?;
    schema::migrate(&config, tls).await.map(|_| ())
}
use writes::WriteOp;

/// How a [`PostgresStore`] connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresOptions {
    /// A libpq-style URL or key/value string, e.g.
    /// `postgres://nrls@db.internal:5432/nrls`.
    pub database_url: String,
    /// Most connections this node opens (values below 1 count as 1). Default 16.
    pub pool_size: usize,
    /// Longest one SQL statement may run before the server cancels it; each
    /// whole store operation gets this plus one second. Default 5 s.
    pub statement_timeout: Duration,
    /// Longest a new connection may take to open. Default 5 s.
    pub connect_timeout: Duration,
    /// CA certificate(s), PEM, that the server's certificate must chain to
    /// when the URL asks for TLS. Unset: encrypted but unauthenticated.
    pub ca_file: Option<std::path::PathBuf>,
    /// Apply missing schema steps at open (nodes). `false`: only check the
    /// schema is complete, for tools that must not change the database.
    pub migrate: bool,
}

impl PostgresOptions {
    /// The defaults, for `database_url`.
    pub fn new(database_url: impl Into<String>) -> Self {
        PostgresOptions {
            database_url: database_url.into(),
            pool_size: 16,
            statement_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            ca_file: None,
            migrate: true,
        }
    }
}

/// A [`PointerStore`] in a PostgreSQL database. Cheap to share: clones of the
/// pool handle are what nodes' requests use.
pub struct PostgresStore {
    pool: Pool,
    /// How long one operation may take, pool wait included.
    deadline: Duration,
    /// The database was a hot standby when opened.
    standby: bool,
    /// Compresses pointer JSON for its rows and reads every dictionary the
    /// database holds (schema step 9).
    codec: Arc<JsonCodec>,
}

/// The nrls database as the other components that keep their data in it (the
/// access facts, the audit trail) reach it: the pointer store's pool, with
/// its time-outs and error rules, so one node opens one bounded set of
/// connections and one schema history covers every table.
#[derive(Clone)]
pub struct Database {
    pool: Pool,
    deadline: Duration,
    /// The pointer store's codec, for components that read pointer rows
    /// (the access facts' combined read).
    codec: Arc<JsonCodec>,
}

impl Database {
    /// The deadline of one operation starting now, pool wait included.
    pub fn start(&self) -> Deadline {
        Deadline::after(self.deadline)
    }

    /// The deadline of a longer operation (a verify walk, a bulk read).
    pub fn start_long(&self, budget: Duration) -> Deadline {
        Deadline::after(budget.max(self.deadline))
    }

    /// The pool, for [`Deadline::connection`].
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The pointers in `rows`, whose columns from `first` on are
    /// [`row::pointer_columns`]; a row whose pointer columns are NULL (an
    /// outer join that found none) is skipped.
    pub(crate) async fn pointers_in(
        &self,
        conn: &deadpool_postgres::Object,
        rows: &[tokio_postgres::Row],
        first: usize,
    ) -> Result<Vec<StoredPointer>, OpError> {
        reads::decode_from(conn, rows, first, &self.codec).await
    }

    /// Runs `op` on a pooled connection within one operation's deadline and
    /// settles the connection's fate (see [`settle`]).
    pub async fn run<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        F: AsyncFnOnce(&mut deadpool_postgres::Object) -> Result<T, OpError>,
    {
        let deadline = self.start();
        let mut conn = deadline.connection(&self.pool).await?;
        let outcome = deadline.run(op(&mut conn)).await;
        settle(conn, outcome)
    }
}

impl PostgresStore {
    /// Connects, brings the schema up to date (waiting for any other node
    /// doing the same) and builds the pool.
    ///
    /// Fails with `Unavailable` if the database cannot be reached, and
    /// `Internal` if the URL is invalid, asks for TLS, or the schema needs a
    /// newer nrls.
    pub async fn open(options: PostgresOptions) -> Result<PostgresStore, StoreError> {
        let config = session::base_config(&options)?;
        let tls = session::tls(&options, &config)?;
        let settings = if options.migrate {
            schema::migrate(&config, tls.clone()).await?
        } else {
            schema::check(&config, tls.clone()).await?
        };
        let pool = session::pool(&options, config, &settings, tls)?;
        let deadline = options.statement_timeout + Duration::from_secs(1);
        let codec = Arc::new(JsonCodec::new().map_err(|e| StoreError::Internal(e.to_string()))?);
        Database {
            pool: pool.clone(),
            deadline,
            codec: Arc::clone(&codec),
        }
        .run(async |conn| dictionaries::register(conn, &codec, settings.standby).await)
        .await?;
        Ok(PostgresStore {
            pool,
            deadline,
            standby: settings.standby,
            codec,
        })
    }

    fn start(&self) -> Deadline {
        Deadline::after(self.deadline)
    }

    /// Whether the database was a hot standby (read replica) when opened.
    pub fn is_standby(&self) -> bool {
        self.standby
    }

    /// A handle on the same database and pool, for the access facts and the
    /// audit trail.
    pub fn database(&self) -> Database {
        Database {
            pool: self.pool.clone(),
            deadline: self.deadline,
            codec: Arc::clone(&self.codec),
        }
    }

    /// Runs one write, retrying it when PostgreSQL broke a deadlock by
    /// aborting it.
    async fn write(&self, op: WriteOp) -> Result<(), StoreError> {
        self.write_keeping(op, None).await
    }

    /// Runs `op`, keeping `audit` in the audit outbox in its transaction.
    async fn write_keeping(&self, op: WriteOp, audit: Option<&[u8]>) -> Result<(), StoreError> {
        let frame = op.frame(&self.codec)?;
        let deadline = self.start();
        let mut conn = deadline.connection(&self.pool).await?;
        let mut attempt = 1;
        loop {
            let outcome = deadline.run(op.apply(&mut conn, audit, &frame)).await;
            match session::retry_or_settle(conn, outcome, attempt) {
                session::Next::Done(result) => return result,
                session::Next::Retry(again) => {
                    conn = again;
                    attempt += 1;
                }
            }
        }
    }
}

#[async_trait]
impl PointerStore for PostgresStore {
    async fn create(
        &self,
        record: PointerRecord,
        supersedes: Vec<Supersede>,
    ) -> Result<(), StoreError> {
        self.write(WriteOp::Pointer(PointerWrite::Create {
            record,
            supersedes,
        }))
        .await
    }

    async fn update(&self, record: PointerRecord, expected_version: u32) -> Result<(), StoreError> {
        self.write(WriteOp::Pointer(PointerWrite::Update {
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
        self.write(WriteOp::Pointer(PointerWrite::Delete {
            id: id.clone(),
            expected_version,
        }))
        .await
    }

    async fn get(&self, id: &PointerId) -> Result<Option<PointerRecord>, StoreError> {
        let deadline = self.start();
        let conn = deadline.connection(&self.pool).await?;
        let outcome = deadline.run(reads::get(&conn, id, &self.codec)).await;
        session::settle(conn, outcome)
    }

    async fn patient_pointers(
        &self,
        nhs_number: NhsNumber,
    ) -> Result<Vec<StoredPointer>, StoreError> {
        let deadline = self.start();
        let conn = deadline.connection(&self.pool).await?;
        let outcome = deadline
            .run(reads::patient_pointers(&conn, nhs_number, &self.codec))
            .await;
        session::settle(conn, outcome)
    }

    async fn import(&self, records: Vec<PointerRecord>) -> Result<ImportOutcome, StoreError> {
        // Compressed on every core before a connection is taken: the
        // transaction then waits for SQL alone.
        let codec = Arc::clone(&self.codec);
        let (records, frames) = tokio::task::spawn_blocking(move || {
            let frames = codec.compress_all(&records);
            (records, frames)
        })
        .await
        .map_err(|e| StoreError::Internal(format!("bulk compression task failed: {e}")))?;
        let frames = frames.map_err(|e| StoreError::Internal(e.to_string()))?;
        let deadline = Deadline::after(import::TIMEOUT + Duration::from_secs(1));
        let mut conn = deadline.connection(&self.pool).await?;
        let mut attempt = 1;
        loop {
            let outcome = deadline
                .run(import::import(&mut conn, &records, &frames, &self.codec))
                .await;
            match session::retry_or_settle(conn, outcome, attempt) {
                session::Next::Done(result) => return result,
                session::Next::Retry(again) => {
                    conn = again;
                    attempt += 1;
                }
            }
        }
    }

    async fn pointers_after(
        &self,
        after_seq: i64,
        limit: usize,
        custodian: Option<&OdsCode>,
    ) -> Result<Vec<StoredPointer>, StoreError> {
        let deadline = self.start();
        let conn = deadline.connection(&self.pool).await?;
        let outcome = deadline
            .run(reads::pointers_after(
                &conn,
                after_seq,
                limit,
                custodian,
                &self.codec,
            ))
            .await;
        session::settle(conn, outcome)
    }

    async fn pending_events(&self, limit: usize) -> Result<Vec<PointerEvent>, StoreError> {
        let deadline = self.start();
        let conn = deadline.connection(&self.pool).await?;
        let outcome = deadline.run(reads::pending_events(&conn, limit)).await;
        session::settle(conn, outcome)
    }

    async fn mark_dispatched(&self, seqs: &[i64]) -> Result<(), StoreError> {
        if seqs.is_empty() {
            return Ok(());
        }
        self.write(WriteOp::MarkDispatched {
            seqs: seqs.to_vec(),
        })
        .await
    }

    async fn write_audited(
        &self,
        write: PointerWrite,
        audit: Vec<u8>,
    ) -> Result<crate::AuditKept, StoreError> {
        self.write_keeping(write.into(), Some(&audit)).await?;
        Ok(crate::AuditKept::WithTheChange)
    }

    async fn audit_outbox(&self, limit: usize) -> Result<Vec<crate::OutboxedAudit>, StoreError> {
        let deadline = self.start();
        let conn = deadline.connection(&self.pool).await?;
        let outcome = deadline.run(reads::audit_outbox(&conn, limit)).await;
        session::settle(conn, outcome)
    }

    async fn remove_audit_outbox(&self, ids: &[u64]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        self.write(WriteOp::RemoveAuditOutbox { ids: ids.to_vec() })
            .await
    }

    async fn count(&self) -> Result<u64, StoreError> {
        let deadline = self.start();
        let conn = deadline.connection(&self.pool).await?;
        let outcome = deadline.run(reads::count(&conn)).await;
        session::settle(conn, outcome)
    }

    async fn health(&self) -> Result<(), StoreError> {
        let deadline = self.start();
        let conn = deadline.connection(&self.pool).await?;
        let outcome = deadline.run(reads::ping(&conn)).await;
        session::settle(conn, outcome)
    }

    fn backend(&self) -> &'static str {
        "postgres"
    }

    fn subscriptions(&self) -> Option<&dyn crate::SubscriptionStore> {
        Some(self)
    }

    fn pool_stats(&self) -> Option<PoolStats> {
        let status = self.pool.status();
        let count = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
        Some(PoolStats {
            open: count(status.size),
            in_use: count(status.size.saturating_sub(status.available)),
            max: count(status.max_size),
        })
    }
}

#[cfg(test)]
mod tests;
