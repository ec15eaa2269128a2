//! Real HTTP endpoints for subscription notifications: each records what it
//! received and answers as its current [`Mode`] says (200; 500 for the next
//! N event notifications; hang; 410).

#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::Value;

/// How the receiver answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Ok,
    /// 500 for the next `n` event notifications (handshakes and heartbeats get 200).
    FailEvents(u32),
    /// Event notifications never get an answer.
    HangEvents,
    /// 410 for event notifications.
    GoneEvents,
    /// 500 for everything, handshakes included.
    FailAll,
}

/// One request received.
#[derive(Debug, Clone)]
pub struct Received {
    pub body: Value,
    pub headers: HeaderMap,
    pub at: Instant,
}

impl Received {
    /// `type` of the notification (handshake, heartbeat, event-notification).
    pub fn kind(&self) -> String {
        parameter(&self.body, "type")["valueCode"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Event numbers it carries.
    pub fn numbers(&self) -> Vec<i64> {
        status(&self.body)["parameter"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["name"] == "notification-event")
            .map(|p| {
                p["part"][0]["valueString"]
                    .as_str()
                    .unwrap()
                    .parse()
                    .unwrap()
            })
            .collect()
    }

    /// The focus reference of each event it carries.
    pub fn focus_ids(&self) -> Vec<String> {
        status(&self.body)["parameter"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["name"] == "notification-event")
            .filter_map(|p| {
                p["part"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|part| part["name"] == "focus")
                    .map(|part| {
                        let r = part["valueReference"]["reference"].as_str().unwrap();
                        r.rsplit('/').next().unwrap().to_owned()
                    })
            })
            .collect()
    }
}

/// The status `Parameters` of a notification bundle.
pub fn status(bundle: &Value) -> &Value {
    &bundle["entry"][0]["resource"]
}

pub fn parameter<'a>(bundle: &'a Value, name: &str) -> &'a Value {
    status(bundle)["parameter"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or(&Value::Null)
}

#[derive(Default)]
struct Inner {
    mode: Option<Mode>,
    received: Vec<Received>,
}

/// A receiver on a loopback port.
#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    inner: Arc<Mutex<Inner>>,
}

impl Receiver {
    pub async fn start(mode: Mode) -> Receiver {
        let inner = Arc::new(Mutex::new(Inner {
            mode: Some(mode),
            received: Vec::new(),
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/notify", listener.local_addr().unwrap());
        let app = Router::new()
            .route("/notify", post(receive))
            .with_state(Arc::clone(&inner));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { url, inner }
    }

    pub fn set_mode(&self, mode: Mode) {
        self.inner.lock().unwrap().mode = Some(mode);
    }

    pub fn received(&self) -> Vec<Received> {
        self.inner.lock().unwrap().received.clone()
    }

    /// The event notifications received so far.
    pub fn events(&self) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.kind() == "event-notification")
            .collect()
    }

    /// Waits until `done` holds for what was received, or panics after `within`.
    pub async fn wait_for(&self, within: Duration, what: &str, done: impl Fn(&[Received]) -> bool) {
        let started = Instant::now();
        loop {
            let received = self.received();
            if done(&received) {
                return;
            }
            assert!(
                started.elapsed() < within,
                "timed out waiting for {what}; received {:?}",
                received
                    .iter()
                    .map(|r| (r.kind(), r.numbers()))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn receive(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let record = Received {
        body,
        headers,
        at: Instant::now(),
    };
    let is_event = record.kind() == "event-notification";
    let answer = {
        let mut inner = inner.lock().unwrap();
        inner.received.push(record);
        match inner.mode {
            Some(Mode::FailAll) => Some(StatusCode::INTERNAL_SERVER_ERROR),
            Some(Mode::FailEvents(n)) if is_event && n > 0 => {
                inner.mode = Some(if n == 1 {
                    Mode::Ok
                } else {
                    Mode::FailEvents(n - 1)
                });
                Some(StatusCode::INTERNAL_SERVER_ERROR)
            }
            Some(Mode::GoneEvents) if is_event => Some(StatusCode::GONE),
            Some(Mode::HangEvents) if is_event => None,
            _ => Some(StatusCode::OK),
        }
    };
    match answer {
        Some(code) => code,
        None => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            StatusCode::OK
        }
    }
}
