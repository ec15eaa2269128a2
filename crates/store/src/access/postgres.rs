//! The access facts in the nrls PostgreSQL database (tables of schema step 2),
//! shared by every node: a relationship or objection recorded through one
//! node applies at once on all of them.
//!
//! Uses the pointer store's pool and deadlines ([`Database`]), so a node
//! keeps one bounded set of connections and the same 503-on-time behaviour
//! when the database is away.

use async_trait::async_trait;
use deadpool_postgres::Object;
use domain::access::PatientAccess;
use domain::{NhsNumber, OdsCode};
use tokio_postgres::Row;

use super::{
    AccessStore, AccessStoreError, NewRelationship, Objection, Relationship, RelationshipColumns,
};
use telemetry::StoreMetrics;

use crate::instrumented::timed;
use crate::postgres::row::pointer_columns;
use crate::postgres::{Database, OpError};
use crate::{StoreError, StoredPointer};

const RELATIONSHIP_COLUMNS: &str = "id, nhs_number, ods, kind, recorded_by, recorded_at";

/// The policy's facts about patient `$1`: the related organisations and
/// whether an objection is recorded. A macro so both reads below share it.
macro_rules! patient_access_columns {
    () => {
        "ARRAY(SELECT DISTINCT ods FROM relationships WHERE nhs_number = $1 ORDER BY ods),
         EXISTS (SELECT 1 FROM objections WHERE nhs_number = $1)"
    };
}

/// One round trip for the policy's read.
const PATIENT_ACCESS: &str = concat!("SELECT ", patient_access_columns!());

/// The facts and the patient's pointers, newest first, in one statement: one
/// row per pointer, each carrying the facts; a patient without pointers is
/// one row whose pointer columns are NULL.
const PATIENT_ACCESS_AND_POINTERS: &str = concat!(
    "SELECT a.*, p.* FROM (SELECT ",
    patient_access_columns!(),
    ") a LEFT JOIN LATERAL (SELECT ",
    pointer_columns!(),
    " FROM pointers WHERE nhs_number = $1) p ON true ORDER BY p.seq DESC"
);

/// An [`AccessStore`] in the shared PostgreSQL database.
pub struct PostgresAccessStore {
    db: Database,
    /// Where the combined read of the facts and a patient's pointers is
    /// timed, as `patient_access_and_pointers`.
    metrics: Option<StoreMetrics>,
}

impl PostgresAccessStore {
    /// Uses `db`, whose schema the pointer store has already migrated.
    pub fn new(db: Database) -> PostgresAccessStore {
        PostgresAccessStore { db, metrics: None }
    }

    /// Times [`AccessStore::patient_access_and_pointers`] in the store's
    /// operation metrics: it reads pointers, so it stands in for the
    /// `patient_pointers` call it replaces.
    pub fn with_metrics(self, metrics: StoreMetrics) -> PostgresAccessStore {
        PostgresAccessStore {
            metrics: Some(metrics),
            ..self
        }
    }
}

fn nhs_sql(n: NhsNumber) -> i64 {
    i64::try_from(n.as_u64()).unwrap_or(i64::MAX)
}

fn access_of(codes: &[String], objection: bool) -> PatientAccess {
    PatientAccess {
        related_organisations: codes.iter().filter_map(|c| OdsCode::parse(c)).collect(),
        objection,
    }
}

fn access_error(error: StoreError) -> AccessStoreError {
    match error {
        StoreError::Unavailable(m) => AccessStoreError::Unavailable(m),
        other => AccessStoreError::Internal(other.to_string()),
    }
}

fn relationship(row: &Row) -> Result<Relationship, OpError> {
    RelationshipColumns {
        id: row.try_get(0)?,
        nhs_number: row.try_get(1)?,
        ods: row.try_get(2)?,
        kind: row.try_get(3)?,
        recorded_by: row.try_get(4)?,
        recorded_at: row.try_get(5)?,
    }
    .decode()
    .map_err(|what| {
        OpError::Rejected(StoreError::Internal(format!(
            "relationships row holds {what}"
        )))
    })
}

async fn existing_id(conn: &Object, new: &NewRelationship) -> Result<Option<u64>, OpError> {
    let statement = conn
        .prepare_cached(
            "SELECT id FROM relationships WHERE nhs_number = $1 AND ods = $2 AND kind = $3",
        )
        .await?;
    let row = conn
        .query_opt(
            &statement,
            &[
                &nhs_sql(new.nhs_number),
                &new.ods.as_str(),
                &new.kind.as_str(),
            ],
        )
        .await?;
    Ok(row
        .map(|r| r.try_get::<_, i64>(0))
        .transpose()?
        .and_then(|id| u64::try_from(id).ok()))
}

/// `None` when the same relationship is already recorded (by another node,
/// a moment ago: the unique constraint decides).
async fn insert_relationship(
    conn: &Object,
    new: &NewRelationship,
) -> Result<Option<Relationship>, OpError> {
    let statement = conn
        .prepare_cached(&format!(
            "INSERT INTO relationships (nhs_number, ods, kind, recorded_by, recorded_at)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (nhs_number, ods, kind) DO NOTHING
             RETURNING {RELATIONSHIP_COLUMNS}"
        ))
        .await?;
    let row = conn
        .query_opt(
            &statement,
            &[
                &nhs_sql(new.nhs_number),
                &new.ods.as_str(),
                &new.kind.as_str(),
                &new.recorded_by,
                &new.recorded_at,
            ],
        )
        .await?;
    row.as_ref().map(relationship).transpose()
}

