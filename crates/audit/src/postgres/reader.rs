//! Reads: searches, alerts and the chunked walk of `verify`.

use std::time::Duration;

use deadpool_postgres::Object;
use store::postgres::{Database, OpError, settle};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use crate::chain::{Anchor, AuditRecord, Body, Hash};
use crate::fields::SearchFields;
use crate::verify::{StoredRow, Verifier, stored_agents};
use crate::{
    Acknowledgement, Alert, AlertQuery, AuditError, AuditPage, AuditQuery, Checkpoint, VerifyError,
    VerifyOptions, VerifyReport,
};

use super::audit_error;

const RECORD_COLUMNS: &str =
    "r.seq, r.appended_at, r.event, r.prev_hash, r.hash, r.body, r.appended_ms";
/// How many columns `RECORD_COLUMNS` is: a query's own columns follow.
const AFTER_RECORD: usize = 7;
/// Rows fetched per round trip by the verify walk.
const VERIFY_CHUNK: i32 = 2000;

fn damaged(what: &str) -> OpError {
    OpError::Corrupt(format!("audit table holds {what}"))
}

fn hash(bytes: &[u8]) -> Result<Hash, OpError> {
    Hash::try_from(bytes).map_err(|_| damaged("a hash that is not 32 bytes"))
}

fn seq_of(value: i64) -> u64 {
    // Negative seqs are never written; one read back is tampering, which
    // verify reports as a gap at seq 0 + 1.
    u64::try_from(value).unwrap_or(0)
}

fn to_sql(seq: u64) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}

fn stored_record(row: &Row, render: bool) -> Result<AuditRecord, OpError> {
    // Since schema step 7 `appended_at` is kept as Unix ms, rendered back as
    // it was hashed (unrenderable: verify finds the hash does not match).
    let appended_at = match row.try_get::<_, Option<i64>>(6)? {
        Some(ms) => u64::try_from(ms)
            .ok()
            .and_then(crate::compact::format_ms)
            .unwrap_or_default(),
        None => row.try_get(1)?,
    };
    // A compact record in `body` (step 7), or in `event` as text (before).
    let body = match row.try_get::<_, Option<Vec<u8>>>(5)? {
        Some(bytes) => Body::Compact(bytes),
        None => Body::from_text(row.try_get(2)?),
    };
    Ok(AuditRecord::stored(
        seq_of(row.try_get(0)?),
        appended_at,
        body,
        hash(row.try_get(3)?)?,
        hash(row.try_get(4)?)?,
        render,
    ))
}

fn record(row: &Row) -> Result<AuditRecord, OpError> {
    stored_record(row, true)
}

pub(super) async fn ping(db: &Database) -> Result<(), AuditError> {
    db.run(async |conn| {
        conn.query_one("SELECT seq FROM audit_head WHERE id = 1", &[])
            .await?;
        Ok(())
    })
    .await
    .map_err(audit_error)
}

pub(super) async fn search(db: &Database, query: &AuditQuery) -> Result<AuditPage, AuditError> {
    let mut sql = format!("SELECT {RECORD_COLUMNS} FROM audit_records r WHERE true");
    let patient = query.patient.map(|p| to_sql(p.as_u64()));
    let outcome = query.outcome.map(|o| o.code());
    let before = query.before_seq.map(to_sql);
    let count = query.count.max(1);
    let limit = i64::try_from(count + 1).unwrap_or(i64::MAX);
    let mut args: Vec<&(dyn ToSql + Sync)> = Vec::new();
    // Each filter binds the next parameter number.
    if let Some(p) = &patient {
        args.push(p);
        sql.push_str(&format!(" AND r.patient = ${}", args.len()));
    }
    if let Some(agent) = &query.agent {
        // A compact record names its agents by id in three indexed columns;
        // a JSON record (and an agent with no role column) in `audit_agents`.
        args.push(agent);
        let n = args.len();
        sql.push_str(&format!(
            " AND (r.client = (SELECT id FROM audit_names WHERE name = ${n})
                   OR r.org = (SELECT id FROM audit_names WHERE name = ${n})
                   OR r.person = (SELECT id FROM audit_names WHERE name = ${n})
                   OR r.seq IN (SELECT seq FROM audit_agents WHERE agent = ${n}))"
        ));
    }
    if let Some(since) = &query.since_ms {
        args.push(since);
        sql.push_str(&format!(" AND r.recorded_ms >= ${}", args.len()));
    }
    if let Some(until) = &query.until_ms {
        args.push(until);
        sql.push_str(&format!(" AND r.recorded_ms < ${}", args.len()));
    }
    if let Some(outcome) = &outcome {
        args.push(outcome);
        sql.push_str(&format!(" AND r.outcome = ${}", args.len()));
    }
    if let Some(before) = &before {
        args.push(before);
        sql.push_str(&format!(" AND r.seq < ${}", args.len()));
    }
    args.push(&limit);
    sql.push_str(&format!(" ORDER BY r.seq DESC LIMIT ${}", args.len()));
    let mut records = db
        .run(async |conn| {
            let statement = conn.prepare_cached(&sql).await?;
            let rows = conn.query(&statement, &args).await?;
            rows.iter().map(record).collect::<Result<Vec<_>, _>>()
        })
        .await
        .map_err(audit_error)?;
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

