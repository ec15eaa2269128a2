//! `nrls`: the National Record Locator Service.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use nrls::commands::{serve, token};

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
                nrls::telemetry::init();
                serve::run(args).await
            }
            Command::Token(args) => token::run(args).await,
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
