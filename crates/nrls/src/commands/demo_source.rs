//! `nrls demo-source`: one demo regional source (`demo::source`) on its own,
//! until Ctrl-C.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::demo::source::{Mode, Region, SourceState, spawn};

/// Arguments of `nrls demo-source`.
#[derive(Debug, clap::Args)]
pub struct DemoSourceArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9101")]
    pub listen: SocketAddr,
    /// Which demo region to serve: QWO, QE1 or QRV.
    #[arg(long, value_parser = Region::parse)]
    pub region: Region,
    /// Starting mode (switch later with `PUT /_mode/{mode}`).
    #[arg(long, value_enum, default_value = "normal")]
    pub mode: Mode,
    /// Delay of the slow mode, in milliseconds.
    #[arg(long, default_value_t = 1_500)]
    pub delay_ms: u64,
}

/// `nrls demo-source`: serves until Ctrl-C.
pub async fn run(args: DemoSourceArgs) -> Result<(), String> {
    let listener = TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let state = SourceState::new(args.region, args.mode, Duration::from_millis(args.delay_ms));
    let running = spawn(listener, state).map_err(|e| e.to_string())?;
    println!(
        "demo source {} ({}) serving {} at {} — register it in nrls as:\n\n[[sources]]\nods = \"{}\"\nname = \"{}\"\nbase_url = \"{}\"\n",
        args.region.ods(),
        args.region.name(),
        args.mode.name(),
        running.base_url,
        args.region.ods(),
        args.region.name(),
        running.base_url,
    );
    let _ = tokio::signal::ctrl_c().await;
    running.task.abort();
    Ok(())
}
