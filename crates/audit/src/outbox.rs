//! Moving audit records from the pointer store's audit outbox into the
//! chain (issue 16, "share the fsync").
//!
//! An audited pointer write keeps its request's audit record (the compact
//! form, [`crate::compact`]) in the store's own transaction
//! ([`store::PointerStore::write_audited`]), so the response waits for one
//! durable commit instead of two. The record is durable from that commit
//! on; [`AuditOutbox`] then chains it into the audit log, a batch at a time,
//! and has the store forget it. The log knows which outbox records it took
//! ([`AuditLog::record_moved`]), so a crash between the two steps repeats
//! the move without appending anything twice.
//!
//! Readers of the trail must still see every acknowledged write:
//! [`OutboxedLog`] wraps the audit log and moves what is waiting before
//! each read.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use fhir::AuditEvent;
use store::{PointerStore, StoreError};
use tokio::sync::{Mutex, Notify};

use crate::{
    Acknowledgement, Alert, AlertQuery, AuditError, AuditFacts, AuditLog, AuditPage, AuditQuery,
    AuditRecord, Checkpoint, SharedAuditLog, VerifyError, VerifyOptions, VerifyReport,
};

/// How the audit log names the pointer store's outbox in its high-water
/// marks: one store per data folder (or database), so one name.
pub const SOURCE: &str = "pointer-store";

/// Records moved per audit transaction: enough to drain a busy second's
/// creates in a few commits.
const PAGE: usize = 2_000;

/// After a failed move (the audit log or the store away), the wait before
/// the next attempt; the records stay durable in the store meanwhile.
const RETRY: Duration = Duration::from_secs(1);

/// Moves the store's waiting audit records into the audit log.
pub struct AuditOutbox {
    /// Weak: the store closes at shutdown when the requests let go of it,
    /// whatever the mover still holds (waiting records stay durable in it).
    store: Weak<dyn PointerStore>,
    log: SharedAuditLog,
    /// Records this process kept in the outbox, counted after their commit
    /// and before their response.
    kept: AtomicU64,
    /// How many of `kept` a finished move is known to have taken.
    moved: AtomicU64,
    wake: Notify,
    /// One move at a time: a second mover would only read the same rows.
    moving: Mutex<()>,
}

impl AuditOutbox {
    /// A mover between `store` and `log` (the log itself, not an
    /// [`OutboxedLog`] around it).
    pub fn new(store: &Arc<dyn PointerStore>, log: SharedAuditLog) -> Arc<AuditOutbox> {
        Arc::new(AuditOutbox {
            store: Arc::downgrade(store),
            log,
            kept: AtomicU64::new(0),
            moved: AtomicU64::new(0),
            wake: Notify::new(),
            moving: Mutex::new(()),
        })
    }

    /// Counts a record the store kept with its write, and wakes the mover.
    pub fn kept(&self) {
        self.kept.fetch_add(1, Ordering::AcqRel);
        self.wake.notify_one();
    }

    /// Moves every record waiting now, whoever kept it: a previous run, or
    /// (PostgreSQL) another node whose own mover has not got to it yet.
    /// What start-up, shutdown and every reader of the trail run: one read
    /// of an outbox that is nearly always empty.
    pub async fn drain(&self) -> Result<(), AuditError> {
        let _moving = self.moving.lock().await;
        self.move_waiting().await
    }

