//! Sessions in a map: for tests and `--store memory`.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;

use super::{SessionKey, SessionRecord, SessionStore, SessionStoreError};

/// A [`SessionStore`] in memory; lost at exit.
#[derive(Default)]
pub struct MemorySessionStore {
    sessions: Mutex<HashMap<SessionKey, SessionRecord>>,
}

impl MemorySessionStore {
    pub fn new() -> MemorySessionStore {
        MemorySessionStore::default()
    }
}

#[async_trait]
impl SessionStore for MemorySessionStore {
    async fn load(
        &self,
        key: &SessionKey,
        now: i64,
    ) -> Result<Option<SessionRecord>, SessionStoreError> {
        let sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(sessions.get(key).filter(|r| r.expires_at > now).cloned())
    }

    async fn save(
        &self,
        key: &SessionKey,
        record: &SessionRecord,
    ) -> Result<(), SessionStoreError> {
        let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        // As the SQL backends: a save never moves the session's start.
        let created_at = sessions
            .get(key)
            .map_or(record.created_at, |r| r.created_at);
        sessions.insert(
            key.clone(),
            SessionRecord {
                created_at,
                ..record.clone()
            },
        );
        Ok(())
    }

    async fn delete(&self, key: &SessionKey) -> Result<(), SessionStoreError> {
        let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        sessions.remove(key);
        Ok(())
    }

    async fn purge_expired(&self, now: i64) -> Result<u64, SessionStoreError> {
        let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        let before = sessions.len();
        sessions.retain(|_, r| r.expires_at > now);
        Ok((before - sessions.len()) as u64)
    }

    fn backend(&self) -> &'static str {
        "memory"
    }
}
