//! `nrls import`: bulk-loads NDJSON DocumentReferences (one per line) into any
//! backend, through [`PointerStore::import`].
//!
//! An operator tool, not an API: there is no caller to authenticate, so each
//! pointer is validated exactly as the producer API would validate it for its
//! own custodian with every pointer type permitted. Invalid lines go to an
//! error file and do not stop the load. Loads are idempotent (ids are kept or
//! derived from the line), and a file load writes a checkpoint after every
//! committed batch, so an interrupted run resumes where it stopped.
//!
//! The pipeline overlaps its stages: a thread reads lines, a blocking task
//! validates one batch (split over every core) while the store commits the
//! previous one.

mod line;
mod progress;

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use domain::PointerRecord;
use domain::clock::now_instant;
use serde::{Deserialize, Serialize};
use store::{SharedStore, StoreError};
use tokio::sync::mpsc;

pub use super::store_args::StoreArgs;

pub use line::{LineIssue, to_record};
pub use progress::Progress;

/// Lines committed per store transaction. 5,000 keeps a transaction around
/// 50 ms on the embedded store: big enough that commit cost vanishes, small
/// enough that a server sharing the file waits little (docs/performance.md).
pub const DEFAULT_BATCH: usize = 5_000;

/// Arguments of `nrls import`.
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// NDJSON file of DocumentReferences, or `-` for standard input.
    pub file: PathBuf,
    #[command(flatten)]
    pub store: StoreArgs,
    /// Where invalid lines are reported (NDJSON: line, expression, code,
    /// reason). Default: FILE.errors.ndjson, or import-errors.ndjson for stdin.
    #[arg(long)]
    pub errors: Option<PathBuf>,
    /// Lines per store transaction.
    #[arg(long, default_value_t = DEFAULT_BATCH)]
    pub batch: usize,
    /// Ignore a checkpoint left by an interrupted run and start from line 1
    /// (safe: lines already loaded count as already present).
    #[arg(long)]
    pub restart: bool,
    /// No progress output.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Why an import stopped. Invalid lines never stop it.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Setup(String),
    #[error("reading the input: {0}")]
    Read(std::io::Error),
}

/// What a load did, printed as one JSON line at the end.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ImportReport {
    /// Lines read in this run (after any resumed offset), blank lines excluded.
    pub lines: u64,
    pub imported: u64,
    pub already_present: u64,
    /// Lines that failed validation.
    pub invalid: u64,
    /// Valid lines the store refused (an id stored with other content, or a
    /// masterIdentifier another pointer of the custodian holds).
    pub rejected: u64,
    /// Line number the run started at (greater than 1 after a resume).
    pub first_line: u64,
    pub seconds: f64,
    pub lines_per_second: f64,
}

/// A resumable position: after `line` (1-based) and `offset` bytes, every
/// line has been committed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct Checkpoint {
    file_size: u64,
    line: u64,
    offset: u64,
}

/// A run of lines read from the input.
struct Chunk {
    /// Non-blank lines with their numbers.
    lines: Vec<(u64, String)>,
    /// Number of the last line read (blank or not).
    last_line: u64,
    /// Input offset just after the last line.
    end_offset: u64,
}

/// Where lines come from and where progress goes, once the input is opened.
pub struct LoadOptions {
    pub batch: usize,
    pub errors: PathBuf,
    /// Resume/record position here (file inputs only), with the file's size.
    pub checkpoint: Option<(PathBuf, u64)>,
    pub progress: Progress,
}

pub async fn run(args: ImportArgs) -> Result<(), String> {
    let store = args.store.open()?;
    let report = import_path(&store, &args)
        .await
        .map_err(|e| e.to_string())?;
    print_report(&report);
    Ok(())
}

/// Prints the report: one JSON line on stdout, a sentence on stderr.
pub fn print_report(report: &ImportReport) {
    if let Ok(json) = serde_json::to_string(report) {
        println!("{json}");
    }
    eprintln!(
        "imported {} pointers, {} already present, {} invalid, {} rejected, in {:.1} s ({:.0} lines/s)",
        report.imported,
        report.already_present,
        report.invalid,
        report.rejected,
        report.seconds,
        report.lines_per_second
    );
}

