//! How a [`PointerRecord`] maps to a `pointers` row, and how SQLite errors map
//! to [`StoreError`].

use domain::{NhsNumber, OdsCode, PointerId, PointerRecord};
use rusqlite::types::{FromSqlError, Type, ValueRef};
use rusqlite::{Row, ToSql};

use crate::StoreError;
use crate::compression::{CURRENT_ID, CodecError, JsonCodec};

/// The columns [`decode`] reads and [`Columns::params`] binds, in order. A
/// macro rather than a `const` so queries can be built with `concat!` and stay
/// `&'static str` keys for the statement cache.
macro_rules! pointer_columns {
    () => {
        "id, nhs_number, custodian, type_key, master_identifier, security_labels, version, last_updated, json, json_dictionary"
    };
}
pub(super) use pointer_columns;

/// Inserts a row from [`Columns::params`].
pub(super) const INSERT: &str = concat!(
    "INSERT INTO pointers (",
    pointer_columns!(),
    ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
);

/// The values of [`pointer_columns`] for `record`, ready to bind as `?1`..`?10`.
/// `json` is the record's JSON compressed with dictionary [`CURRENT_ID`]
/// ([`JsonCodec::compress`]): every row written now is compressed.
pub(super) struct Columns<'a> {
    record: &'a PointerRecord,
    id: &'a str,
    nhs_number: i64,
    custodian: &'a str,
    security_labels: String,
    json: &'a [u8],
}

impl<'a> Columns<'a> {
    pub(super) fn of(record: &'a PointerRecord, json: &'a [u8]) -> Self {
        Columns {
            record,
            id: record.id.as_str(),
            nhs_number: nhs_to_sql(record.nhs_number),
            custodian: record.custodian.as_str(),
            security_labels: encode_labels(&record.security_labels),
            json,
        }
    }

    pub(super) fn params(&self) -> [&dyn ToSql; 10] {
        let r = self.record;
        [
            &self.id,
            &self.nhs_number,
            &self.custodian,
            &r.type_key,
            &r.master_identifier,
            &self.security_labels,
            &r.version,
            &r.last_updated,
            &self.json,
            &CURRENT_ID,
        ]
    }
}

/// NHS numbers are below 10^10, so they always fit an `i64`.
pub(super) fn nhs_to_sql(nhs_number: NhsNumber) -> i64 {
    i64::try_from(nhs_number.as_u64()).unwrap_or(i64::MAX)
}

/// Reads [`pointer_columns`] starting at column `first`. A value that no longer parses
/// (a row edited by hand, say) is a conversion error, reported as `Internal`.
pub(super) fn decode(
    row: &Row<'_>,
    first: usize,
    codec: &JsonCodec,
) -> rusqlite::Result<PointerRecord> {
    let id: String = row.get(first)?;
    let nhs_number: i64 = row.get(first + 1)?;
    let custodian: String = row.get(first + 2)?;
    let labels: String = row.get(first + 5)?;
    let version: i64 = row.get(first + 6)?;
    Ok(PointerRecord {
        id: PointerId::parse(&id).ok_or_else(|| corrupt(first, "id"))?,
        nhs_number: u64::try_from(nhs_number)
            .ok()
            .and_then(|n| NhsNumber::from_u64(n).ok())
            .ok_or_else(|| corrupt(first + 1, "nhs_number"))?,
        custodian: OdsCode::parse(&custodian).ok_or_else(|| corrupt(first + 2, "custodian"))?,
        type_key: row.get(first + 3)?,
        master_identifier: row.get(first + 4)?,
        security_labels: decode_labels(&labels),
        version: u32::try_from(version).map_err(|_| corrupt(first + 6, "version"))?,
        last_updated: row.get(first + 7)?,
        json: json(row, first + 8, codec)?,
    })
}

/// The JSON in column `column`, with its dictionary id in the next one:
/// a BLOB compressed with that dictionary, or (rows written before schema
/// step 3) plain TEXT with no dictionary.
pub(super) fn json(row: &Row<'_>, column: usize, codec: &JsonCodec) -> rusqlite::Result<String> {
    let dictionary: Option<i64> = row.get(column + 1)?;
    match (row.get_ref(column)?, dictionary) {
        (ValueRef::Blob(frame), Some(id)) => codec.decompress(id, frame).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(column, Type::Blob, Box::new(e))
        }),
        (ValueRef::Text(_), None) => row.get(column),
        _ => Err(corrupt(column, "json")),
    }
}

/// The dictionary a failed read needed, when that is why it failed: a
/// dictionary another process added after this one loaded the table.
pub(super) fn missing_dictionary(error: &rusqlite::Error) -> Option<i64> {
    match error {
        rusqlite::Error::FromSqlConversionFailure(_, _, inner) => {
            match inner.downcast_ref::<CodecError>() {
                Some(CodecError::UnknownDictionary(id)) => Some(*id),
                _ => None,
            }
        }
        _ => None,
    }
}

pub(super) fn corrupt(column: usize, name: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        column,
        Type::Text,
        Box::new(FromSqlError::Other(
            format!("stored {name} is not valid").into(),
        )),
    )
}

/// Joins labels with `,`. Label codes are short tokens such as `R` or `V`, so
/// the column is usually just `R,V`; a `\` or `,` inside a code is escaped with
/// `\` so any list still round-trips exactly.
pub(super) fn encode_labels(labels: &[String]) -> String {
    let mut out = String::new();
    for (i, label) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        for c in label.chars() {
            if c == ',' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        }
    }
    out
}

/// Inverse of [`encode_labels`]. The empty string is the empty list (so a
/// single empty label does not round-trip; codes are never empty).
pub(super) fn decode_labels(text: &str) -> Vec<String> {
    if text.is_empty() {
        return Vec::new();
    }
    let mut labels = Vec::new();
    let mut current = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => current.extend(chars.next()),
            ',' => labels.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    labels.push(current);
    labels
}

/// Maps a SQLite failure to the store's error. Lock contention, I/O failures
/// and a full or read-only disk are conditions of the machine, which may pass:
/// `Unavailable`. Anything else means a bug or a damaged file: `Internal`. The
/// message carries SQLite's error text, never the SQL or bound values.
pub(super) fn sqlite_error(error: rusqlite::Error) -> StoreError {
    if super::setup::is_transient(&error) {
        StoreError::Unavailable(format!("sqlite: {error}"))
    } else {
        StoreError::Internal(format!("sqlite: {error}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_round_trip() {
        let cases: [&[&str]; 5] = [
            &[],
            &["R"],
            &["R", "V"],
            &["a,b", "c\\d", ""],
            &["x\\", ","],
        ];
        for case in cases {
            let labels: Vec<String> = case.iter().map(|s| s.to_string()).collect();
            let encoded = encode_labels(&labels);
            assert_eq!(decode_labels(&encoded), labels, "{encoded:?}");
        }
        assert_eq!(encode_labels(&["R".into(), "V".into()]), "R,V");
    }

    #[test]
    fn busy_is_unavailable_and_misuse_is_internal() {
        let busy = rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(5), None);
        assert!(matches!(sqlite_error(busy), StoreError::Unavailable(_)));
        let full = rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(13), None);
        assert!(matches!(sqlite_error(full), StoreError::Unavailable(_)));
        let constraint = rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(19), None);
        assert!(matches!(sqlite_error(constraint), StoreError::Internal(_)));
        assert!(matches!(
            sqlite_error(rusqlite::Error::QueryReturnedNoRows),
            StoreError::Internal(_)
        ));
    }
}
