//! Searches: the query model, its parsing from FHIR search parameters, opaque
//! page cursors bound to the query, and paging over a patient's pointers.

mod cursor;
mod page;
mod params;

pub use cursor::{Cursor, decode_position, encode_position};
pub use page::{Page, paginate};
pub use params::{Audience, SearchLimits, parse, require_permitted};

use crate::permissions::TypeSet;
use crate::{NhsNumber, OdsCode};

/// A validated search. Optional filters are ORs within themselves and ANDs
/// between each other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchQuery {
    pub audience: Audience,
    pub subject: NhsNumber,
    pub types: Option<TypeSet>,
    /// Category codes (SNOMED CT).
    pub categories: Option<Vec<String>>,
    pub custodians: Option<Vec<OdsCode>>,
    /// Entries per page.
    pub count: usize,
    /// `_summary=count`: the total only, no entries.
    pub summary_count: bool,
    /// Where the previous page stopped.
    pub cursor: Option<Cursor>,
}

impl SearchQuery {
    /// A fingerprint of the filters (not the page size or position), so a cursor
    /// issued for one query is refused for another.
    pub fn fingerprint(&self) -> u64 {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update([self.audience as u8, u8::from(self.summary_count)]);
        h.update(self.subject.as_u64().to_be_bytes());
        h.update(
            self.types
                .map(|t| t.bits())
                .unwrap_or(u64::MAX)
                .to_be_bytes(),
        );
        for c in self.categories.iter().flatten() {
            h.update(c.as_bytes());
            h.update([0]);
        }
        h.update([1]);
        for c in self.custodians.iter().flatten() {
            h.update(c.as_str().as_bytes());
            h.update([0]);
        }
        let digest = h.finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        u64::from_be_bytes(first)
    }
}