/// Loads the file (or stdin) named in `args` into `store`.
pub async fn import_path(
    store: &SharedStore,
    args: &ImportArgs,
) -> Result<ImportReport, ImportError> {
    let stdin = args.file.as_os_str() == "-";
    let errors = args.errors.clone().unwrap_or_else(|| {
        if stdin {
            PathBuf::from("import-errors.ndjson")
        } else {
            suffixed(&args.file, ".errors.ndjson")
        }
    });
    if stdin {
        let options = LoadOptions {
            batch: args.batch,
            errors,
            checkpoint: None,
            progress: Progress::new("import", None, "lines", args.quiet),
        };
        let reader = BufReader::with_capacity(1 << 20, std::io::stdin());
        return load(store, reader, 1, 0, false, options).await;
    }
    let file_error = |source| ImportError::File {
        path: args.file.clone(),
        source,
    };
    let mut file = File::open(&args.file).map_err(file_error)?;
    let size = file.metadata().map_err(file_error)?.len();
    let checkpoint_path = suffixed(&args.file, ".import-checkpoint");
    let resume = if args.restart {
        None
    } else {
        read_checkpoint(&checkpoint_path, size)
    };
    let (first_line, offset) = match &resume {
        Some(c) => {
            eprintln!(
                "resuming {} after line {} (checkpoint {}; --restart to start over)",
                args.file.display(),
                c.line,
                checkpoint_path.display()
            );
            (c.line + 1, c.offset)
        }
        None => (1, 0),
    };
    file.seek(SeekFrom::Start(offset)).map_err(file_error)?;
    let options = LoadOptions {
        batch: args.batch,
        errors,
        checkpoint: Some((checkpoint_path.clone(), size)),
        progress: Progress::new("import", Some(size), "lines", args.quiet),
    };
    let reader = BufReader::with_capacity(1 << 20, file);
    let report = load(store, reader, first_line, offset, resume.is_some(), options).await?;
    // Finished: a later run of the same file starts from the top again.
    let _ = std::fs::remove_file(&checkpoint_path);
    Ok(report)
}

fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn read_checkpoint(path: &Path, file_size: u64) -> Option<Checkpoint> {
    let text = std::fs::read_to_string(path).ok()?;
    let checkpoint: Checkpoint = serde_json::from_str(&text).ok()?;
    // A file that changed size is another file: start over (idempotency makes
    // that safe, only slower).
    (checkpoint.file_size == file_size && checkpoint.offset <= file_size).then_some(checkpoint)
}

fn write_checkpoint(path: &Path, checkpoint: &Checkpoint) -> std::io::Result<()> {
    let temp = suffixed(path, ".tmp");
    std::fs::write(&temp, serde_json::to_vec(checkpoint).unwrap_or_default())?;
    std::fs::rename(&temp, path)
}

