//! `nrls export`: writes stored pointers as NDJSON (one DocumentReference per
//! line, exactly as served), for backups and migration out. The output
//! re-imports with `nrls import` byte for byte: ids, versions and
//! `meta.lastUpdated` are kept.

use std::io::{BufWriter, Write};
use std::path::PathBuf;

use domain::OdsCode;
use store::{PointerStore, StoreError};

use super::store_args::{PointerScan, StoreArgs};

/// Pointers read per store call; a page is a cheap indexed range on `seq`.
const PAGE: usize = 2_000;

/// Arguments of `nrls export`.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Only this custodian's pointers (ODS code).
    #[arg(long)]
    pub custodian: Option<String>,
    /// Output file, or `-` for standard output.
    #[arg(long, short, default_value = "-")]
    pub output: PathBuf,
}

/// Why an export stopped.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("writing the output: {0}")]
    Write(#[from] std::io::Error),
}

pub async fn run(args: ExportArgs) -> Result<(), String> {
    let scan = PointerScan::open(&args.store, args.custodian.as_deref(), &args.output)?;
    let count = export(scan.store.as_ref(), scan.custodian.as_ref(), scan.out)
        .await
        .map_err(|e| e.to_string())?;
    eprintln!("exported {count} pointers");
    Ok(())
}

/// Writes every pointer (of `custodian`, if given) to `out`, oldest first.
/// Returns how many were written.
pub async fn export(
    store: &dyn PointerStore,
    custodian: Option<&OdsCode>,
    out: impl Write,
) -> Result<u64, ExportError> {
    let mut out = BufWriter::with_capacity(1 << 20, out);
    let mut after = 0i64;
    let mut count = 0u64;
    loop {
        let page = store.pointers_after(after, PAGE, custodian).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for stored in &page {
            out.write_all(stored.record.json.as_bytes())?;
            out.write_all(b"\n")?;
        }
        count += page.len() as u64;
    }
    out.flush()?;
    Ok(count)
}
