//! nrls telemetry: what the service tells the people who run it.
//!
//! - [`Metrics`]: one Prometheus registry per running service, with a small
//!   recording handle per concern ([`HttpMetrics`], [`StoreMetrics`],
//!   [`TokenMetrics`], [`FederationMetrics`], [`AuditMetrics`], ...). Handles
//!   are cheap to clone and every series a hot path touches is looked up by
//!   `&'static str` labels (no allocation per request). The names are listed
//!   in [`names`] and in docs/operations.md.
//! - [`trace_context`]: W3C `traceparent` parsing and the headers an outbound
//!   call (e.g. a federation fan-out) carries so one trace id links the logs of
//!   every service a request touched.
//! - [`otlp`]: optional OpenTelemetry trace export (off by default): the span
//!   model, its OTLP/JSON encoding and the bounded queue the binary's export
//!   task drains. No HTTP client here; the binary does the POST.
//!
//! A leaf crate: it knows nothing of HTTP frameworks or stores, so any crate
//! (store, api, federation, audit) can record into it.

pub mod metrics;
pub mod otlp;
pub mod trace_context;

pub use metrics::CONTENT_TYPE;
pub use metrics::{
    AuditMetrics, FederationMetrics, HttpMetrics, InFlight, Metrics, OtlpMetrics, PoolSnapshot,
    ReloadMetrics, RouteLabel, SourceMetrics, SourceOutcome, StoreMetrics, StoreSnapshot,
    TokenMetrics, names,
};
pub use otlp::Tracer;
pub use trace_context::{TRACEPARENT, TraceContext, TraceParentError};
