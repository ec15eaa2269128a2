//! Access facts in their own SQLite file (`access.db`): WAL and
//! `synchronous=FULL` like the pointer store. Writes are rare admin calls,
//! so they run on the blocking pool behind one connection instead of a
//! group-commit writer; the per-request read is an indexed lookup on a
//! separate read connection and runs inline.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use domain::access::PatientAccess;
use domain::{NhsNumber, OdsCode};
use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, params};

use crate::sqlite::setup::{self, SetupError};

use super::{
    AccessStore, AccessStoreError, NewRelationship, Objection, Relationship, RelationshipColumns,
};

/// The file name inside the data directory.
pub const FILE_NAME: &str = "access.db";

const MIGRATIONS: &[&str] = &[
    // 1: one row per (patient, organisation, kind); objections by patient.
    "CREATE TABLE relationships (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        nhs_number INTEGER NOT NULL,
        ods TEXT NOT NULL,
        kind TEXT NOT NULL,
        recorded_by TEXT NOT NULL,
        recorded_at TEXT NOT NULL,
        UNIQUE (nhs_number, ods, kind)
    );
    CREATE TABLE objections (
        nhs_number INTEGER PRIMARY KEY,
        recorded_by TEXT NOT NULL,
        recorded_at TEXT NOT NULL,
        note TEXT NULL
    );",
];

const RELATIONSHIP_COLUMNS: &str = "id, nhs_number, ods, kind, recorded_by, recorded_at";

fn sqlite_error(e: rusqlite::Error) -> AccessStoreError {
    if setup::is_transient(&e) {
        AccessStoreError::Unavailable(e.to_string())
    } else {
        AccessStoreError::Internal(e.to_string())
    }
}

fn setup_error(error: SetupError) -> AccessStoreError {
    match error {
        SetupError::Sqlite(e) => sqlite_error(e),
        other if other.is_transient() => AccessStoreError::Unavailable(other.to_string()),
        other => AccessStoreError::Internal(other.to_string()),
    }
}

fn lock(conn: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    conn.lock().unwrap_or_else(PoisonError::into_inner)
}

fn nhs_sql(n: NhsNumber) -> i64 {
    // Below 10^10, so always fits.
    i64::try_from(n.as_u64()).unwrap_or(i64::MAX)
}

fn relationship(row: &Row<'_>) -> rusqlite::Result<Relationship> {
    RelationshipColumns {
        id: row.get(0)?,
        nhs_number: row.get(1)?,
        ods: row.get(2)?,
        kind: row.get(3)?,
        recorded_by: row.get(4)?,
        recorded_at: row.get(5)?,
    }
    .decode()
    .map_err(|what| {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Text,
            format!("relationships row holds {what}").into(),
        )
    })
}

/// An [`AccessStore`] in one SQLite file.
pub struct SqliteAccessStore {
    reader: Mutex<Connection>,
    writer: Arc<Mutex<Connection>>,
}

impl SqliteAccessStore {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<SqliteAccessStore, AccessStoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                AccessStoreError::Unavailable(format!("cannot create {}: {e}", parent.display()))
            })?;
        }
        let mut writer = Connection::open(path).map_err(sqlite_error)?;
        setup::configure_writer(&writer, FILE_NAME).map_err(setup_error)?;
        setup::migrate(&mut writer, FILE_NAME, MIGRATIONS).map_err(setup_error)?;
        let reader = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(sqlite_error)?;
        setup::configure_reader(&reader).map_err(setup_error)?;
        Ok(SqliteAccessStore {
            reader: Mutex::new(reader),
            writer: Arc::new(Mutex::new(writer)),
        })
    }

    async fn write<T: Send + 'static>(
        &self,
        write: impl FnOnce(&Connection) -> Result<T, AccessStoreError> + Send + 'static,
    ) -> Result<T, AccessStoreError> {
        let writer = Arc::clone(&self.writer);
        tokio::task::spawn_blocking(move || write(&lock(&writer)))
            .await
            .map_err(|e| AccessStoreError::Internal(format!("access write task failed: {e}")))?
    }
}

#[async_trait]
impl AccessStore for SqliteAccessStore {
    async fn patient_access(
        &self,
        nhs_number: NhsNumber,
    ) -> Result<PatientAccess, AccessStoreError> {
        let conn = lock(&self.reader);
        let nhs = nhs_sql(nhs_number);
        let related_organisations = conn
            .prepare_cached(
                "SELECT DISTINCT ods FROM relationships WHERE nhs_number = ?1 ORDER BY ods",
            )
            .and_then(|mut s| {
                s.query_map([nhs], |row| row.get::<_, String>(0))?
                    .collect::<rusqlite::Result<Vec<String>>>()
            })
            .map_err(sqlite_error)?
            .iter()
            .filter_map(|ods| OdsCode::parse(ods))
            .collect();
        let objection = conn
            .prepare_cached("SELECT 1 FROM objections WHERE nhs_number = ?1")
            .and_then(|mut s| s.query_row([nhs], |_| Ok(())).optional())
            .map_err(sqlite_error)?
            .is_some();
        Ok(PatientAccess {
            related_organisations,
            objection,
        })
    }

