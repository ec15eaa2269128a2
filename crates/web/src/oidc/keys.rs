//! The client's own signing key and the provider's verification keys.

use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use tokio::sync::Mutex;

/// The private key of `private_key_jwt`, with its algorithm and `kid`.
#[derive(Clone)]
pub struct ClientKey {
    pub key: EncodingKey,
    pub alg: Algorithm,
    pub kid: String,
}

impl std::fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientKey")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// Refetches for an unknown `kid` no more often than this, so tokens with
/// made-up key ids cannot make nrls hammer the provider.
const REFETCH_INTERVAL: Duration = Duration::from_secs(60);

struct Cached {
    set: JwkSet,
    fetched: Instant,
}

/// The provider's JWKS: fetched on first use, cached, refetched once when a
/// token names a key it does not hold (key rotation).
pub(super) struct Jwks {
    http: reqwest::Client,
    cached: Mutex<Option<Cached>>,
}

impl Jwks {
    pub(super) fn new(http: reqwest::Client) -> Jwks {
        Jwks {
            http,
            cached: Mutex::new(None),
        }
    }

    async fn fetch(&self, uri: &str) -> Result<JwkSet, String> {
        self.http
            .get(uri)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| e.to_string())?
            .json::<JwkSet>()
            .await
            .map_err(|e| e.to_string())
    }

    /// The decoding key for `kid`.
    pub(super) async fn key(&self, uri: &str, kid: &str) -> Result<Option<DecodingKey>, String> {
        let mut cached = self.cached.lock().await;
        let stale = match cached.as_ref() {
            Some(c) if c.set.find(kid).is_some() => false,
            Some(c) => c.fetched.elapsed() >= REFETCH_INTERVAL,
            None => true,
        };
        if stale {
            // A failed fetch keeps the keys already held.
            match self.fetch(uri).await {
                Ok(set) => {
                    *cached = Some(Cached {
                        set,
                        fetched: Instant::now(),
                    })
                }
                Err(e) if cached.is_none() => return Err(e),
                Err(e) => tracing::warn!(error = %e, "JWKS refetch failed; keeping the old keys"),
            }
        }
        match cached.as_ref().and_then(|c| c.set.find(kid)) {
            Some(jwk) => DecodingKey::from_jwk(jwk)
                .map(Some)
                .map_err(|e| e.to_string()),
            None => Ok(None),
        }
    }
}