pub(super) async fn get(db: &Database, seq: u64) -> Result<Option<AuditRecord>, AuditError> {
    let seq = to_sql(seq);
    db.run(async |conn| {
        let statement = conn
            .prepare_cached(&format!(
                "SELECT {RECORD_COLUMNS} FROM audit_records r WHERE r.seq = $1"
            ))
            .await?;
        let row = conn.query_opt(&statement, &[&seq]).await?;
        row.as_ref().map(record).transpose()
    })
    .await
    .map_err(audit_error)
}

pub(super) async fn alerts(db: &Database, query: &AlertQuery) -> Result<Vec<Alert>, AuditError> {
    let sql = format!(
        "SELECT {RECORD_COLUMNS}, r.alert, a.acknowledged_by, a.acknowledged_at, a.note
         FROM audit_records r LEFT JOIN alert_acks a ON a.seq = r.seq
         WHERE r.alert IS NOT NULL AND r.seq < $1 AND (NOT $2 OR a.seq IS NULL)
         ORDER BY r.seq DESC LIMIT $3"
    );
    let before = query.before_seq.map_or(i64::MAX, to_sql);
    let limit = i64::try_from(query.count.max(1)).unwrap_or(i64::MAX);
    let unacknowledged = query.unacknowledged_only;
    db.run(async |conn| {
        let statement = conn.prepare_cached(&sql).await?;
        let rows = conn
            .query(&statement, &[&before, &unacknowledged, &limit])
            .await?;
        rows.iter()
            .map(|row| {
                let c = AFTER_RECORD;
                let by: Option<String> = row.try_get(c + 1)?;
                Ok(Alert {
                    record: record(row)?,
                    kind: row.try_get(c)?,
                    acknowledgement: match by {
                        Some(by) => Some(Acknowledgement {
                            by,
                            at: row.try_get(c + 2)?,
                            note: row.try_get(c + 3)?,
                        }),
                        None => None,
                    },
                })
            })
            .collect()
    })
    .await
    .map_err(audit_error)
}

async fn checkpoints(
    conn: &deadpool_postgres::Transaction<'_>,
) -> Result<Vec<Checkpoint>, OpError> {
    let rows = conn
        .query(
            "SELECT seq, hash, \"interval\", created_at, key_id, signature
             FROM audit_checkpoints ORDER BY seq",
            &[],
        )
        .await?;
    rows.iter()
        .map(|row| {
            let signature: Vec<u8> = row.try_get(5)?;
            Ok(Checkpoint {
                seq: seq_of(row.try_get(0)?),
                hash: hash(row.try_get(1)?)?,
                interval: u64::try_from(row.try_get::<_, i64>(2)?).unwrap_or(0),
                created_at: row.try_get(3)?,
                key_id: row.try_get(4)?,
                // A signature of the wrong length simply fails to verify.
                signature: signature.try_into().unwrap_or([0; 64]),
            })
        })
        .collect()
}