/// Loads every line of `reader` (starting at line `first_line`, input offset
/// `offset`) into `store`. `append_errors` keeps an error file from an
/// interrupted run of the same input.
pub async fn load<R: BufRead + Send + 'static>(
    store: &SharedStore,
    reader: R,
    first_line: u64,
    offset: u64,
    append_errors: bool,
    mut options: LoadOptions,
) -> Result<ImportReport, ImportError> {
    let started = Instant::now();
    let batch = options.batch.max(1);
    let (chunks, mut incoming) = mpsc::channel::<Result<Chunk, std::io::Error>>(2);
    let reader_thread = std::thread::Builder::new()
        .name("import-reader".into())
        .spawn(move || read_chunks(reader, first_line, offset, batch, &chunks))
        .map_err(|e| ImportError::Setup(format!("cannot start the reader: {e}")))?;
    let errors_file = std::fs::OpenOptions::new()
        .create(true)
        .append(append_errors)
        .write(true)
        .truncate(!append_errors)
        .open(&options.errors)
        .map_err(|source| ImportError::File {
            path: options.errors.clone(),
            source,
        })?;
    let mut errors = ErrorSink {
        out: BufWriter::new(errors_file),
        path: options.errors.clone(),
    };
    let fallback_now = now_instant();
    let mut report = ImportReport {
        first_line,
        ..ImportReport::default()
    };
    let mut in_flight: Option<InFlight> = None;
    while let Some(chunk) = incoming.recv().await {
        let chunk = chunk.map_err(ImportError::Read)?;
        let now = fallback_now.clone();
        let validated = tokio::task::spawn_blocking(move || validate_chunk(chunk, &now))
            .await
            .map_err(|e| ImportError::Setup(format!("validation task failed: {e}")))?;
        if let Some(previous) = in_flight.take() {
            previous
                .settle(&mut report, &mut errors, &mut options)
                .await?;
        }
        report.lines += validated.lines;
        report.invalid += validated.invalid;
        errors.write_issues(&validated.issues)?;
        let records = validated.records;
        let line_numbers = validated.line_numbers;
        let task_store = store.clone();
        in_flight = Some(InFlight {
            task: tokio::spawn(async move { task_store.import(records).await }),
            line_numbers,
            last_line: validated.last_line,
            end_offset: validated.end_offset,
        });
    }
    if let Some(previous) = in_flight.take() {
        previous
            .settle(&mut report, &mut errors, &mut options)
            .await?;
    }
    let _ = reader_thread.join();
    errors.out.flush().map_err(|source| ImportError::File {
        path: errors.path.clone(),
        source,
    })?;
    options.progress.finish();
    report.seconds = started.elapsed().as_secs_f64();
    report.lines_per_second = report.lines as f64 / report.seconds.max(1e-9);
    if report.invalid + report.rejected == 0 && !append_errors {
        let _ = std::fs::remove_file(&options.errors);
    }
    Ok(report)
}

/// Reads lines into chunks of `batch` until the end or a read error.
fn read_chunks<R: BufRead>(
    mut reader: R,
    first_line: u64,
    mut offset: u64,
    batch: usize,
    out: &mpsc::Sender<Result<Chunk, std::io::Error>>,
) {
    let mut next_line = first_line;
    loop {
        let start_offset = offset;
        let mut lines = Vec::with_capacity(batch);
        let mut at_end = false;
        while lines.len() < batch {
            let mut text = String::new();
            match reader.read_line(&mut text) {
                Ok(0) => {
                    at_end = true;
                    break;
                }
                Ok(n) => {
                    offset += n as u64;
                    if !text.trim().is_empty() {
                        lines.push((next_line, text));
                    }
                    next_line += 1;
                }
                Err(e) => {
                    let _ = out.blocking_send(Err(e));
                    return;
                }
            }
        }
        let chunk = Chunk {
            lines,
            last_line: next_line - 1,
            end_offset: offset,
        };
        if offset > start_offset && out.blocking_send(Ok(chunk)).is_err() {
            return;
        }
        if at_end {
            return;
        }
    }
}

struct Validated {
    records: Vec<PointerRecord>,
    /// Line number of each record, to report store rejections.
    line_numbers: Vec<u64>,
    issues: Vec<LineIssue>,
    lines: u64,
    invalid: u64,
    last_line: u64,
    end_offset: u64,
}

/// Validates a chunk on every core: the lines are split into one run per
/// core, each run validated on its own thread, and the results joined back
/// in line order.
fn validate_chunk(chunk: Chunk, fallback_now: &str) -> Validated {
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let share = chunk.lines.len().div_ceil(threads).max(1);
    let runs: Vec<Validated> = std::thread::scope(|scope| {
        let mut runs = chunk.lines.chunks(share);
        let first = runs.next().unwrap_or_default();
        let others: Vec<_> = runs
            .map(|run| scope.spawn(move || validate_run(run, fallback_now)))
            .collect();
        let mut done = vec![validate_run(first, fallback_now)];
        for other in others {
            // A validator panic is a bug: it goes on to the blocking task,
            // as it would have without the split.
            done.push(
                other
                    .join()
                    .unwrap_or_else(|p| std::panic::resume_unwind(p)),
            );
        }
        done
    });
    let mut out = Validated {
        records: Vec::with_capacity(chunk.lines.len()),
        line_numbers: Vec::with_capacity(chunk.lines.len()),
        issues: Vec::new(),
        lines: chunk.lines.len() as u64,
        invalid: 0,
        last_line: chunk.last_line,
        end_offset: chunk.end_offset,
    };
    for run in runs {
        out.records.extend(run.records);
        out.line_numbers.extend(run.line_numbers);
        out.issues.extend(run.issues);
        out.invalid += run.invalid;
    }
    out
}

