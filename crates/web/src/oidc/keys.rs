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
/// made-up key ids cannot make nrls hammer the provider (the same rule as
/// `auth::user_identity` for `NHSD-User-Identity`).
pub(super) const REFETCH_INTERVAL: Duration = Duration::from_secs(60);

struct Cached {
    set: JwkSet,
    fetched: Instant,
}

/// The provider's JWKS: fetched on first use, cached, refetched once when a
/// token names a key it does not hold (key rotation).
pub(super) struct Jwks {
    http: reqwest::Client,
    cached: Mutex<Option<Cached>>,
    refetch_interval: Duration,
}

impl Jwks {
    pub(super) fn new(http: reqwest::Client, refetch_interval: Duration) -> Jwks {
        Jwks {
            http,
            cached: Mutex::new(None),
            refetch_interval,
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
            Some(c) => c.fetched.elapsed() >= self.refetch_interval,
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::Router;
    use axum::routing::get;
    use serde_json::{Value, json};

    use super::*;

    /// A JWKS endpoint whose keys can be swapped, counting its fetches.
    async fn endpoint(keys: Arc<std::sync::Mutex<Value>>, hits: Arc<AtomicUsize>) -> String {
        let app = Router::new().route(
            "/jwks",
            get(move || {
                let keys = Arc::clone(&keys);
                let hits = Arc::clone(&hits);
                async move {
                    hits.fetch_add(1, Ordering::SeqCst);
                    axum::Json(keys.lock().unwrap().clone())
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}/jwks")
    }

    fn key_set(kid: &str) -> Value {
        let mut set: Value = serde_json::from_str(include_str!(
            "../../../auth/src/testdata/rsa-test-jwks.json"
        ))
        .unwrap();
        set["keys"][0]["kid"] = json!(kid);
        set
    }

    #[tokio::test]
    async fn keys_are_cached_and_refetched_once_for_an_unknown_kid() {
        let keys = Arc::new(std::sync::Mutex::new(key_set("k1")));
        let hits = Arc::new(AtomicUsize::new(0));
        let uri = endpoint(Arc::clone(&keys), Arc::clone(&hits)).await;
        let jwks = Jwks::new(reqwest::Client::new(), Duration::ZERO);
        assert!(jwks.key(&uri, "k1").await.unwrap().is_some());
        assert!(jwks.key(&uri, "k1").await.unwrap().is_some());
        assert_eq!(
            hits.load(Ordering::SeqCst),
            1,
            "a known kid is served from the cache"
        );
        // The provider rotates its key: the unknown kid costs one refetch.
        *keys.lock().unwrap() = key_set("k2");
        assert!(jwks.key(&uri, "k2").await.unwrap().is_some());
        assert_eq!(hits.load(Ordering::SeqCst), 2);
        // A made-up kid is refetched once, then refused.
        assert!(jwks.key(&uri, "made-up").await.unwrap().is_none());
        assert_eq!(hits.load(Ordering::SeqCst), 3);

        // With the production interval, a burst of unknown kids costs nothing more.
        let limited = Jwks::new(reqwest::Client::new(), REFETCH_INTERVAL);
        limited.key(&uri, "k2").await.unwrap();
        for _ in 0..5 {
            assert!(limited.key(&uri, "made-up").await.unwrap().is_none());
        }
        assert_eq!(hits.load(Ordering::SeqCst), 4);
    }
}
