//! Operability: what the people who run nrls need from it at 3 a.m. Health
//! probes (`/livez`, `/readyz`), Prometheus metrics (`/metrics`), the OpenAPI
//! document (`/openapi.json`), one access-log line per request, and a reload
//! endpoint on the admin listener. See docs/operations.md.

pub mod health;
pub mod lifecycle;
pub mod observe;
pub mod openapi;
pub mod reload;
mod routes;
pub mod starting;

use std::sync::Arc;

use telemetry::{Metrics, Tracer};

pub use lifecycle::{Lifecycle, Phase};
pub use reload::{ReloadError, Reloader};
pub use routes::{admin_routes, routes};

/// Operability handles shared by the HTTP layer and the process around it.
#[derive(Clone, Default)]
pub struct Ops {
    metrics: Arc<Metrics>,
    /// Where request and source-call spans go (off unless OTLP export is
    /// configured).
    tracer: Tracer,
    lifecycle: Lifecycle,
    reloader: Option<Reloader>,
    /// `/metrics` is served on a separate admin listener, not the main one.
    separate_admin: bool,
}

impl Ops {
    /// Handles for a service; with `separate_admin`, `/metrics` and the
    /// reload endpoint are left to [`crate::admin_router`].
    pub fn new(metrics: Arc<Metrics>, lifecycle: Lifecycle, separate_admin: bool) -> Ops {
        Ops {
            metrics,
            tracer: Tracer::OFF,
            lifecycle,
            reloader: None,
            separate_admin,
        }
    }

    /// What `POST /-/reload` (and SIGHUP, in the binary) runs.
    pub fn with_reloader(mut self, reloader: Reloader) -> Ops {
        self.reloader = Some(reloader);
        self
    }

    /// Exports spans through `tracer` (OTLP export on).
    pub fn with_tracer(mut self, tracer: Tracer) -> Ops {
        self.tracer = tracer;
        self
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn tracer(&self) -> &Tracer {
        &self.tracer
    }

    pub fn lifecycle(&self) -> &Lifecycle {
        &self.lifecycle
    }

    pub fn reloader(&self) -> Option<&Reloader> {
        self.reloader.as_ref()
    }

    pub fn separate_admin(&self) -> bool {
        self.separate_admin
    }
}

/// The store's own counters (group commit, pool), read at each scrape.
pub fn store_snapshot(store: &dyn store::PointerStore) -> telemetry::StoreSnapshot {
    telemetry::StoreSnapshot {
        write_batches: store.write_stats().map(|s| (s.batches, s.ops)),
        pool: store.pool_stats().map(|p| telemetry::PoolSnapshot {
            open: p.open,
            in_use: p.in_use,
            max: p.max,
        }),
        audit_outbox: None,
    }
}
