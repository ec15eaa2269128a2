//! Bulk import: one transaction per batch, a constant number of statements
//! whatever the batch size.
//!
//! Only the keys of the batch (position, patient, id, custodian,
//! masterIdentifier) are staged, with binary COPY, into a temporary table;
//! set-based statements there make the same decisions, in the same order, as
//! one `create` per record would: an id already stored (identical JSON:
//! already present; other content: rejected), then a masterIdentifier held by
//! another pointer of the custodian (rejected). Rejected records do not stop
//! the others. The records that pass then go, whole, with a second binary
//! COPY straight into the partitioned `pointers` table: each pointer's JSON
//! crosses the wire and is written once.
//!
//! Before this shape the whole batch was staged with its JSON and moved with
//! `INSERT ... SELECT`, and the masterIdentifier check compared every staged
//! row with every claimed one; at 5,000 a batch that check alone took ~1 s
//! (docs/performance.md, "Pointer store").

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::time::Duration;

use deadpool_postgres::{Object, Transaction};
use domain::PointerRecord;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::Type;

use crate::compression::{CURRENT_ID, JsonCodec};
use crate::{ImportOutcome, StoreError};

use super::dictionaries;
use super::error::OpError;
use super::row::{column, json, nhs_to_sql, pointer_columns, unknown_dictionary, version_to_sql};

/// The longest one batch may take: far longer than a request's time-out,
/// because a batch carries thousands of pointers.
pub(super) const TIMEOUT: Duration = Duration::from_secs(60);

/// The staged keys. The index on `id` lets the joins with the ids just
/// claimed look each one up instead of scanning the batch per row.
const STAGE: &str = r#"CREATE TEMP TABLE nrls_import (
    ord integer NOT NULL,
    nhs_number bigint NOT NULL,
    seq bigint,
    master_taken boolean NOT NULL DEFAULT false,
    id text COLLATE "C" NOT NULL,
    custodian text COLLATE "C" NOT NULL,
    master_identifier text COLLATE "C"
) ON COMMIT DROP"#;

const COPY_KEYS: &str = "COPY nrls_import (ord, nhs_number, id, custodian, master_identifier)
    FROM STDIN BINARY";

const INDEX_KEYS: &str = "CREATE INDEX ON nrls_import (id); ANALYZE nrls_import";

/// Claims the ids not yet stored, in batch order, and notes their sequences.
const CLAIM_IDS: &str = "WITH claimed AS (
        INSERT INTO pointer_ids (id, nhs_number, seq)
        SELECT id, nhs_number, nextval('pointer_seq') FROM nrls_import ORDER BY ord
        ON CONFLICT (id) DO NOTHING RETURNING id, seq)
    UPDATE nrls_import b SET seq = c.seq FROM claimed c WHERE b.id = c.id";

/// The stored JSON of each record whose id was already stored, to compare.
const EXISTING: &str = "SELECT b.ord, p.json, p.json_zstd, p.json_dictionary FROM nrls_import b
    JOIN pointer_ids i ON i.id = b.id
    JOIN pointers p ON p.nhs_number = i.nhs_number AND p.seq = i.seq
    WHERE b.seq IS NULL";

/// Claims the masterIdentifiers of the records being stored, in batch order,
/// and marks the records that got theirs.
const CLAIM_MASTERS: &str = "WITH taken AS (
        INSERT INTO master_identifiers (custodian, master_identifier, id)
        SELECT custodian, master_identifier, id FROM nrls_import
        WHERE seq IS NOT NULL AND master_identifier IS NOT NULL ORDER BY ord
        ON CONFLICT DO NOTHING RETURNING id)
    UPDATE nrls_import b SET master_taken = true FROM taken t WHERE b.id = t.id";

/// The records whose masterIdentifier another pointer holds.
const MASTER_CLASHES: &str = "SELECT ord, id FROM nrls_import
    WHERE seq IS NOT NULL AND master_identifier IS NOT NULL AND NOT master_taken";

/// Gives back the ids of records rejected for their masterIdentifier.
const UNCLAIM_IDS: &str = "WITH released AS (DELETE FROM pointer_ids WHERE id = ANY($1))
    UPDATE nrls_import SET seq = NULL WHERE id = ANY($1)";

/// The records to store, with the sequences they claimed.
const ACCEPTED: &str = "SELECT ord, seq FROM nrls_import WHERE seq IS NOT NULL";

const COPY_POINTERS: &str = concat!("COPY pointers (", pointer_columns!(), ") FROM STDIN BINARY");

/// What became of one record of the batch.
#[derive(Debug, Clone)]
enum Fate {
    Imported,
    AlreadyPresent,
    Rejected(StoreError),
}

