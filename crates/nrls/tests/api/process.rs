//! The real `nrls serve` binary as a child process: graceful shutdown on
//! SIGTERM with a request in flight, SIGHUP reload, and what its JSON logs
//! contain (and must never contain).

use crate::support;
use crate::support::ops;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

/// A running `nrls serve` whose stderr (JSON logs: not a terminal) is collected.
struct Nrls {
    child: Child,
    addr: SocketAddr,
    url: String,
    lines: mpsc::Receiver<String>,
    log: Vec<String>,
}

impl Nrls {
    fn start(config: &Path, data: &Path) -> Nrls {
        let mut child = Command::new(env!("CARGO_BIN_EXE_nrls"))
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(config)
            .arg("--data-dir")
            .arg(data)
            .env("NRLS_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        let mut nrls = Nrls {
            child,
            addr: "127.0.0.1:1".parse().unwrap(),
            url: String::new(),
            lines,
            log: Vec::new(),
        };
        let listening = nrls.wait_for_log(|v| v["fields"]["message"] == "nrls listening");
        nrls.url = listening["fields"]["url"].as_str().unwrap().to_owned();
        nrls.addr = nrls.url.trim_start_matches("http://").parse().unwrap();
        nrls
    }

    /// Waits for a JSON log line matching `pred`; every line is kept.
    fn wait_for_log(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let Ok(line) = self.lines.recv_timeout(left) else {
                break;
            };
            self.log.push(line.clone());
            let value: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line}"));
            if pred(&value) {
                return value;
            }
        }
        panic!("no such log line; got:\n{}", self.log.join("\n"));
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for exit, then returns its status and every log line.
    fn wait(mut self) -> (ExitStatus, Vec<String>) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "nrls did not exit");
            std::thread::sleep(Duration::from_millis(50));
        };
        // The reader thread ends at EOF, closing the channel.
        self.log.extend(self.lines.iter());
        (status, std::mem::take(&mut self.log))
    }
}

impl Drop for Nrls {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn setup(extra_apps: &[&str]) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("nrls.toml");
    ops::write_config(
        &config,
        "[store]\nbackend = \"sqlite\"\n",
        &ops::apps(extra_apps),
    );
    (dir, config)
}

