//! The OTLP/HTTP export task: takes finished spans from the queue the
//! request path fills (`telemetry::otlp`), and posts them in batches to
//! `{otlp_endpoint}/v1/traces` as OTLP/JSON.
//!
//! Off the request path by construction: requests only push to the bounded
//! queue. A batch goes when `otlp_batch_size` spans wait or every
//! `otlp_interval_ms`, each POST bounded by `otlp_timeout_ms`. A failed batch
//! is dropped and counted, not retried: spans are diagnostics, and retrying
//! into a collector outage would only grow the backlog. Failures are logged
//! at warn at most once a minute. At shutdown what is queued is sent, within
//! `otlp_timeout_ms`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use telemetry::otlp::{self, Resource, Span, SpanQueue, Tracer};
use telemetry::{Metrics, OtlpMetrics};
use tokio::sync::{Notify, watch};

use crate::config::TelemetryConfig;

/// How often a failing collector is complained about.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// The running export; flush it at shutdown.
pub struct TraceExport {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    queue: Arc<SpanQueue>,
    flush_budget: Duration,
}

/// Starts the export when `[telemetry] otlp_endpoint` is set. Returns the
/// tracer the service records into ([`Tracer::OFF`] when export is off) and
/// the running export. `instance_id` names this node (`service.instance.id`).
pub fn start(
    config: &TelemetryConfig,
    tls: &auth::OutboundTls,
    metrics: &Metrics,
    instance_id: String,
) -> Result<(Tracer, Option<TraceExport>), String> {
    // Again here: flags and environment variables are applied after the file
    // was checked.
    config.check().map_err(|e| e.to_string())?;
    let Some(endpoint) = &config.otlp_endpoint else {
        return Ok((Tracer::OFF, None));
    };
    let timeout = Duration::from_millis(config.otlp_timeout_ms);
    let http = tls
        .client_builder()
        .timeout(timeout)
        .user_agent(concat!("nrls-otlp/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot build the OTLP HTTP client: {e}"))?;
    let queue = Arc::new(SpanQueue::new(
        config.otlp_queue_size,
        config.otlp_batch_size,
        metrics.otlp().clone(),
    ));
    let ready = Arc::new(Notify::new());
    let waker = Arc::clone(&ready);
    queue.on_batch_ready(move || waker.notify_one());
    let sender = Sender {
        http,
        url: format!("{}{}", endpoint.trim_end_matches('/'), otlp::TRACES_PATH),
        headers: headers(config)?,
        resource: Resource {
            service_name: config.service_name.clone(),
            service_version: env!("CARGO_PKG_VERSION").to_owned(),
            instance_id,
        },
        metrics: metrics.otlp().clone(),
        complaints: Complaints::default(),
    };
    let (stop, stopped) = watch::channel(false);
    let interval = Duration::from_millis(config.otlp_interval_ms);
    let task = tokio::spawn(run(sender, Arc::clone(&queue), ready, stopped, interval));
    tracing::info!(endpoint = %endpoint, "exporting trace spans over OTLP/HTTP");
    let export = TraceExport {
        stop,
        task,
        queue: Arc::clone(&queue),
        flush_budget: timeout,
    };
    Ok((Tracer::new(queue), Some(export)))
}

impl TraceExport {
    /// Sends what is queued, for at most `otlp_timeout_ms`, then stops. Call
    /// it once requests have finished, so their spans are in the queue.
    pub async fn flush_and_stop(self) {
        let _ = self.stop.send(true);
        let mut task = self.task;
        if tokio::time::timeout(self.flush_budget, &mut task)
            .await
            .is_err()
        {
            task.abort();
            tracing::warn!(
                spans = self.queue.len(),
                "OTLP flush at shutdown timed out; queued spans were not exported"
            );
        }
    }
}

/// The `service.instance.id` of this node: its host name (the pod name on
/// Kubernetes) and the main listener's port, so nodes sharing a public URL
/// behind a load balancer are told apart.
pub fn instance_id(port: u16) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned());
    format!("{host}:{port}")
}

fn headers(config: &TelemetryConfig) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::new();
    for (name, value) in &config.otlp_headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("telemetry.otlp_headers: {name:?} is not a header name"))?;
        let mut value = HeaderValue::from_str(value)
            .map_err(|_| format!("telemetry.otlp_headers: the value of {name} is not valid"))?;
        // Collector credentials: keep them out of any debug output.
        value.set_sensitive(true);
        map.insert(name, value);
    }
    map.insert(CONTENT_TYPE, HeaderValue::from_static(otlp::CONTENT_TYPE));
    Ok(map)
}

/// Sends batches until stopped (or the handle is dropped), then once more
/// to flush.
async fn run(
    mut sender: Sender,
    queue: Arc<SpanQueue>,
    ready: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
    interval: Duration,
) {
    // The first tick one interval from now: nothing is queued at start.
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = ready.notified() => {}
            _ = stop.changed() => break,
        }
        sender.send_queued(&queue).await;
    }
    sender.send_queued(&queue).await;
}

struct Sender {
    http: reqwest::Client,
    url: String,
    headers: HeaderMap,
    resource: Resource,
    metrics: OtlpMetrics,
    complaints: Complaints,
}

impl Sender {
    /// Sends every queued span, a batch at a time.
    async fn send_queued(&mut self, queue: &SpanQueue) {
        loop {
            let batch = queue.take_batch();
            if batch.is_empty() {
                return;
            }
            let partial = batch.len() < queue.batch_size();
            self.send(batch).await;
            if partial {
                return;
            }
        }
    }

    async fn send(&mut self, spans: Vec<Span>) {
        let count = spans.len() as u64;
        let body = otlp::encode(&self.resource, &spans);
        drop(spans);
        let sent = self
            .http
            .post(&self.url)
            .headers(self.headers.clone())
            .body(body)
            .send()
            .await;
        let failure = match sent {
            Ok(response) if response.status().is_success() => {
                // Read the (small) answer so the connection is reused.
                let _ = response.bytes().await;
                None
            }
            Ok(response) => Some(format!("the collector answered HTTP {}", response.status())),
            // Without the URL: an endpoint may carry credentials.
            Err(e) => Some(e.without_url().to_string()),
        };
        match failure {
            None => {
                self.metrics.exported(count);
                self.complaints.recovered();
            }
            Some(reason) => {
                self.metrics.dropped_export_failed(count);
                self.complaints.failed(&reason, count);
            }
        }
    }
}

/// Logs export failures at warn at most once per [`WARN_EVERY`], with how
/// many spans were lost since the last warning, and once on recovery.
#[derive(Default)]
struct Complaints {
    last_warned: Option<Instant>,
    lost_since: u64,
    failing: bool,
}

impl Complaints {
    fn failed(&mut self, reason: &str, spans: u64) {
        self.failing = true;
        self.lost_since += spans;
        if self.last_warned.is_some_and(|at| at.elapsed() < WARN_EVERY) {
            return;
        }
        tracing::warn!(
            reason,
            spans_dropped = self.lost_since,
            "OTLP trace export failed; spans dropped (see nrls_otlp_spans_dropped_total)"
        );
        self.last_warned = Some(Instant::now());
        self.lost_since = 0;
    }

    fn recovered(&mut self) {
        if std::mem::take(&mut self.failing) {
            tracing::info!("OTLP trace export recovered");
            self.last_warned = None;
            self.lost_since = 0;
        }
    }
}
