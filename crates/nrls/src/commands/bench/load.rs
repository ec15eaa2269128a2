//! The load generator: HTTP/1.1 keep-alive connections (hyper), a closed loop
//! (each connection sends its next request when the last answered) and an
//! open loop (requests scheduled at a fixed rate, latency measured from the
//! time each was due, so a slow server cannot hide queueing: no coordinated
//! omission). Latencies go into HdrHistograms, in microseconds.
//!
//! Every loop is bounded in time and stops by itself; targets are 127.0.0.1.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::TcpStream;

/// Why a load run could not go on.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("connecting to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
    #[error("building a request: {0}")]
    Request(#[from] hyper::http::Error),
    #[error("histogram: {0}")]
    Histogram(String),
    #[error("load task failed: {0}")]
    Task(String),
}

/// What to send: builds request `n` (a GET, or a POST with a body).
pub trait RequestPlan: Send + Sync + 'static {
    fn request(&self, n: u64) -> Result<Request<Full<Bytes>>, hyper::http::Error>;
}

/// GETs of `paths[n % len]` with fixed headers.
pub struct GetPlan {
    pub paths: Vec<String>,
    pub headers: Vec<(String, String)>,
}

impl RequestPlan for GetPlan {
    fn request(&self, n: u64) -> Result<Request<Full<Bytes>>, hyper::http::Error> {
        let path = &self.paths[(n as usize) % self.paths.len().max(1)];
        let mut builder = Request::builder()
            .method(Method::GET)
            .uri(path.as_str())
            .header("host", "127.0.0.1")
            .header("x-request-id", request_id(n));
        for (k, v) in &self.headers {
            builder = builder.header(k.as_str(), v.as_str());
        }
        builder.body(Full::new(Bytes::new()))
    }
}

/// A UUID-shaped request id from a counter: NRL requires one per request,
/// and formatting a counter costs the load generator far less than a random UUID.
pub fn request_id(n: u64) -> String {
    format!("00000000-0000-4000-8000-{:012x}", n & 0xffff_ffff_ffff)
}

/// Latencies and counts of one run.
#[derive(Debug, Clone, Serialize)]
pub struct LoadResult {
    pub requests: u64,
    pub errors: u64,
    pub seconds: f64,
    pub per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    /// Status of the first non-2xx answer, if any.
    pub first_error: Option<String>,
}

impl LoadResult {
    fn from(
        histogram: &Histogram<u64>,
        errors: u64,
        seconds: f64,
        first_error: Option<String>,
    ) -> Self {
        let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
        let requests = histogram.len();
        LoadResult {
            requests,
            errors,
            seconds,
            per_second: requests as f64 / seconds.max(1e-9),
            p50_ms: ms(0.5),
            p99_ms: ms(0.99),
            p999_ms: ms(0.999),
            max_ms: histogram.max() as f64 / 1000.0,
            first_error,
        }
    }
}

fn new_histogram() -> Result<Histogram<u64>, LoadError> {
    // 1 µs to 60 s at 3 significant digits.
    Histogram::new_with_bounds(1, 60_000_000, 3).map_err(|e| LoadError::Histogram(e.to_string()))
}

/// One keep-alive HTTP/1.1 connection.
pub async fn connect(addr: SocketAddr) -> Result<SendRequest<Full<Bytes>>, LoadError> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|source| LoadError::Connect { addr, source })?;
    let _ = stream.set_nodelay(true);
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// Sends one request and reads the whole answer. `Ok(None)` is a 2xx.
pub async fn exchange(
    sender: &mut SendRequest<Full<Bytes>>,
    request: Request<Full<Bytes>>,
) -> Result<Option<String>, LoadError> {
    sender.ready().await?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    if status.is_success() {
        Ok(None)
    } else {
        let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
        Ok(Some(format!("{status}: {text}")))
    }
}

struct Shared {
    next: AtomicU64,
    errors: AtomicU64,
    first_error: std::sync::Mutex<Option<String>>,
}

impl Shared {
    fn new() -> Arc<Shared> {
        Arc::new(Shared {
            next: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            first_error: std::sync::Mutex::new(None),
        })
    }

    fn failed(&self, why: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut first) = self.first_error.lock()
            && first.is_none()
        {
            *first = Some(why);
        }
    }

    fn first_error(&self) -> Option<String> {
        self.first_error.lock().ok().and_then(|f| f.clone())
    }
}

