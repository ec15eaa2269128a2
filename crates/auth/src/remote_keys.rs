//! Keys an app publishes at its `jwks_url`: fetched on first need, cached,
//! and fetched again when an assertion names a `kid` we do not know (the app
//! rotated its keys), at most once per refresh interval per app so that a
//! stream of bad assertions cannot turn us into a load generator.
//!
//! `https://` (rustls, trusted as `auth::outbound` says) or `http://`.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, DecodingKey};

use crate::assertion::AssertionAlg;
use crate::error::KeyError;
use crate::keys::{ASSERTION_ALGS, KeyAlgs, KeySet};

/// A published JWK set larger than this is not a key set.
const MAX_JWKS_BYTES: usize = 64 * 1024;

pub(crate) struct RemoteKeys {
    /// Whose keys (a client id, or a trusted issuer): for logs only.
    client_id: String,
    /// The algorithms the keys will verify.
    algs: &'static KeyAlgs,
    url: reqwest::Url,
    http: reqwest::Client,
    min_refresh_interval: Duration,
    /// The last set that parsed; a failed fetch never replaces it.
    cached: RwLock<Option<Arc<KeySet>>>,
    /// When we last tried to fetch. Held across the fetch so concurrent
    /// requests for the same unknown kid wait for one fetch, not start many.
    last_attempt: tokio::sync::Mutex<Option<Instant>>,
}

impl RemoteKeys {
    pub(crate) fn new(
        client_id: &str,
        url: reqwest::Url,
        http: reqwest::Client,
        min_refresh_interval: Duration,
    ) -> Self {
        RemoteKeys::for_algs(client_id, url, http, min_refresh_interval, &ASSERTION_ALGS)
    }

    /// Keys for tokens signed with one of `algs` (e.g. ID tokens).
    pub(crate) fn for_algs(
        client_id: &str,
        url: reqwest::Url,
        http: reqwest::Client,
        min_refresh_interval: Duration,
        algs: &'static KeyAlgs,
    ) -> Self {
        RemoteKeys {
            client_id: client_id.to_owned(),
            algs,
            url,
            http,
            min_refresh_interval,
            cached: RwLock::new(None),
            last_attempt: tokio::sync::Mutex::new(None),
        }
    }

    pub(crate) async fn resolve(
        &self,
        kid: &str,
        alg: AssertionAlg,
    ) -> Result<DecodingKey, KeyError> {
        self.resolve_jwt(kid, alg.jwt()).await
    }

    /// The key `kid`, usable for `alg`: from the cache, or fetched again
    /// (at most once per refresh interval) when `kid` is unknown.
    pub(crate) async fn resolve_jwt(
        &self,
        kid: &str,
        alg: Algorithm,
    ) -> Result<DecodingKey, KeyError> {
        if let Some(found) = self.cached_key(kid, alg) {
            return found;
        }
        let mut last_attempt = self.last_attempt.lock().await;
        // Another request may have refreshed the set while we waited.
        if let Some(found) = self.cached_key(kid, alg) {
            return found;
        }
        let recently = last_attempt.is_some_and(|at| at.elapsed() < self.min_refresh_interval);
        if !recently {
            *last_attempt = Some(Instant::now());
            self.refresh().await;
        }
        drop(last_attempt);
        match self.cached_key(kid, alg) {
            Some(found) => found,
            None if self.current().is_none() => Err(KeyError::KeySetUnavailable),
            None => Err(KeyError::UnknownKid),
        }
    }

    fn current(&self) -> Option<Arc<KeySet>> {
        self.cached
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn cached_key(&self, kid: &str, alg: Algorithm) -> Option<Result<DecodingKey, KeyError>> {
        let set = self.current()?;
        let key = set.find(kid)?;
        Some(if key.accepts_jwt(alg) {
            Ok(key.decoding_key().clone())
        } else {
            Err(KeyError::AlgorithmMismatch)
        })
    }

    async fn refresh(&self) {
        match self.fetch().await {
            Ok(set) => {
                tracing::info!(client_id = %self.client_id, url = %self.url, keys = set.len(), "fetched JWKS");
                *self.cached.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(set));
            }
            Err(problem) => {
                tracing::warn!(client_id = %self.client_id, url = %self.url, %problem, "JWKS fetch failed; keeping the cached set");
            }
        }
    }

    async fn fetch(&self) -> Result<KeySet, String> {
        let mut response = self
            .http
            .get(self.url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("HTTP status {}", response.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| format!("read failed: {e}"))?
        {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(format!("larger than {MAX_JWKS_BYTES} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        let (set, skipped) =
            KeySet::parse_published_for(&body, self.algs).map_err(|e| e.to_string())?;
        for problem in skipped {
            tracing::debug!(client_id = %self.client_id, %problem, "JWKS key skipped");
        }
        Ok(set)
    }
}
