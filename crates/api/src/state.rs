//! What every handler shares: the store, the authenticator and the settings.

use std::sync::Arc;
use std::time::Instant;

use auth::Authenticator;
use domain::catalogue::Catalogue;
use domain::search::SearchLimits;
use store::SharedStore;

use crate::rate_limit::RateLimiter;

/// HTTP-level settings.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// Base URL clients reach this server at, e.g. `https://nrls.example.nhs.uk`;
    /// used in `Location`, `fullUrl` and paging links.
    pub public_url: String,
    pub search_limits: SearchLimits,
    /// Largest request body accepted, in bytes.
    pub body_limit: usize,
    /// Trust `NHSD-Connection-Metadata` from an API gateway in front (off by default).
    pub gateway_mode: bool,
}

impl Default for ApiSettings {
    fn default() -> Self {
        ApiSettings {
            public_url: "http://127.0.0.1:8080".to_owned(),
            search_limits: SearchLimits::default(),
            body_limit: 1024 * 1024,
            gateway_mode: false,
        }
    }
}

struct Inner {
    store: SharedStore,
    auth: Arc<Authenticator>,
    settings: ApiSettings,
    rate_limiter: RateLimiter,
    started: Instant,
}

/// Cheap to clone: one `Arc`.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

impl AppState {
    pub fn new(store: SharedStore, auth: Arc<Authenticator>, settings: ApiSettings) -> Self {
        AppState(Arc::new(Inner {
            store,
            auth,
            settings,
            rate_limiter: RateLimiter::default(),
            started: Instant::now(),
        }))
    }

    pub fn store(&self) -> &SharedStore {
        &self.0.store
    }

    pub fn auth(&self) -> &Authenticator {
        &self.0.auth
    }

    pub fn settings(&self) -> &ApiSettings {
        &self.0.settings
    }

    pub fn rate_limiter(&self) -> &RateLimiter {
        &self.0.rate_limiter
    }

    pub fn catalogue(&self) -> &'static Catalogue {
        Catalogue::nrl_v3()
    }

    pub fn uptime_seconds(&self) -> u64 {
        self.0.started.elapsed().as_secs()
    }
}
