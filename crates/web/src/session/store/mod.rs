//! Where sessions are kept: in the nrls database beside the access facts, so
//! every node behind a load balancer sees the same sessions. Backends follow
//! `store::access`: [`postgres::PostgresSessionStore`] (a table of the shared
//! database, schema step 4), [`sqlite::SqliteSessionStore`] (its own
//! `sessions.db` beside the embedded store) and [`memory::MemorySessionStore`];
//! all pass the tests in `tests.rs`.
//!
//! Rows are keyed by the SHA-256 of the session id, never the id itself: a
//! copy of the table does not hand out live cookies.

pub mod memory;
pub mod postgres;
pub mod sqlite;

use async_trait::async_trait;
use sha2::{Digest, Sha256};

/// The key a session is stored under: the SHA-256 of its cookie value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionKey(pub [u8; 32]);

impl SessionKey {
    /// The key of a session id (the cookie value).
    pub fn of(id: &str) -> SessionKey {
        SessionKey(Sha256::digest(id.as_bytes()).into())
    }

    /// The key as text (URL-safe base64): what a patient token carries as
    /// `sid`. It names the session but cannot be turned back into its cookie.
    pub fn to_sid(&self) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(self.0)
    }

    /// Reads [`SessionKey::to_sid`]'s text; `None` for anything else.
    pub fn from_sid(sid: &str) -> Option<SessionKey> {
        use base64::Engine;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(sid)
            .ok()?;
        bytes.try_into().ok().map(SessionKey)
    }
}

/// One stored session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// The session's contents, as JSON (`session::SessionData`).
    pub data: String,
    /// Unix seconds: when the session began (absolute time-out).
    pub created_at: i64,
    /// Unix seconds: after this the session is gone, whatever it holds.
    pub expires_at: i64,
}

/// Why the session store failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionStoreError {
    /// Try again later: 503.
    #[error("session store unavailable: {0}")]
    Unavailable(String),
    /// A fault of ours: 500.
    #[error("session store failure: {0}")]
    Internal(String),
}

/// The session store contract. Writes are durable when they return.
#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// The session, unless absent or expired at `now` (unix seconds).
    async fn load(
        &self,
        key: &SessionKey,
        now: i64,
    ) -> Result<Option<SessionRecord>, SessionStoreError>;

    /// Creates or replaces a session.
    async fn save(&self, key: &SessionKey, record: &SessionRecord)
    -> Result<(), SessionStoreError>;

    /// Ends a session; ending one that is not there is fine.
    async fn delete(&self, key: &SessionKey) -> Result<(), SessionStoreError>;

    /// Removes sessions expired at `now`; returns how many.
    async fn purge_expired(&self, now: i64) -> Result<u64, SessionStoreError>;

    /// Short name of the backend.
    fn backend(&self) -> &'static str;
}

#[cfg(test)]
mod tests;
