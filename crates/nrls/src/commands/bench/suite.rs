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

fn load_json(result: &LoadResult) -> Value {
    serde_json::to_value(result).unwrap_or(Value::Null)
}

pub async fn run(mut args: RunArgs) -> Result<(), String> {
    if args.full {
        args.size = 10_000_000;
    }
    let wanted = |s: &str| args.scenarios.is_empty() || args.scenarios.iter().any(|w| w == s);
    std::fs::create_dir_all(&args.results_dir).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(&args.work_dir).map_err(|e| e.to_string())?;
    let work = std::fs::canonicalize(&args.work_dir).map_err(|e| e.to_string())?;
    let settings = ServerSettings {
        store: "sqlite".into(),
        max_batch: args.max_batch,
        read_connections: args.read_connections,
    };
    let mut recorder = Recorder {
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
    let dataset = Dataset::new(args.size, args.seed);
    let data_file = work.join(format!("pointers-{}-{}.ndjson", args.size, args.seed));
    let store_dir = work.join(format!("store-{}-{}", args.size, args.seed));

    let store_exists = store_dir.join("nrls.db").exists();
    let import = !(args.reuse_store && store_exists);
    // The dataset file is only needed to import (10M pointers is ~18 GB).
    if import && (!data_file.exists() || wanted("generate")) {
        let started = Instant::now();
        let file = std::fs::File::create(&data_file).map_err(|e| e.to_string())?;
        let d = dataset.clone();
        tokio::task::spawn_blocking(move || {
            crate::commands::generate::write_ndjson(&d, file, true)
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
        let seconds = started.elapsed().as_secs_f64();
        let bytes = std::fs::metadata(&data_file).map(|m| m.len()).unwrap_or(0);
        recorder.emit(
            "generate",
            json!({"pointers": args.size, "patients": dataset.patients(), "seconds": seconds,
                   "per_second": args.size as f64 / seconds, "bytes_per_pointer": bytes as f64 / args.size as f64}),
        )?;
    }
    if import {
        let _ = std::fs::remove_dir_all(&store_dir);
        let report = import_child(&data_file, &store_dir)?;
        recorder.emit("import", report)?;
    }
    if wanted("footprint") {
        let files = dir_bytes(&store_dir);
        recorder.emit(
            "footprint",
            json!({"pointers": args.size, "bytes_on_disk": files,
                   "bytes_per_pointer": files as f64 / args.size as f64}),
        )?;
    }

    let addr = server::free_addr()?;
    let config = work.join("bench-server.toml");
    server::write_config(&config, &store_dir, addr, &settings, dataset.custodians())?;
    let log = work.join("bench-server.log");
    let base_url = format!("http://{addr}");
    let warmup = Duration::from_secs(2);
    let duration = Duration::from_secs(args.duration);

    let floor_plan = Arc::new(GetPlan {
        paths: vec!["/consumer/FHIR/R4/DocumentReference".into()],
        headers: vec![],
    });
    if wanted("floor") || wanted("search-max") {
        let floor = ServerProcess::spawn_floor()?;
        let result = load::closed_loop(floor.addr, floor_plan, args.connections, warmup, duration)
            .await
            .map_err(|e| e.to_string())?;
        recorder.floor = Some(result.per_second);
        let mut value = load_json(&result);
        value["connections"] = json!(args.connections);
        value["rss_kib"] = json!(floor.rss_kib().map(|r| r.0));
        floor.stop();
        recorder.emit("floor", value)?;
    }

    let mut serve = ServerProcess::spawn_serve(&config, addr, &log, &[])?;
    serve.wait_ready(Duration::from_secs(60)).await?;
    let consumer_token = server::token(&base_url, CONSUMER).await?;
    let producer_token = server::token(&base_url, PRODUCER).await?;
    let search_plan = Arc::new(search_plan(&dataset, &consumer_token));

    if wanted("search-max") {
        let result = load::closed_loop(
            addr,
            search_plan.clone(),
            args.connections,
            warmup,
            duration,
        )
        .await
        .map_err(|e| e.to_string())?;
        let mut value = load_json(&result);
        value["connections"] = json!(args.connections);
        value["rss_kib"] = json!(serve.rss_kib().map(|r| r.0));
        value["rss_peak_kib"] = json!(serve.rss_kib().map(|r| r.1));
        value["rss_anon_kib"] = json!(serve.rss_split_kib().map(|r| r.0));
        value["rss_file_kib"] = json!(serve.rss_split_kib().map(|r| r.1));
        recorder.emit("search-max", value)?;
    }
    if wanted("search-latency") {
        let result = load::open_loop(
            addr,
            search_plan.clone(),
            args.connections,
            args.rate,
            warmup,
            duration,
        )
        .await
        .map_err(|e| e.to_string())?;
        let mut value = load_json(&result);
        value["target_rate"] = json!(args.rate);
        recorder.emit("search-latency", value)?;
    }
    if wanted("create") {
        let plan = Arc::new(CreatePlan::new(&dataset, &producer_token, args.seed));
        let result = load::closed_loop(addr, plan, args.producers, warmup, duration)
            .await
            .map_err(|e| e.to_string())?;
        let mut value = load_json(&result);
        value["producers"] = json!(args.producers);
        value["rss_kib"] = json!(serve.rss_kib().map(|r| r.0));
        value["rss_anon_kib"] = json!(serve.rss_split_kib().map(|r| r.0));
        recorder.emit("create", value)?;
    }
    serve.stop();

    if wanted("cold-start") {
        let mut samples = Vec::new();
        for _ in 0..3 {
            samples.push(cold_start(&config, addr, &log, &search_plan).await?);
        }
        samples.sort_by(f64::total_cmp);
        recorder.emit(
            "cold-start",
            json!({"ms_median": samples[1], "ms_samples": samples}),
        )?;
    }
    if wanted("postgres") {
        recorder.emit("postgres", postgres_status())?;
    }
    Ok(())
}

/// Runs `nrls import` as a child process and returns its report.
fn import_child(data_file: &Path, store_dir: &Path) -> Result<Value, String> {
    let output = Command::new(server::current_exe()?)
        .arg("import")
        .arg(data_file)
        .arg("--data-dir")
        .arg(store_dir)
        .args(["--store", "sqlite", "--quiet", "--restart"])
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

/// Consumer searches by NHS number over 10,000 patients of the dataset.
fn search_plan(dataset: &Dataset, token: &str) -> GetPlan {
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
struct CreatePlan {
    dataset: Dataset,
    first_patient: u64,
    bearer: String,
    run: String,
}

impl CreatePlan {
    fn new(dataset: &Dataset, token: &str, seed: u64) -> CreatePlan {
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

/// The PostgreSQL scenario runs only when a postgres backend is compiled in
/// and a database is named; otherwise it says why it skipped.
fn postgres_status() -> Value {
    use clap::ValueEnum;
    let compiled = crate::config::Backend::from_str("postgres", true).is_ok();
    let url = std::env::var("NRLS_BENCH_DATABASE_URL").ok();
    let reason = match (compiled, url) {
        (false, _) => {
            "skipped: this build has no postgres backend (`nrls serve --store postgres` is not accepted yet)"
        }
        (true, None) => {
            "skipped: set NRLS_BENCH_DATABASE_URL to a PostgreSQL database the benchmark may fill"
        }
        (true, Some(_)) => {
            "skipped: the postgres run is not wired into the suite yet (see docs/performance.md)"
        }
    };
    eprintln!("postgres: {reason}");
    json!({"skipped": true, "reason": reason})
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
