//! Paging over one patient's pointers, newest first. The same code serves every
//! backend, so paging behaves identically whatever the store.

use super::{Cursor, SearchQuery};
use crate::catalogue::Catalogue;
use crate::{OdsCode, PointerRecord};

/// The result of a search: the total of all matches and one page of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<'r> {
    pub total: u64,
    pub entries: Vec<&'r PointerRecord>,
    pub next: Option<Cursor>,
}

/// Filters `rows` (newest first, with their sequence) by the query and by
/// `visible` (the caller's access rules), counts every match and keeps one page.
pub fn paginate<'r>(
    query: &SearchQuery,
    catalogue: &Catalogue,
    rows: impl IntoIterator<Item = (i64, &'r PointerRecord)>,
    visible: impl Fn(&PointerRecord) -> bool,
) -> Page<'r> {
    let start = query.cursor.map(|c| c.before_seq).unwrap_or(i64::MAX);
    let fingerprint = query.fingerprint();
    let mut total = 0u64;
    let mut entries = Vec::new();
    let mut last_kept = None;
    let mut more = false;
    for (seq, record) in rows {
        if !matches(query, catalogue, record) || !visible(record) {
            continue;
        }
        total += 1;
        if query.summary_count || seq >= start {
            continue;
        }
        if entries.len() < query.count {
            entries.push(record);
            last_kept = Some(seq);
        } else {
            more = true;
        }
    }
    let next = match (more, last_kept) {
        (true, Some(before_seq)) => Some(Cursor {
            before_seq,
            fingerprint,
        }),
        _ => None,
    };
    Page {
        total,
        entries,
        next,
    }
}

fn matches(query: &SearchQuery, catalogue: &Catalogue, record: &PointerRecord) -> bool {
    if record.nhs_number != query.subject {
        return false;
    }
    let Some(pointer_type) = catalogue.find_key(&record.type_key) else {
        return false;
    };
    if let Some(types) = query.types
        && !types.contains(pointer_type.index)
    {
        return false;
    }
    if let Some(categories) = &query.categories
        && !categories.iter().any(|c| c == &pointer_type.category_code)
    {
        return false;
    }
    if let Some(custodians) = &query.custodians
        && !custodians.iter().any(|c: &OdsCode| c == &record.custodian)
    {
        return false;
    }
    true
}
