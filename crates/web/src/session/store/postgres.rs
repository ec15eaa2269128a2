//! Sessions in the nrls PostgreSQL database (`web_sessions`, schema step 4),
//! shared by every node: a user signed in through one node is signed in on
//! all of them. Uses the pointer store's pool and deadlines ([`Database`]).

use async_trait::async_trait;
use store::StoreError;
use store::postgres::Database;

use super::{SessionKey, SessionRecord, SessionStore, SessionStoreError};

/// A [`SessionStore`] in the shared PostgreSQL database.
pub struct PostgresSessionStore {
    db: Database,
}

impl PostgresSessionStore {
    /// Uses `db`, whose schema the pointer store has already migrated.
    pub fn new(db: Database) -> PostgresSessionStore {
        PostgresSessionStore { db }
    }
}

fn session_error(error: StoreError) -> SessionStoreError {
    match error {
        StoreError::Unavailable(m) => SessionStoreError::Unavailable(m),
        other => SessionStoreError::Internal(other.to_string()),
    }
}

#[async_trait]
impl SessionStore for PostgresSessionStore {
    async fn load(
        &self,
        key: &SessionKey,
        now: i64,
    ) -> Result<Option<SessionRecord>, SessionStoreError> {
        let key = key.0;
        self.db
            .run(async |conn| {
                let row = conn
                    .query_opt(
                        "SELECT data, created_at, expires_at FROM web_sessions WHERE key = $1 AND expires_at > $2",
                        &[&&key[..], &now],
                    )
                    .await?;
                Ok(match row {
                    Some(row) => Some(SessionRecord {
                        data: row.try_get(0)?,
                        created_at: row.try_get(1)?,
                        expires_at: row.try_get(2)?,
                    }),
                    None => None,
                })
            })
            .await
            .map_err(session_error)
    }

    async fn save(
        &self,
        key: &SessionKey,
        record: &SessionRecord,
    ) -> Result<(), SessionStoreError> {
        let key = key.0;
        self.db
            .run(async |conn| {
                conn.execute(
                    "INSERT INTO web_sessions (key, data, created_at, expires_at) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (key) DO UPDATE SET data = excluded.data, expires_at = excluded.expires_at",
                    &[&&key[..], &record.data, &record.created_at, &record.expires_at],
                )
                .await?;
                Ok(())
            })
            .await
            .map_err(session_error)
    }

    async fn delete(&self, key: &SessionKey) -> Result<(), SessionStoreError> {
        let key = key.0;
        self.db
            .run(async |conn| {
                conn.execute("DELETE FROM web_sessions WHERE key = $1", &[&&key[..]])
                    .await?;
                Ok(())
            })
            .await
            .map_err(session_error)
    }

    async fn purge_expired(&self, now: i64) -> Result<u64, SessionStoreError> {
        self.db
            .run(async |conn| {
                Ok(conn
                    .execute("DELETE FROM web_sessions WHERE expires_at <= $1", &[&now])
                    .await?)
            })
            .await
            .map_err(session_error)
    }

    fn backend(&self) -> &'static str {
        "postgres"
    }
}
