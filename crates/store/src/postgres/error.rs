//! How PostgreSQL failures map to [`StoreError`].

use tokio_postgres::error::SqlState;

use crate::StoreError;

/// Why one attempt at an operation did not produce its result.
#[derive(Debug)]
pub enum OpError {
    /// The request broke a rule (duplicate, conflict, missing target...).
    Rejected(StoreError),
    /// PostgreSQL, or the connection to it, failed.
    Postgres(tokio_postgres::Error),
    /// The operation's deadline passed first.
    TimedOut,
    /// What was read back cannot be what was written (a bug, or tables
    /// changed behind our back): a fault, answered 500. Lets the other
    /// components on this pool (the audit trail) report damage in their
    /// own words without raising a pointer-store error.
    Corrupt(String),
}

impl From<tokio_postgres::Error> for OpError {
    fn from(error: tokio_postgres::Error) -> Self {
        OpError::Postgres(error)
    }
}

impl From<StoreError> for OpError {
    fn from(error: StoreError) -> Self {
        OpError::Rejected(error)
    }
}

/// PostgreSQL aborted the transaction to resolve a conflict between
/// transactions; running it again may well succeed.
pub(super) fn is_retryable(error: &tokio_postgres::Error) -> bool {
    matches!(
        error.code(),
        Some(&SqlState::T_R_DEADLOCK_DETECTED | &SqlState::T_R_SERIALIZATION_FAILURE)
    )
}

/// The connection itself is lost or unusable: it must not go back to the pool.
pub(super) fn connection_lost(error: &tokio_postgres::Error) -> bool {
    match error.as_db_error() {
        None => !is_our_bug(error),
        // Class 08 (connection exception) and 57P0x (server shutting down,
        // crashed, starting up, database dropped) end the session.
        Some(db) => {
            let code = db.code().code();
            code.starts_with("08") || code.starts_with("57P")
        }
    }
}

/// A client-side error caused by how nrls called the driver (parameter or
/// column types, row counts): a bug, not a condition of the database.
fn is_our_bug(error: &tokio_postgres::Error) -> bool {
    // The driver's error kinds are private; its messages for these are fixed.
    let text = error.to_string();
    [
        "error serializing",
        "error deserializing",
        "invalid column",
        "query returned an unexpected",
        "expected ",
    ]
    .iter()
    .any(|prefix| text.starts_with(prefix))
}

/// The store error for a PostgreSQL failure. Conditions that may pass
/// (connection loss, time-outs, shutdowns, lack of resources, conflicts still
/// present after retries) are `Unavailable`; anything else means a bug or a
/// damaged database: `Internal`. The message holds PostgreSQL's error code and
/// text, never the SQL or the values (a unique violation's detail would name
/// them).
pub(super) fn store_error(error: tokio_postgres::Error) -> StoreError {
    let Some(db) = error.as_db_error() else {
        return if is_our_bug(&error) {
            StoreError::Internal(format!("postgres: {error}"))
        } else {
            StoreError::Unavailable(format!("postgres: {error}"))
        };
    };
    let code = db.code().code();
    let message = format!("postgres {code}: {}", db.message());
    let transient = [
        "08",    // connection exception
        "40",    // transaction rollback: deadlock, serialization (retries exhausted)
        "53",    // insufficient resources: disk full, out of memory, too many connections
        "55P03", // lock_not_available (lock_timeout)
        "57",    // operator intervention: statement_timeout, shutdown, crash, starting up
        "58",    // system error: I/O
        "25P03", // idle_in_transaction_session_timeout
        "25006", // read_only_sql_transaction: a standby, or a failover in progress
    ];
    if transient.iter().any(|prefix| code.starts_with(prefix)) {
        StoreError::Unavailable(message)
    } else {
        StoreError::Internal(message)
    }
}

/// The store error for a failure to get a pooled connection.
pub(super) fn pool_error(error: deadpool_postgres::PoolError) -> StoreError {
    use deadpool_postgres::PoolError;
    match error {
        PoolError::Backend(e) => store_error(e),
        PoolError::Timeout(_) => {
            StoreError::Unavailable("no database connection became free in time".into())
        }
        PoolError::Closed => StoreError::Unavailable("the database pool is closed".into()),
        PoolError::NoRuntimeSpecified => {
            StoreError::Internal("the database pool has no runtime".into())
        }
        PoolError::PostCreateHook(e) => StoreError::Unavailable(format!("postgres: {e}")),
    }
}