/// Sends an authenticated create whose body arrives in two parts, so the
/// request is in flight (the handler waiting for the rest) for as long as
/// the test likes.
fn start_slow_create(addr: SocketAddr, token: &str, body: &str) -> (TcpStream, usize) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let head = format!(
        "POST /producer/FHIR/R4/DocumentReference HTTP/1.1\r\nHost: {addr}\r\n\
         Authorization: Bearer {token}\r\nNHSD-End-User-Organisation-ODS: RR8\r\n\
         X-Request-Id: {}\r\nContent-Type: application/fhir+json\r\nContent-Length: {}\r\n\r\n",
        ops::uuid(),
        body.len()
    );
    let half = body.len() / 2;
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(&body.as_bytes()[..half]).unwrap();
    stream.flush().unwrap();
    (stream, half)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_requests_then_exits_zero() {
    let (dir, config) = setup(&[]);
    let data = dir.path().join("data");
    let nrls = Nrls::start(&config, &data);
    let http = reqwest::Client::new();
    let token = ops::token(&http, &nrls.url, "ops-producer").await.unwrap();
    let body = support::pointer("RR8", 4, ops::CRISIS).to_string();
    let (mut stream, sent) = start_slow_create(nrls.addr, &token, &body);
    std::thread::sleep(Duration::from_millis(300));

    nrls.signal("TERM");
    // The listener closes: new connections are refused...
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(nrls.addr).is_ok() {
        assert!(Instant::now() < deadline, "still accepting after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
    // ...while the request in flight completes.
    stream.write_all(&body.as_bytes()[sent..]).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 201"), "{response}");
    let location = response
        .lines()
        .find_map(|l| l.strip_prefix("location: "))
        .unwrap()
        .trim()
        .to_owned();

    let (status, log) = nrls.wait();
    assert_eq!(status.code(), Some(0), "{}", log.join("\n"));
    assert!(
        log.iter().any(|l| l.contains("store closed")),
        "{}",
        log.join("\n")
    );
    // The write was committed and the store closed cleanly.
    let store =
        store::sqlite::SqliteStore::open(&data.join("nrls.db"), Default::default()).unwrap();
    let id = domain::PointerId::parse(location.rsplit('/').next().unwrap()).unwrap();
    use store::PointerStore;
    assert!(store.get(&id).await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_one_json_line_per_request_without_patient_data_or_tokens() {
    let (_dir, config) = setup(&[]);
    let data = _dir.path().join("data");
    let mut nrls = Nrls::start(&config, &data);
    let http = reqwest::Client::new();
    let token = ops::token(&http, &nrls.url, "ops-consumer").await.unwrap();
    let nhs_number = support::patient(5);
    let request_id = ops::uuid();
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let response = http
        .get(format!(
            "{}/consumer/FHIR/R4/DocumentReference?subject:identifier={}%7C{nhs_number}",
            nrls.url,
            support::NHS
        ))
        .bearer_auth(&token)
        .header("NHSD-End-User-Organisation-ODS", "RX9")
        .header("X-Request-Id", &request_id)
        .header("X-Correlation-Id", format!("case-{nhs_number}"))
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let bad = http
        .get(format!(
            "{}/consumer/FHIR/R4/DocumentReference/RR8-{nhs_number}",
            nrls.url
        ))
        .bearer_auth("not-a-real-token-but-secret-all-the-same")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);

    let line = nrls.wait_for_log(|v| {
        v["target"] == "nrls::access" && v["fields"]["request_id"] == request_id.as_str()
    });
    let fields = &line["fields"];
    assert_eq!(fields["method"], "GET");
    assert_eq!(fields["route"], "/consumer/FHIR/R4/DocumentReference");
    assert_eq!(fields["status"], 200);
    assert_eq!(fields["client_id"], "ops-consumer");
    assert_eq!(fields["ods"], "RX9");
    assert_eq!(fields["trace_id"], trace_id);
    assert_eq!(fields["correlation_id"], "case-**********");
    assert!(fields["latency_ms"].as_f64().unwrap() >= 0.0);
    nrls.wait_for_log(|v| v["target"] == "nrls::access" && v["fields"]["status"] == 401);

    nrls.signal("TERM");
    let (status, log) = nrls.wait();
    assert_eq!(status.code(), Some(0));
    let all = log.join("\n");
    for secret in [nhs_number.as_str(), token.as_str(), "not-a-real-token"] {
        assert!(
            !all.contains(secret),
            "{secret} leaked into the log:\n{all}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_registry_and_keeps_it_on_a_bad_file() {
    let (dir, config) = setup(&[]);
    let mut nrls = Nrls::start(&config, &dir.path().join("data"));
    let http = reqwest::Client::new();
    assert!(ops::token(&http, &nrls.url, "ops-new").await.is_none());

    ops::write_config(&config, "", &ops::apps(&["ops-new"]));
    nrls.signal("HUP");
    nrls.wait_for_log(|v| v["fields"]["message"] == "app registry reloaded");
    assert!(ops::token(&http, &nrls.url, "ops-new").await.is_some());

    std::fs::write(&config, "[[apps]]\nclient_id = \n").unwrap();
    nrls.signal("HUP");
    let rejected = nrls.wait_for_log(|v| v["level"] == "ERROR");
    let message = rejected["fields"]["message"].as_str().unwrap();
    assert!(
        message.contains("previous app registry stays in force"),
        "{rejected}"
    );
    assert!(
        rejected["fields"]["error"]
            .as_str()
            .unwrap()
            .contains("line 2"),
        "{rejected}"
    );
    assert!(ops::token(&http, &nrls.url, "ops-new").await.is_some());
}
