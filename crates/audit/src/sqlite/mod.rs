//! The embedded audit backend: its own SQLite file (`audit.db`, beside the
//! pointer store's), WAL, `synchronous=FULL`, one writer thread with group
//! commit (`writer.rs`), and a read connection for searches. Reads and the
//! verify walk run on the blocking pool: an audit search may scan.

mod reader;
mod schema;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use fhir::AuditEvent;
use rusqlite::{Connection, OpenFlags};

use crate::{
    Acknowledgement, Alert, AlertQuery, AuditError, AuditFacts, AuditLog, AuditPage, AuditQuery,
    AuditRecord, Checkpoint, CheckpointPolicy, CheckpointSigner, VerifyError, VerifyOptions,
    VerifyReport,
};

use crate::batch::Command;
use schema::sqlite_error;
use writer::Writer;

pub use crate::batch::WriteStats;

/// The file name of the audit database inside the data directory.
pub const FILE_NAME: &str = "audit.db";
/// The file name of the checkpoint signing key inside the data directory.
pub const KEY_FILE_NAME: &str = "audit-signing-key";

/// Tuning of a [`SqliteAuditLog`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SqliteAuditOptions {
    /// Most commands per transaction. Default 512: audit rows are small.
    pub max_batch: usize,
    /// When checkpoints are signed.
    pub checkpoints: CheckpointPolicy,
    /// Page size of a new `audit.db` (a power of two, 512 to 65,536); an
    /// existing file keeps its own. See [`DEFAULT_PAGE_SIZE`].
    pub page_size: u32,
}

/// SQLite's own default. Each record inserts into the patient index at a
/// random place, so each dirties about one index page that its commit
/// writes and syncs: 2,048 halves that write. Measured on 100k searches
/// (docs/performance.md, "Audit page size"): open-loop p99 at 2,000/s
/// 1.6-2.2 ms with 2 KiB pages against 1.4-26.8 ms with 4 KiB (stalls of
/// 60-90 ms at p99.9 on new files), for 4% more bytes per record (302 B
/// against 291 in `an_audited_search_costs_at_most_300_bytes_on_disk`).
/// The default keeps the bytes target's margin; operators who value the
/// tail more can choose 2,048.
pub const DEFAULT_PAGE_SIZE: u32 = 4096;

/// Whether `size` is a page size SQLite accepts.
pub fn is_page_size(size: u32) -> bool {
    (512..=65_536).contains(&size) && size.is_power_of_two()
}

impl Default for SqliteAuditOptions {
    fn default() -> Self {
        SqliteAuditOptions {
            max_batch: 512,
            checkpoints: CheckpointPolicy::default(),
            page_size: DEFAULT_PAGE_SIZE,
        }
    }
}

/// An [`AuditLog`] in one SQLite file.
pub struct SqliteAuditLog {
    path: PathBuf,
    reader: Arc<Mutex<Connection>>,
    writer: Writer,
}

fn read_only(path: &Path) -> Result<Connection, AuditError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(sqlite_error)?;
    schema::configure_reader(&conn)?;
    Ok(conn)
}

