//! Real `nrls serve` processes for the multi-node and crash suites: a
//! deployment is one configuration file (shared store, shared token-signing
//! secret, one public URL) that any number of nodes start from, each on its
//! own loopback port, as behind a load balancer.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::Client;

/// The URL every node of a deployment calls itself: token issuer and audience.
pub const PUBLIC_URL: &str = "http://nrls.test";
/// Produces every pointer type for RR8.
pub const PRODUCER: &str = "producer-a";
/// Reads every pointer type for RX9.
pub const CONSUMER: &str = "consumer";
/// May use the admin API (relationships, objections, audit search), at X26.
pub const ADMIN: &str = "admin-app";

/// Where a deployment keeps its pointers.
pub enum Storage<'a> {
    Sqlite,
    /// A PostgreSQL URL, with the statement time-out to use.
    Postgres {
        url: &'a str,
        statement_timeout_ms: u64,
    },
    /// A PostgreSQL primary, and a hot standby of it for consumer reads.
    Replicated {
        primary: &'a str,
        replica: &'a str,
    },
}

/// A configuration on disk that nodes start from.
pub struct Deployment {
    dir: tempfile::TempDir,
    config: PathBuf,
    /// PostgreSQL nodes share the database (pointers, access facts, audit
    /// trail) but each keeps its own data folder (its checkpoint key), as
    /// separate hosts would.
    per_node_data: bool,
    /// `NRLS_LOG` for its nodes: `warn` unless a suite reads more.
    log_filter: String,
    pub http: reqwest::Client,
}

#[derive(Serialize)]
struct AppsFile<'a> {
    apps: &'a [auth::AppConfig],
}

impl Deployment {
    pub fn new(storage: Storage<'_>) -> Deployment {
        Deployment::with_sections(storage, "")
    }

