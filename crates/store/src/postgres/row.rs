//! How a [`PointerRecord`] maps to a `pointers` row.

use domain::{NhsNumber, OdsCode, PointerId, PointerRecord};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use crate::compression::{CURRENT_ID, DictionaryId, JsonCodec};
use crate::{StoreError, StoredPointer};

/// The columns [`decode`] reads and [`Columns::params`] binds, in order. A
/// macro so queries can be built with `concat!`.
macro_rules! pointer_columns {
    () => {
        "nhs_number, seq, version, id, custodian, type_key, master_identifier, security_labels, last_updated, json, json_zstd, json_dictionary"
    };
}
pub(crate) use pointer_columns;

/// The values of [`pointer_columns`] for `record` at `seq`, ready to bind as
/// `$1`..`$12`. `frame` is the record's JSON compressed with dictionary
/// [`CURRENT_ID`] ([`JsonCodec::compress`]): every row written now is
/// compressed, and its `json` text is NULL.
pub(super) struct Columns<'a> {
    record: &'a PointerRecord,
    nhs_number: i64,
    seq: i64,
    version: i32,
    id: &'a str,
    custodian: &'a str,
    text: Option<&'a str>,
    frame: &'a [u8],
    dictionary: DictionaryId,
}

impl<'a> Columns<'a> {
    pub(super) fn of(
        record: &'a PointerRecord,
        seq: i64,
        frame: &'a [u8],
    ) -> Result<Self, StoreError> {
        Ok(Columns {
            record,
            nhs_number: nhs_to_sql(record.nhs_number),
            seq,
            version: version_to_sql(record.version)?,
            id: record.id.as_str(),
            custodian: record.custodian.as_str(),
            text: None,
            frame,
            dictionary: CURRENT_ID,
        })
    }

    pub(super) fn params(&self) -> [&(dyn ToSql + Sync); 12] {
        let r = self.record;
        [
            &self.nhs_number,
            &self.seq,
            &self.version,
            &self.id,
            &self.custodian,
            &r.type_key,
            &r.master_identifier,
            &r.security_labels,
            &r.last_updated,
            &self.text,
            &self.frame,
            &self.dictionary,
        ]
    }
}

/// NHS numbers are below 10^10, so they always fit a `bigint`.
pub(super) fn nhs_to_sql(nhs_number: NhsNumber) -> i64 {
    i64::try_from(nhs_number.as_u64()).unwrap_or(i64::MAX)
}

pub(super) fn version_to_sql(version: u32) -> Result<i32, StoreError> {
    i32::try_from(version)
        .map_err(|_| StoreError::Internal(format!("version {version} does not fit the store")))
}

/// Reads a row of [`pointer_columns`]. A value that no longer parses (a row
/// edited by hand, say) is `Internal`; so is a frame of a dictionary `codec`
/// does not know ([`unknown_dictionary`] finds those first).
pub(super) fn decode(
    row: &Row,
    first: usize,
    codec: &JsonCodec,
) -> Result<StoredPointer, StoreError> {
    let at = |i: usize| first + i;
    let nhs_number: i64 = column(row, at(0))?;
    let version: i32 = column(row, at(2))?;
    let id: String = column(row, at(3))?;
    let custodian: String = column(row, at(4))?;
    let record = PointerRecord {
        id: PointerId::parse(&id).ok_or_else(|| corrupt("id"))?,
        nhs_number: u64::try_from(nhs_number)
            .ok()
            .and_then(|n| NhsNumber::from_u64(n).ok())
            .ok_or_else(|| corrupt("nhs_number"))?,
        custodian: OdsCode::parse(&custodian).ok_or_else(|| corrupt("custodian"))?,
        type_key: column(row, at(5))?,
        master_identifier: column(row, at(6))?,
        security_labels: column(row, at(7))?,
        version: u32::try_from(version).map_err(|_| corrupt("version"))?,
        last_updated: column(row, at(8))?,
        json: json(row, at(9), codec)?,
    };
    Ok(StoredPointer {
        seq: column(row, at(1))?,
        record,
    })
}

/// The JSON kept in columns `first`..`first + 2` of `row` (`json`,
/// `json_zstd`, `json_dictionary`).
pub(super) fn json(row: &Row, first: usize, codec: &JsonCodec) -> Result<String, StoreError> {
    codec
        .stored_json(
            column(row, first)?,
            column(row, first + 1)?,
            column(row, first + 2)?,
        )
        .map_err(|e| StoreError::Internal(format!("stored json: {e}")))
}

/// A dictionary that column `column` of some row names and `codec` lacks:
/// one another node stored after this one loaded the table.
pub(super) fn unknown_dictionary(
    rows: &[Row],
    column: usize,
    codec: &JsonCodec,
) -> Option<DictionaryId> {
    rows.iter()
        .filter_map(|row| {
            row.try_get::<_, Option<DictionaryId>>(column)
                .ok()
                .flatten()
        })
        .find(|id| *id != CURRENT_ID && !codec.knows(*id))
}

/// One column of `row`; a type mismatch is a bug in our SQL: `Internal`.
pub(super) fn column<'a, T: tokio_postgres::types::FromSql<'a>>(
    row: &'a Row,
    index: usize,
) -> Result<T, StoreError> {
    row.try_get(index)
        .map_err(|e| StoreError::Internal(format!("postgres row: {e}")))
}

fn corrupt(name: &str) -> StoreError {
    StoreError::Internal(format!("stored {name} is not valid"))
}
