//! Reads: searches, alerts and the streaming walk of `verify`.

use rusqlite::types::{Value, ValueRef};
use rusqlite::{Connection, OptionalExtension, Row, params_from_iter};

use crate::chain::{AuditRecord, Body, Hash};
use crate::fields::SearchFields;
use crate::verify::{StoredRow, Verifier, stored_agents};
use crate::{
    Acknowledgement, Alert, AlertQuery, AuditError, AuditPage, AuditQuery, Checkpoint, VerifyError,
    VerifyOptions, VerifyReport,
};

use super::schema::sqlite_error;

const RECORD_COLUMNS: &str =
    "r.seq, ifnull(r.appended_ms, r.appended_at), r.event, r.prev_hash, r.hash";

fn hash(bytes: Vec<u8>) -> rusqlite::Result<Hash> {
    Hash::try_from(bytes.as_slice()).map_err(|_| {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Blob,
            "an audit hash is not 32 bytes".into(),
        )
    })
}

fn seq_of(value: i64) -> u64 {
    // Negative seqs are never written; one read back is tampering, which
    // verify reports as a gap at seq 0 + 1.
    u64::try_from(value).unwrap_or(0)
}

/// The stored body: TEXT is a JSON record, BLOB a compact one.
/// Text that is not UTF-8 (only a damaged or edited file holds it) is read
/// lossily: its hash then fails to match, and verify names the record.
fn body(row: &Row<'_>, column: usize) -> rusqlite::Result<Body> {
    match row.get_ref(column)? {
        ValueRef::Text(json) => Ok(Body::Json(String::from_utf8_lossy(json).into_owned())),
        ValueRef::Blob(bytes) => Ok(Body::Compact(bytes.to_vec())),
        other => Err(rusqlite::Error::InvalidColumnType(
            column,
            "event".into(),
            other.data_type(),
        )),
    }
}

/// `appended_at`: the text, or Unix ms (schema step 2) rendered as it was hashed.
fn appended_at(row: &Row<'_>, column: usize) -> rusqlite::Result<String> {
    match row.get_ref(column)? {
        ValueRef::Text(text) => Ok(String::from_utf8_lossy(text).into_owned()),
        ValueRef::Integer(ms) => Ok(u64::try_from(ms)
            .ok()
            .and_then(crate::compact::format_ms)
            // Unrenderable: verify finds the hash does not match.
            .unwrap_or_default()),
        other => Err(rusqlite::Error::InvalidColumnType(
            column,
            "appended_at".into(),
            other.data_type(),
        )),
    }
}

fn stored_record(row: &Row<'_>, render: bool) -> rusqlite::Result<AuditRecord> {
    Ok(AuditRecord::stored(
        seq_of(row.get(0)?),
        appended_at(row, 1)?,
        body(row, 2)?,
        hash(row.get(3)?)?,
        hash(row.get(4)?)?,
        render,
    ))
}

fn record(row: &Row<'_>) -> rusqlite::Result<AuditRecord> {
    stored_record(row, true)
}

fn to_sql(seq: u64) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}

pub(super) fn search(conn: &Connection, query: &AuditQuery) -> Result<AuditPage, AuditError> {
    let mut sql = format!("SELECT {RECORD_COLUMNS} FROM audit_records r WHERE 1 = 1");
    let mut args: Vec<Value> = Vec::new();
    if let Some(patient) = query.patient {
        sql.push_str(" AND r.patient = ?");
        args.push(Value::Integer(to_sql(patient.as_u64())));
    }
    if let Some(agent) = &query.agent {
        // Compact records name agents by id, in three indexed columns;
        // JSON records in `audit_agents`.
        let id: Option<i64> = conn
            .prepare_cached("SELECT id FROM audit_names WHERE name = ?1")
            .and_then(|mut s| s.query_row([agent], |row| row.get(0)).optional())
            .map_err(sqlite_error)?;
        sql.push_str(
            " AND (r.client = ? OR r.org = ? OR r.person = ?
                   OR r.seq IN (SELECT seq FROM audit_agents WHERE agent = ?))",
        );
        // No id: no compact record names it; -1 is never an id.
        let id = Value::Integer(id.unwrap_or(-1));
        args.extend([id.clone(), id.clone(), id]);
        args.push(Value::Text(agent.clone()));
    }
    if let Some(since) = query.since_ms {
        sql.push_str(" AND r.recorded_ms >= ?");
        args.push(Value::Integer(since));
    }
    if let Some(until) = query.until_ms {
        sql.push_str(" AND r.recorded_ms < ?");
        args.push(Value::Integer(until));
    }
    if let Some(outcome) = query.outcome {
        sql.push_str(" AND r.outcome = ?");
        args.push(Value::Text(outcome.code().to_owned()));
    }
    if let Some(before) = query.before_seq {
        sql.push_str(" AND r.seq < ?");
        args.push(Value::Integer(to_sql(before)));
    }
    let count = query.count.max(1);
    sql.push_str(" ORDER BY r.seq DESC LIMIT ?");
    args.push(Value::Integer(i64::try_from(count + 1).unwrap_or(i64::MAX)));
    let mut records: Vec<AuditRecord> = conn
        .prepare(&sql)
        .and_then(|mut s| s.query_map(params_from_iter(args), record)?.collect())
        .map_err(sqlite_error)?;
    let more = records.len() > count;
    records.truncate(count);
    let next_before_seq = if more {
        records.last().map(|r| r.seq)
    } else {
        None
    };
    Ok(AuditPage {
        records,
        next_before_seq,
    })
}

