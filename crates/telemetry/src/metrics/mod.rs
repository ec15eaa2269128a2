//! The Prometheus registry of one running service and its recording handles.
//!
//! Every metric is registered once, in [`Metrics::new`], so the exposition
//! always lists the same families (an absent family is a dashboard bug waiting
//! to happen). Label values are `&'static str` wherever the set is known at
//! compile time (methods, route templates, store operations, OAuth error
//! codes), so recording a request costs a hash lookup under a read lock and a
//! few atomic adds: no allocation.

mod federation;
mod otlp;
mod store_stats;
mod subscriptions;

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::prometheus_text;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

pub use federation::{AuditMetrics, AuditPending, FederationMetrics, SourceMetrics, SourceOutcome};
pub use otlp::OtlpMetrics;
pub use store_stats::{PoolSnapshot, StoreSnapshot};
pub use subscriptions::SubscriptionMetrics;

use store_stats::StoreStatsCollector;

/// The full name of every metric nrls exports (the `_total` suffix of
/// counters included), for documentation, dashboards and tests.
pub mod names {
    pub const HTTP_REQUESTS: &str = "nrls_http_requests_total";
    pub const HTTP_DURATION: &str = "nrls_http_request_duration_seconds";
    pub const HTTP_IN_FLIGHT: &str = "nrls_http_requests_in_flight";
    pub const STORE_DURATION: &str = "nrls_store_operation_duration_seconds";
    pub const STORE_WRITE_BATCHES: &str = "nrls_store_write_batches_total";
    pub const STORE_WRITE_OPS: &str = "nrls_store_write_batch_ops_total";
    pub const STORE_POOL_CONNECTIONS: &str = "nrls_store_pool_connections";
    pub const STORE_POOL_MAX: &str = "nrls_store_pool_max_connections";
    pub const TOKENS: &str = "nrls_token_requests_total";
    pub const RATE_LIMITED: &str = "nrls_rate_limit_rejections_total";
    pub const AUDIT_BACKLOG: &str = "nrls_audit_backlog_events";
    pub const AUDIT_WRITTEN: &str = "nrls_audit_events_written_total";
    pub const AUDIT_OUTBOX: &str = "nrls_audit_outbox_events";
    pub const FEDERATION_REQUESTS: &str = "nrls_federation_source_requests_total";
    pub const FEDERATION_DURATION: &str = "nrls_federation_source_request_duration_seconds";
    pub const RELOADS: &str = "nrls_config_reloads_total";
    pub const APPS: &str = "nrls_apps_onboarded";
    pub const BUILD_INFO: &str = "nrls_build_info";
    pub const OTLP_EXPORTED: &str = "nrls_otlp_spans_exported_total";
    pub const OTLP_DROPPED: &str = "nrls_otlp_spans_dropped_total";
}

/// `text/plain; version=0.0.4`: the Prometheus text exposition format.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// Request latency buckets, in seconds: 0.5 ms to 10 s.
const HTTP_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Store latency buckets, in seconds: 50 µs (a cached point read) to 2.5 s.
const STORE_BUCKETS: [f64; 13] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.5,
];

fn http_histogram() -> Histogram {
    Histogram::new(HTTP_BUCKETS)
}

