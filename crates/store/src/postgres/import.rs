//! Bulk import: one transaction per batch, a constant number of statements
//! whatever the batch size.
//!
//! The batch's keys go to the server as arrays, and set-based statements over
//! them make the same decisions, in the same order, as one `create` per
//! record would: claim the ids not yet stored (in batch order, so sequences
//! follow the file); an id already stored is compared by content (identical
//! JSON: already present; other content: rejected); then claim the
//! masterIdentifiers of the claimed records (a masterIdentifier held by
//! another pointer of the custodian: rejected, and its id given back).
//! Rejected records do not stop the others. The records that pass then go,
//! whole, with one binary COPY straight into the partitioned `pointers`
//! table: each pointer's (compressed) JSON crosses the wire and is written
//! once.
//!
//! Each claim returns what it took (`RETURNING`), and the decisions are made
//! here from those answers. An earlier shape staged the keys in a temporary
//! table and recorded each decision there with `UPDATE`s: creating, indexing
//! and twice rewriting that table was two thirds of a batch's time in the
//! database (docs/performance.md, "PostgreSQL import without a staging
//! table"). Before that, the whole batch was staged with its JSON and the
//! masterIdentifier check compared every staged row with every claimed one
//! (~1 s a batch of 5,000).

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::time::Duration;

use deadpool_postgres::{Object, Transaction};
use domain::PointerRecord;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::Type;

use crate::compression::JsonCodec;
use crate::{ImportOutcome, StoreError};

use super::dictionaries;
use super::error::OpError;
use super::row::{Columns, column, json, nhs_to_sql, pointer_columns, unknown_dictionary};

/// The longest one batch may take: far longer than a request's time-out,
/// because a batch carries thousands of pointers.
pub(super) const TIMEOUT: Duration = Duration::from_secs(60);

/// Claims the ids not yet stored, in batch order, and returns the sequence
/// each claimed id took. (PostgreSQL evaluates the volatile `nextval` after
/// the sort, so sequences follow the batch.)
const CLAIM_IDS: &str = "INSERT INTO pointer_ids (id, nhs_number, seq)
    SELECT id, nhs_number, nextval('pointer_seq')
    FROM unnest($1::text[], $2::bigint[]) WITH ORDINALITY AS b(id, nhs_number, ord)
    ORDER BY ord
    ON CONFLICT (id) DO NOTHING RETURNING id, seq";

/// The stored JSON of each of the given ids, to compare.
const EXISTING: &str = "SELECT i.id, p.json, p.json_zstd, p.json_dictionary FROM pointer_ids i
    JOIN pointers p ON p.nhs_number = i.nhs_number AND p.seq = i.seq
    WHERE i.id = ANY($1)";

/// Claims masterIdentifiers, in batch order; returns the ids that got theirs.
const CLAIM_MASTERS: &str = "INSERT INTO master_identifiers (custodian, master_identifier, id)
    SELECT custodian, master_identifier, id
    FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY
        AS m(custodian, master_identifier, id, ord)
    ORDER BY ord
    ON CONFLICT DO NOTHING RETURNING id";

/// Gives back the ids of records rejected for their masterIdentifier.
const UNCLAIM_IDS: &str = "DELETE FROM pointer_ids WHERE id = ANY($1)";

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
/// [`CURRENT_ID`](crate::compression::CURRENT_ID), in the same order.
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
    let mut firsts: Vec<usize> = first_of.values().copied().collect();
    firsts.sort_unstable();
    let (fates, accepted) = decide(&tx, records, &firsts, codec).await?;
    store(&tx, records, frames, &accepted).await?;
    tx.commit().await?;
    Ok(outcome(records, fates, repeats))
}

