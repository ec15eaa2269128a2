//! The extensions and code systems nrls writes on converged resources.
//!
//! The URLs live under the project's placeholder namespace until the profiles
//! are published; docs/federation.md describes each one.

use serde_json::{Value, json};

use super::Conflict;
use crate::OdsCode;
use crate::systems::ODS_CODE;

/// Base of the nrls-defined FHIR artefacts.
pub const NRLS_FHIR_BASE: &str = "https://example.invalid/nrls/fhir";
/// Complex extension: how many sources reported the entry (`count`) and which
/// (`source`, one ODS identifier each).
pub const SOURCES_EXT: &str =
    "https://example.invalid/nrls/fhir/StructureDefinition/converged-sources";
/// Complex extension: one element the sources disagree on (`element`), what
/// each reported (`reported` with `source` and `value`) and, where a rule
/// picked a value, the rule (`resolution`).
pub const CONFLICT_EXT: &str =
    "https://example.invalid/nrls/fhir/StructureDefinition/convergence-conflict";
/// `meta.tag` system for convergence facts (`conflict`) and record
/// completeness (`complete`, `partial`).
pub const TAG_SYSTEM: &str = "https://example.invalid/nrls/fhir/CodeSystem/shared-care-record";

fn ods_identifier(ods: &OdsCode) -> Value {
    json!({"system": ODS_CODE, "value": ods.as_str()})
}

/// The converged-sources extension for `sources` (sorted, distinct).
pub fn sources_extension(sources: &[OdsCode]) -> Value {
    let mut parts = vec![json!({"url": "count", "valueInteger": sources.len()})];
    parts.extend(
        sources
            .iter()
            .map(|s| json!({"url": "source", "valueIdentifier": ods_identifier(s)})),
    );
    json!({"url": SOURCES_EXT, "extension": parts})
}

/// The convergence-conflict extension for one disagreement.
pub fn conflict_extension(conflict: &Conflict) -> Value {
    let mut parts = vec![json!({"url": "element", "valueString": conflict.element})];
    parts.extend(conflict.reported.iter().map(|(source, value)| {
        json!({"url": "reported", "extension": [
            {"url": "source", "valueIdentifier": ods_identifier(source)},
            {"url": "value", "valueString": value},
        ]})
    }));
    if let Some(resolution) = &conflict.resolution {
        parts.push(json!({"url": "resolution", "valueString": resolution}));
    }
    json!({"url": CONFLICT_EXT, "extension": parts})
}

/// Appends `extension` to the resource's `extension` array.
pub(crate) fn push_extension(resource: &mut Value, extension: Value) {
    let Some(object) = resource.as_object_mut() else {
        return;
    };
    let slot = object
        .entry("extension")
        .or_insert_with(|| Value::Array(Vec::new()));
    if !slot.is_array() {
        *slot = Value::Array(Vec::new());
    }
    if let Some(list) = slot.as_array_mut() {
        list.push(extension);
    }
}

/// Adds a `meta.tag` coding from [`TAG_SYSTEM`].
pub fn push_tag(resource: &mut Value, code: &str, display: &str) {
    let Some(object) = resource.as_object_mut() else {
        return;
    };
    let meta = object.entry("meta").or_insert_with(|| json!({}));
    if !meta.is_object() {
        *meta = json!({});
    }
    let tags = &mut meta["tag"];
    if !tags.is_array() {
        *tags = Value::Array(Vec::new());
    }
    if let Some(list) = tags.as_array_mut() {
        list.push(json!({"system": TAG_SYSTEM, "code": code, "display": display}));
    }
}