pub(super) fn get(conn: &Connection, seq: u64) -> Result<Option<AuditRecord>, AuditError> {
    conn.prepare_cached(&format!(
        "SELECT {RECORD_COLUMNS} FROM audit_records r WHERE r.seq = ?1"
    ))
    .and_then(|mut s| s.query_row([to_sql(seq)], record).optional())
    .map_err(sqlite_error)
}

pub(super) fn alerts(conn: &Connection, query: &AlertQuery) -> Result<Vec<Alert>, AuditError> {
    let sql = format!(
        "SELECT {RECORD_COLUMNS}, r.alert, a.acknowledged_by, a.acknowledged_at, a.note
         FROM audit_records r LEFT JOIN alert_acks a ON a.seq = r.seq
         WHERE r.alert IS NOT NULL AND r.seq < ?1 AND (?2 = 0 OR a.seq IS NULL)
         ORDER BY r.seq DESC LIMIT ?3"
    );
    let before = query.before_seq.map_or(i64::MAX, to_sql);
    let limit = i64::try_from(query.count.max(1)).unwrap_or(i64::MAX);
    conn.prepare_cached(&sql)
        .and_then(|mut s| {
            s.query_map(
                rusqlite::params![before, i64::from(query.unacknowledged_only), limit],
                |row| {
                    let by: Option<String> = row.get(6)?;
                    Ok(Alert {
                        record: record(row)?,
                        kind: row.get(5)?,
                        acknowledgement: match by {
                            Some(by) => Some(Acknowledgement {
                                by,
                                at: row.get(7)?,
                                note: row.get(8)?,
                            }),
                            None => None,
                        },
                    })
                },
            )?
            .collect()
        })
        .map_err(sqlite_error)
}

fn checkpoints(conn: &Connection) -> Result<Vec<Checkpoint>, AuditError> {
    conn.prepare("SELECT seq, hash, interval, created_at, key_id, signature FROM audit_checkpoints ORDER BY seq")
        .and_then(|mut s| {
            s.query_map([], |row| {
                let signature: Vec<u8> = row.get(5)?;
                Ok(Checkpoint {
                    seq: seq_of(row.get(0)?),
                    hash: hash(row.get(1)?)?,
                    interval: u64::try_from(row.get::<_, i64>(2)?).unwrap_or(0),
                    created_at: row.get(3)?,
                    key_id: row.get(4)?,
                    // A signature of the wrong length simply fails to verify.
                    signature: signature.try_into().unwrap_or([0; 64]),
                })
            })?
            .collect()
        })
        .map_err(sqlite_error)
}

/// Every row of `alert_acks`, for verify to hold to the chain.
fn acknowledgements(conn: &Connection) -> Result<Vec<(u64, Acknowledgement)>, AuditError> {
    conn.prepare("SELECT seq, acknowledged_by, acknowledged_at, note FROM alert_acks ORDER BY seq")
        .and_then(|mut s| {
            s.query_map([], |row| {
                Ok((
                    seq_of(row.get(0)?),
                    Acknowledgement {
                        by: row.get(1)?,
                        at: row.get(2)?,
                        note: row.get(3)?,
                    },
                ))
            })?
            .collect()
        })
        .map_err(sqlite_error)
}

/// Streams every record in seq order through the verifier. Runs inside one
/// read transaction, so appends made meanwhile are not half-seen.
pub(super) fn verify(
    conn: &mut Connection,
    options: &VerifyOptions,
) -> Result<VerifyReport, VerifyError> {
    let tx = conn.transaction().map_err(sqlite_error)?;
    let mut verifier = Verifier::new(options, checkpoints(&tx)?, acknowledgements(&tx)?);
    let mut statement = tx
        .prepare(&format!(
            "SELECT {RECORD_COLUMNS}, r.patient, r.outcome, r.recorded_ms, r.alert,
                (SELECT group_concat(agent, char(31)) FROM audit_agents g WHERE g.seq = r.seq),
                (SELECT name FROM audit_names WHERE id = r.client),
                (SELECT name FROM audit_names WHERE id = r.org),
                (SELECT name FROM audit_names WHERE id = r.person)
             FROM audit_records r ORDER BY r.seq"
        ))
        .map_err(sqlite_error)?;
    let mut rows = statement.query([]).map_err(sqlite_error)?;
    while let Some(row) = rows.next().map_err(sqlite_error)? {
        let stored = stored_row(row).map_err(sqlite_error)?;
        verifier.push(&stored)?;
    }
    Ok(verifier.finish()?)
}

fn stored_row(row: &Row<'_>) -> rusqlite::Result<StoredRow> {
    let agents: Option<String> = row.get(9)?;
    let agents: Vec<String> = agents
        .map(|a| a.split('\u{1f}').map(str::to_owned).collect())
        .unwrap_or_default();
    // The role columns' names (a value that is not text reads as a name no
    // event has).
    let role = |column: usize| match row.get_ref(column) {
        Ok(ValueRef::Null) => None,
        Ok(ValueRef::Text(name)) => Some(Some(String::from_utf8_lossy(name).into_owned())),
        _ => Some(None),
    };
    let agents = stored_agents(agents, [role(10), role(11), role(12)]);
    let patient: Option<i64> = row.get(5)?;
    Ok(StoredRow {
        record: stored_record(row, false)?,
        fields: SearchFields {
            patient: patient.map(|p| u64::try_from(p).unwrap_or(u64::MAX)),
            agents,
            outcome: row.get(6)?,
            recorded_ms: row.get(7)?,
            alert: row.get(8)?,
        },
    })
}
