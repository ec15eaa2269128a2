//! The SQL of each write: one READ COMMITTED transaction per write.
//!
//! The rule that makes concurrent writers safe: a write first locks the
//! `pointer_ids` rows of every pointer it touches (a new id by inserting it,
//! existing ones `FOR UPDATE`, in id order), and only then reads the pointer
//! rows, in later statements. Under READ COMMITTED each statement sees what
//! was committed when it started, so those reads see every earlier writer's
//! work, and no later writer can change the rows until this one commits.
//!
//! Checks run in the same order as the in-memory backend, so both report the
//! same error when a request is wrong in several ways.

use std::collections::HashMap;

use deadpool_postgres::{Object, Transaction};
use domain::{PointerId, PointerRecord, Supersede};

use crate::compression::JsonCodec;
use crate::{PointerChange, PointerWrite, StoreError};

use super::error::OpError;
use super::row::{Columns, column, nhs_to_sql, pointer_columns};

pub(super) use crate::write_op::WriteOp;

const INSERT: &str = concat!(
    "INSERT INTO pointers (",
    pointer_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
);
/// Same parameters as [`INSERT`]; `seq` and `nhs_number` find the row.
const UPDATE: &str = "UPDATE pointers SET version = $3, id = $4, custodian = $5, type_key = $6,
        master_identifier = $7, security_labels = $8, last_updated = $9, json = $10,
        json_zstd = $11, json_dictionary = $12
    WHERE nhs_number = $1 AND seq = $2";
const LOCK_ID: &str = "SELECT nhs_number, seq FROM pointer_ids WHERE id = $1 FOR UPDATE";
const DELETE_ROW: &str = "DELETE FROM pointers WHERE nhs_number = $1 AND seq = $2";
const CLAIM_MASTER: &str = "INSERT INTO master_identifiers (custodian, master_identifier, id)
    VALUES ($1, $2, $3) ON CONFLICT DO NOTHING";
const RELEASE_MASTER: &str =
    "DELETE FROM master_identifiers WHERE custodian = $1 AND master_identifier = $2";

impl WriteOp {
    /// The written pointer's JSON compressed (empty for a write that stores
    /// no pointer): made once, before a connection is taken, so no lock or
    /// retry waits on it.
    pub(super) fn frame(&self, codec: &JsonCodec) -> Result<Vec<u8>, StoreError> {
        match self {
            WriteOp::Pointer(
                PointerWrite::Create { record, .. } | PointerWrite::Update { record, .. },
            ) => codec
                .compress(&record.json)
                .map_err(|e| StoreError::Internal(e.to_string())),
            _ => Ok(Vec::new()),
        }
    }

    /// Runs the write in its own transaction, with `audit` kept in the audit
    /// outbox when given, and commits it; `frame` is [`WriteOp::frame`]. On
    /// an error the transaction is dropped, which rolls it back.
    pub(super) async fn apply(
        &self,
        conn: &mut Object,
        audit: Option<&[u8]>,
        frame: &[u8],
    ) -> Result<(), OpError> {
        let tx = conn.transaction().await?;
        match self {
            WriteOp::Pointer(PointerWrite::Create { record, supersedes }) => {
                create(&tx, record, frame, supersedes, audit).await?;
            }
            WriteOp::Pointer(PointerWrite::Update {
                record,
                expected_version,
            }) => update(&tx, record, frame, *expected_version, audit).await?,
            WriteOp::Pointer(PointerWrite::Delete {
                id,
                expected_version,
            }) => delete(&tx, id, *expected_version, audit).await?,
            WriteOp::MarkDispatched { seqs } => mark_dispatched(&tx, seqs).await?,
            WriteOp::RemoveAuditOutbox { ids } => remove_audit_outbox(&tx, ids).await?,
        }
        tx.commit().await?;
        Ok(())
    }
}

/// Where a pointer's row is: its partition key and sequence.
#[derive(Debug, Clone, Copy)]
struct Location {
    nhs_number: i64,
    seq: i64,
}

