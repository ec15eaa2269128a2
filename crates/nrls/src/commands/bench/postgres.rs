//! The postgres scenario: search-max and create against
//! `nrls serve --store postgres`, as a ratio to the embedded store measured
//! in the same run. Runs only when a database is named.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::load;
use super::server::{self, CONSUMER, PRODUCER, ServerProcess, ServerSettings};
use super::suite::{
    AuditUsage, CreatePlan, Embedded, RunArgs, audit_growth, import_child_to, load_json,
    search_plan,
};
use crate::dataset::Dataset;

/// The database of the postgres scenario, or why it is skipped: the backend
/// must be compiled in and `NRLS_BENCH_DATABASE_URL` must name a database
/// the benchmark may fill (scripts/bench sets it when a local server is up).
pub(super) fn postgres_url() -> Result<String, &'static str> {
    use clap::ValueEnum;
    if crate::config::Backend::from_str("postgres", true).is_err() {
        return Err("skipped: this build has no postgres backend");
    }
    std::env::var("NRLS_BENCH_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .ok_or(
            "skipped: set NRLS_BENCH_DATABASE_URL to a PostgreSQL database the benchmark may fill",
        )
}

/// search-max and create against `nrls serve --store postgres`.
pub(super) struct PostgresRun<'a> {
    pub(super) url: String,
    pub(super) work: &'a Path,
    pub(super) data_file: &'a Path,
    pub(super) dataset: &'a Dataset,
    pub(super) args: &'a RunArgs,
}

impl PostgresRun<'_> {
    pub(super) async fn run(
        &self,
        embedded: &Embedded,
    ) -> Result<Vec<(&'static str, Value)>, String> {
        let args = self.args;
        let mut results = Vec::new();
        let data_dir = self.work.join(format!("pg-{}-{}", args.size, args.seed));
        if !self.data_file.exists() {
            let file = std::fs::File::create(self.data_file).map_err(|e| e.to_string())?;
            crate::commands::generate::write_ndjson(self.dataset, file, true)
                .map_err(|e| e.to_string())?;
        }
        // Idempotent: a database already holding the dataset only counts it.
        let mut report = import_child_to(
            self.data_file,
            &data_dir,
            &["--store", "postgres", "--database", &self.url],
        )?;
        report["backend"] = json!("postgres");
        results.push(("postgres-import", report));
        let settings = ServerSettings {
            store: "postgres".into(),
            database_url: Some(self.url.clone()),
            max_batch: args.max_batch,
            read_connections: args.read_connections,
        };
        let addr = server::free_addr()?;
        let config = self.work.join("bench-server-pg.toml");
        server::write_config(
            &config,
            &data_dir,
            addr,
            &settings,
            self.dataset.custodians(),
        )?;
        let log = self.work.join("bench-server-pg.log");
        let mut serve = ServerProcess::spawn_serve(&config, addr, &log, &[])?;
        serve.wait_ready(Duration::from_secs(60)).await?;
        let base_url = format!("http://{addr}");
        let consumer = server::token(&base_url, CONSUMER).await?;
        let producer = server::token(&base_url, PRODUCER).await?;
        let warmup = Duration::from_secs(2);
        let duration = Duration::from_secs(args.duration);
        let plan = Arc::new(search_plan(self.dataset, &consumer));
        let audit_before = audit_usage(&self.url).await;
        let search = load::closed_loop(addr, plan, args.connections, warmup, duration)
            .await
            .map_err(|e| e.to_string())?;
        let audit = audit_growth(audit_before, audit_usage(&self.url).await);
        let create_plan = Arc::new(CreatePlan::new(self.dataset, &producer, args.seed));
        let create = load::closed_loop(addr, create_plan, args.producers, warmup, duration)
            .await
            .map_err(|e| e.to_string())?;
        let rss = serve.rss_kib().map(|r| r.0);
        serve.stop();
        let ratio =
            |pg: f64, sqlite: Option<f64>| sqlite.map(|s| (pg / s * 1000.0).round() / 1000.0);
        let mut value = load_json(&search);
        value["ratio_to_embedded"] = json!(ratio(search.per_second, embedded.search));
        value["rss_kib"] = json!(rss);
        results.push(("postgres-search-max", value));
        results.push(("postgres-audit-bytes", audit));
        let mut value = load_json(&create);
        value["ratio_to_embedded"] = json!(ratio(create.per_second, embedded.create));
        results.push(("postgres-create", value));
        Ok(results)
    }
}

/// The audit tables' size on disk (heap, TOAST and indexes) and the chain
/// head's seq.
async fn audit_usage(url: &str) -> AuditUsage {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .map_err(|e| e.to_string())?;
    let task = tokio::spawn(connection);
    let row = client
        .query_one(
            "SELECT (pg_total_relation_size('audit_records')
                     + pg_total_relation_size('audit_agents')
                     + pg_total_relation_size('audit_names'))::bigint,
                    (SELECT seq FROM audit_head WHERE id = 1)",
            &[],
        )
        .await
        .map_err(|e| e.to_string());
    drop(client);
    let _ = task.await;
    let row = row?;
    Ok((row.get::<_, i64>(0) as u64, row.get::<_, i64>(1) as u64))
}