/// Imports `records` in one transaction, committed before returning.
/// `frames` holds each record's JSON compressed with dictionary
/// [`CURRENT_ID`], in the same order.
pub(super) async fn import(
    conn: &mut Object,
    records: &[PointerRecord],
    frames: &[Vec<u8>],
    codec: &JsonCodec,
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
    // No JIT: these statements are planned per batch, and on tables whose
    // statistics lag a bulk load the estimates pass `jit_above_cost`, so each
    // batch paid ~100 ms compiling what it runs once.
    tx.batch_execute(&format!(
        "SET LOCAL statement_timeout = {}; SET LOCAL jit = off",
        TIMEOUT.as_millis()
    ))
    .await?;
    tx.batch_execute(STAGE).await?;
    stage(&tx, records, first_of.values().copied()).await?;
    tx.batch_execute(INDEX_KEYS).await?;
    let (fates, accepted) = decide(&tx, records, first_of.len(), codec).await?;
    store(&tx, records, frames, &accepted).await?;
    tx.commit().await?;
    Ok(outcome(records, fates, repeats))
}

/// Streams the keys of the records at `indexes` into the staging table.
async fn stage(
    tx: &Transaction<'_>,
    records: &[PointerRecord],
    indexes: impl Iterator<Item = usize>,
) -> Result<(), OpError> {
    let sink = tx.copy_in(COPY_KEYS).await?;
    let types = [Type::INT4, Type::INT8, Type::TEXT, Type::TEXT, Type::TEXT];
    let writer = BinaryCopyInWriter::new(sink, &types);
    let mut writer = std::pin::pin!(writer);
    for index in indexes {
        let r = &records[index];
        let ord = ord(index)?;
        writer
            .as_mut()
            .write(&[
                &ord,
                &nhs_to_sql(r.nhs_number),
                &r.id.as_str(),
                &r.custodian.as_str(),
                &r.master_identifier,
            ])
            .await?;
    }
    writer.finish().await?;
    Ok(())
}

/// Runs the checks and claims what passes; returns the fate of every staged
/// record that was not stored, by batch position, and the `(position, seq)`
/// of every record to store.
async fn decide(
    tx: &Transaction<'_>,
    records: &[PointerRecord],
    staged: usize,
    codec: &JsonCodec,
) -> Result<(HashMap<usize, Fate>, Vec<(usize, i64)>), OpError> {
    let mut fates = HashMap::new();
    let claimed = tx.execute(CLAIM_IDS, &[]).await?;
    // Every id new (a first load): nothing to compare, so the pointers table
    // is not touched. This matters at scale: the staging table's statistics
    // are taken before the claim, so the planner expects every row to need
    // its stored JSON, and on a large table whose statistics lag the load it
    // chose to sort the whole of `pointers` for each batch (10M import fell
    // from 20k to under 6k pointers/s by 4.4M; docs/performance.md).
    let existing = if usize::try_from(claimed).unwrap_or(usize::MAX) < staged {
        tx.query(EXISTING, &[]).await?
    } else {
        Vec::new()
    };
    if unknown_dictionary(&existing, 3, codec).is_some() {
        dictionaries::load(tx.client(), codec).await?;
    }
    for row in existing {
        let index = index_of(column(&row, 0)?)?;
        let stored = json(&row, 1, codec)?;
        let fate = if stored == records[index].json {
            Fate::AlreadyPresent
        } else {
            Fate::Rejected(StoreError::DuplicateId(records[index].id.clone()))
        };
        fates.insert(index, fate);
    }
    tx.execute(CLAIM_MASTERS, &[]).await?;
    let mut unclaim = Vec::new();
    for row in tx.query(MASTER_CLASHES, &[]).await? {
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
    let mut accepted = Vec::new();
    for row in tx.query(ACCEPTED, &[]).await? {
        accepted.push((index_of(column(&row, 0)?)?, column::<i64>(&row, 1)?));
    }
    // Sequence order: the rows land in `pointers` as one `create` each would.
    accepted.sort_unstable_by_key(|(_, seq)| *seq);
    Ok((fates, accepted))
}

/// Streams the accepted records, whole, into `pointers`.
async fn store(
    tx: &Transaction<'_>,
    records: &[PointerRecord],
    frames: &[Vec<u8>],
    accepted: &[(usize, i64)],
) -> Result<(), OpError> {
    if accepted.is_empty() {
        return Ok(());
    }
    let sink = tx.copy_in(COPY_POINTERS).await?;
    let types = [
        Type::INT8,
        Type::INT8,
        Type::INT4,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT_ARRAY,
        Type::TEXT,
        Type::TEXT,
        Type::BYTEA,
        Type::INT8,
    ];
    let writer = BinaryCopyInWriter::new(sink, &types);
    let mut writer = std::pin::pin!(writer);
    let text: Option<&str> = None;
    for (index, seq) in accepted {
        let r = &records[*index];
        let frame = frames
            .get(*index)
            .ok_or_else(|| StoreError::Internal("a record without its compressed JSON".into()))?;
        let version = version_to_sql(r.version)?;
        writer
            .as_mut()
            .write(&[
                &nhs_to_sql(r.nhs_number),
                seq,
                &version,
                &r.id.as_str(),
                &r.custodian.as_str(),
                &r.type_key,
                &r.master_identifier,
                &r.security_labels,
                &r.last_updated,
                &text,
                frame,
                &CURRENT_ID,
            ])
            .await?;
    }
    writer.finish().await?;
    Ok(())
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
