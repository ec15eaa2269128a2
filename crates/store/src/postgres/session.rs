//! Connections: the session settings, the pool, and the deadline every
//! operation runs under.

use std::future::Future;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use tokio::time::Instant;
use tokio_postgres::NoTls;
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::StoreError;

use super::PostgresOptions;
use super::error::{OpError, connection_lost, is_retryable, pool_error, store_error};
use super::schema::ServerSettings;

/// Attempts at a transaction that PostgreSQL aborted to break a deadlock.
const MAX_ATTEMPTS: u32 = 3;

/// How long the kernel lets sent data go unacknowledged before it drops the
/// connection: a dead network then fails the connection instead of leaving
/// it open until keepalives notice (minutes).
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(10);

/// The TLS connector the URL's `sslmode` asks for: none for `disable`.
pub(super) fn tls(
    options: &PostgresOptions,
    config: &tokio_postgres::Config,
) -> Result<Option<MakeRustlsConnect>, StoreError> {
    match config.get_ssl_mode() {
        SslMode::Disable => Ok(None),
        _ => super::tls::connector(options.ca_file.as_deref()).map(Some),
    }
}

/// The connection settings shared by the migration session and the pool:
/// the URL, with the connect timeout, keepalives and an application name.
pub(super) fn base_config(options: &PostgresOptions) -> Result<tokio_postgres::Config, StoreError> {
    // The parse error names the part at fault, never the URL (it may hold a password).
    let mut config: tokio_postgres::Config = options
        .database_url
        .parse()
        .map_err(|e| StoreError::Internal(format!("the database URL is not valid: {e}")))?;
    config
        .connect_timeout(options.connect_timeout)
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(30))
        .tcp_user_timeout(TCP_USER_TIMEOUT);
    if config.get_application_name().is_none() {
        config.application_name("nrls");
    }
    Ok(config)
}

/// The pool of request sessions. Each session gets `statement_timeout`, an
/// idle-in-transaction limit (a node frozen mid-transaction must not hold
/// pointer locks for long), generic plans for its prepared statements and,
/// if the server turned it off, synchronous commit: a write acknowledged to
/// a client must be on disk.
pub(super) fn pool(
    options: &PostgresOptions,
    mut config: tokio_postgres::Config,
    server: &ServerSettings,
    tls: Option<MakeRustlsConnect>,
) -> Result<Pool, StoreError> {
    let statement_ms = options.statement_timeout.as_millis().max(1);
    let mut settings = config.get_options().unwrap_or_default().to_owned();
    settings.push_str(&format!(
        " -c statement_timeout={statement_ms} -c idle_in_transaction_session_timeout={}",
        statement_ms * 2
    ));
    // Generic plans for our prepared statements. Under the default (`auto`)
    // a statement on the partitioned `pointers` table was planned again on
    // every execution: a custom plan prunes to one partition at plan time, so
    // it always looks cheaper than the generic plan, whose cost counts all 16
    // partitions although executor start-up pruning drops 15 of them. Every
    // statement nrls prepares has the same shape whatever its values (the
    // audit search builds its SQL from the filters present), so nothing needs
    // a custom plan. Measured: PostgreSQL audited search-max +20%
    // (docs/performance.md, "generic plans").
    //
    // No parallel workers and no JIT: every statement nrls runs reads or
    // writes a handful of rows by key. A generic plan made while the
    // statistics lag a bulk load (no ANALYZE yet) estimated 50,000 rows for
    // one patient and chose a parallel Gather with JIT, which took 100-450 ms
    // a search where the same plan without them takes well under 1 ms
    // (10M pointers, docs/performance.md, "generic plans").
    settings.push_str(
        " -c plan_cache_mode=force_generic_plan -c max_parallel_workers_per_gather=0 -c jit=off",
    );
    if !server.synchronous_commit {
        tracing::warn!(
            "the database has synchronous_commit off; nrls turns it on for its sessions"
        );
        settings.push_str(" -c synchronous_commit=on");
    }
    config.options(settings.trim());
    // `is_closed` only: a connection that fails later is discarded by
    // `settle`, which costs one request rather than a query on every checkout.
    let manager_config = ManagerConfig {
        recycling_method: RecyclingMethod::Fast,
    };
    let manager = match tls {
        Some(tls) => Manager::from_config(config, tls, manager_config),
        None => Manager::from_config(config, NoTls, manager_config),
    };
    let deadline = options.statement_timeout + Duration::from_secs(1);
    Pool::builder(manager)
        .max_size(options.pool_size.max(1))
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(deadline))
        .create_timeout(Some(options.connect_timeout))
        .recycle_timeout(Some(deadline))
        .build()
        .map_err(|e| StoreError::Internal(format!("cannot build the database pool: {e}")))
}

/// When an operation must be over, pool wait included.
pub struct Deadline {
    at: Instant,
}

impl Deadline {
    pub fn after(budget: Duration) -> Deadline {
        Deadline {
            at: Instant::now() + budget,
        }
    }

    /// A pooled connection, or `Unavailable` if none comes before the deadline.
    pub async fn connection(&self, pool: &Pool) -> Result<Object, StoreError> {
        match tokio::time::timeout_at(self.at, pool.get()).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(pool_error(e)),
            Err(_) => Err(StoreError::Unavailable(
                "no database connection within the time-out".into(),
            )),
        }
    }

    /// Runs `op`, or gives up at the deadline. Giving up drops `op`; a
    /// transaction it had open is rolled back (and its connection discarded
    /// by [`settle`]).
    pub async fn run<T>(&self, op: impl Future<Output = Result<T, OpError>>) -> Result<T, OpError> {
        tokio::time::timeout_at(self.at, op)
            .await
            .unwrap_or(Err(OpError::TimedOut))
    }
}

/// Turns an operation's outcome into the store's answer, and decides the
/// connection's fate: back to the pool, or closed when it timed out or was
/// lost (it may be stuck on a dead network, or mid-transaction).
pub fn settle<T>(conn: Object, outcome: Result<T, OpError>) -> Result<T, StoreError> {
    match outcome {
        Ok(value) => Ok(value),
        Err(OpError::Rejected(error)) => Err(error),
        Err(OpError::Corrupt(what)) => Err(StoreError::Internal(what)),
        Err(OpError::TimedOut) => {
            drop(Object::take(conn));
            Err(StoreError::Unavailable(
                "the database did not answer within the time-out".into(),
            ))
        }
        Err(OpError::Postgres(error)) => {
            if connection_lost(&error) {
                drop(Object::take(conn));
            }
            Err(store_error(error))
        }
    }
}

/// What to do after one attempt of a transaction.
pub(super) enum Next<T> {
    Done(Result<T, StoreError>),
    /// Run it again on this connection.
    Retry(Object),
}

/// Like [`settle`], but a transaction aborted to break a deadlock is run
/// again, up to [`MAX_ATTEMPTS`] in all (its rollback already undid it).
pub(super) fn retry_or_settle<T>(
    conn: Object,
    outcome: Result<T, OpError>,
    attempt: u32,
) -> Next<T> {
    match outcome {
        Err(OpError::Postgres(e)) if is_retryable(&e) && attempt < MAX_ATTEMPTS => {
            tracing::debug!(attempt, error = %e, "retrying a transaction");
            Next::Retry(conn)
        }
        outcome => Next::Done(settle(conn, outcome)),
    }
}
