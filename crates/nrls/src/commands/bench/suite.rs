//! `nrls bench run`: the whole suite in one command. It generates the dataset,
//! imports it with `nrls import` (a child process), starts `nrls serve` and
//! the floor as child processes on 127.0.0.1, drives them with the load
//! generator in this process, and prints one JSON line per scenario, also
//! appended to `<results-dir>/results.ndjson`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use http_body_util::Full;
use hyper::{Method, Request};
use serde_json::{Value, json};

use super::load::{self, GetPlan, LoadResult, RequestPlan, request_id};
use super::postgres::{PostgresRun, postgres_url};
use super::server::{self, CONSUMER, CONSUMER_ODS, PRODUCER, ServerProcess, ServerSettings};
use crate::dataset::{Dataset, PointerSpec, write_document_reference};

/// Every scenario, in the order they run.
pub const SCENARIOS: &[&str] = &[
    "generate",
    "import",
    "footprint",
    "floor",
    "search-max",
    "search-latency",
    "create",
    "cold-start",
    "postgres",
];

/// Arguments of `nrls bench run`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Pointers in the dataset.
    #[arg(long, default_value_t = 100_000)]
    pub size: u64,
    /// The full-size run: 10,000,000 pointers.
    #[arg(long)]
    pub full: bool,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Seconds each load scenario is measured (after a 2 s warm-up).
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Only these scenarios (comma-separated); default all.
    #[arg(long, value_delimiter = ',')]
    pub scenarios: Vec<String>,
    /// Where results.ndjson is appended.
    #[arg(long, default_value = "bench-results")]
    pub results_dir: PathBuf,
    /// Dataset files and stores (large: about 2 KB per pointer, twice).
    #[arg(long, default_value = "bench-work")]
    pub work_dir: PathBuf,
    /// Reuse an already-imported store of this size instead of importing again.
    #[arg(long)]
    pub reuse_store: bool,
    /// `store.max_batch` of the server under test.
    #[arg(long, default_value_t = 256)]
    pub max_batch: usize,
    /// `store.read_connections` of the server under test.
    #[arg(long, default_value_t = 4)]
    pub read_connections: usize,
    /// Closed-loop connections for search-max and floor.
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// Concurrent producers for create.
    #[arg(long, default_value_t = 32)]
    pub producers: usize,
    /// Open-loop rate of search-latency, requests per second.
    #[arg(long, default_value_t = 2_000.0)]
    pub rate: f64,
    /// Free text stored with each result (e.g. "sweep max_batch").
    #[arg(long, default_value = "")]
    pub label: String,
}

struct Recorder {
    file: PathBuf,
    base: Value,
    floor: Option<f64>,
}

impl Recorder {
    fn emit(&mut self, scenario: &str, mut result: Value) -> Result<(), String> {
        if let (Value::Object(map), Value::Object(base)) = (&mut result, &self.base) {
            for (k, v) in base {
                map.entry(k.clone()).or_insert_with(|| v.clone());
            }
            map.insert("scenario".into(), json!(scenario));
            // Other work on the machine skews every figure: record how busy it was.
            let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
            map.insert(
                "loadavg_1m".into(),
                json!(
                    loadavg
                        .split_whitespace()
                        .next()
                        .and_then(|l| l.parse::<f64>().ok())
                ),
            );
            if let (Some(floor), Some(rate)) =
                (self.floor, map.get("per_second").and_then(Value::as_f64))
                && scenario != "floor"
            {
                map.insert(
                    "floor_ratio".into(),
                    json!((rate / floor * 1000.0).round() / 1000.0),
                );
            }
        }
        let line = result.to_string();
        println!("{line}");
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.file)
            .map_err(|e| format!("{}: {e}", self.file.display()))?;
        writeln!(file, "{line}").map_err(|e| e.to_string())
    }
}

pub(super) fn load_json(result: &LoadResult) -> Value {
    serde_json::to_value(result).unwrap_or(Value::Null)
}

pub async fn run(mut args: RunArgs) -> Result<(), String> {
    if args.full {
        args.size = 10_000_000;
    }
    let mut suite = Suite::new(args)?;
    suite.prepare_store().await?;
    if suite.wanted("floor") || suite.wanted("search-max") {
        suite.floor().await?;
    }
    let (plan, embedded) = suite.embedded().await?;
    if suite.wanted("cold-start") {
        suite.cold_start(&plan).await?;
    }
    if suite.wanted("postgres") {
        suite.postgres(&embedded).await?;
    }
    Ok(())
}