/// Every row of `alert_acks`, for verify to hold to the chain.
async fn acknowledgements(
    conn: &deadpool_postgres::Transaction<'_>,
) -> Result<Vec<(u64, Acknowledgement)>, OpError> {
    let rows = conn
        .query(
            "SELECT seq, acknowledged_by, acknowledged_at, note FROM alert_acks ORDER BY seq",
            &[],
        )
        .await?;
    rows.iter()
        .map(|row| {
            Ok((
                seq_of(row.try_get(0)?),
                Acknowledgement {
                    by: row.try_get(1)?,
                    at: row.try_get(2)?,
                    note: row.try_get(3)?,
                },
            ))
        })
        .collect()
}

fn stored_row(row: &Row) -> Result<StoredRow, OpError> {
    let c = AFTER_RECORD;
    // Each role column's id, and the name it stands for.
    let role = |i: usize| -> Result<Option<Option<String>>, OpError> {
        let id: Option<i32> = row.try_get(c + 5 + 2 * i)?;
        Ok(match id {
            Some(_) => Some(row.try_get(c + 6 + 2 * i)?),
            None => None,
        })
    };
    let agents = stored_agents(row.try_get(c + 4)?, [role(0)?, role(1)?, role(2)?]);
    let patient: Option<i64> = row.try_get(c)?;
    Ok(StoredRow {
        record: stored_record(row, false)?,
        fields: SearchFields {
            patient: patient.map(|p| u64::try_from(p).unwrap_or(u64::MAX)),
            agents,
            outcome: row.try_get(c + 1)?,
            recorded_ms: row.try_get(c + 2)?,
            alert: row.try_get(c + 3)?,
        },
    })
}

/// Walks every record in seq order through the verifier, in one
/// `REPEATABLE READ` snapshot so appends made meanwhile are not half-seen.
/// The chain head row serves as the anchor when the caller gave none.
pub(super) async fn verify(
    db: &Database,
    options: &VerifyOptions,
    budget: Duration,
) -> Result<VerifyReport, VerifyError> {
    let deadline = db.start_long(budget);
    let mut conn = deadline.connection(db.pool()).await.map_err(audit_error)?;
    let outcome = deadline.run(walk(&mut conn, options)).await;
    match settle(conn, outcome).map_err(audit_error)? {
        Ok(report) => Ok(report),
        Err(tamper) => Err(VerifyError::Tampered(tamper)),
    }
}

async fn walk(
    conn: &mut Object,
    options: &VerifyOptions,
) -> Result<Result<VerifyReport, crate::Tamper>, OpError> {
    let tx = conn
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let head = tx
        .query_one("SELECT seq, hash FROM audit_head WHERE id = 1", &[])
        .await?;
    let head_seq = seq_of(head.try_get(0)?);
    let mut options = options.clone();
    if options.anchor.is_none() && head_seq > 0 {
        options.anchor = Some(Anchor {
            seq: head_seq,
            hash: hash(head.try_get(1)?)?,
        });
    }
    let acks = acknowledgements(&tx).await?;
    let mut verifier = Verifier::new(&options, checkpoints(&tx).await?, acks);
    let statement = tx
        .prepare(&format!(
            "SELECT {RECORD_COLUMNS}, r.patient, r.outcome, r.recorded_ms, r.alert,
                ARRAY(SELECT g.agent FROM audit_agents g WHERE g.seq = r.seq),
                r.client, (SELECT name FROM audit_names WHERE id = r.client),
                r.org, (SELECT name FROM audit_names WHERE id = r.org),
                r.person, (SELECT name FROM audit_names WHERE id = r.person)
             FROM audit_records r ORDER BY r.seq"
        ))
        .await?;
    let portal = tx.bind(&statement, &[]).await?;
    loop {
        let rows = tx.query_portal(&portal, VERIFY_CHUNK).await?;
        for row in &rows {
            if let Err(tamper) = verifier.push(&stored_row(row)?) {
                return Ok(Err(tamper));
            }
        }
        if rows.len() < usize::try_from(VERIFY_CHUNK).unwrap_or(usize::MAX) {
            break;
        }
    }
    Ok(verifier.finish())
}
