//! Sessions in their own SQLite file (`sessions.db`) beside the embedded
//! store: WAL and the store's durability settings (`store::sqlite::setup`).
//! One connection behind a mutex, used on the blocking pool: a session
//! read or write is one indexed statement.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};
use store::sqlite::setup::{self, SetupError};

use super::{SessionKey, SessionRecord, SessionStore, SessionStoreError};

/// The file name inside the data directory.
pub const FILE_NAME: &str = "sessions.db";

const MIGRATIONS: &[&str] = &[
    // 1: one row per session, keyed by the hash of its id.
    "CREATE TABLE web_sessions (
        key BLOB PRIMARY KEY,
        data TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL
    );
    CREATE INDEX web_sessions_by_expiry ON web_sessions (expires_at);",
];

fn sqlite_error(e: rusqlite::Error) -> SessionStoreError {
    if setup::is_transient(&e) {
        SessionStoreError::Unavailable(e.to_string())
    } else {
        SessionStoreError::Internal(e.to_string())
    }
}

fn setup_error(error: SetupError) -> SessionStoreError {
    match error {
        SetupError::Sqlite(e) => sqlite_error(e),
        other if other.is_transient() => SessionStoreError::Unavailable(other.to_string()),
        other => SessionStoreError::Internal(other.to_string()),
    }
}

/// A [`SessionStore`] in one SQLite file.
pub struct SqliteSessionStore {
    conn: Arc<Mutex<Connection>>,
}

impl SqliteSessionStore {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<SqliteSessionStore, SessionStoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                SessionStoreError::Unavailable(format!("cannot create {}: {e}", parent.display()))
            })?;
        }
        let mut conn = Connection::open(path).map_err(sqlite_error)?;
        setup::configure_writer(&conn, FILE_NAME).map_err(setup_error)?;
        setup::migrate(&mut conn, FILE_NAME, MIGRATIONS).map_err(setup_error)?;
        Ok(SqliteSessionStore {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    async fn with<T: Send + 'static>(
        &self,
        op: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, SessionStoreError> {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            op(&conn.lock().unwrap_or_else(PoisonError::into_inner)).map_err(sqlite_error)
        })
        .await
        .map_err(|e| SessionStoreError::Internal(format!("session task failed: {e}")))?
    }
}

#[async_trait]
impl SessionStore for SqliteSessionStore {
    async fn load(
        &self,
        key: &SessionKey,
        now: i64,
    ) -> Result<Option<SessionRecord>, SessionStoreError> {
        let key = key.0;
        self.with(move |conn| {
            conn.prepare_cached(
                "SELECT data, created_at, expires_at FROM web_sessions WHERE key = ?1 AND expires_at > ?2",
            )?
            .query_row(params![&key[..], now], |row| {
                Ok(SessionRecord {
                    data: row.get(0)?,
                    created_at: row.get(1)?,
                    expires_at: row.get(2)?,
                })
            })
            .optional()
        })
        .await
    }

    async fn save(
        &self,
        key: &SessionKey,
        record: &SessionRecord,
    ) -> Result<(), SessionStoreError> {
        let (key, record) = (key.0, record.clone());
        self.with(move |conn| {
            conn.prepare_cached(
                "INSERT INTO web_sessions (key, data, created_at, expires_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (key) DO UPDATE SET data = excluded.data, expires_at = excluded.expires_at",
            )?
            .execute(params![&key[..], record.data, record.created_at, record.expires_at])
            .map(drop)
        })
        .await
    }

    async fn delete(&self, key: &SessionKey) -> Result<(), SessionStoreError> {
        let key = key.0;
        self.with(move |conn| {
            conn.prepare_cached("DELETE FROM web_sessions WHERE key = ?1")?
                .execute(params![&key[..]])
                .map(drop)
        })
        .await
    }

    async fn purge_expired(&self, now: i64) -> Result<u64, SessionStoreError> {
        self.with(move |conn| {
            conn.prepare_cached("DELETE FROM web_sessions WHERE expires_at <= ?1")?
                .execute(params![now])
                .map(|n| n as u64)
        })
        .await
    }

    fn backend(&self) -> &'static str {
        "sqlite"
    }
}