async fn create(
    tx: &Transaction<'_>,
    record: &PointerRecord,
    frame: &[u8],
    supersedes: &[Supersede],
    audit: Option<&[u8]>,
) -> Result<(), OpError> {
    // Claiming the id takes its sequence; a rolled-back create leaves a gap,
    // never a reused number.
    let claim = tx
        .prepare_cached(
            "INSERT INTO pointer_ids (id, nhs_number, seq)
             VALUES ($1, $2, nextval('pointer_seq'))
             ON CONFLICT (id) DO NOTHING RETURNING seq",
        )
        .await?;
    let nhs_number = nhs_to_sql(record.nhs_number);
    let Some(row) = tx
        .query_opt(&claim, &[&record.id.as_str(), &nhs_number])
        .await?
    else {
        return Err(StoreError::DuplicateId(record.id.clone()).into());
    };
    let seq: i64 = column(&row, 0)?;
    let targets = lock_targets(tx, record, supersedes).await?;
    // A create may take over the masterIdentifier of a pointer it supersedes:
    // that is how a producer replaces a document under the same identifier.
    for (_, master) in &targets {
        if let Some(master) = master {
            release_master(tx, record.custodian.as_str(), master).await?;
        }
    }
    if let Some(master) = &record.master_identifier {
        claim_master(tx, record, master).await?;
    }
    let delete_row = tx.prepare_cached(DELETE_ROW).await?;
    let delete_id = tx
        .prepare_cached("DELETE FROM pointer_ids WHERE id = $1")
        .await?;
    for (target, (location, _)) in supersedes.iter().zip(&targets) {
        tx.execute(&delete_row, &[&location.nhs_number, &location.seq])
            .await?;
        tx.execute(&delete_id, &[&target.target.as_str()]).await?;
    }
    let insert = tx.prepare_cached(INSERT).await?;
    tx.execute(&insert, &Columns::of(record, seq, frame)?.params())
        .await?;
    let (change, replaced) = if supersedes.is_empty() {
        (PointerChange::Created, Vec::new())
    } else {
        let ids = supersedes.iter().map(|s| s.target.as_str()).collect();
        (PointerChange::Superseded, ids)
    };
    record_event(tx, change, &Focus::of(record), &replaced, audit).await
}

/// What an outbox event says about the pointer written.
struct Focus<'a> {
    id: &'a str,
    nhs_number: i64,
    custodian: &'a str,
    type_key: &'a str,
    security_labels: &'a [String],
}

impl<'a> Focus<'a> {
    fn of(record: &'a PointerRecord) -> Self {
        Focus {
            id: record.id.as_str(),
            nhs_number: nhs_to_sql(record.nhs_number),
            custodian: record.custodian.as_str(),
            type_key: &record.type_key,
            security_labels: &record.security_labels,
        }
    }
}

/// The write's subscription outbox row (see [`crate::outbox`]).
const RECORD_EVENT: &str = "INSERT INTO pointer_events (nhs_number, change, focus,
        additional_context, custodian, type_key, security_labels, recorded_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";

