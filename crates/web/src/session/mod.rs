//! Server-side sessions: an opaque random id in a cookie, the contents in a
//! [`SessionStore`] every node shares.
//!
//! - The cookie is `HttpOnly`, `SameSite=Lax`, `Path=/`; over https it is
//!   also `Secure` and named with the `__Host-` prefix (the browser then
//!   refuses it from any other host or path).
//! - A session ends after [`SessionSettings::idle`] without a request or
//!   [`SessionSettings::absolute`] after it began, whichever comes first.
//! - Signing in rotates the id ([`Session::rotate`]): an id planted before
//!   sign-in (session fixation) is worthless after it.
//! - Each session has a CSRF token every POST form carries ([`csrf`]).

pub mod csrf;
pub mod data;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, header};

pub use data::SessionData;
use store::{SessionKey, SessionRecord, SessionStore, SessionStoreError};

/// How sessions behave. [`Default`] gives the documented values.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    /// Ends a session this long after its last request. Default 30 minutes.
    pub idle: Duration,
    /// Ends a session this long after it began. Default 12 hours (a clinical shift).
    pub absolute: Duration,
    /// Sets `Secure` and the `__Host-` prefix: true when the public URL is https.
    pub secure: bool,
}

impl Default for SessionSettings {
    fn default() -> Self {
        SessionSettings {
            idle: Duration::from_secs(30 * 60),
            absolute: Duration::from_secs(12 * 3600),
            secure: false,
        }
    }
}

/// Sessions: the store and the rules.
#[derive(Clone)]
pub struct Sessions {
    store: Arc<dyn SessionStore>,
    settings: SessionSettings,
}

/// One request's session, loaded or new. Save it with [`Sessions::commit`].
#[derive(Debug)]
pub struct Session {
    id: String,
    /// The id it was loaded under, when [`Session::rotate`] replaced it.
    replaced: Option<String>,
    /// Not yet in the store (no cookie to send until it is saved).
    fresh: bool,
    created_at: i64,
    pub data: SessionData,
}

impl Session {
    /// The cookie value: only the id, never the contents.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// A new id for the same contents, and a new CSRF token; the old id stops
    /// working when committed. Called at sign-in.
    pub fn rotate(&mut self) {
        let old = std::mem::replace(&mut self.id, random_token());
        if !self.fresh && self.replaced.is_none() {
            self.replaced = Some(old);
        }
        self.data.csrf = random_token();
    }
}

/// 256 random bits, URL-safe base64: session ids, CSRF tokens, OIDC state,
/// nonce and PKCE verifiers.
pub fn random_token() -> String {
    use base64::Engine;
    let mut bytes = [0u8; 32];
    // The OS random source failing is not something a request can recover
    // from; an all-zero token would be guessable, so fall back to a fresh
    // UUIDv4 pair (also OS-random, through a different call) instead.
    if getrandom::fill(&mut bytes).is_err() {
        bytes[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        bytes[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Unix seconds now.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

impl Sessions {
    pub fn new(store: Arc<dyn SessionStore>, settings: SessionSettings) -> Sessions {
        Sessions { store, settings }
    }

    pub fn settings(&self) -> &SessionSettings {
        &self.settings
    }

    /// The backend name, for the start-up log.
    pub fn backend(&self) -> &'static str {
        self.store.backend()
    }

    /// The cookie's name: `__Host-nrls-session` over https.
    pub fn cookie_name(&self) -> &'static str {
        if self.settings.secure {
            "__Host-nrls-session"
        } else {
            "nrls-session"
        }
    }

    /// The request's session, or a new empty one (not stored until committed).
    pub async fn load(&self, headers: &HeaderMap) -> Result<Session, SessionStoreError> {
        let now = now();
        if let Some(id) = cookie(headers, self.cookie_name())
            && let Some(record) = self.store.load(&SessionKey::of(id), now).await?
            // Unreadable contents (written by another version) start over.
            && let Ok(data) = serde_json::from_str::<SessionData>(&record.data)
        {
            return Ok(Session {
                id: id.to_owned(),
                replaced: None,
                fresh: false,
                created_at: record.created_at,
                data,
            });
        }
        Ok(Session {
            id: random_token(),
            replaced: None,
            fresh: true,
            created_at: now,
            data: SessionData::new(random_token()),
        })
    }

    /// The contents of the live session stored under `key`, read without
    /// extending it; `None` once it has ended (signed out, timed out).
    pub async fn peek(&self, key: &SessionKey) -> Result<Option<SessionData>, SessionStoreError> {
        Ok(self
            .store
            .load(key, now())
            .await?
            .and_then(|record| serde_json::from_str::<SessionData>(&record.data).ok()))
    }

    /// Stores the session (extending its idle deadline) and returns the
    /// `Set-Cookie` to send when the browser does not hold this id yet.
    pub async fn commit(&self, session: Session) -> Result<Option<HeaderValue>, SessionStoreError> {
        let now = now();
        let expires_at = (now.saturating_add(secs(self.settings.idle))).min(
            session
                .created_at
                .saturating_add(secs(self.settings.absolute)),
        );
        let data = serde_json::to_string(&session.data)
            .map_err(|e| SessionStoreError::Internal(format!("session data: {e}")))?;
        let record = SessionRecord {
            data,
            created_at: session.created_at,
            expires_at,
        };
        if let Some(old) = &session.replaced {
            self.store.delete(&SessionKey::of(old)).await?;
        }
        self.store
            .save(&SessionKey::of(&session.id), &record)
            .await?;
        if session.fresh || session.replaced.is_some() {
            Ok(Some(self.set_cookie(&session.id)))
        } else {
            Ok(None)
        }
    }

    /// Ends the session and returns the `Set-Cookie` that clears it.
    pub async fn end(&self, session: Session) -> Result<HeaderValue, SessionStoreError> {
        if !session.fresh {
            self.store.delete(&SessionKey::of(&session.id)).await?;
        }
        if let Some(old) = &session.replaced {
            self.store.delete(&SessionKey::of(old)).await?;
        }
        Ok(self.cookie_header("", 0))
    }

    /// Removes expired sessions (run now and then by the server).
    pub async fn purge(&self) -> Result<u64, SessionStoreError> {
        self.store.purge_expired(now()).await
    }

    fn set_cookie(&self, id: &str) -> HeaderValue {
        // The browser may keep the cookie no longer than the absolute limit;
        // the store enforces both limits whatever the browser does.
        self.cookie_header(id, secs(self.settings.absolute))
    }

    fn cookie_header(&self, value: &str, max_age: i64) -> HeaderValue {
        let secure = if self.settings.secure { "; Secure" } else { "" };
        let text = format!(
            "{}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}",
            self.cookie_name()
        );
        // Ids are URL-safe base64: always a valid header value.
        HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static(""))
    }
}

/// The value of cookie `name` in the request, if sent once.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty() && v.len() <= 128)
}

#[cfg(test)]
mod tests;
