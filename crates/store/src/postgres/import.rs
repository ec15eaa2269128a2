//! Bulk import: one transaction per batch, a constant number of statements
//! whatever the batch size.
//!
//! The batch is streamed with binary COPY into a temporary table, then moved
//! with set-based statements that make the same decisions, in the same order,
//! as one `create` per record would: an id already stored (identical JSON:
//! already present; other content: rejected), then a masterIdentifier held by
//! another pointer of the custodian (rejected). Rejected records do not stop
//! the others.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::time::Duration;

use deadpool_postgres::{Object, Transaction};
use domain::PointerRecord;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::Type;

use crate::{ImportOutcome, StoreError};

use super::error::OpError;
use super::row::{column, nhs_to_sql, pointer_columns, version_to_sql};

/// The longest one batch may take: far longer than a request's time-out,
/// because a batch carries thousands of pointers.
pub(super) const TIMEOUT: Duration = Duration::from_secs(60);

const STAGE: &str = r#"CREATE TEMP TABLE nrls_import (
    ord integer NOT NULL,
    nhs_number bigint NOT NULL,
    seq bigint,
    version integer NOT NULL,
    id text COLLATE "C" NOT NULL,
    custodian text COLLATE "C" NOT NULL,
    type_key text COLLATE "C" NOT NULL,
    master_identifier text COLLATE "C",
    security_labels text[] NOT NULL,
    last_updated text NOT NULL,
    json text NOT NULL
) ON COMMIT DROP"#;

const COPY: &str = "COPY nrls_import (ord, nhs_number, version, id, custodian, type_key,
    master_identifier, security_labels, last_updated, json) FROM STDIN BINARY";

/// Claims the ids not yet stored, in batch order, and notes their sequences.
const CLAIM_IDS: &str = "WITH claimed AS (
        INSERT INTO pointer_ids (id, nhs_number, seq)
        SELECT id, nhs_number, nextval('pointer_seq') FROM nrls_import ORDER BY ord
        ON CONFLICT (id) DO NOTHING RETURNING id, seq)
    UPDATE nrls_import b SET seq = c.seq FROM claimed c WHERE b.id = c.id";

/// For each record whose id was already stored: is the stored JSON the same?
const COMPARE_EXISTING: &str = "SELECT b.ord, p.json = b.json FROM nrls_import b
    JOIN pointer_ids i ON i.id = b.id
    JOIN pointers p ON p.nhs_number = i.nhs_number AND p.seq = i.seq
    WHERE b.seq IS NULL";

/// Claims the masterIdentifiers of the records being stored, in batch order,
/// and returns the records whose identifier another pointer holds.
const CLAIM_MASTERS: &str = "WITH taken AS (
        INSERT INTO master_identifiers (custodian, master_identifier, id)
        SELECT custodian, master_identifier, id FROM nrls_import
        WHERE seq IS NOT NULL AND master_identifier IS NOT NULL ORDER BY ord
        ON CONFLICT DO NOTHING RETURNING id)
    SELECT b.ord, b.id FROM nrls_import b
    WHERE b.seq IS NOT NULL AND b.master_identifier IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM taken t WHERE t.id = b.id)";

/// Gives back the ids of records rejected for their masterIdentifier.
const UNCLAIM_IDS: &str = "WITH released AS (DELETE FROM pointer_ids WHERE id = ANY($1))
    UPDATE nrls_import SET seq = NULL WHERE id = ANY($1)";

const STORE: &str = concat!(
    "INSERT INTO pointers (",
    pointer_columns!(),
    ") SELECT ",
    pointer_columns!(),
    " FROM nrls_import WHERE seq IS NOT NULL"
);

/// What became of one record of the batch.
#[derive(Debug, Clone)]
enum Fate {
    Imported,
    AlreadyPresent,
    Rejected(StoreError),
}

/// Imports `records` in one transaction, committed before returning.
pub(super) async fn import(
    conn: &mut Object,
    records: &[PointerRecord],
) -> Result<ImportOutcome, OpError> {
    if records.is_empty() {
        return Ok(ImportOutcome::default());
    }
    // Only the first record with a given id goes to the database; a repeat
    // within the batch is decided from the first one's fate.
    let mut first_of: HashMap<&str, usize> = HashMap::new();
    let mut repeats = Vec::new();
    for (index, record) in records.iter().enumerate() {
        match first_of.entry(record.id.as_str()) {
            Entry::Vacant(entry) => {
                entry.insert(index);
            }
            Entry::Occupied(entry) => repeats.push((index, *entry.get())),
        }
    }
    let tx = conn.transaction().await?;
    tx.batch_execute(&format!(
        "SET LOCAL statement_timeout = {}",
        TIMEOUT.as_millis()
    ))
    .await?;
    tx.batch_execute(STAGE).await?;
    stage(&tx, records, first_of.values().copied()).await?;
    tx.batch_execute("ANALYZE nrls_import").await?;
    let fates = decide(&tx, records).await?;
    tx.commit().await?;
    Ok(outcome(records, fates, repeats))
}