/// The same, with the request's audit record kept in the audit outbox
/// (see [`crate::audit_outbox`]) by the same statement.
const RECORD_EVENT_AND_AUDIT: &str = "WITH kept AS (INSERT INTO audit_outbox (entry) VALUES ($9))
     INSERT INTO pointer_events (nhs_number, change, focus,
        additional_context, custodian, type_key, security_labels, recorded_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";

/// Adds the write's outbox row (see [`crate::outbox`]), and its audit
/// record when given, in the write's own transaction: one more statement,
/// the only cost either outbox puts on the write path.
async fn record_event(
    tx: &Transaction<'_>,
    change: PointerChange,
    focus: &Focus<'_>,
    additional_context: &[&str],
    audit: Option<&[u8]>,
) -> Result<(), OpError> {
    let recorded_at = domain::clock::now_instant();
    let change = change.as_str();
    let mut values: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![
        &focus.nhs_number,
        &change,
        &focus.id,
        &additional_context,
        &focus.custodian,
        &focus.type_key,
        &focus.security_labels,
        &recorded_at,
    ];
    let sql = match &audit {
        Some(entry) => {
            values.push(entry);
            RECORD_EVENT_AND_AUDIT
        }
        None => RECORD_EVENT,
    };
    let statement = tx.prepare_cached(sql).await?;
    tx.execute(&statement, &values).await?;
    Ok(())
}

async fn remove_audit_outbox(tx: &Transaction<'_>, ids: &[u64]) -> Result<(), OpError> {
    let ids: Vec<i64> = ids
        .iter()
        .filter_map(|id| i64::try_from(*id).ok())
        .collect();
    let statement = tx
        .prepare_cached("DELETE FROM audit_outbox WHERE id = ANY($1)")
        .await?;
    tx.execute(&statement, &[&ids]).await?;
    Ok(())
}

async fn mark_dispatched(tx: &Transaction<'_>, seqs: &[i64]) -> Result<(), OpError> {
    let statement = tx
        .prepare_cached("DELETE FROM pointer_events WHERE seq = ANY($1)")
        .await?;
    tx.execute(&statement, &[&seqs]).await?;
    Ok(())
}

/// Locks every superseded target (in id order, so two supersedes naming the
/// same targets in another order cannot deadlock), then checks them in
/// request order: each must exist and share the new pointer's patient,
/// custodian and type. Returns each target's location and masterIdentifier,
/// in request order.
async fn lock_targets(
    tx: &Transaction<'_>,
    record: &PointerRecord,
    supersedes: &[Supersede],
) -> Result<Vec<(Location, Option<String>)>, OpError> {
    if supersedes.is_empty() {
        return Ok(Vec::new());
    }
    let mut ids: Vec<&str> = supersedes.iter().map(|s| s.target.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    let lock = tx.prepare_cached(LOCK_ID).await?;
    let mut locked = HashMap::new();
    for id in ids {
        if let Some(row) = tx.query_opt(&lock, &[&id]).await? {
            let location = Location {
                nhs_number: column(&row, 0)?,
                seq: column(&row, 1)?,
            };
            locked.insert(id, location);
        }
    }
    let read = tx
        .prepare_cached(
            "SELECT custodian, type_key, master_identifier FROM pointers
             WHERE nhs_number = $1 AND seq = $2",
        )
        .await?;
    let mut targets = Vec::with_capacity(supersedes.len());
    for target in supersedes {
        let Some(&location) = locked.get(target.target.as_str()) else {
            return Err(StoreError::SupersedeTargetMissing(target.clone()).into());
        };
        let row = tx
            .query_opt(&read, &[&location.nhs_number, &location.seq])
            .await?
            .ok_or_else(|| missing_row(&target.target))?;
        let custodian: &str = column(&row, 0)?;
        let type_key: &str = column(&row, 1)?;
        let field = if location.nhs_number != nhs_to_sql(record.nhs_number) {
            Some("subject")
        } else if custodian != record.custodian.as_str() {
            Some("custodian")
        } else if type_key != record.type_key {
            Some("type")
        } else {
            None
        };
        if let Some(field) = field {
            return Err(StoreError::SupersedeMismatch {
                target: target.clone(),
                field,
            }
            .into());
        }
        targets.push((location, column(&row, 2)?));
    }
    Ok(targets)
}

async fn update(
    tx: &Transaction<'_>,
    record: &PointerRecord,
    frame: &[u8],
    expected_version: u32,
    audit: Option<&[u8]>,
) -> Result<(), OpError> {
    let lock = tx.prepare_cached(LOCK_ID).await?;
    let Some(row) = tx.query_opt(&lock, &[&record.id.as_str()]).await? else {
        return Err(StoreError::NotFound(record.id.clone()).into());
    };
    let old = Location {
        nhs_number: column(&row, 0)?,
        seq: column(&row, 1)?,
    };
    let read = tx
        .prepare_cached(
            "SELECT version, custodian, master_identifier FROM pointers
             WHERE nhs_number = $1 AND seq = $2",
        )
        .await?;
    let current = tx
        .query_opt(&read, &[&old.nhs_number, &old.seq])
        .await?
        .ok_or_else(|| missing_row(&record.id))?;
    let actual = stored_version(&current)?;
    if actual != expected_version {
        return Err(StoreError::VersionConflict {
            id: record.id.clone(),
            expected: expected_version,
            actual,
        }
        .into());
    }
    let old_custodian: &str = column(&current, 1)?;
    let old_master: Option<&str> = column(&current, 2)?;
    let new_master = record.master_identifier.as_deref();
    if (old_custodian, old_master) != (record.custodian.as_str(), new_master) {
        if let Some(master) = old_master {
            release_master(tx, old_custodian, master).await?;
        }
        if let Some(master) = new_master {
            claim_master(tx, record, master).await?;
        }
    }
    // The pointer keeps its `seq`, so its place in searches and cursors.
    let columns = Columns::of(record, old.seq, frame)?;
    if old.nhs_number == nhs_to_sql(record.nhs_number) {
        let statement = tx.prepare_cached(UPDATE).await?;
        tx.execute(&statement, &columns.params()).await?;
    } else {
        // A new patient is a new partition (or shard): move the row.
        let delete_row = tx.prepare_cached(DELETE_ROW).await?;
        tx.execute(&delete_row, &[&old.nhs_number, &old.seq])
            .await?;
        let insert = tx.prepare_cached(INSERT).await?;
        tx.execute(&insert, &columns.params()).await?;
        let moved = tx
            .prepare_cached("UPDATE pointer_ids SET nhs_number = $2 WHERE id = $1")
            .await?;
        tx.execute(
            &moved,
            &[&record.id.as_str(), &nhs_to_sql(record.nhs_number)],
        )
        .await?;
    }
    record_event(tx, PointerChange::Updated, &Focus::of(record), &[], audit).await
}

async fn delete(
    tx: &Transaction<'_>,
    id: &PointerId,
    expected_version: Option<u32>,
    audit: Option<&[u8]>,
) -> Result<(), OpError> {
    // Deleting the id row locks it, like `FOR UPDATE`; a version conflict
    // below rolls the whole transaction back.
    let remove_id = tx
        .prepare_cached("DELETE FROM pointer_ids WHERE id = $1 RETURNING nhs_number, seq")
        .await?;
    let Some(row) = tx.query_opt(&remove_id, &[&id.as_str()]).await? else {
        return Err(StoreError::NotFound(id.clone()).into());
    };
    let location = Location {
        nhs_number: column(&row, 0)?,
        seq: column(&row, 1)?,
    };
    let remove_row = tx
        .prepare_cached(
            "DELETE FROM pointers WHERE nhs_number = $1 AND seq = $2
             RETURNING version, custodian, master_identifier, type_key, security_labels",
        )
        .await?;
    let removed = tx
        .query_opt(&remove_row, &[&location.nhs_number, &location.seq])
        .await?
        .ok_or_else(|| missing_row(id))?;
    let actual = stored_version(&removed)?;
    if let Some(expected) = expected_version
        && expected != actual
    {
        return Err(StoreError::VersionConflict {
            id: id.clone(),
            expected,
            actual,
        }
        .into());
    }
    if let Some(master) = column::<Option<&str>>(&removed, 2)? {
        release_master(tx, column(&removed, 1)?, master).await?;
    }
    let labels: Vec<String> = column(&removed, 4)?;
    let focus = Focus {
        id: id.as_str(),
        nhs_number: location.nhs_number,
        custodian: column(&removed, 1)?,
        type_key: column(&removed, 3)?,
        security_labels: &labels,
    };
    record_event(tx, PointerChange::Deleted, &focus, &[], audit).await
}

async fn claim_master(
    tx: &Transaction<'_>,
    record: &PointerRecord,
    master: &str,
) -> Result<(), OpError> {
    let statement = tx.prepare_cached(CLAIM_MASTER).await?;
    let claimed = tx
        .execute(
            &statement,
            &[&record.custodian.as_str(), &master, &record.id.as_str()],
        )
        .await?;
    if claimed == 0 {
        return Err(StoreError::DuplicateMasterIdentifier(master.to_owned()).into());
    }
    Ok(())
}

async fn release_master(
    tx: &Transaction<'_>,
    custodian: &str,
    master: &str,
) -> Result<(), OpError> {
    let statement = tx.prepare_cached(RELEASE_MASTER).await?;
    tx.execute(&statement, &[&custodian, &master]).await?;
    Ok(())
}

fn stored_version(row: &tokio_postgres::Row) -> Result<u32, StoreError> {
    let version: i32 = column(row, 0)?;
    u32::try_from(version).map_err(|_| StoreError::Internal("stored version is not valid".into()))
}

/// `pointer_ids` names a pointer whose row is gone: the tables disagree.
fn missing_row(id: &PointerId) -> OpError {
    StoreError::Internal(format!("pointer {id} has an id entry but no row")).into()
}
