//! The SQL of each write. Every function runs inside the writer's open
//! transaction and savepoint: it only checks and changes rows; committing or
//! rolling back is the writer's business.
//!
//! Checks run in the same order as the in-memory backend, so both report the
//! same error when a request is wrong in several ways.

use domain::{PointerId, PointerRecord, Supersede};
use rusqlite::{Connection, OptionalExtension, params};

use crate::compression::JsonCodec;
use crate::outbox::join_ids;
use crate::{PointerChange, PointerWrite, StoreError};

use super::row::{Columns, INSERT, decode, encode_labels, nhs_to_sql, pointer_columns};

pub(super) use crate::write_op::WriteOp;

/// Why a write did not happen.
#[derive(Debug)]
pub(super) enum OpError {
    /// The request broke a rule (duplicate, conflict, missing target...).
    Rejected(StoreError),
    /// SQLite itself failed; the writer decides whether the batch survives.
    Sqlite(rusqlite::Error),
}

impl From<rusqlite::Error> for OpError {
    fn from(error: rusqlite::Error) -> Self {
        OpError::Sqlite(error)
    }
}

impl From<StoreError> for OpError {
    fn from(error: StoreError) -> Self {
        OpError::Rejected(error)
    }
}

/// Applies one write to the open transaction. `json` is the compressed JSON
/// of a create's or update's record.
pub(super) fn apply(
    conn: &Connection,
    op: &WriteOp,
    json: Option<&[u8]>,
    codec: &JsonCodec,
) -> Result<(), OpError> {
    let compressed = || {
        json.ok_or_else(|| OpError::Rejected(StoreError::Internal("write without its JSON".into())))
    };
    match op {
        WriteOp::Pointer(PointerWrite::Create { record, supersedes }) => {
            create(conn, record, compressed()?, supersedes)
        }
        WriteOp::Pointer(PointerWrite::Update {
            record,
            expected_version,
        }) => update(conn, record, compressed()?, *expected_version),
        WriteOp::Pointer(PointerWrite::Delete {
            id,
            expected_version,
        }) => delete(conn, id, *expected_version, codec),
        WriteOp::MarkDispatched { seqs } => mark_dispatched(conn, seqs),
        WriteOp::RemoveAuditOutbox { ids } => remove_audit_outbox(conn, ids),
    }
}

/// Adds the write's outbox row (see [`crate::outbox`]); runs last in each
/// write, after every check, inside the write's savepoint.
fn record_event(
    conn: &Connection,
    change: PointerChange,
    focus: &PointerRecord,
    additional_context: &[PointerId],
) -> Result<(), OpError> {
    conn.prepare_cached(
        "INSERT INTO pointer_events (change, focus, additional_context, nhs_number,
            custodian, type_key, security_labels, recorded_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        change.as_str(),
        focus.id.as_str(),
        join_ids(additional_context),
        nhs_to_sql(focus.nhs_number),
        focus.custodian.as_str(),
        focus.type_key,
        encode_labels(&focus.security_labels),
        domain::clock::now_instant(),
    ])?;
    Ok(())
}

/// Keeps an audited write's audit record (see [`crate::audit_outbox`]);
/// runs after the write succeeded, inside its savepoint.
pub(super) fn keep_audit(conn: &Connection, entry: &[u8]) -> Result<(), OpError> {
    conn.prepare_cached("INSERT INTO audit_outbox (entry) VALUES (?1)")?
        .execute([entry])?;
    Ok(())
}

fn remove_audit_outbox(conn: &Connection, ids: &[u64]) -> Result<(), OpError> {
    let mut remove = conn.prepare_cached("DELETE FROM audit_outbox WHERE id = ?1")?;
    for id in ids {
        remove.execute([i64::try_from(*id).unwrap_or(i64::MAX)])?;
    }
    Ok(())
}

fn mark_dispatched(conn: &Connection, seqs: &[i64]) -> Result<(), OpError> {
    let mut remove = conn.prepare_cached("DELETE FROM pointer_events WHERE seq = ?1")?;
    for seq in seqs {
        remove.execute([seq])?;
    }
    Ok(())
}

fn create(
    conn: &Connection,
    record: &PointerRecord,
    json: &[u8],
    supersedes: &[Supersede],
) -> Result<(), OpError> {
    if version_of(conn, &record.id)?.is_some() {
        return Err(StoreError::DuplicateId(record.id.clone()).into());
    }
    for target in supersedes {
        check_target(conn, record, target)?;
    }
    if let Some(master) = &record.master_identifier {
        // A create may take over the masterIdentifier of a pointer it supersedes:
        // that is how a producer replaces a document under the same identifier.
        let holder = master_identifier_holder(conn, record, master)?;
        if holder.is_some_and(|h| !supersedes.iter().any(|s| s.target.as_str() == h)) {
            return Err(StoreError::DuplicateMasterIdentifier(master.clone()).into());
        }
    }
    let mut remove = conn.prepare_cached("DELETE FROM pointers WHERE id = ?1")?;
    for target in supersedes {
        remove.execute([target.target.as_str()])?;
    }
    conn.prepare_cached(INSERT)?
        .execute(Columns::of(record, json).params())?;
    let (change, replaced) = if supersedes.is_empty() {
        (PointerChange::Created, Vec::new())
    } else {
        let ids = supersedes.iter().map(|s| s.target.clone()).collect();
        (PointerChange::Superseded, ids)
    };
    record_event(conn, change, record, &replaced)
}