/// One run of the suite: its settings, files and where results go.
struct Suite {
    args: RunArgs,
    work: PathBuf,
    dataset: Dataset,
    data_file: PathBuf,
    store_dir: PathBuf,
    settings: ServerSettings,
    recorder: Recorder,
    warmup: Duration,
    duration: Duration,
    server: Option<(PathBuf, std::net::SocketAddr)>,
}

impl Suite {
    fn new(args: RunArgs) -> Result<Suite, String> {
        std::fs::create_dir_all(&args.results_dir).map_err(|e| e.to_string())?;
        std::fs::create_dir_all(&args.work_dir).map_err(|e| e.to_string())?;
        let work = std::fs::canonicalize(&args.work_dir).map_err(|e| e.to_string())?;
        let settings = ServerSettings {
            store: "sqlite".into(),
            database_url: None,
            max_batch: args.max_batch,
            read_connections: args.read_connections,
        };
        let recorder = Recorder {
            file: args.results_dir.join("results.ndjson"),
            base: json!({
                "run": run_id(),
                "git": git_head(),
                "size": args.size,
                "seed": args.seed,
                "settings": settings,
                "label": args.label,
                "command": std::env::args().collect::<Vec<_>>().join(" "),
            }),
            floor: None,
        };
        Ok(Suite {
            dataset: Dataset::new(args.size, args.seed),
            data_file: work.join(format!("pointers-{}-{}.ndjson", args.size, args.seed)),
            store_dir: work.join(format!("store-{}-{}", args.size, args.seed)),
            warmup: Duration::from_secs(2),
            duration: Duration::from_secs(args.duration),
            server: None,
            work,
            settings,
            recorder,
            args,
        })
    }

    fn wanted(&self, scenario: &str) -> bool {
        self.args.scenarios.is_empty() || self.args.scenarios.iter().any(|w| w == scenario)
    }

    /// generate, import and footprint: a fresh store unless `--reuse-store`.
    async fn prepare_store(&mut self) -> Result<(), String> {
        let store_exists = self.store_dir.join("nrls.db").exists();
        let import = !(self.args.reuse_store && store_exists);
        // The dataset file is only needed to import (10M pointers is ~18 GB).
        if import && (!self.data_file.exists() || self.wanted("generate")) {
            let value = generate_file(&self.dataset, &self.data_file).await?;
            self.recorder.emit("generate", value)?;
        }
        if import {
            let _ = std::fs::remove_dir_all(&self.store_dir);
            let report = import_child(&self.data_file, &self.store_dir)?;
            self.recorder.emit("import", report)?;
            written_back(&self.store_dir)?;
        }
        if self.wanted("footprint") {
            let files = dir_bytes(&self.store_dir);
            let size = self.args.size;
            self.recorder.emit(
                "footprint",
                json!({"pointers": size, "bytes_on_disk": files,
                       "bytes_per_pointer": files as f64 / size as f64}),
            )?;
        }
        Ok(())
    }

    /// The floor, measured like search-max so results can be given as a ratio.
    async fn floor(&mut self) -> Result<(), String> {
        let plan = Arc::new(GetPlan {
            paths: vec!["/consumer/FHIR/R4/DocumentReference".into()],
            headers: vec![],
        });
        let floor = ServerProcess::spawn_floor()?;
        let connections = self.args.connections;
        let result = load::closed_loop(floor.addr, plan, connections, self.warmup, self.duration)
            .await
            .map_err(|e| e.to_string())?;
        self.recorder.floor = Some(result.per_second);
        let mut value = load_json(&result);
        value["connections"] = json!(connections);
        value["rss_kib"] = json!(floor.rss_kib().map(|r| r.0));
        floor.stop();
        self.recorder.emit("floor", value)
    }

    /// The server's config file and address, chosen once: tokens name the
    /// server's URL as issuer, so a restart must keep the same address.
    fn server_config(&mut self) -> Result<(PathBuf, std::net::SocketAddr), String> {
        if let Some(known) = &self.server {
            return Ok(known.clone());
        }
        let addr = server::free_addr()?;
        let config = self.work.join("bench-server.toml");
        server::write_config(
            &config,
            &self.store_dir,
            addr,
            &self.settings,
            self.dataset.custodians(),
        )?;
        self.server = Some((config.clone(), addr));
        Ok((config, addr))
    }