#[async_trait]
impl AccessStore for PostgresAccessStore {
    async fn patient_access(
        &self,
        nhs_number: NhsNumber,
    ) -> Result<PatientAccess, AccessStoreError> {
        let (codes, objection) = self
            .db
            .run(async |conn| {
                let statement = conn.prepare_cached(PATIENT_ACCESS).await?;
                let row = conn.query_one(&statement, &[&nhs_sql(nhs_number)]).await?;
                Ok((
                    row.try_get::<_, Vec<String>>(0)?,
                    row.try_get::<_, bool>(1)?,
                ))
            })
            .await
            .map_err(access_error)?;
        Ok(access_of(&codes, objection))
    }

    async fn patient_access_and_pointers(
        &self,
        nhs_number: NhsNumber,
    ) -> Result<Option<(PatientAccess, Vec<StoredPointer>)>, AccessStoreError> {
        let db = &self.db;
        let read = db.run(async |conn| {
            let statement = conn.prepare_cached(PATIENT_ACCESS_AND_POINTERS).await?;
            let rows = conn.query(&statement, &[&nhs_sql(nhs_number)]).await?;
            let Some(first) = rows.first() else {
                return Err(OpError::Corrupt("the access read returned no row".into()));
            };
            let access = access_of(
                &first.try_get::<_, Vec<String>>(0)?,
                first.try_get::<_, bool>(1)?,
            );
            Ok((access, db.pointers_in(conn, &rows, 2).await?))
        });
        let found = match &self.metrics {
            Some(metrics) => timed(metrics, "patient_access_and_pointers", read).await,
            None => read.await,
        };
        Ok(Some(found.map_err(access_error)?))
    }

    async fn add_relationship(
        &self,
        new: NewRelationship,
    ) -> Result<Relationship, AccessStoreError> {
        // Two nodes recording the same relationship at once: the unique
        // constraint lets one insert; the other is told the winner's id.
        self.db
            .run(async |conn| match insert_relationship(conn, &new).await? {
                Some(added) => Ok(Ok(added)),
                None => {
                    let id = existing_id(conn, &new).await?.unwrap_or(0);
                    Ok(Err(AccessStoreError::DuplicateRelationship(id)))
                }
            })
            .await
            .map_err(access_error)?
    }

    async fn relationships(
        &self,
        nhs_number: NhsNumber,
    ) -> Result<Vec<Relationship>, AccessStoreError> {
        self.db
            .run(async |conn| {
                let statement = conn
                    .prepare_cached(&format!(
                        "SELECT {RELATIONSHIP_COLUMNS} FROM relationships
                         WHERE nhs_number = $1 ORDER BY id"
                    ))
                    .await?;
                let rows = conn.query(&statement, &[&nhs_sql(nhs_number)]).await?;
                rows.iter().map(relationship).collect()
            })
            .await
            .map_err(access_error)
    }

    async fn remove_relationship(&self, id: u64) -> Result<Relationship, AccessStoreError> {
        let sql_id = i64::try_from(id).map_err(|_| AccessStoreError::RelationshipNotFound(id))?;
        let removed = self
            .db
            .run(async |conn| {
                let statement = conn
                    .prepare_cached(&format!(
                        "DELETE FROM relationships WHERE id = $1 RETURNING {RELATIONSHIP_COLUMNS}"
                    ))
                    .await?;
                let row = conn.query_opt(&statement, &[&sql_id]).await?;
                row.as_ref().map(relationship).transpose()
            })
            .await
            .map_err(access_error)?;
        removed.ok_or(AccessStoreError::RelationshipNotFound(id))
    }

    async fn record_objection(&self, objection: Objection) -> Result<(), AccessStoreError> {
        self.db
            .run(async |conn| {
                let statement = conn
                    .prepare_cached(
                        "INSERT INTO objections (nhs_number, recorded_by, recorded_at, note)
                         VALUES ($1, $2, $3, $4)
                         ON CONFLICT (nhs_number) DO UPDATE SET recorded_by = EXCLUDED.recorded_by,
                             recorded_at = EXCLUDED.recorded_at, note = EXCLUDED.note",
                    )
                    .await?;
                conn.execute(
                    &statement,
                    &[
                        &nhs_sql(objection.nhs_number),
                        &objection.recorded_by,
                        &objection.recorded_at,
                        &objection.note,
                    ],
                )
                .await?;
                Ok(())
            })
            .await
            .map_err(access_error)
    }

    async fn objection(
        &self,
        nhs_number: NhsNumber,
    ) -> Result<Option<Objection>, AccessStoreError> {
        self.db
            .run(async |conn| {
                let statement = conn
                    .prepare_cached(
                        "SELECT recorded_by, recorded_at, note FROM objections WHERE nhs_number = $1",
                    )
                    .await?;
                let row = conn.query_opt(&statement, &[&nhs_sql(nhs_number)]).await?;
                let objection = match row {
                    Some(row) => Some(Objection {
                        nhs_number,
                        recorded_by: row.try_get(0)?,
                        recorded_at: row.try_get(1)?,
                        note: row.try_get(2)?,
                    }),
                    None => None,
                };
                Ok(objection)
            })
            .await
            .map_err(access_error)
    }

    async fn withdraw_objection(&self, nhs_number: NhsNumber) -> Result<bool, AccessStoreError> {
        self.db
            .run(async |conn| {
                let statement = conn
                    .prepare_cached("DELETE FROM objections WHERE nhs_number = $1")
                    .await?;
                Ok(conn.execute(&statement, &[&nhs_sql(nhs_number)]).await? > 0)
            })
            .await
            .map_err(access_error)
    }

    fn backend(&self) -> &'static str {
        "postgres"
    }
}
