//! FHIR R4 (4.0.1) validity of a DocumentReference, element by element: the
//! rules come from the R4 StructureDefinitions through a generated table
//! (`table.rs`, written by `scripts/gen-fhir-r4-rules`), so they cannot drift
//! from the standard.
//!
//! What is checked, over the JSON text itself (so `null`s and repeated keys,
//! which a typed parse would drop, are seen):
//! - every key is an element of its type (or a primitive's `_name` companion);
//! - cardinality: required elements present, repeating ones are arrays and
//!   single ones are not;
//! - every primitive has its JSON type and matches its type's pattern;
//! - no `null`, no empty string, array or object anywhere (ele-1);
//! - a choice element (`value[x]`) has one variant;
//! - an extension has a value or nested extensions, not both and not neither (ext-1);
//! - `contained` resources are refused: an NRL pointer needs none.
//!
//! Not checked: the other invariants of the datatypes (e.g. a Period's start
//! before its end), value sets, and XHTML beyond the narrative's shape.

mod model;
mod primitive;
#[rustfmt::skip]
mod table;
mod walk;

#[cfg(test)]
mod properties;
#[cfg(test)]
mod tests;

use fhir::DocumentReference;
use serde::de::DeserializeSeed;

use crate::issue::Issue;
pub use model::Primitive;
use model::Type;
pub use table::{FHIR_VERSION, PATTERNS};

/// Checks the JSON text of a DocumentReference against FHIR R4, appending one
/// issue per violation. `Err` only when the text is not JSON at all.
pub fn check_json(json: &[u8], issues: &mut Vec<Issue>) -> Result<(), serde_json::Error> {
    match std::str::from_utf8(json) {
        Ok(text) => check_text(text, issues),
        // Read as bytes, the error names where the text stops being UTF-8.
        Err(_) => walk_text(&mut serde_json::Deserializer::from_slice(json), issues),
    }
}

/// [`check_json`] for text already known to be UTF-8: one check of the whole
/// text is far cheaper than serde_json's check of every string it reads from
/// bytes.
pub fn check_text(text: &str, issues: &mut Vec<Issue>) -> Result<(), serde_json::Error> {
    walk_text(&mut serde_json::Deserializer::from_str(text), issues)
}

fn walk_text<'de, R: serde_json::de::Read<'de>>(
    de: &mut serde_json::Deserializer<R>,
    issues: &mut Vec<Issue>,
) -> Result<(), serde_json::Error> {
    let root = walk::Path::ROOT;
    walk::Node {
        issues,
        path: &root,
        ty: Type::Complex(table::DOCUMENT_REFERENCE),
        many: false,
    }
    .deserialize(&mut *de)?;
    de.end()
}

/// Checks a DocumentReference as it would be serialised (and so stored).
pub fn check_document(doc: &DocumentReference, issues: &mut Vec<Issue>) {
    match serde_json::to_vec(doc) {
        Ok(json) => {
            // Our own serialisation is always JSON; were it not, the walk
            // would have nothing to report beyond that.
            let _ = check_json(&json, issues);
        }
        Err(e) => issues.push(Issue::general(
            crate::ErrorCode::InvalidResource,
            crate::IssueType::Structure,
            format!("the pointer cannot be serialised: {e}"),
        )),
    }
}