/// Streams the records at `indexes` into the staging table.
async fn stage(
    tx: &Transaction<'_>,
    records: &[PointerRecord],
    indexes: impl Iterator<Item = usize>,
) -> Result<(), OpError> {
    let sink = tx.copy_in(COPY).await?;
    let types = [
        Type::INT4,
        Type::INT8,
        Type::INT4,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT_ARRAY,
        Type::TEXT,
        Type::TEXT,
    ];
    let writer = BinaryCopyInWriter::new(sink, &types);
    let mut writer = std::pin::pin!(writer);
    for index in indexes {
        let r = &records[index];
        let ord = ord(index)?;
        let version = version_to_sql(r.version)?;
        writer
            .as_mut()
            .write(&[
                &ord,
                &nhs_to_sql(r.nhs_number),
                &version,
                &r.id.as_str(),
                &r.custodian.as_str(),
                &r.type_key,
                &r.master_identifier,
                &r.security_labels,
                &r.last_updated,
                &r.json,
            ])
            .await?;
    }
    writer.finish().await?;
    Ok(())
}

/// Runs the checks and stores what passes; returns the fate of every staged
/// record, by batch position.
async fn decide(
    tx: &Transaction<'_>,
    records: &[PointerRecord],
) -> Result<HashMap<usize, Fate>, OpError> {
    let mut fates = HashMap::new();
    tx.execute(CLAIM_IDS, &[]).await?;
    for row in tx.query(COMPARE_EXISTING, &[]).await? {
        let index = index_of(column(&row, 0)?)?;
        let same: bool = column(&row, 1)?;
        let fate = if same {
            Fate::AlreadyPresent
        } else {
            Fate::Rejected(StoreError::DuplicateId(records[index].id.clone()))
        };
        fates.insert(index, fate);
    }
    let mut unclaim = Vec::new();
    for row in tx.query(CLAIM_MASTERS, &[]).await? {
        let index = index_of(column(&row, 0)?)?;
        unclaim.push(column::<String>(&row, 1)?);
        let master = records[index].master_identifier.clone().unwrap_or_default();
        fates.insert(
            index,
            Fate::Rejected(StoreError::DuplicateMasterIdentifier(master)),
        );
    }
    if !unclaim.is_empty() {
        tx.execute(UNCLAIM_IDS, &[&unclaim]).await?;
    }
    tx.execute(STORE, &[]).await?;
    Ok(fates)
}

/// The outcome in batch order. A staged record with no other fate was stored.
/// A repeated id is already present if it repeats the stored JSON, shares the
/// first one's rejection if it repeats its JSON, and is a duplicate id otherwise.
fn outcome(
    records: &[PointerRecord],
    mut fates: HashMap<usize, Fate>,
    repeats: Vec<(usize, usize)>,
) -> ImportOutcome {
    for (index, first) in repeats {
        let first_fate = fates.get(&first).cloned().unwrap_or(Fate::Imported);
        let same = records[index].json == records[first].json;
        let fate = match first_fate {
            Fate::Imported | Fate::AlreadyPresent if same => Fate::AlreadyPresent,
            Fate::Rejected(error) if same => Fate::Rejected(error),
            _ => Fate::Rejected(StoreError::DuplicateId(records[index].id.clone())),
        };
        fates.insert(index, fate);
    }
    let mut outcome = ImportOutcome::default();
    for index in 0..records.len() {
        match fates.remove(&index).unwrap_or(Fate::Imported) {
            Fate::Imported => outcome.imported += 1,
            Fate::AlreadyPresent => outcome.already_present += 1,
            Fate::Rejected(error) => outcome.rejected.push((index, error)),
        }
    }
    outcome
}

fn ord(index: usize) -> Result<i32, StoreError> {
    i32::try_from(index).map_err(|_| StoreError::Internal("import batch too large".into()))
}

fn index_of(ord: i32) -> Result<usize, StoreError> {
    usize::try_from(ord).map_err(|_| StoreError::Internal("bad import position".into()))
}
