//! The read pool: a few read-only connections, each behind its own mutex.
//!
//! In WAL mode a reader sees the last committed state and never waits for the
//! writer, so reads need no coordination beyond not sharing a connection
//! between threads at once.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};

use domain::{NhsNumber, OdsCode, PointerId, PointerRecord};
use rusqlite::{Connection, OpenFlags, OptionalExtension};

use crate::compression::JsonCodec;
use crate::outbox::split_ids;
use crate::{OutboxedAudit, PointerChange, PointerEvent, StoreError, StoredPointer};

use super::row::{
    corrupt, decode, decode_labels, missing_dictionary, nhs_to_sql, pointer_columns, sqlite_error,
};
use super::schema;

const GET: &str = concat!(
    "SELECT ",
    pointer_columns!(),
    " FROM pointers WHERE id = ?1"
);
// Walks the (nhs_number, seq) index backwards: newest first, no sort step.
const PATIENT: &str = concat!(
    "SELECT seq, ",
    pointer_columns!(),
    " FROM pointers WHERE nhs_number = ?1 ORDER BY seq DESC"
);

pub(super) struct ReadPool {
    connections: Vec<Mutex<Connection>>,
    /// Round-robin start point, so concurrent readers spread over the pool.
    next: AtomicUsize,
    codec: Arc<JsonCodec>,
}

impl ReadPool {
    /// Opens `size` (at least one) read-only connections on an existing,
    /// migrated database.
    pub(super) fn open(
        path: &Path,
        size: usize,
        codec: Arc<JsonCodec>,
    ) -> Result<ReadPool, StoreError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI;
        let connections = (0..size.max(1))
            .map(|_| {
                let conn = Connection::open_with_flags(path, flags).map_err(sqlite_error)?;
                schema::configure_reader(&conn)?;
                Ok(Mutex::new(conn))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(ReadPool {
            connections,
            next: AtomicUsize::new(0),
            codec,
        })
    }

    /// Runs `read` on a free connection: the first one not in use, starting
    /// from the round-robin position, or (all busy) waits for that one.
    /// A poisoned mutex is recovered: a connection holds no state a panicking
    /// reader could have left half-changed.
    ///
    /// A row compressed with a dictionary added to the file since the store
    /// opened (by another process) loads that dictionary and reads again.
    fn with<T>(
        &self,
        read: impl Fn(&Connection, &JsonCodec) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let n = self.connections.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let guard = (0..n)
            .find_map(|i| match self.connections[(start + i) % n].try_lock() {
                Ok(guard) => Some(guard),
                Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
                Err(TryLockError::WouldBlock) => None,
            })
            .unwrap_or_else(|| self.wait_for(start));
        match read(&guard, &self.codec) {
            Err(e) if missing_dictionary(&e).is_some_and(|id| !self.codec.knows(id)) => {
                let id = missing_dictionary(&e).unwrap_or_default();
                if schema::load_dictionary(&guard, &self.codec, id).map_err(sqlite_error)? {
                    read(&guard, &self.codec).map_err(sqlite_error)
                } else {
                    Err(sqlite_error(e))
                }
            }
            outcome => outcome.map_err(sqlite_error),
        }
    }

    fn wait_for(&self, index: usize) -> MutexGuard<'_, Connection> {
        self.connections[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn get(&self, id: &PointerId) -> Result<Option<PointerRecord>, StoreError> {
        self.with(|conn, codec| {
            conn.prepare_cached(GET)?
                .query_row([id.as_str()], |row| decode(row, 0, codec))
                .optional()
        })
    }

    pub(super) fn patient_pointers(
        &self,
        nhs_number: NhsNumber,
    ) -> Result<Vec<StoredPointer>, StoreError> {
        self.with(|conn, codec| {
            let mut statement = conn.prepare_cached(PATIENT)?;
            let rows = statement.query_map([nhs_to_sql(nhs_number)], |row| {
                Ok(StoredPointer {
                    seq: row.get(0)?,
                    record: decode(row, 1, codec)?,
                })
            })?;
            rows.collect()
        })
    }

    /// The oldest pending outbox events. The outbox is small (dispatch
    /// deletes rows), so this is a short walk of its primary key.
    pub(super) fn pending_events(&self, limit: usize) -> Result<Vec<PointerEvent>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.with(|conn, _| {
            let mut statement = conn.prepare_cached(
                "SELECT seq, change, focus, additional_context, nhs_number, custodian,
                    type_key, security_labels, recorded_at
                 FROM pointer_events ORDER BY seq LIMIT ?1",
            )?;
            let rows = statement.query_map([limit], decode_event)?;
            rows.collect()
        })
    }

    /// The oldest audit outbox records (a small table: the audit log takes
    /// them within milliseconds).
    pub(super) fn audit_outbox(&self, limit: usize) -> Result<Vec<OutboxedAudit>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.with(|conn, _| {
            let mut statement =
                conn.prepare_cached("SELECT id, entry FROM audit_outbox ORDER BY id LIMIT ?1")?;
            let rows = statement.query_map([limit], |row| {
                let id: i64 = row.get(0)?;
                Ok(OutboxedAudit {
                    id: u64::try_from(id).map_err(|_| corrupt(0, "id"))?,
                    entry: row.get(1)?,
                })
            })?;
            rows.collect()
        })
    }

    pub(super) fn count(&self) -> Result<u64, StoreError> {
        let count: i64 = self.with(|conn, _| {
            conn.prepare_cached("SELECT count(*) FROM pointers")?
                .query_row([], |row| row.get(0))
        })?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    pub(super) fn health(&self) -> Result<(), StoreError> {
        self.with(|conn, _| {
            conn.prepare_cached("SELECT 1")?
                .query_row([], |row| row.get::<_, i64>(0))
        })
        .map(drop)
    }
}

/// One `pointer_events` row; a value that no longer parses is a conversion
/// error (`Internal`), as for pointers.
fn decode_event(row: &rusqlite::Row<'_>) -> rusqlite::Result<PointerEvent> {
    let change: String = row.get(1)?;
    let focus: String = row.get(2)?;
    let context: String = row.get(3)?;
    let nhs_number: i64 = row.get(4)?;
    let custodian: String = row.get(5)?;
    let labels: String = row.get(7)?;
    Ok(PointerEvent {
        seq: row.get(0)?,
        change: PointerChange::parse(&change).ok_or_else(|| corrupt(1, "change"))?,
        focus: PointerId::parse(&focus).ok_or_else(|| corrupt(2, "focus"))?,
        additional_context: split_ids(&context).ok_or_else(|| corrupt(3, "context"))?,
        nhs_number: u64::try_from(nhs_number)
            .ok()
            .and_then(|n| NhsNumber::from_u64(n).ok())
            .ok_or_else(|| corrupt(4, "nhs_number"))?,
        custodian: OdsCode::parse(&custodian).ok_or_else(|| corrupt(5, "custodian"))?,
        type_key: row.get(6)?,
        security_labels: decode_labels(&labels),
        recorded_at: row.get(8)?,
    })
}