    /// Moves records as they are kept, for as long as the process runs. A
    /// failed move is logged and retried; nothing is lost meanwhile.
    pub fn spawn(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let outbox = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                if !outbox.behind() {
                    // A `kept` meanwhile leaves a permit, so none is missed;
                    // a busy node's writes pile up while a move commits and
                    // go into the next one together.
                    outbox.wake.notified().await;
                    continue;
                }
                if let Err(error) = outbox.catch_up().await {
                    tracing::warn!(%error, "moving audit records from the outbox failed; retrying");
                    tokio::time::sleep(RETRY).await;
                }
            }
        })
    }

    /// Records this process kept that no finished move has covered (the
    /// `nrls_audit_outbox_events` gauge).
    pub fn waiting(&self) -> u64 {
        let moved = self.moved.load(Ordering::Acquire);
        self.kept.load(Ordering::Acquire).saturating_sub(moved)
    }

    fn behind(&self) -> bool {
        self.waiting() > 0
    }

    async fn catch_up(&self) -> Result<(), AuditError> {
        let _moving = self.moving.lock().await;
        // A reader's drain may have done it meanwhile.
        if !self.behind() {
            return Ok(());
        }
        self.move_waiting().await
    }

    /// Moves records until the outbox is empty, then counts every record
    /// kept before the move began as moved. Runs under `moving`.
    async fn move_waiting(&self) -> Result<(), AuditError> {
        // Kept before this read began, so committed and visible to it.
        let covered = self.kept.load(Ordering::Acquire);
        let Some(store) = self.store.upgrade() else {
            // Closed at shutdown, after the last drain: only records kept
            // since then are left for the next start.
            if !self.behind() {
                return Ok(());
            }
            return Err(AuditError::Unavailable(
                "the pointer store holding the audit outbox has closed".into(),
            ));
        };
        loop {
            let page = store.audit_outbox(PAGE).await.map_err(unavailable)?;
            let full = page.len() == PAGE;
            if page.is_empty() {
                break;
            }
            let ids: Vec<u64> = page.iter().map(|e| e.id).collect();
            let entries = page.into_iter().map(|e| (e.id, e.entry)).collect();
            self.log.record_moved(SOURCE, entries).await?;
            store.remove_audit_outbox(&ids).await.map_err(unavailable)?;
            if !full {
                break;
            }
        }
        self.moved.fetch_max(covered, Ordering::AcqRel);
        Ok(())
    }
}

fn unavailable(error: StoreError) -> AuditError {
    AuditError::Unavailable(format!("the audit outbox: {error}"))
}

/// The audit log as readers must see it: every read first moves the
/// records waiting in the outbox, so an acknowledged write's record is
/// never missing from a search, a patient's access log or `verify`, on
/// whichever node it was written.
pub struct OutboxedLog {
    outbox: Arc<AuditOutbox>,
}

impl OutboxedLog {
    pub fn new(outbox: Arc<AuditOutbox>) -> OutboxedLog {
        OutboxedLog { outbox }
    }

    fn log(&self) -> &dyn AuditLog {
        self.outbox.log.as_ref()
    }
}

#[async_trait]
impl AuditLog for OutboxedLog {
    async fn append(&self, events: Vec<AuditEvent>) -> Result<Vec<u64>, AuditError> {
        self.log().append(events).await
    }

    async fn record(&self, node: &str, facts: Vec<AuditFacts>) -> Result<Vec<u64>, AuditError> {
        self.log().record(node, facts).await
    }

    async fn record_moved(
        &self,
        source: &str,
        entries: Vec<(u64, Vec<u8>)>,
    ) -> Result<(), AuditError> {
        self.log().record_moved(source, entries).await
    }

    async fn search(&self, query: &AuditQuery) -> Result<AuditPage, AuditError> {
        self.outbox.drain().await?;
        self.log().search(query).await
    }

    async fn get(&self, seq: u64) -> Result<Option<AuditRecord>, AuditError> {
        self.outbox.drain().await?;
        self.log().get(seq).await
    }

    async fn alerts(&self, query: &AlertQuery) -> Result<Vec<Alert>, AuditError> {
        self.outbox.drain().await?;
        self.log().alerts(query).await
    }

    async fn acknowledge(&self, seq: u64, ack: Acknowledgement) -> Result<(), AuditError> {
        self.outbox.drain().await?;
        self.log().acknowledge(seq, ack).await
    }

    async fn checkpoint(&self) -> Result<Option<Checkpoint>, AuditError> {
        // Signs the moved records too; a store already closed leaves its
        // records for the next start, which moves them before serving.
        if let Err(error) = self.outbox.drain().await {
            tracing::warn!(%error, "audit records left in the outbox until the next start");
        }
        self.log().checkpoint().await
    }

    async fn verify(&self, options: &VerifyOptions) -> Result<VerifyReport, VerifyError> {
        self.outbox.drain().await?;
        self.log().verify(options).await
    }

    async fn health(&self) -> Result<(), AuditError> {
        self.log().health().await
    }

    fn backend(&self) -> &'static str {
        self.log().backend()
    }
}

#[cfg(test)]
mod tests;
