//! `nrls bench`: the benchmark suite (`run`), the floor server it compares
//! against, and micro-benchmarks for callgrind (`scripts/bench-micro`).
//! See docs/performance.md for what each scenario measures and how.

mod floor;
pub mod load;
mod micro;
mod postgres;
mod server;
mod subscription_latency;
mod suite;

use std::net::SocketAddr;

pub use suite::{RunArgs, SCENARIOS};

/// Arguments of `nrls bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub command: BenchCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// Run the benchmark suite (scripts/bench wraps this).
    Run(RunArgs),
    /// Commit-to-first-delivery-attempt latency of subscription
    /// notifications, against a running `serve --demo` server.
    SubscriptionLatency(subscription_latency::LatencyArgs),
    /// Serve a fixed 2 KB Bundle on the nrls HTTP stack, without store or auth.
    #[command(hide = true)]
    FloorServer {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
    },
    /// Run one hot path N times, for instruction counts under callgrind.
    #[command(hide = true)]
    Micro(micro::MicroArgs),
}

pub async fn run(args: BenchArgs) -> Result<(), String> {
    match args.command {
        BenchCommand::Run(run) => suite::run(run).await,
        BenchCommand::FloorServer { listen } => floor::serve(listen).await,
        BenchCommand::Micro(micro) => micro::run(micro).await,
        BenchCommand::SubscriptionLatency(latency) => subscription_latency::run(latency).await,
    }
}
