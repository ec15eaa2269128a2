//! Bulk loading and export: `nrls import` and `nrls export`.
//!
//! Bulk work has its own connection, opened on first use, so a load of
//! millions of pointers never queues behind (or delays) the group-commit
//! writer's small API transactions for longer than one of its batches: each
//! [`PointerStore::import`](crate::PointerStore::import) call is one
//! `BEGIN IMMEDIATE` transaction of plain `INSERT ... ON CONFLICT DO NOTHING`
//! statements, without the per-write savepoint the writer needs. Only a record
//! that did not insert costs a second statement, to tell a re-run (same JSON)
//! from a clash. It runs on a blocking thread: a batch of thousands of rows
//! takes tens of milliseconds. The batch's JSON is compressed on every core
//! before the transaction starts, so the write lock is held for SQL alone.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use domain::{OdsCode, PointerRecord};
use rusqlite::{Connection, OptionalExtension, params};

use crate::compression::JsonCodec;
use crate::{ImportOutcome, StoreError, StoredPointer};

use super::row::{Columns, decode, json, pointer_columns, sqlite_error};
use super::schema;

/// The insert of a bulk load: a row whose id or (custodian, masterIdentifier)
/// is already taken is skipped, and then examined.
const IMPORT: &str = concat!(
    "INSERT INTO pointers (",
    pointer_columns!(),
    ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) ON CONFLICT DO NOTHING"
);
const EXPORT_ALL: &str = concat!(
    "SELECT seq, ",
    pointer_columns!(),
    " FROM pointers WHERE seq > ?1 ORDER BY seq LIMIT ?2"
);
const EXPORT_CUSTODIAN: &str = concat!(
    "SELECT seq, ",
    pointer_columns!(),
    " FROM pointers WHERE seq > ?1 AND custodian = ?3 ORDER BY seq LIMIT ?2"
);

/// Page cache of the bulk connection, in KiB (SQLite's negative `cache_size`).
/// A load touches the patient and id indexes all over; a larger cache keeps
/// their inner pages in memory instead of re-reading them per batch.
const BULK_CACHE_KIB: i64 = 131_072;

/// The bulk connection, opened on first use.
pub(super) struct Bulk {
    path: PathBuf,
    conn: Arc<Mutex<Option<Connection>>>,
    codec: Arc<JsonCodec>,
}

impl Bulk {
    pub(super) fn new(path: PathBuf, codec: Arc<JsonCodec>) -> Bulk {
        Bulk {
            path,
            conn: Arc::new(Mutex::new(None)),
            codec,
        }
    }

    /// Runs `work` on the bulk connection in a blocking thread.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection, &JsonCodec) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let slot = Arc::clone(&self.conn);
        let path = self.path.clone();
        let codec = Arc::clone(&self.codec);
        tokio::task::spawn_blocking(move || {
            // A panic mid-batch leaves at most an open transaction, which the
            // next BEGIN would refuse; the connection is reopened instead.
            let mut guard = slot.lock().unwrap_or_else(|p| {
                let mut g = p.into_inner();
                *g = None;
                g
            });
            if guard.is_none() {
                let conn = Connection::open(&path).map_err(sqlite_error)?;
                schema::configure_writer(&conn)?;
                conn.pragma_update(None, "cache_size", -BULK_CACHE_KIB)
                    .map_err(sqlite_error)?;
                *guard = Some(conn);
            }
            match guard.as_ref() {
                Some(conn) => work(conn, &codec),
                None => Err(StoreError::Internal("bulk connection missing".into())),
            }
        })
        .await
        .map_err(|e| StoreError::Internal(format!("bulk load task failed: {e}")))?
    }

    pub(super) async fn import(
        &self,
        records: Vec<PointerRecord>,
    ) -> Result<ImportOutcome, StoreError> {
        let codec = Arc::clone(&self.codec);
        let compressed = tokio::task::spawn_blocking(move || {
            let json = codec.compress_all(&records);
            (records, json)
        });
        let (records, json) = compressed
            .await
            .map_err(|e| StoreError::Internal(format!("bulk compression task failed: {e}")))?;
        let json = json.map_err(|e| StoreError::Internal(e.to_string()))?;
        self.run(move |conn, codec| {
            let outcome = import_batch(conn, codec, &records, &json);
            if outcome.is_err() && !conn.is_autocommit() {
                // Nothing of a failed batch stays: the caller retries it whole.
                let _ = conn.execute_batch("ROLLBACK");
            }
            outcome
        })
        .await
    }

    pub(super) async fn pointers_after(
        &self,
        after_seq: i64,
        limit: usize,
        custodian: Option<&OdsCode>,
    ) -> Result<Vec<StoredPointer>, StoreError> {
        let custodian = custodian.map(|c| c.as_str().to_owned());
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.run(move |conn, codec| {
            page(conn, codec, after_seq, limit, custodian.as_deref()).map_err(sqlite_error)
        })
        .await
    }
}

