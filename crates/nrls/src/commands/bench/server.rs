//! Server processes under test: `nrls serve` and the floor, each a child
//! process of the load generator, stopped by their own pid.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

/// The benchmark's apps: a consumer for RX9 and a producer for every
/// synthetic custodian, keys derivable from their client ids (demo keys).
pub const CONSUMER: &str = "bench-consumer";
pub const PRODUCER: &str = "bench-producer";
pub const CONSUMER_ODS: &str = "RX9";

/// A running child process.
pub struct ServerProcess {
    child: Child,
    pub addr: SocketAddr,
}

/// Settings the suite varies between runs.
#[derive(Debug, Clone, Serialize)]
pub struct ServerSettings {
    pub store: String,
    /// For `store = "postgres"`; never written to results (it may hold a password).
    #[serde(skip)]
    pub database_url: Option<String>,
    pub max_batch: usize,
    pub read_connections: usize,
}

/// Writes the TOML config of a benchmark server.
pub fn write_config(
    path: &Path,
    data_dir: &Path,
    addr: SocketAddr,
    settings: &ServerSettings,
    custodians: &[domain::OdsCode],
) -> Result<(), String> {
    let all: Vec<String> = domain::Catalogue::nrl_v3()
        .types()
        .iter()
        .map(|t| t.key())
        .collect();
    let org = |ods: &str, role: &str| auth::OrganisationConfig {
        ods: ods.to_owned(),
        roles: vec![role.to_owned()],
        pointer_types: all.clone(),
    };
    #[derive(Serialize)]
    struct Apps {
        apps: Vec<auth::AppConfig>,
    }
    let apps = Apps {
        apps: vec![
            auth::demo::app_config(
                CONSUMER,
                "Benchmark consumer",
                vec![org(CONSUMER_ODS, "consumer")],
            ),
            auth::demo::app_config(
                PRODUCER,
                "Benchmark producer",
                custodians
                    .iter()
                    .map(|c| org(c.as_str(), "producer"))
                    .collect(),
            ),
        ],
    };
    let apps = toml::to_string(&apps).map_err(|e| e.to_string())?;
    let database = settings
        .database_url
        .as_ref()
        .map(|url| format!("database_url = {url:?}\n"))
        .unwrap_or_default();
    let text = format!(
        "[server]\nlisten = \"{addr}\"\npublic_url = \"http://{addr}\"\n\n[store]\nbackend = \"{}\"\ndata_dir = {:?}\nmax_batch = {}\nread_connections = {}\n{database}\n{apps}",
        settings.store,
        data_dir.display().to_string(),
        settings.max_batch,
        settings.read_connections,
    );
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

/// A free port on 127.0.0.1 (bound then released: the server binds it next).
pub fn free_addr() -> Result<SocketAddr, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    listener.local_addr().map_err(|e| e.to_string())
}

impl ServerProcess {
    /// Starts `nrls serve --config <config>`; returns as soon as it is spawned.
    pub fn spawn_serve(
        config: &Path,
        addr: SocketAddr,
        log: &Path,
        env: &[(&str, &str)],
    ) -> Result<ServerProcess, String> {
        let log_file = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        let mut command = Command::new(current_exe()?);
        command
            .arg("serve")
            .arg("--config")
            .arg(config)
            .env("NRLS_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file);
        for (k, v) in env {
            command.env(k, v);
        }
        let child = command
            .spawn()
            .map_err(|e| format!("cannot start nrls serve: {e}"))?;
        Ok(ServerProcess { child, addr })
    }

    /// Starts the floor server and waits for its address.
    pub fn spawn_floor() -> Result<ServerProcess, String> {
        let mut child = Command::new(current_exe()?)
            .args(["bench", "floor-server", "--listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start the floor server: {e}"))?;
        let stdout = child.stdout.take().ok_or("floor server has no stdout")?;
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .map_err(|e| e.to_string())?;
        let addr = line
            .trim()
            .strip_prefix("listening ")
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| format!("floor server said {line:?}"))?;
        Ok(ServerProcess { child, addr })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident set size now and at its peak, in KiB, from /proc.
    pub fn rss_kib(&self) -> Option<(u64, u64)> {
        self.status_kib(&["VmRSS:", "VmHWM:"]).map(|v| (v[0], v[1]))
    }

    /// Anonymous (heap) and file-backed (mapped database pages: page cache)
    /// parts of the resident set, in KiB.
    pub fn rss_split_kib(&self) -> Option<(u64, u64)> {
        self.status_kib(&["RssAnon:", "RssFile:"])
            .map(|v| (v[0], v[1]))
    }

    fn status_kib(&self, names: &[&str]) -> Option<Vec<u64>> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        };
        names.iter().map(|n| field(n)).collect()
    }

    /// Polls `/_status` until it answers 200.
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        let url = format!("http://{}/_status", self.addr);
        let client = reqwest::Client::new();
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("server exited early: {status}"));
            }
            if let Ok(r) = client.get(&url).send().await
                && r.status().is_success()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(format!("server not ready within {timeout:?}"))
    }

    /// SIGTERM (graceful: the store checkpoints and closes), then waits;
    /// SIGKILL if it has not stopped within 20 s.
    pub fn stop(mut self) {
        let pid = self.pid().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub fn current_exe() -> Result<PathBuf, String> {
    std::env::current_exe().map_err(|e| format!("cannot find the nrls binary: {e}"))
}

/// An access token for `client_id`, through the server's token endpoint.
pub async fn token(base: &str, client_id: &str) -> Result<String, String> {
    let endpoint = format!("{base}/oauth2/token");
    let key = auth::demo::signing_key(client_id).map_err(|e| e.to_string())?;
    let assertion =
        auth::mint_client_assertion(client_id, &endpoint, &key, Duration::from_secs(120))
            .map_err(|e| e.to_string())?;
    let body = form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "client_credentials")
        .append_pair(
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        )
        .append_pair("client_assertion", &assertion)
        .finish();
    let response = reqwest::Client::new()
        .post(&endpoint)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .map_err(|e| format!("token request: {e}"))?;
    let json: serde_json::Value = response.json().await.map_err(|e| e.to_string())?;
    json["access_token"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("no token: {json}"))
}