fn store_histogram() -> Histogram {
    Histogram::new(STORE_BUCKETS)
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// A route template as a label value. Built once per route when the router
/// is built; cloning it for a request copies a pointer, not the string.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct RouteLabel(Arc<str>);

impl RouteLabel {
    pub fn new(template: &str) -> RouteLabel {
        RouteLabel(Arc::from(template))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl EncodeLabelValue for RouteLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        EncodeLabelValue::encode(&&*self.0, encoder)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    method: &'static str,
    route: RouteLabel,
    status: u16,
}

/// Requests served, by method, route template and status.
#[derive(Clone)]
pub struct HttpMetrics {
    requests: Family<HttpLabels, Counter>,
    duration: HistogramFamily<HttpLabels>,
    in_flight: Gauge,
    rate_limited: Counter,
}

impl HttpMetrics {
    /// Creates the `status="200"` series of a route up front, so dashboards
    /// see it at zero before the first request.
    pub fn preregister(&self, method: &'static str, route: &RouteLabel) {
        let labels = HttpLabels {
            method,
            route: route.clone(),
            status: 200,
        };
        drop(self.requests.get_or_create(&labels));
        drop(self.duration.get_or_create(&labels));
    }

    /// Records one finished request. `route` is the route *template*
    /// (`/consumer/FHIR/R4/DocumentReference/{id}`), never the raw path, so
    /// identifiers and query strings never become label values.
    pub fn record(&self, method: &'static str, route: &RouteLabel, status: u16, elapsed: Duration) {
        let labels = HttpLabels {
            method,
            route: route.clone(),
            status,
        };
        self.requests.get_or_create(&labels).inc();
        self.duration
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
        if status == 429 {
            self.rate_limited.inc();
        }
    }

    /// Counts a request in flight until the guard drops.
    pub fn in_flight(&self) -> InFlight {
        self.in_flight.inc();
        InFlight(self.in_flight.clone())
    }
}

/// A request in flight; dropping it (however the request ends) counts it out.
pub struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoreLabels {
    operation: &'static str,
    result: &'static str,
}

/// Latency of every store call, by operation and result.
#[derive(Clone)]
pub struct StoreMetrics {
    duration: HistogramFamily<StoreLabels>,
}

impl StoreMetrics {
    /// Records one store call. `operation` is the trait method (`create`,
    /// `get`, ...); `result` is `ok` or the error kind (`not_found`,
    /// `conflict`, `unavailable`, `internal`).
    pub fn record(&self, operation: &'static str, result: &'static str, elapsed: Duration) {
        self.duration
            .get_or_create(&StoreLabels { operation, result })
            .observe(elapsed.as_secs_f64());
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

/// Token endpoint outcomes: `issued`, or the RFC 6749 error code returned.
#[derive(Clone)]
pub struct TokenMetrics {
    requests: Family<ResultLabel, Counter>,
}

impl TokenMetrics {
    /// An access token was issued.
    pub fn issued(&self) {
        self.record("issued");
    }

    /// A token request was refused with this OAuth error code
    /// (`invalid_client`, `invalid_request`, ...).
    pub fn refused(&self, oauth_code: &'static str) {
        self.record(oauth_code);
    }

    fn record(&self, result: &'static str) {
        self.requests.get_or_create(&ResultLabel { result }).inc();
    }
}

/// Reloads of the app registry (SIGHUP or the admin endpoint).
#[derive(Clone)]
pub struct ReloadMetrics {
    reloads: Family<ResultLabel, Counter>,
    apps: Gauge,
}

impl ReloadMetrics {
    /// A reload succeeded and `apps` apps are now onboarded.
    pub fn succeeded(&self, apps: usize) {
        self.reloads
            .get_or_create(&ResultLabel { result: "success" })
            .inc();
        self.set_apps(apps);
    }

    /// A reload was rejected; the previous registry stays in force.
    pub fn failed(&self) {
        self.reloads
            .get_or_create(&ResultLabel { result: "failure" })
            .inc();
    }

    /// The number of onboarded apps (set at start and on each reload).
    pub fn set_apps(&self, apps: usize) {
        self.apps.set(i64::try_from(apps).unwrap_or(i64::MAX));
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

/// The metrics of one running service. Share it as `Arc<Metrics>`.
pub struct Metrics {
    registry: Registry,
    http: HttpMetrics,
    store: StoreMetrics,
    tokens: TokenMetrics,
    reloads: ReloadMetrics,
    audit: AuditMetrics,
    federation: FederationMetrics,
    otlp: OtlpMetrics,
    subscriptions: SubscriptionMetrics,
    store_stats: Arc<StoreStatsCollector>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Registers every nrls metric.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("nrls");
        let http = HttpMetrics {
            requests: Family::default(),
            duration: Family::new_with_constructor(http_histogram),
            in_flight: Gauge::default(),
            rate_limited: Counter::default(),
        };
        registry.register(
            "http_requests",
            "HTTP requests answered, by method, route template and status",
            http.requests.clone(),
        );
        registry.register_with_unit(
            "http_request_duration",
            "Time from request received to response headers sent",
            Unit::Seconds,
            http.duration.clone(),
        );
        registry.register(
            "http_requests_in_flight",
            "Requests being handled now",
            http.in_flight.clone(),
        );
        registry.register(
            "rate_limit_rejections",
            "Requests refused with 429 because the app exceeded its rate limit",
            http.rate_limited.clone(),
        );
        let store = StoreMetrics {
            duration: Family::new_with_constructor(store_histogram),
        };
        registry.register_with_unit(
            "store_operation_duration",
            "Pointer store calls, by operation and result",
            Unit::Seconds,
            store.duration.clone(),
        );
        let tokens = TokenMetrics {
            requests: Family::default(),
        };
        registry.register(
            "token_requests",
            "Token endpoint requests, by result: issued or the OAuth error code",
            tokens.requests.clone(),
        );
        let reloads = ReloadMetrics {
            reloads: Family::default(),
            apps: Gauge::default(),
        };
        registry.register(
            "config_reloads",
            "App registry reloads, by result",
            reloads.reloads.clone(),
        );
        registry.register(
            "apps_onboarded",
            "Apps in the registry in force",
            reloads.apps.clone(),
        );
        let build_info = Family::<BuildLabels, Gauge>::default();
        build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        registry.register("build_info", "nrls version; always 1", build_info);
        let audit = AuditMetrics::register(&mut registry);
        let federation = FederationMetrics::register(&mut registry);
        let otlp = OtlpMetrics::register(&mut registry);
        let subscriptions = SubscriptionMetrics::register(&mut registry);
        let store_stats = Arc::new(StoreStatsCollector::default());
        registry.register_collector(Box::new(Arc::clone(&store_stats)));
        Metrics {
            registry,
            http,
            store,
            tokens,
            reloads,
            audit,
            federation,
            otlp,
            subscriptions,
            store_stats,
        }
    }

    pub fn http(&self) -> &HttpMetrics {
        &self.http
    }

    pub fn store(&self) -> &StoreMetrics {
        &self.store
    }

    pub fn tokens(&self) -> &TokenMetrics {
        &self.tokens
    }

    pub fn reloads(&self) -> &ReloadMetrics {
        &self.reloads
    }

    /// For the audit trail writer: its backlog and throughput.
    pub fn audit(&self) -> &AuditMetrics {
        &self.audit
    }

    /// For the federation fan-out: per-source latency and failures.
    pub fn federation(&self) -> &FederationMetrics {
        &self.federation
    }

    /// For the OTLP span export: spans exported and dropped.
    pub fn subscriptions(&self) -> &SubscriptionMetrics {
        &self.subscriptions
    }

    pub fn otlp(&self) -> &OtlpMetrics {
        &self.otlp
    }

    /// Sets where the store's own counters (group-commit batches, connection
    /// pool) are read from at each scrape. The closure should hold the store
    /// weakly, so metrics never keep a store open at shutdown.
    pub fn watch_store(&self, source: impl Fn() -> StoreSnapshot + Send + Sync + 'static) {
        self.store_stats.watch(Box::new(source));
    }

    /// The exposition, in the Prometheus text format ([`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let mut text = String::with_capacity(16 * 1024);
        // Writing into a String cannot fail; an encoder error would be a bug
        // in a label value, and a partial scrape is better than none.
        let _ = prometheus_text::encode(&mut text, &self.registry);
        text
    }
}

#[cfg(test)]
mod tests;
