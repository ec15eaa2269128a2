//! `nrls generate`: a deterministic synthetic dataset (see
//! [`crate::dataset::Dataset`]) as NDJSON, or loaded straight into a store
//! through the same validation and bulk path as `nrls import`.

use std::io::{BufReader, BufWriter, Write};
use std::path::PathBuf;
use std::time::Instant;

use crate::dataset::Dataset;

use super::import::{LoadOptions, Progress, StoreArgs, load, print_report};

/// Arguments of `nrls generate`.
#[derive(Debug, clap::Args)]
pub struct GenerateArgs {
    /// Number of pointers.
    #[arg(long, default_value_t = 100_000)]
    pub pointers: u64,
    /// Seed: the same seed and count give the same bytes.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Output file, or `-` for standard output (ignored with --load).
    #[arg(long, short, default_value = "-")]
    pub output: PathBuf,
    /// Load into the store instead of writing NDJSON.
    #[arg(long)]
    pub load: bool,
    #[command(flatten)]
    pub store: StoreArgs,
    /// No progress output.
    #[arg(long, short)]
    pub quiet: bool,
}

pub async fn run(args: GenerateArgs) -> Result<(), String> {
    let dataset = Dataset::new(args.pointers, args.seed);
    if args.load {
        return load_into_store(&args, dataset).await;
    }
    let started = Instant::now();
    let out: Box<dyn Write + Send> = if args.output.as_os_str() == "-" {
        Box::new(std::io::stdout())
    } else {
        let file = std::fs::File::create(&args.output)
            .map_err(|e| format!("{}: {e}", args.output.display()))?;
        Box::new(file)
    };
    let quiet = args.quiet;
    let pointers = args.pointers;
    tokio::task::spawn_blocking(move || write_ndjson(&dataset, out, quiet))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("writing the dataset: {e}"))?;
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "generated {pointers} pointers in {seconds:.2} s ({:.0}/s)",
        pointers as f64 / seconds.max(1e-9)
    );
    Ok(())
}

/// Writes the dataset as NDJSON.
pub fn write_ndjson(dataset: &Dataset, out: impl Write, quiet: bool) -> std::io::Result<()> {
    let mut out = BufWriter::with_capacity(1 << 20, out);
    let mut progress = Progress::new("generate", Some(dataset.pointers), "pointers", quiet);
    let mut n = 0u64;
    dataset.generate(|g| {
        out.write_all(g.json.as_bytes())?;
        out.write_all(b"\n")?;
        n += 1;
        if n.is_multiple_of(4096) {
            progress.update(n, n);
        }
        Ok::<(), std::io::Error>(())
    })?;
    progress.finish();
    out.flush()
}

/// Streams the dataset through a pipe into the import pipeline.
async fn load_into_store(args: &GenerateArgs, dataset: Dataset) -> Result<(), String> {
    let store = args.store.open()?;
    let (reader, writer) = std::io::pipe().map_err(|e| e.to_string())?;
    let producer = std::thread::Builder::new()
        .name("generate".into())
        .spawn(move || write_ndjson(&dataset, writer, true))
        .map_err(|e| e.to_string())?;
    let options = LoadOptions {
        batch: super::import::DEFAULT_BATCH,
        errors: PathBuf::from("generate-errors.ndjson"),
        checkpoint: None,
        progress: Progress::new("load", None, "pointers", args.quiet),
    };
    let report = load(
        &store,
        BufReader::with_capacity(1 << 20, reader),
        1,
        0,
        false,
        options,
    )
    .await
    .map_err(|e| e.to_string())?;
    producer
        .join()
        .map_err(|_| "the generator thread panicked".to_owned())?
        .map_err(|e| format!("generating: {e}"))?;
    print_report(&report);
    Ok(())
}
