//! `nrls probe`: exits 0 when a health endpoint answers 2xx. For container
//! HEALTHCHECKs in images that have no shell or curl.

use std::time::Duration;

/// Arguments of `nrls probe`.
#[derive(Debug, clap::Args)]
pub struct ProbeArgs {
    /// The endpoint to check.
    #[arg(
        long,
        env = "NRLS_PROBE_URL",
        default_value = "http://127.0.0.1:8080/livez"
    )]
    pub url: String,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 3)]
    pub timeout_seconds: u64,
}

pub async fn run(args: ProbeArgs) -> Result<(), String> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(args.timeout_seconds))
        .build()
        .map_err(|e| e.to_string())?;
    let response = client
        .get(&args.url)
        .send()
        .await
        .map_err(|e| format!("{}: {e}", args.url))?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(format!("{} answered {}", args.url, response.status()))
    }
}