/// One transaction for the whole batch; `Err` means nothing of it was stored.
fn import_batch(
    conn: &Connection,
    codec: &JsonCodec,
    records: &[PointerRecord],
    compressed: &[Vec<u8>],
) -> Result<ImportOutcome, StoreError> {
    conn.execute_batch("BEGIN IMMEDIATE")
        .map_err(sqlite_error)?;
    let mut outcome = ImportOutcome::default();
    {
        let mut insert = conn.prepare_cached(IMPORT).map_err(sqlite_error)?;
        let mut stored_json = conn
            .prepare_cached("SELECT json, json_dictionary FROM pointers WHERE id = ?1")
            .map_err(sqlite_error)?;
        for (index, (record, compressed)) in records.iter().zip(compressed).enumerate() {
            let columns = Columns::of(record, compressed);
            if insert.execute(columns.params()).map_err(sqlite_error)? == 1 {
                outcome.imported += 1;
                continue;
            }
            let existing: Option<String> = stored_json
                .query_row([record.id.as_str()], |row| json(row, 0, codec))
                .optional()
                .map_err(sqlite_error)?;
            match existing {
                Some(json) if json == record.json => outcome.already_present += 1,
                Some(_) => outcome
                    .rejected
                    .push((index, StoreError::DuplicateId(record.id.clone()))),
                None => outcome.rejected.push((
                    index,
                    StoreError::DuplicateMasterIdentifier(
                        record.master_identifier.clone().unwrap_or_default(),
                    ),
                )),
            }
        }
    }
    conn.execute_batch("COMMIT").map_err(sqlite_error)?;
    Ok(outcome)
}

fn page(
    conn: &Connection,
    codec: &JsonCodec,
    after_seq: i64,
    limit: i64,
    custodian: Option<&str>,
) -> rusqlite::Result<Vec<StoredPointer>> {
    let read = |row: &rusqlite::Row<'_>| {
        Ok(StoredPointer {
            seq: row.get(0)?,
            record: decode(row, 1, codec)?,
        })
    };
    match custodian {
        None => conn
            .prepare_cached(EXPORT_ALL)?
            .query_map(params![after_seq, limit], read)?
            .collect(),
        Some(ods) => conn
            .prepare_cached(EXPORT_CUSTODIAN)?
            .query_map(params![after_seq, limit, ods], read)?
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use domain::{NhsNumber, OdsCode, PointerId, PointerRecord};

    use crate::sqlite::{SqliteOptions, SqliteStore};
    use crate::{PointerStore, StoreError};

    fn record(id: &str, ods: &str, master: &str, json: &str) -> PointerRecord {
        PointerRecord {
            id: PointerId::parse(id).unwrap(),
            nhs_number: NhsNumber::parse("9990000018").unwrap(),
            custodian: OdsCode::parse(ods).unwrap(),
            type_key: "http://snomed.info/sct|736253002".into(),
            master_identifier: Some(master.into()),
            security_labels: vec![],
            version: 1,
            last_updated: "2024-01-01T00:00:00Z".into(),
            json: json.into(),
        }
    }

    #[tokio::test]
    async fn import_is_idempotent_and_reports_clashes_per_record() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            SqliteStore::open(&dir.path().join("nrls.db"), SqliteOptions::default()).unwrap();
        let a = record("RR8-a", "RR8", "m1", r#"{"id":"RR8-a"}"#);
        let b = record("RR8-b", "RR8", "m2", r#"{"id":"RR8-b"}"#);
        let c = record("RYJ-c", "RYJ", "m1", r#"{"id":"RYJ-c"}"#);
        let first = store.import(vec![a.clone(), b, c]).await.unwrap();
        assert_eq!((first.imported, first.already_present), (3, 0));

        let changed = record("RR8-a", "RR8", "m1", r#"{"id":"RR8-a","x":1}"#);
        let same_master = record("RR8-d", "RR8", "m2", r#"{"id":"RR8-d"}"#);
        let again = store.import(vec![a, changed, same_master]).await.unwrap();
        assert_eq!((again.imported, again.already_present), (0, 1));
        assert!(matches!(again.rejected[0], (1, StoreError::DuplicateId(_))));
        assert!(matches!(
            again.rejected[1],
            (2, StoreError::DuplicateMasterIdentifier(_))
        ));
        assert_eq!(store.count().await.unwrap(), 3);

        let page = store.pointers_after(0, 2, None).await.unwrap();
        assert_eq!(page.len(), 2);
        let rest = store.pointers_after(page[1].seq, 2, None).await.unwrap();
        assert_eq!(rest.len(), 1);
        let ryj = OdsCode::parse("RYJ").unwrap();
        let only = store.pointers_after(0, 10, Some(&ryj)).await.unwrap();
        assert_eq!(only.len(), 1);
        assert_eq!(only[0].record.id.as_str(), "RYJ-c");
    }
}