/// Validates `lines` in order; `lines`, `last_line` and `end_offset` of the
/// result are left for [`validate_chunk`] to fill.
fn validate_run(lines: &[(u64, String)], fallback_now: &str) -> Validated {
    let mut out = Validated {
        records: Vec::with_capacity(lines.len()),
        line_numbers: Vec::with_capacity(lines.len()),
        issues: Vec::new(),
        lines: 0,
        invalid: 0,
        last_line: 0,
        end_offset: 0,
    };
    for (number, text) in lines {
        match to_record(*number, text.trim_end(), fallback_now) {
            Ok(record) => {
                out.records.push(record);
                out.line_numbers.push(*number);
            }
            Err(issues) => {
                out.invalid += 1;
                out.issues.extend(issues);
            }
        }
    }
    out
}

/// A batch the store is committing.
struct InFlight {
    task: tokio::task::JoinHandle<Result<store::ImportOutcome, StoreError>>,
    line_numbers: Vec<u64>,
    last_line: u64,
    end_offset: u64,
}

impl InFlight {
    /// Waits for the commit, records its outcome and moves the checkpoint on.
    async fn settle(
        self,
        report: &mut ImportReport,
        errors: &mut ErrorSink,
        options: &mut LoadOptions,
    ) -> Result<(), ImportError> {
        let outcome = self
            .task
            .await
            .map_err(|e| ImportError::Setup(format!("store task failed: {e}")))??;
        report.imported += outcome.imported;
        report.already_present += outcome.already_present;
        report.rejected += outcome.rejected.len() as u64;
        let issues: Vec<LineIssue> = outcome
            .rejected
            .iter()
            .map(|(index, error)| rejection(self.line_numbers.get(*index).copied(), error))
            .collect();
        errors.write_issues(&issues)?;
        if let Some((path, file_size)) = &options.checkpoint {
            // The error file must hold this batch's issues before the
            // checkpoint says the batch is done.
            errors.out.flush().map_err(|source| ImportError::File {
                path: errors.path.clone(),
                source,
            })?;
            write_checkpoint(
                path,
                &Checkpoint {
                    file_size: *file_size,
                    line: self.last_line,
                    offset: self.end_offset,
                },
            )
            .map_err(|source| ImportError::File {
                path: path.clone(),
                source,
            })?;
        }
        options.progress.update(self.end_offset, report.lines);
        Ok(())
    }
}

fn rejection(line: Option<u64>, error: &StoreError) -> LineIssue {
    let (expression, code) = match error {
        StoreError::DuplicateMasterIdentifier(_) => {
            ("DocumentReference.masterIdentifier", "DUPLICATE_REJECTED")
        }
        _ => ("DocumentReference.id", "DUPLICATE_REJECTED"),
    };
    LineIssue {
        line: line.unwrap_or(0),
        expression: expression.to_owned(),
        code: code.to_owned(),
        reason: match error {
            StoreError::DuplicateId(id) => {
                format!("pointer {id} is already stored with different content")
            }
            other => other.to_string(),
        },
    }
}

struct ErrorSink {
    out: BufWriter<File>,
    path: PathBuf,
}

impl ErrorSink {
    fn write_issues(&mut self, issues: &[LineIssue]) -> Result<(), ImportError> {
        for issue in issues {
            let line = serde_json::to_string(issue).unwrap_or_default();
            writeln!(self.out, "{line}").map_err(|source| ImportError::File {
                path: self.path.clone(),
                source,
            })?;
        }
        Ok(())
    }
}