    /// A deployment whose configuration also holds `sections` (TOML, e.g.
    /// `[patient_access]`).
    pub fn with_sections(storage: Storage<'_>, sections: &str) -> Deployment {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let secret = dir.path().join("token-signing-secret");
        // Written before any node starts: two nodes creating it at once would race.
        std::fs::write(&secret, uuid::Uuid::new_v4().as_bytes().repeat(3)).unwrap();
        let per_node_data = !matches!(storage, Storage::Sqlite);
        let store = match storage {
            Storage::Sqlite => "backend = \"sqlite\"".to_owned(),
            Storage::Postgres {
                url,
                statement_timeout_ms,
            } => format!(
                "backend = \"postgres\"\ndatabase_url = \"{url}\"\npool_size = 8\n\
                 statement_timeout_ms = {statement_timeout_ms}\nconnect_timeout_ms = 2000"
            ),
            Storage::Replicated { primary, replica } => format!(
                "backend = \"postgres\"\ndatabase_url = \"{primary}\"\n\
                 replica_database_url = \"{replica}\"\npool_size = 4"
            ),
        };
        let head = format!(
            "[server]\npublic_url = \"{PUBLIC_URL}\"\n\n[store]\n{store}\ndata_dir = \"{}\"\n\n\
             [auth]\nsigning_secret_file = \"{}\"\n\n[admin]\nclients = [\"{ADMIN}\"]\n",
            data.display(),
            secret.display()
        );
        let apps = toml::to_string(&AppsFile { apps: &apps() }).unwrap();
        let config = dir.path().join("nrls.toml");
        std::fs::write(&config, format!("{head}\n{sections}\n{apps}")).unwrap();
        Deployment {
            dir,
            config,
            per_node_data,
            log_filter: "warn".to_owned(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .unwrap(),
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Nodes started after this log with `NRLS_LOG=filter` (JSON lines).
    pub fn log_filter(&mut self, filter: &str) {
        self.log_filter = filter.to_owned();
    }

    /// Adds TOML (a whole table) to the configuration nodes start from.
    pub fn append_config(&self, toml: &str) {
        let mut text = std::fs::read_to_string(&self.config).unwrap();
        text.push_str(toml);
        std::fs::write(&self.config, text).unwrap();
    }

    /// Starts a node and waits until `/_status` answers 200. A port taken in
    /// the meantime by someone else means another try on another port.
    pub async fn start_node(&self) -> Node {
        for attempt in 0..3 {
            let mut node = self.spawn_node();
            if node.wait_ready(Duration::from_secs(30)).await {
                return node;
            }
            eprintln!("node start attempt {attempt} failed:\n{}", node.log_text());
            node.kill();
        }
        panic!("no node started");
    }

    /// Starts a node without waiting for it.
    pub fn spawn_node(&self) -> Node {
        let port = free_port();
        let log = self.dir.path().join(format!("node-{port}.log"));
        let mut command = Command::new(env!("CARGO_BIN_EXE_nrls"));
        command
            .arg("serve")
            .arg("--config")
            .arg(&self.config)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"));
        let data_dir = self
            .per_node_data
            .then(|| self.dir.path().join(format!("node-{port}")));
        if let Some(dir) = &data_dir {
            command.arg("--data-dir").arg(dir);
        }
        let child = command
            .env("NRLS_LOG", &self.log_filter)
            .env_remove("NRLS_DATABASE_URL")
            .env_remove("NRLS_STORE")
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .spawn()
            .unwrap();
        Node {
            child,
            data_dir: data_dir.unwrap_or_else(|| self.data_dir()),
            url: format!("http://127.0.0.1:{port}"),
            log,
            http: self.http.clone(),
        }
    }

    /// A producer client for RR8 on `node`, with a token from `issuer` (any
    /// node: they share the signing secret).
    pub async fn producer(&self, node: &Node, issuer: &Node) -> Client {
        self.client(node, issuer, PRODUCER, "RR8").await
    }

    pub async fn consumer(&self, node: &Node, issuer: &Node) -> Client {
        self.client(node, issuer, CONSUMER, "RX9").await
    }

    pub async fn admin(&self, node: &Node, issuer: &Node) -> Client {
        self.client(node, issuer, ADMIN, "X26").await
    }

    async fn client(&self, node: &Node, issuer: &Node, app: &str, ods: &str) -> Client {
        Client {
            http: self.http.clone(),
            url: node.url.clone(),
            token: Some(token(&self.http, &issuer.url, app).await),
            ods: Some(ods.into()),
        }
    }
}

/// A running `nrls serve` process; killed when dropped.
pub struct Node {
    child: Child,
    pub url: String,
    /// Its data folder (checkpoint key; the embedded files for SQLite).
    pub data_dir: PathBuf,
    log: PathBuf,
    http: reqwest::Client,
}

impl Node {
    async fn wait_ready(&mut self, within: Duration) -> bool {
        let started = Instant::now();
        while started.elapsed() < within {
            if self.child.try_wait().ok().flatten().is_some() {
                return false;
            }
            let status = self.http.get(format!("{}/_status", self.url)).send().await;
            if status.is_ok_and(|r| r.status() == 200) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    /// SIGTERM, then waits for the graceful shutdown to end; its exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success(), "kill -TERM failed");
        self.child.wait().unwrap()
    }

    /// `kill -9`: no shutdown, no flush, nothing.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn apps() -> Vec<auth::AppConfig> {
    let all: Vec<String> = domain::Catalogue::nrl_v3()
        .types()
        .iter()
        .map(|t| t.key())
        .collect();
    let org = |ods: &str, role: &str| auth::OrganisationConfig {
        ods: ods.into(),
        roles: vec![role.into()],
        pointer_types: all.clone(),
    };
    vec![
        auth::demo::app_config(PRODUCER, "Producer A", vec![org("RR8", "producer")]),
        auth::demo::app_config(CONSUMER, "Consumer", vec![org("RX9", "consumer")]),
        auth::demo::app_config(ADMIN, "Privacy officer tool", vec![org("X26", "consumer")]),
    ]
}

/// A token from the node at `url`. The client assertion's audience is the
/// deployment's public token endpoint, whichever node is asked.
async fn token(http: &reqwest::Client, url: &str, client_id: &str) -> String {
    let audience = format!("{PUBLIC_URL}/oauth2/token");
    let key = auth::demo::signing_key(client_id).unwrap();
    let assertion =
        auth::mint_client_assertion(client_id, &audience, &key, Duration::from_secs(300)).unwrap();
    let response = http
        .post(format!("{url}/oauth2/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=client_credentials&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion={assertion}"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "token for {client_id}");
    let body: serde_json::Value = response.json().await.unwrap();
    body["access_token"].as_str().unwrap().to_owned()
}