impl SqliteAuditLog {
    /// Opens (creating if needed) the audit database at `path`; checkpoints
    /// are signed with `signer`.
    pub fn open(
        path: &Path,
        signer: CheckpointSigner,
        options: SqliteAuditOptions,
    ) -> Result<SqliteAuditLog, AuditError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                AuditError::Unavailable(format!("cannot create {}: {e}", parent.display()))
            })?;
        }
        let mut conn = Connection::open(path).map_err(sqlite_error)?;
        schema::choose_page_size(&conn, options.page_size)?;
        schema::configure_writer(&conn)?;
        schema::migrate(&mut conn)?;
        let reader = Arc::new(Mutex::new(read_only(path)?));
        let writer = Writer::spawn(conn, path, signer, options.checkpoints, options.max_batch)?;
        Ok(SqliteAuditLog {
            path: path.to_owned(),
            reader,
            writer,
        })
    }

    /// Opens `audit.db` in `data_dir`, with the key in `audit-signing-key`
    /// there (created on first use).
    pub fn open_in(
        data_dir: &Path,
        options: SqliteAuditOptions,
    ) -> Result<SqliteAuditLog, AuditError> {
        let signer = CheckpointSigner::load_or_create(&data_dir.join(KEY_FILE_NAME))?;
        SqliteAuditLog::open(&data_dir.join(FILE_NAME), signer, options)
    }

    /// Transactions and records written since open.
    pub fn stats(&self) -> WriteStats {
        self.writer.stats()
    }

    async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&Connection) -> Result<T, AuditError> + Send + 'static,
    ) -> Result<T, AuditError> {
        let reader = Arc::clone(&self.reader);
        tokio::task::spawn_blocking(move || {
            let conn = reader.lock().unwrap_or_else(PoisonError::into_inner);
            read(&conn)
        })
        .await
        .map_err(|e| AuditError::Internal(format!("audit read task failed: {e}")))?
    }
}

/// Verifies an audit database file without opening it for writing (for
/// `nrls audit verify` while a server may be running).
pub fn verify_file(path: &Path, options: &VerifyOptions) -> Result<VerifyReport, VerifyError> {
    if !path.exists() {
        return Err(AuditError::Unavailable(format!("{} does not exist", path.display())).into());
    }
    let mut conn = read_only(path)?;
    reader::verify(&mut conn, options)
}

/// Searches an audit database file read-only (for `nrls audit search`).
pub fn search_file(path: &Path, query: &AuditQuery) -> Result<AuditPage, AuditError> {
    reader::search(&read_only(path)?, query)
}

#[async_trait]
impl AuditLog for SqliteAuditLog {
    async fn append(&self, events: Vec<AuditEvent>) -> Result<Vec<u64>, AuditError> {
        self.writer.queue().append(&events).await
    }

    async fn record(&self, node: &str, facts: Vec<AuditFacts>) -> Result<Vec<u64>, AuditError> {
        self.writer.queue().record(node, &facts).await
    }

    async fn record_moved(
        &self,
        source: &str,
        entries: Vec<(u64, Vec<u8>)>,
    ) -> Result<(), AuditError> {
        self.writer.queue().record_moved(source, entries).await
    }

    async fn search(&self, query: &AuditQuery) -> Result<AuditPage, AuditError> {
        let query = query.clone();
        self.read(move |conn| reader::search(conn, &query)).await
    }

    async fn get(&self, seq: u64) -> Result<Option<AuditRecord>, AuditError> {
        self.read(move |conn| reader::get(conn, seq)).await
    }

    async fn alerts(&self, query: &AlertQuery) -> Result<Vec<Alert>, AuditError> {
        let query = *query;
        self.read(move |conn| reader::alerts(conn, &query)).await
    }

    async fn acknowledge(&self, seq: u64, ack: Acknowledgement) -> Result<(), AuditError> {
        self.writer.queue().acknowledge(seq, ack).await
    }

    async fn checkpoint(&self) -> Result<Option<Checkpoint>, AuditError> {
        self.writer
            .queue()
            .send(|reply| Command::Checkpoint { reply })
            .await
    }

    async fn verify(&self, options: &VerifyOptions) -> Result<VerifyReport, VerifyError> {
        let path = self.path.clone();
        let options = options.clone();
        tokio::task::spawn_blocking(move || verify_file(&path, &options))
            .await
            .map_err(|e| AuditError::Internal(format!("audit verify task failed: {e}")))?
    }

    async fn health(&self) -> Result<(), AuditError> {
        if !self.writer.is_running() {
            return Err(AuditError::Unavailable(
                "the audit writer has stopped".into(),
            ));
        }
        self.read(|conn| {
            conn.query_row("SELECT 1", [], |row| row.get::<_, i64>(0))
                .map(drop)
                .map_err(sqlite_error)
        })
        .await
    }

    fn backend(&self) -> &'static str {
        "sqlite"
    }
}

#[cfg(test)]
mod tests;