    /// search-max, search-latency and create against `nrls serve`. Returns the
    /// search plan (with its token, reused for cold starts) and the rates.
    async fn embedded(&mut self) -> Result<(GetPlan, Embedded), String> {
        let (config, addr) = self.server_config()?;
        let log = self.work.join("bench-server.log");
        let mut serve = ServerProcess::spawn_serve(&config, addr, &log, &[])?;
        serve.wait_ready(Duration::from_secs(60)).await?;
        let base_url = format!("http://{addr}");
        let consumer_token = server::token(&base_url, CONSUMER).await?;
        let producer_token = server::token(&base_url, PRODUCER).await?;
        let plan = Arc::new(search_plan(&self.dataset, &consumer_token));
        let (warmup, duration, connections) = (self.warmup, self.duration, self.args.connections);
        let mut embedded = Embedded::default();
        let audit_before = audit_usage(&self.store_dir);
        if self.wanted("search-max") {
            let result = load::closed_loop(addr, plan.clone(), connections, warmup, duration)
                .await
                .map_err(|e| e.to_string())?;
            embedded.search = Some(result.per_second);
            let mut value = load_json(&result);
            value["connections"] = json!(connections);
            add_rss(&mut value, &serve);
            self.recorder.emit("search-max", value)?;
        }
        if self.wanted("search-latency") {
            let rate = self.args.rate;
            let result = load::open_loop(addr, plan.clone(), connections, rate, warmup, duration)
                .await
                .map_err(|e| e.to_string())?;
            let mut value = load_json(&result);
            value["target_rate"] = json!(rate);
            self.recorder.emit("search-latency", value)?;
        }
        if self.wanted("search-max") || self.wanted("search-latency") {
            let value = audit_growth(audit_before, audit_usage(&self.store_dir));
            self.recorder.emit("audit-bytes", value)?;
        }
        if self.wanted("create") {
            let create = Arc::new(CreatePlan::new(
                &self.dataset,
                &producer_token,
                self.args.seed,
            ));
            let result = load::closed_loop(addr, create, self.args.producers, warmup, duration)
                .await
                .map_err(|e| e.to_string())?;
            embedded.create = Some(result.per_second);
            let mut value = load_json(&result);
            value["producers"] = json!(self.args.producers);
            add_rss(&mut value, &serve);
            self.recorder.emit("create", value)?;
        }
        serve.stop();
        let plan = Arc::try_unwrap(plan).map_err(|_| "search plan still shared".to_owned())?;
        Ok((plan, embedded))
    }

    /// Median of three cold starts.
    async fn cold_start(&mut self, plan: &GetPlan) -> Result<(), String> {
        let (config, addr) = self.server_config()?;
        let log = self.work.join("bench-server.log");
        let mut samples = Vec::new();
        for _ in 0..3 {
            samples.push(cold_start(&config, addr, &log, plan).await?);
        }
        samples.sort_by(f64::total_cmp);
        self.recorder.emit(
            "cold-start",
            json!({"ms_median": samples[1], "ms_samples": samples}),
        )
    }

    async fn postgres(&mut self, embedded: &Embedded) -> Result<(), String> {
        match postgres_url() {
            Err(reason) => {
                eprintln!("postgres: {reason}");
                self.recorder
                    .emit("postgres", json!({"skipped": true, "reason": reason}))
            }
            Ok(url) => {
                let pg = PostgresRun {
                    url,
                    work: &self.work,
                    data_file: &self.data_file,
                    dataset: &self.dataset,
                    args: &self.args,
                };
                for (scenario, value) in pg.run(embedded).await? {
                    self.recorder.emit(scenario, value)?;
                }
                Ok(())
            }
        }
    }
}

/// Server memory: resident set, its peak, and its heap and file-mapped parts.
fn add_rss(value: &mut Value, serve: &ServerProcess) {
    value["rss_kib"] = json!(serve.rss_kib().map(|r| r.0));
    value["rss_peak_kib"] = json!(serve.rss_kib().map(|r| r.1));
    value["rss_anon_kib"] = json!(serve.rss_split_kib().map(|r| r.0));
    value["rss_file_kib"] = json!(serve.rss_split_kib().map(|r| r.1));
}

