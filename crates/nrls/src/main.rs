//! `nrls`: the National Record Locator Service.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use nrls::commands::{
    audit, bench, check, demo_source, demo_subscriber, export, generate, import, probe, serve,
    token,
};

/// mimalloc instead of the system allocator: see docs/performance.md,
/// "Issue 16: one read of the text, and the allocator".
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "nrls",
    version,
    about = "National Record Locator Service: FHIR pointers to where records live"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service.
    Serve(serve::ServeArgs),
    /// Obtain an access token (or a client assertion) for an app.
    Token(token::TokenArgs),
    /// Bulk-load NDJSON DocumentReferences (an operator tool: validated as
    /// the API would for each pointer's own custodian).
    Import(import::ImportArgs),
    /// Write stored pointers as NDJSON.
    Export(export::ExportArgs),
    /// Report every stored pointer that fails the current validation rules
    /// (FHIR R4 and NRL); changes nothing, exits non-zero if any fail.
    Check(check::CheckArgs),
    /// Generate a deterministic synthetic dataset.
    Generate(generate::GenerateArgs),
    /// Benchmarks: the load generator, its scenarios and micro-benchmarks.
    Bench(bench::BenchArgs),
    /// Exit 0 if a health endpoint answers 2xx (container HEALTHCHECK).
    Probe(probe::ProbeArgs),
    /// Verify or search the audit trail.
    Audit(audit::AuditArgs),
    /// Run a demo regional FHIR source (synthetic records for the demo patients).
    DemoSource(demo_source::DemoSourceArgs),
    /// Listen for subscription notifications and print them; subscribes the
    /// demo consumer to a demo patient (for `serve --demo`).
    DemoSubscriber(demo_subscriber::DemoSubscriberArgs),
    /// Create a ReSPECT form pointer for a demo patient as the demo producer.
    DemoPointer(demo_subscriber::DemoPointerArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("nrls: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => {
                nrls::logging::init();
                serve::run(args).await
            }
            Command::Token(args) => token::run(args).await,
            Command::Import(args) => import::run(args).await,
            Command::Export(args) => export::run(args).await,
            Command::Check(args) => check::run(args).await,
            Command::Generate(args) => generate::run(args).await,
            Command::Bench(args) => bench::run(args).await,
            Command::Audit(args) => audit::run(args).await,
            Command::Probe(args) => probe::run(args).await,
            Command::DemoSource(args) => demo_source::run(args).await,
            Command::DemoSubscriber(args) => demo_subscriber::run(args).await,
            Command::DemoPointer(args) => demo_subscriber::create_pointer(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nrls: {e}");
            ExitCode::FAILURE
        }
    }
}