    async fn add_relationship(
        &self,
        new: NewRelationship,
    ) -> Result<Relationship, AccessStoreError> {
        self.write(move |conn| {
            let nhs = nhs_sql(new.nhs_number);
            let existing: Option<i64> = conn
                .query_row(
                    "SELECT id FROM relationships WHERE nhs_number = ?1 AND ods = ?2 AND kind = ?3",
                    params![nhs, new.ods.as_str(), new.kind.as_str()],
                    |row| row.get(0),
                )
                .optional()
                .map_err(sqlite_error)?;
            if let Some(id) = existing {
                return Err(AccessStoreError::DuplicateRelationship(u64::try_from(id).unwrap_or(0)));
            }
            conn.execute(
                "INSERT INTO relationships (nhs_number, ods, kind, recorded_by, recorded_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![nhs, new.ods.as_str(), new.kind.as_str(), new.recorded_by, new.recorded_at],
            )
            .map_err(sqlite_error)?;
            Ok(Relationship {
                id: u64::try_from(conn.last_insert_rowid()).unwrap_or(0),
                nhs_number: new.nhs_number,
                ods: new.ods,
                kind: new.kind,
                recorded_by: new.recorded_by,
                recorded_at: new.recorded_at,
            })
        })
        .await
    }

    async fn relationships(
        &self,
        nhs_number: NhsNumber,
    ) -> Result<Vec<Relationship>, AccessStoreError> {
        let conn = lock(&self.reader);
        conn.prepare_cached(&format!(
            "SELECT {RELATIONSHIP_COLUMNS} FROM relationships WHERE nhs_number = ?1 ORDER BY id"
        ))
        .and_then(|mut s| s.query_map([nhs_sql(nhs_number)], relationship)?.collect())
        .map_err(sqlite_error)
    }

    async fn remove_relationship(&self, id: u64) -> Result<Relationship, AccessStoreError> {
        self.write(move |conn| {
            let sql_id =
                i64::try_from(id).map_err(|_| AccessStoreError::RelationshipNotFound(id))?;
            let found = conn
                .query_row(
                    &format!("SELECT {RELATIONSHIP_COLUMNS} FROM relationships WHERE id = ?1"),
                    [sql_id],
                    relationship,
                )
                .optional()
                .map_err(sqlite_error)?
                .ok_or(AccessStoreError::RelationshipNotFound(id))?;
            conn.execute("DELETE FROM relationships WHERE id = ?1", [sql_id])
                .map_err(sqlite_error)?;
            Ok(found)
        })
        .await
    }

    async fn record_objection(&self, objection: Objection) -> Result<(), AccessStoreError> {
        self.write(move |conn| {
            conn.execute(
                "INSERT OR REPLACE INTO objections (nhs_number, recorded_by, recorded_at, note) VALUES (?1, ?2, ?3, ?4)",
                params![nhs_sql(objection.nhs_number), objection.recorded_by, objection.recorded_at, objection.note],
            )
            .map(drop)
            .map_err(sqlite_error)
        })
        .await
    }

    async fn objection(
        &self,
        nhs_number: NhsNumber,
    ) -> Result<Option<Objection>, AccessStoreError> {
        let conn = lock(&self.reader);
        conn.prepare_cached(
            "SELECT recorded_by, recorded_at, note FROM objections WHERE nhs_number = ?1",
        )
        .and_then(|mut s| {
            s.query_row([nhs_sql(nhs_number)], |row| {
                Ok(Objection {
                    nhs_number,
                    recorded_by: row.get(0)?,
                    recorded_at: row.get(1)?,
                    note: row.get(2)?,
                })
            })
            .optional()
        })
        .map_err(sqlite_error)
    }

    async fn withdraw_objection(&self, nhs_number: NhsNumber) -> Result<bool, AccessStoreError> {
        self.write(move |conn| {
            conn.execute(
                "DELETE FROM objections WHERE nhs_number = ?1",
                [nhs_sql(nhs_number)],
            )
            .map(|n| n > 0)
            .map_err(sqlite_error)
        })
        .await
    }

    fn backend(&self) -> &'static str {
        "sqlite"
    }
}