/// Writes the dataset file and describes how fast that went.
async fn generate_file(dataset: &Dataset, path: &Path) -> Result<Value, String> {
    let started = Instant::now();
    let file = std::fs::File::create(path).map_err(|e| e.to_string())?;
    let d = dataset.clone();
    tokio::task::spawn_blocking(move || crate::commands::generate::write_ndjson(&d, file, true))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let seconds = started.elapsed().as_secs_f64();
    written_back(path)?;
    let bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let n = dataset.pointers;
    Ok(
        json!({"pointers": n, "patients": dataset.patients(), "seconds": seconds,
              "per_second": n as f64 / seconds, "bytes_per_pointer": bytes as f64 / n as f64}),
    )
}

/// Has the kernel write back the file at `path` (or every file in the folder)
/// now. Otherwise it writes back what the suite's setup wrote ~30 s later,
/// while a scenario is measured: writing back the 183 MB dataset file and the
/// imported store of a 100k run made the audit trail's fsyncs wait, and
/// search-latency's p99 read 19–135 ms instead of ~1.4 (docs/performance.md).
fn written_back(path: &Path) -> Result<(), String> {
    let sync = |p: &Path| {
        std::fs::File::open(p)
            .and_then(|f| f.sync_all())
            .map_err(|e| format!("{}: {e}", p.display()))
    };
    if !path.is_dir() {
        return sync(path);
    }
    let entries = std::fs::read_dir(path).map_err(|e| format!("{}: {e}", path.display()))?;
    for entry in entries.filter_map(Result::ok) {
        if entry.file_type().is_ok_and(|t| t.is_file()) {
            sync(&entry.path())?;
        }
    }
    Ok(())
}

/// Embedded-store results of this run, for the postgres ratios.
#[derive(Default)]
pub(super) struct Embedded {
    pub(super) search: Option<f64>,
    pub(super) create: Option<f64>,
}

/// Runs `nrls import` into a fresh embedded store and returns its report.
fn import_child(data_file: &Path, store_dir: &Path) -> Result<Value, String> {
    import_child_to(data_file, store_dir, &["--store", "sqlite"])
}