/// Closed loop: `connections` connections each send back-to-back for
/// `duration`, after `warmup` (not recorded).
pub async fn closed_loop(
    addr: SocketAddr,
    plan: Arc<dyn RequestPlan>,
    connections: usize,
    warmup: Duration,
    duration: Duration,
) -> Result<LoadResult, LoadError> {
    let shared = Shared::new();
    let start = Instant::now() + Duration::from_millis(50);
    let record_from = start + warmup;
    let end = record_from + duration;
    let mut tasks = Vec::with_capacity(connections);
    for _ in 0..connections {
        let mut sender = connect(addr).await?;
        let plan = Arc::clone(&plan);
        let shared = Arc::clone(&shared);
        tasks.push(tokio::spawn(async move {
            let mut histogram = new_histogram()?;
            tokio::time::sleep_until(start.into()).await;
            loop {
                let sent = Instant::now();
                if sent >= end {
                    break;
                }
                let n = shared.next.fetch_add(1, Ordering::Relaxed);
                let outcome = exchange(&mut sender, plan.request(n)?).await?;
                let done = Instant::now();
                if sent < record_from {
                    continue;
                }
                match outcome {
                    None => {
                        let _ = histogram.record((done - sent).as_micros().max(1) as u64);
                    }
                    Some(why) => shared.failed(why),
                }
            }
            Ok::<_, LoadError>(histogram)
        }));
    }
    let total = merge(tasks).await?;
    Ok(LoadResult::from(
        &total,
        shared.errors.load(Ordering::Relaxed),
        duration.as_secs_f64(),
        shared.first_error(),
    ))
}

/// Open loop: request `i` is due at `start + i / rate`; a pacing thread
/// releases each at its due time to whichever of `connections` is free.
/// Latency runs from the due time, so time spent waiting for a free connection
/// (because the server fell behind) counts.
pub async fn open_loop(
    addr: SocketAddr,
    plan: Arc<dyn RequestPlan>,
    connections: usize,
    rate: f64,
    warmup: Duration,
    duration: Duration,
) -> Result<LoadResult, LoadError> {
    let shared = Shared::new();
    let (due_tx, due_rx) = tokio::sync::mpsc::unbounded_channel::<(u64, Instant)>();
    let due_rx = Arc::new(tokio::sync::Mutex::new(due_rx));
    let interval = Duration::from_secs_f64(1.0 / rate);
    let start = Instant::now() + Duration::from_millis(100);
    let record_from = start + warmup;
    let total_requests = ((warmup + duration).as_secs_f64() * rate) as u64;
    // std::thread::sleep has ~60 µs overshoot here; tokio's timer has 1 ms
    // granularity, which would add up to 1 ms of pacing error to every latency.
    let pacer = std::thread::Builder::new()
        .name("bench-pacer".into())
        .spawn(move || {
            for i in 0..total_requests {
                let due = start + interval.mul_f64(i as f64);
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
                if due_tx.send((i, due)).is_err() {
                    return;
                }
            }
        })
        .map_err(|e| LoadError::Task(e.to_string()))?;
    let mut tasks = Vec::with_capacity(connections);
    for _ in 0..connections {
        let mut sender = connect(addr).await?;
        let plan = Arc::clone(&plan);
        let shared = Arc::clone(&shared);
        let due_rx = Arc::clone(&due_rx);
        tasks.push(tokio::spawn(async move {
            let mut histogram = new_histogram()?;
            loop {
                let next = due_rx.lock().await.recv().await;
                let Some((n, due)) = next else { break };
                let outcome = exchange(&mut sender, plan.request(n)?).await?;
                let done = Instant::now();
                if due < record_from {
                    continue;
                }
                match outcome {
                    None => {
                        let _ = histogram.record((done - due).as_micros().max(1) as u64);
                    }
                    Some(why) => shared.failed(why),
                }
            }
            Ok::<_, LoadError>(histogram)
        }));
    }
    let total = merge(tasks).await?;
    let _ = pacer.join();
    Ok(LoadResult::from(
        &total,
        shared.errors.load(Ordering::Relaxed),
        duration.as_secs_f64(),
        shared.first_error(),
    ))
}

async fn merge(
    tasks: Vec<tokio::task::JoinHandle<Result<Histogram<u64>, LoadError>>>,
) -> Result<Histogram<u64>, LoadError> {
    let mut total = new_histogram()?;
    for task in tasks {
        let histogram = task.await.map_err(|e| LoadError::Task(e.to_string()))??;
        total
            .add(&histogram)
            .map_err(|e| LoadError::Histogram(e.to_string()))?;
    }
    Ok(total)
}
