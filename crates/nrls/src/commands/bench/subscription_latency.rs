//! `nrls bench subscription-latency`: commit-to-first-delivery-attempt
//! latency of subscription notifications, against a running `serve --demo`
//! server. It listens on a local port, subscribes the demo consumer to one
//! demo patient, then creates ReSPECT form pointers one at a time as the
//! demo producer and times, per pointer, from the producer's 201 (the write
//! has committed before it is acknowledged) to the arrival of the first
//! notification naming it. The figure is a slight underestimate of
//! commit-to-first-attempt by the 201's trip back to the client, and
//! includes the notification's own trip (loopback).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use domain::{NhsNumber, OdsCode};
use serde_json::Value;

use crate::commands::demo_subscriber::{api_post, respect_form, subscribe};

/// Arguments of `nrls bench subscription-latency`.
#[derive(Debug, clap::Args)]
pub struct LatencyArgs {
    /// Base URL of a server started with `serve --demo`.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Where the receiver listens (its host must be allowed for http:
    /// `serve --demo` allows 127.0.0.1).
    #[arg(long, default_value = "127.0.0.1:9091")]
    pub listen: SocketAddr,
    /// Pointers to create (one measurement each).
    #[arg(long, default_value_t = 200)]
    pub count: usize,
    /// Pause between creates, in milliseconds (0: back to back).
    #[arg(long, default_value_t = 20)]
    pub pause_ms: u64,
    /// The demo patient (its pointers grow by `count`).
    #[arg(long, default_value = "9990000026")]
    pub patient: String,
}

type Arrivals = Arc<Mutex<HashMap<String, Instant>>>;

pub async fn run(args: LatencyArgs) -> Result<(), String> {
    let nhs_number = NhsNumber::parse(&args.patient).map_err(|e| format!("--patient: {e}"))?;
    let custodian = OdsCode::parse("RR8").ok_or("bad ODS code")?;
    let arrivals: Arrivals = Arc::default();
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let app = Router::new()
        .route("/notify", post(arrive))
        .with_state(Arc::clone(&arrivals));
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let endpoint = format!("http://{}/notify", args.listen);
    subscribe(&args.url, &args.patient, &endpoint).await?;
    // The handshake first, so it is not measured.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let token = crate::commands::token::demo_token(&args.url, crate::demo::PRODUCER_APP).await?;
    let mut acknowledged: Vec<(String, Instant)> = Vec::with_capacity(args.count);
    for _ in 0..args.count {
        let body = respect_form(nhs_number, &custodian)?;
        let (_, location) = api_post(
            &args.url,
            &token,
            custodian.as_str(),
            "/producer/FHIR/R4/DocumentReference",
            &body,
        )
        .await?;
        let at = Instant::now();
        let id = location
            .as_deref()
            .and_then(|l| l.rsplit('/').next())
            .map(str::to_owned)
            .ok_or("the create answered without a Location")?;
        acknowledged.push((id, at));
        tokio::time::sleep(Duration::from_millis(args.pause_ms)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline && arrivals.lock().map(|a| a.len()).unwrap_or(0) < args.count {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.abort();
    let arrived = arrivals.lock().map_err(|_| "lock poisoned")?.clone();
    let mut latencies: Vec<Duration> = acknowledged
        .iter()
        .filter_map(|(id, at)| {
            arrived
                .get(id)
                .map(|got| got.saturating_duration_since(*at))
        })
        .collect();
    let missing = args.count - latencies.len();
    latencies.sort();
    let pick = |q: f64| {
        let i = ((latencies.len() as f64 - 1.0) * q).round() as usize;
        latencies
            .get(i)
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
    };
    println!(
        "subscription commit->first attempt over {} notifications: p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms; {missing} not received within 30 s",
        latencies.len(),
        pick(0.5),
        pick(0.9),
        pick(0.99),
        pick(1.0)
    );
    if missing > 0 {
        return Err(format!("{missing} notifications did not arrive"));
    }
    Ok(())
}

/// Records when each focus pointer was first named.
async fn arrive(State(arrivals): State<Arrivals>, body: Bytes) -> StatusCode {
    let now = Instant::now();
    let bundle: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if let (Some(entries), Ok(mut arrivals)) = (bundle["entry"].as_array(), arrivals.lock()) {
        for entry in entries.iter().skip(1) {
            if let Some(id) = entry["fullUrl"].as_str().and_then(|u| u.rsplit('/').next()) {
                arrivals.entry(id.to_owned()).or_insert(now);
            }
        }
    }
    StatusCode::OK
}