fn update(
    conn: &Connection,
    record: &PointerRecord,
    json: &[u8],
    expected_version: u32,
) -> Result<(), OpError> {
    check_version(conn, &record.id, Some(expected_version))?;
    if let Some(master) = &record.master_identifier {
        let holder = master_identifier_holder(conn, record, master)?;
        if holder.is_some_and(|h| h != record.id.as_str()) {
            return Err(StoreError::DuplicateMasterIdentifier(master.clone()).into());
        }
    }
    // An UPDATE in place keeps the row's `seq`, so the pointer keeps its
    // position in searches and cursors.
    let mut statement = conn.prepare_cached(
        "UPDATE pointers SET nhs_number = ?2, custodian = ?3, type_key = ?4,
            master_identifier = ?5, security_labels = ?6, version = ?7,
            last_updated = ?8, json = ?9, json_dictionary = ?10
         WHERE id = ?1",
    )?;
    statement.execute(Columns::of(record, json).params())?;
    record_event(conn, PointerChange::Updated, record, &[])
}

fn delete(
    conn: &Connection,
    id: &PointerId,
    expected_version: Option<u32>,
    codec: &JsonCodec,
) -> Result<(), OpError> {
    check_version(conn, id, expected_version)?;
    // The deleted row itself is the event's focus: its patient, type and
    // labels decide who may hear of the withdrawal.
    let removed = conn
        .prepare_cached(concat!(
            "DELETE FROM pointers WHERE id = ?1 RETURNING ",
            pointer_columns!()
        ))?
        .query_row([id.as_str()], |row| decode(row, 0, codec))?;
    record_event(conn, PointerChange::Deleted, &removed, &[])
}

/// The pointer exists and, when `expected` is given, is at that version.
fn check_version(conn: &Connection, id: &PointerId, expected: Option<u32>) -> Result<(), OpError> {
    let actual = version_of(conn, id)?.ok_or_else(|| StoreError::NotFound(id.clone()))?;
    match expected {
        Some(expected) if expected != actual => Err(StoreError::VersionConflict {
            id: id.clone(),
            expected,
            actual,
        }
        .into()),
        _ => Ok(()),
    }
}

fn version_of(conn: &Connection, id: &PointerId) -> Result<Option<u32>, OpError> {
    let version: Option<i64> = conn
        .prepare_cached("SELECT version FROM pointers WHERE id = ?1")?
        .query_row([id.as_str()], |row| row.get(0))
        .optional()?;
    match version.map(u32::try_from) {
        None => Ok(None),
        Some(Ok(v)) => Ok(Some(v)),
        Some(Err(_)) => {
            Err(StoreError::Internal(format!("pointer {id} has an invalid version")).into())
        }
    }
}

/// The id of the pointer of `record`'s custodian holding `master`, if any.
fn master_identifier_holder(
    conn: &Connection,
    record: &PointerRecord,
    master: &str,
) -> Result<Option<String>, OpError> {
    let holder = conn
        .prepare_cached("SELECT id FROM pointers WHERE custodian = ?1 AND master_identifier = ?2")?
        .query_row(params![record.custodian.as_str(), master], |row| row.get(0))
        .optional()?;
    Ok(holder)
}

/// A superseded pointer must exist and share the new pointer's patient,
/// custodian and type (checked in that order, as the memory backend does).
fn check_target(
    conn: &Connection,
    record: &PointerRecord,
    target: &Supersede,
) -> Result<(), OpError> {
    let found: Option<(i64, String, String)> = conn
        .prepare_cached("SELECT nhs_number, custodian, type_key FROM pointers WHERE id = ?1")?
        .query_row([target.target.as_str()], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })
        .optional()?;
    let Some((nhs_number, custodian, type_key)) = found else {
        return Err(StoreError::SupersedeTargetMissing(target.clone()).into());
    };
    let field = if nhs_number != nhs_to_sql(record.nhs_number) {
        "subject"
    } else if custodian != record.custodian.as_str() {
        "custodian"
    } else if type_key != record.type_key {
        "type"
    } else {
        return Ok(());
    };
    Err(StoreError::SupersedeMismatch {
        target: target.clone(),
        field,
    }
    .into())
}
