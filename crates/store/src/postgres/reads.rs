//! Reads: single statements outside any explicit transaction, so each sees
//! one committed state.

use deadpool_postgres::Object;
use domain::{NhsNumber, OdsCode, PointerId, PointerRecord};

use crate::compression::JsonCodec;
use crate::{PointerChange, PointerEvent, StoreError, StoredPointer};

use super::dictionaries;
use super::error::OpError;
use super::row::{column, decode, nhs_to_sql, pointer_columns, unknown_dictionary};

/// Where `json_dictionary` is in a row of [`pointer_columns`].
const DICTIONARY_COLUMN: usize = 11;

// The sub-select resolves the id to its partition key first; the executor then
// prunes every other partition and reads one row by primary key.
pub(super) const GET: &str = concat!(
    "SELECT ",
    pointer_columns!(),
    " FROM pointers WHERE (nhs_number, seq) =
        (SELECT nhs_number, seq FROM pointer_ids WHERE id = $1)"
);
// One partition; the primary key read backwards: newest first, no sort.
pub(super) const PATIENT: &str = concat!(
    "SELECT ",
    pointer_columns!(),
    " FROM pointers WHERE nhs_number = $1 ORDER BY seq DESC"
);
// Merges every partition's `seq` index: lowest first, `limit` rows read.
const AFTER: &str = concat!(
    "SELECT ",
    pointer_columns!(),
    " FROM pointers WHERE seq > $1 AND ($2::text IS NULL OR custodian = $2)
      ORDER BY seq LIMIT $3"
);

pub(super) async fn get(
    conn: &Object,
    id: &PointerId,
    codec: &JsonCodec,
) -> Result<Option<PointerRecord>, OpError> {
    let statement = conn.prepare_cached(GET).await?;
    let rows = conn.query(&statement, &[&id.as_str()]).await?;
    Ok(decode_all(conn, &rows, codec)
        .await?
        .pop()
        .map(|s| s.record))
}

pub(super) async fn patient_pointers(
    conn: &Object,
    nhs_number: NhsNumber,
    codec: &JsonCodec,
) -> Result<Vec<StoredPointer>, OpError> {
    let statement = conn.prepare_cached(PATIENT).await?;
    let rows = conn.query(&statement, &[&nhs_to_sql(nhs_number)]).await?;
    decode_all(conn, &rows, codec).await
}

/// Decodes rows of [`pointer_columns`], first loading any dictionary they
/// name that this node has not seen (one a newer node stored since).
async fn decode_all(
    conn: &Object,
    rows: &[tokio_postgres::Row],
    codec: &JsonCodec,
) -> Result<Vec<StoredPointer>, OpError> {
    decode_from(conn, rows, 0, codec).await
}

/// As [`decode_all`], for rows whose [`pointer_columns`] start at column
/// `first`; rows whose `seq` is NULL (an outer join's empty side) are skipped.
pub(super) async fn decode_from(
    conn: &Object,
    rows: &[tokio_postgres::Row],
    first: usize,
    codec: &JsonCodec,
) -> Result<Vec<StoredPointer>, OpError> {
    if unknown_dictionary(rows, first + DICTIONARY_COLUMN, codec).is_some() {
        dictionaries::load(conn, codec).await?;
    }
    let mut pointers = Vec::with_capacity(rows.len());
    for row in rows {
        if column::<Option<i64>>(row, first + 1)?.is_some() {
            pointers.push(decode(row, first, codec)?);
        }
    }
    Ok(pointers)
}

pub(super) async fn pointers_after(
    conn: &Object,
    after_seq: i64,
    limit: usize,
    custodian: Option<&OdsCode>,
    codec: &JsonCodec,
) -> Result<Vec<StoredPointer>, OpError> {
    let statement = conn.prepare_cached(AFTER).await?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let custodian = custodian.map(OdsCode::as_str);
    let rows = conn
        .query(&statement, &[&after_seq, &custodian, &limit])
        .await?;
    decode_all(conn, &rows, codec).await
}

/// The oldest audit outbox records (see [`crate::audit_outbox`]).
pub(super) async fn audit_outbox(
    conn: &Object,
    limit: usize,
) -> Result<Vec<crate::OutboxedAudit>, OpError> {
    let statement = conn
        .prepare_cached("SELECT id, entry FROM audit_outbox ORDER BY id LIMIT $1")
        .await?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = conn.query(&statement, &[&limit]).await?;
    rows.iter()
        .map(|row| {
            Ok(crate::OutboxedAudit {
                id: u64::try_from(row.try_get::<_, i64>(0)?).unwrap_or(0),
                entry: row.try_get(1)?,
            })
        })
        .collect()
}

/// The oldest pending outbox events (see [`crate::outbox`]).
pub(super) async fn pending_events(
    conn: &Object,
    limit: usize,
) -> Result<Vec<PointerEvent>, OpError> {
    let statement = conn
        .prepare_cached(
            "SELECT seq, nhs_number, change, focus, additional_context, custodian,
                type_key, security_labels, recorded_at
             FROM pointer_events ORDER BY seq LIMIT $1",
        )
        .await?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = conn.query(&statement, &[&limit]).await?;
    Ok(rows.iter().map(decode_event).collect::<Result<_, _>>()?)
}

pub(super) fn decode_event(row: &tokio_postgres::Row) -> Result<PointerEvent, StoreError> {
    let corrupt = |name: &str| StoreError::Internal(format!("stored event {name} is not valid"));
    let nhs_number: i64 = column(row, 1)?;
    let change: &str = column(row, 2)?;
    let focus: &str = column(row, 3)?;
    let context: Vec<String> = column(row, 4)?;
    let custodian: &str = column(row, 5)?;
    Ok(PointerEvent {
        seq: column(row, 0)?,
        change: PointerChange::parse(change).ok_or_else(|| corrupt("change"))?,
        focus: PointerId::parse(focus).ok_or_else(|| corrupt("focus"))?,
        additional_context: context
            .iter()
            .map(|id| PointerId::parse(id))
            .collect::<Option<_>>()
            .ok_or_else(|| corrupt("additional context"))?,
        nhs_number: u64::try_from(nhs_number)
            .ok()
            .and_then(|n| NhsNumber::from_u64(n).ok())
            .ok_or_else(|| corrupt("nhs_number"))?,
        custodian: OdsCode::parse(custodian).ok_or_else(|| corrupt("custodian"))?,
        type_key: column(row, 6)?,
        security_labels: column(row, 7)?,
        recorded_at: column(row, 8)?,
    })
}

/// Counts ids: the narrowest table holding one row per pointer.
pub(super) async fn count(conn: &Object) -> Result<u64, OpError> {
    let statement = conn
        .prepare_cached("SELECT count(*) FROM pointer_ids")
        .await?;
    let row = conn.query_one(&statement, &[]).await?;
    let count: i64 = column(&row, 0)?;
    Ok(u64::try_from(count).unwrap_or(0))
}

/// A round trip to the server.
pub(super) async fn ping(conn: &Object) -> Result<(), OpError> {
    conn.simple_query("SELECT 1").await?;
    Ok(())
}
