//! `nrls serve`: runs the service until SIGTERM or Ctrl-C.

use std::net::SocketAddr;

use super::store_args::StoreArgs;
use crate::app::Application;
use crate::config::Config;
use crate::demo;

/// Arguments of `nrls serve`. Flags and `NRLS_*` variables override the file.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Address to listen on.
    #[arg(long, env = "NRLS_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Separate listener for /metrics, probes and POST /-/reload.
    #[arg(long, env = "NRLS_ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,
    /// Base URL clients use to reach this server.
    #[arg(long, env = "NRLS_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// A hot standby of the database for consumer searches and reads.
    #[arg(
        long = "replica-database",
        env = "NRLS_REPLICA_DATABASE_URL",
        hide_env_values = true
    )]
    pub replica_database_url: Option<String>,
    /// OTLP/HTTP receiver to export trace spans to, e.g. http://127.0.0.1:4318.
    #[arg(long, env = "NRLS_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// Seed demo patients and pointers and onboard the demo apps.
    #[arg(long)]
    pub demo: bool,
}

impl ServeArgs {
    pub fn config(&self) -> Result<Config, String> {
        let mut config = self.store.config()?;
        if let Some(listen) = self.listen {
            config.server.listen = listen;
        }
        if let Some(admin) = self.admin_listen {
            config.server.admin_listen = Some(admin);
        }
        if let Some(url) = &self.public_url {
            config.server.public_url = Some(url.clone());
        }
        if let Some(url) = &self.replica_database_url {
            config.store.replica_database_url = Some(url.clone());
        }
        if let Some(endpoint) = &self.otlp_endpoint {
            config.telemetry.otlp_endpoint = Some(endpoint.clone());
        }
        config.telemetry.check().map_err(|e| e.to_string())?;
        Ok(config)
    }
}

pub async fn run(args: ServeArgs) -> Result<(), String> {
    let config = args.config()?;
    let app = Application::build(config, args.demo)
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!(url = %app.public_url, backend = app.store.backend(), "nrls listening");
    if args.demo {
        print_demo_help(&app.public_url);
    }
    reload_on_hangup(app.reloader());
    app.run_until(shutdown_signal())
        .await
        .map_err(|e| e.to_string())
}

fn print_demo_help(url: &str) {
    let patient = demo::patients(1)[0];
    let exe = "cargo run --release -q --";
    println!(
        r#"
nrls is running at {url} with demo data. In another terminal:

  TOKEN=$({exe} token --client-id {consumer} --url {url})
  curl -s "{url}/consumer/FHIR/R4/DocumentReference?subject:identifier=https://fhir.nhs.uk/Id/nhs-number|{patient}" \
    -H "Authorization: Bearer $TOKEN" -H "NHSD-End-User-Organisation-ODS: {ods}" \
    -H "X-Request-Id: $(cat /proc/sys/kernel/random/uuid)"

The converged shared care record from the demo regional sources:

  curl -s "{url}/consumer/FHIR/R4/Patient/\$shared-care-record?patient.identifier=https://fhir.nhs.uk/Id/nhs-number|{patient}" \
    -H "Authorization: Bearer $TOKEN" -H "NHSD-End-User-Organisation-ODS: {ods}" \
    -H "X-Request-Id: $(cat /proc/sys/kernel/random/uuid)"

Producer app: {producer} (acts for {custodians}). Demo patients: {first} and the next {more} valid 999 numbers.
"#,
        consumer = demo::CONSUMER_APP,
        producer = demo::PRODUCER_APP,
        ods = demo::CONSUMER_ODS,
        custodians = demo::CUSTODIANS
            .iter()
            .map(|(o, _)| *o)
            .collect::<Vec<_>>()
            .join(", "),
        first = patient,
        more = demo::PATIENTS - 1,
    );
}

/// SIGHUP reloads the app registry, as the admin endpoint does.
#[cfg(unix)]
fn reload_on_hangup(reloader: api::ops::Reloader) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hangups) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP: reload via POST /-/reload only");
        return;
    };
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the app registry");
            let reloader = std::sync::Arc::clone(&reloader);
            // The reloader logs its outcome; a rejected file keeps the old registry.
            let _ = tokio::task::spawn_blocking(move || reloader()).await;
        }
    });
}

#[cfg(not(unix))]
fn reload_on_hangup(_reloader: api::ops::Reloader) {}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