/// Runs `nrls import` as a child process and returns its report.
pub(super) fn import_child_to(
    data_file: &Path,
    store_dir: &Path,
    store: &[&str],
) -> Result<Value, String> {
    let output = Command::new(server::current_exe()?)
        .arg("import")
        .arg(data_file)
        .arg("--data-dir")
        .arg(store_dir)
        .args(store)
        .args(["--quiet", "--restart"])
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run nrls import: {e}"))?;
    if !output.status.success() {
        return Err(format!("nrls import failed: {}", output.status));
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let mut report: Value =
        serde_json::from_str(text.trim()).map_err(|e| format!("import report {text:?}: {e}"))?;
    report["per_second"] = report["lines_per_second"].clone();
    Ok(report)
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with("nrls.db"))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// The audit trail's size and its last seq: (bytes, records).
pub(super) type AuditUsage = Result<(u64, u64), String>;

/// `audit.db` as the server sees it: its pages in use, the WAL's included
/// (read through SQLite while the server runs, so frames not yet copied
/// back into the file count once), and the last seq.
fn audit_usage(store_dir: &Path) -> AuditUsage {
    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY;
    let conn = rusqlite::Connection::open_with_flags(store_dir.join("audit.db"), flags)
        .map_err(|e| e.to_string())?;
    let pragma = |name: &str| -> Result<u64, String> {
        conn.pragma_query_value(None, name, |row| row.get::<_, i64>(0))
            .map(|v| v as u64)
            .map_err(|e| e.to_string())
    };
    let used = pragma("page_count")?.saturating_sub(pragma("freelist_count")?);
    let records: i64 = conn
        .query_row("SELECT ifnull(max(seq), 0) FROM audit_records", [], |r| {
            r.get(0)
        })
        .map_err(|e| e.to_string())?;
    Ok((used * pragma("page_size")?, records as u64))
}

/// Bytes the audit trail grew by per record appended between two readings
/// (every one an audited search when taken around the search scenarios).
pub(super) fn audit_growth(before: AuditUsage, after: AuditUsage) -> Value {
    match (before, after) {
        (Ok((b0, r0)), Ok((b1, r1))) if r1 > r0 => {
            let (bytes, records) = (b1.saturating_sub(b0), r1 - r0);
            json!({"records": records, "bytes": bytes,
                   "bytes_per_record": (bytes as f64 / records as f64).round()})
        }
        (Err(e), _) | (_, Err(e)) => json!({"skipped": true, "reason": e}),
        _ => json!({"skipped": true, "reason": "no audit records were appended"}),
    }
}

/// Consumer searches by NHS number over 10,000 patients of the dataset.
pub(super) fn search_plan(dataset: &Dataset, token: &str) -> GetPlan {
    let patients = dataset.patients().max(1);
    let mut rng = crate::dataset::Rng::new(dataset.seed ^ 0x5EA4C4, 0, 9);
    let paths = (0..10_000)
        .map(|_| {
            let nhs = dataset.nhs_number(rng.below(patients));
            format!("/consumer/FHIR/R4/DocumentReference?subject:identifier=https://fhir.nhs.uk/Id/nhs-number%7C{nhs}")
        })
        .collect();
    GetPlan {
        paths,
        headers: vec![
            ("authorization".into(), format!("Bearer {token}")),
            ("nhsd-end-user-organisation-ods".into(), CONSUMER_ODS.into()),
        ],
    }
}

/// Durable creates: new pointers of dataset custodians, ids unique per run,
/// for patients beyond the dataset's, so creates never grow the answers of
/// the searches measured in later runs on the same store.
pub(super) struct CreatePlan {
    dataset: Dataset,
    first_patient: u64,
    bearer: String,
    run: String,
}

impl CreatePlan {
    pub(super) fn new(dataset: &Dataset, token: &str, seed: u64) -> CreatePlan {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(seed);
        CreatePlan {
            dataset: dataset.clone(),
            first_patient: dataset.patients(),
            bearer: format!("Bearer {token}"),
            run: format!("c{nanos:x}"),
        }
    }
}

impl RequestPlan for CreatePlan {
    fn request(&self, n: u64) -> Result<Request<Full<Bytes>>, hyper::http::Error> {
        let types = domain::Catalogue::nrl_v3().types();
        let custodians = self.dataset.custodians();
        let custodian = &custodians[(n as usize) % custodians.len()];
        let local = format!("{}n{n}", self.run);
        let mut body = String::with_capacity(2048);
        write_document_reference(
            &PointerSpec {
                nhs_number: self.dataset.nhs_number(self.first_patient + n),
                custodian,
                pointer_type: &types[(n as usize) % types.len()],
                local_id: &local,
                created_offset: (n % 100_000_000) as u32,
            },
            &mut body,
        );
        Request::builder()
            .method(Method::POST)
            .uri("/producer/FHIR/R4/DocumentReference")
            .header("host", "127.0.0.1")
            .header("authorization", self.bearer.as_str())
            .header("nhsd-end-user-organisation-ods", custodian.as_str())
            .header("x-request-id", request_id(n))
            .header("content-type", "application/fhir+json")
            .body(Full::new(Bytes::from(body)))
    }
}

/// Milliseconds from spawning `nrls serve` to its first successful search
/// (with a token minted by an earlier run: tokens outlive restarts).
async fn cold_start(
    config: &Path,
    addr: std::net::SocketAddr,
    log: &Path,
    plan: &GetPlan,
) -> Result<f64, String> {
    let started = Instant::now();
    let serve = ServerProcess::spawn_serve(config, addr, log, &[])?;
    let deadline = started + Duration::from_secs(60);
    let mut n = 0;
    let elapsed = loop {
        if Instant::now() > deadline {
            return Err("cold start: no successful search within 60 s".into());
        }
        if let Ok(mut sender) = load::connect(addr).await
            && let Ok(request) = plan.request(n)
            && let Ok(None) = load::exchange(&mut sender, request).await
        {
            break started.elapsed();
        }
        n += 1;
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    serve.stop();
    Ok(elapsed.as_secs_f64() * 1000.0)
}

fn run_id() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!("{secs}")
}

fn git_head() -> Option<String> {
    let out = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}