/// Runs the checks and claims what passes, for the records at `firsts` (in
/// batch order, one per id); returns the fate of every one that was not
/// stored, by batch position, and the `(position, seq)` of every record to
/// store, in sequence order.
async fn decide(
    tx: &Transaction<'_>,
    records: &[PointerRecord],
    firsts: &[usize],
    codec: &JsonCodec,
) -> Result<(HashMap<usize, Fate>, Vec<(usize, i64)>), OpError> {
    let mut fates = HashMap::new();
    let ids: Vec<&str> = firsts.iter().map(|&i| records[i].id.as_str()).collect();
    let patients: Vec<i64> = firsts
        .iter()
        .map(|&i| nhs_to_sql(records[i].nhs_number))
        .collect();
    let claim = tx.prepare_cached(CLAIM_IDS).await?;
    let mut seq_of: HashMap<String, i64> = HashMap::with_capacity(firsts.len());
    for row in tx.query(&claim, &[&ids, &patients]).await? {
        seq_of.insert(column(&row, 0)?, column(&row, 1)?);
    }
    // Every id new (a first load): nothing to compare, so `pointers` is not
    // read.
    if seq_of.len() < firsts.len() {
        compare_existing(tx, records, firsts, &seq_of, codec, &mut fates).await?;
    }
    let claimed: Vec<usize> = firsts
        .iter()
        .copied()
        .filter(|&i| seq_of.contains_key(records[i].id.as_str()))
        .collect();
    let unclaim = claim_masters(tx, records, &claimed, &mut fates).await?;
    if !unclaim.is_empty() {
        let statement = tx.prepare_cached(UNCLAIM_IDS).await?;
        tx.execute(&statement, &[&unclaim]).await?;
    }
    let mut accepted: Vec<(usize, i64)> = claimed
        .iter()
        .filter(|i| !fates.contains_key(*i))
        .filter_map(|&i| seq_of.get(records[i].id.as_str()).map(|&seq| (i, seq)))
        .collect();
    // Sequence order: the rows land in `pointers` as one `create` each would.
    accepted.sort_unstable_by_key(|(_, seq)| *seq);
    Ok((fates, accepted))
}

/// Decides the records whose ids were already stored (not in `claimed`, the
/// ids this batch claimed): already present when the stored JSON is the
/// same, a duplicate id otherwise.
async fn compare_existing(
    tx: &Transaction<'_>,
    records: &[PointerRecord],
    firsts: &[usize],
    claimed: &HashMap<String, i64>,
    codec: &JsonCodec,
    fates: &mut HashMap<usize, Fate>,
) -> Result<(), OpError> {
    let taken: Vec<usize> = firsts
        .iter()
        .copied()
        .filter(|&i| !claimed.contains_key(records[i].id.as_str()))
        .collect();
    let ids: Vec<&str> = taken.iter().map(|&i| records[i].id.as_str()).collect();
    let statement = tx.prepare_cached(EXISTING).await?;
    let existing = tx.query(&statement, &[&ids]).await?;
    if unknown_dictionary(&existing, 3, codec).is_some() {
        dictionaries::load(tx.client(), codec).await?;
    }
    let mut stored: HashMap<String, String> = HashMap::with_capacity(existing.len());
    for row in &existing {
        stored.insert(column(row, 0)?, json(row, 1, codec)?);
    }
    for index in taken {
        let record = &records[index];
        // No stored row: the id's pointer was deleted between the claim and
        // this read, by another writer; the id was taken when claimed.
        let fate = match stored.get(record.id.as_str()) {
            Some(json) if *json == record.json => Fate::AlreadyPresent,
            _ => Fate::Rejected(StoreError::DuplicateId(record.id.clone())),
        };
        fates.insert(index, fate);
    }
    Ok(())
}

/// Claims the masterIdentifiers of the `claimed` records that have one;
/// returns the ids of those whose masterIdentifier another pointer holds,
/// recording their rejection.
async fn claim_masters(
    tx: &Transaction<'_>,
    records: &[PointerRecord],
    claimed: &[usize],
    fates: &mut HashMap<usize, Fate>,
) -> Result<Vec<String>, OpError> {
    let with_master: Vec<(usize, &str)> = claimed
        .iter()
        .filter_map(|&i| records[i].master_identifier.as_deref().map(|m| (i, m)))
        .collect();
    if with_master.is_empty() {
        return Ok(Vec::new());
    }
    let custodians: Vec<&str> = with_master
        .iter()
        .map(|&(i, _)| records[i].custodian.as_str())
        .collect();
    let masters: Vec<&str> = with_master.iter().map(|&(_, m)| m).collect();
    let ids: Vec<&str> = with_master
        .iter()
        .map(|&(i, _)| records[i].id.as_str())
        .collect();
    let statement = tx.prepare_cached(CLAIM_MASTERS).await?;
    let mut got = std::collections::HashSet::with_capacity(with_master.len());
    for row in tx.query(&statement, &[&custodians, &masters, &ids]).await? {
        got.insert(column::<String>(&row, 0)?);
    }
    let mut unclaim = Vec::new();
    for (index, master) in with_master {
        let id = records[index].id.as_str();
        if !got.contains(id) {
            unclaim.push(id.to_owned());
            fates.insert(
                index,
                Fate::Rejected(StoreError::DuplicateMasterIdentifier(master.to_owned())),
            );
        }
    }
    Ok(unclaim)
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
    for (index, seq) in accepted {
        let frame = frames
            .get(*index)
            .ok_or_else(|| StoreError::Internal("a record without its compressed JSON".into()))?;
        let columns = Columns::of(&records[*index], *seq, frame)?;
        writer.as_mut().write(&columns.params()).await?;
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
