//! Rules on coded elements: the pointer type, its category and security labels.

use fhir::{Coding, DocumentReference};

use crate::catalogue::PointerType;
use crate::issue::{ErrorCode, Issue, IssueType};
use crate::systems::{CONFIDENTIALITY, SNOMED};
use crate::validation::ValidationContext;

pub(super) fn pointer_type(
    doc: &DocumentReference,
    ctx: &ValidationContext<'_>,
    issues: &mut Vec<Issue>,
) -> Option<&'static PointerType> {
    let path = "DocumentReference.type";
    let Some(kind) = doc.kind.as_ref() else {
        issues.push(Issue::required(path));
        return None;
    };
    let [coding] = kind.codings() else {
        issues.push(Issue::invalid(
            format!("{path}.coding"),
            "type must have exactly one coding",
        ));
        return None;
    };
    let (Some(system), Some(code)) = (coding.system.as_deref(), coding.code.as_deref()) else {
        issues.push(Issue::required(format!("{path}.coding[0].code")));
        return None;
    };
    let Some(found) = ctx.catalogue.find(system, code) else {
        let known_system = ctx.catalogue.types().iter().any(|t| t.system == system);
        let (error, element) = if known_system {
            (ErrorCode::InvalidCodeValue, "code")
        } else {
            (ErrorCode::InvalidCodeSystem, "system")
        };
        issues.push(Issue::new(
            error,
            IssueType::CodeInvalid,
            format!("{path}.coding[0].{element}"),
            format!("'{system}|{code}' is not an NRL pointer type"),
        ));
        return None;
    };
    if !ctx.permitted_types.contains(found.index) {
        issues.push(Issue::new(
            ErrorCode::AccessDeniedLevel,
            IssueType::Forbidden,
            format!("{path}.coding[0]"),
            format!(
                "your organisation is not permitted to produce pointers of type '{}' ({})",
                found.key(),
                found.display
            ),
        ));
        return None;
    }
    Some(found)
}

pub(super) fn category(
    doc: &DocumentReference,
    pointer_type: Option<&PointerType>,
    issues: &mut Vec<Issue>,
) {
    let path = "DocumentReference.category";
    let categories = doc.category.as_deref().unwrap_or_default();
    let [concept] = categories else {
        let issue = if categories.is_empty() {
            Issue::required(path)
        } else {
            Issue::invalid(path, "category must have exactly one entry")
        };
        issues.push(issue);
        return;
    };
    let [coding] = concept.codings() else {
        issues.push(Issue::invalid(
            format!("{path}[0].coding"),
            "category must have exactly one coding",
        ));
        return;
    };
    if coding.system.as_deref() != Some(SNOMED) {
        issues.push(Issue::new(
            ErrorCode::InvalidCodeSystem,
            IssueType::CodeInvalid,
            format!("{path}[0].coding[0].system"),
            format!("category system must be '{SNOMED}'"),
        ));
        return;
    }
    let code = coding.code.as_deref().unwrap_or_default();
    if let Some(t) = pointer_type
        && code != t.category_code
    {
        issues.push(Issue::new(
            ErrorCode::InvalidCodeValue,
            IssueType::CodeInvalid,
            format!("{path}[0].coding[0].code"),
            format!(
                "a '{}' pointer must have category {} ({}), not '{code}'",
                t.display, t.category_code, t.category_display
            ),
        ));
    }
}

/// Other spellings of the confidentiality code system that mean the same:
/// its OID, and the STU3 URL some producers still send.
const CONFIDENTIALITY_ALIASES: [&str; 2] = [
    "urn:oid:2.16.840.1.113883.5.25",
    "http://hl7.org/fhir/v3/Confidentiality",
];

/// The HL7 v3 Confidentiality codes (case-sensitive).
const CONFIDENTIALITY_CODES: [&str; 6] = ["U", "L", "M", "N", "R", "V"];

/// Confidentiality codes from `meta.security` and `securityLabel`,
/// deduplicated. A label the access policy could misread is an issue, never
/// ignored: a pointer whose sensitivity is ambiguous would be shown to
/// everyone (fail open).
pub(super) fn security_labels(doc: &DocumentReference, issues: &mut Vec<Issue>) -> Vec<String> {
    let mut labels = Vec::new();
    let from_meta = doc.meta.iter().flat_map(|m| m.security.iter().flatten());
    for (i, coding) in from_meta.enumerate() {
        let path = format!("DocumentReference.meta.security[{i}]");
        read_label(coding, &path, &mut labels, issues);
    }
    for (i, concept) in doc.security_label.iter().flatten().enumerate() {
        for (j, coding) in concept.codings().iter().enumerate() {
            let path = format!("DocumentReference.securityLabel[{i}].coding[{j}]");
            read_label(coding, &path, &mut labels, issues);
        }
    }
    labels.sort();
    labels.dedup();
    labels
}

fn read_label(coding: &Coding, path: &str, labels: &mut Vec<String>, issues: &mut Vec<Issue>) {
    let Some(system) = coding.system.as_deref() else {
        issues.push(Issue::new(
            ErrorCode::InvalidCodeSystem,
            IssueType::CodeInvalid,
            format!("{path}.system"),
            format!(
                "a security label needs a system: without one nrls cannot tell whether it \
                 restricts access (for confidentiality use {CONFIDENTIALITY})"
            ),
        ));
        return;
    };
    // Not-for-patient-view: kept with the labels so the patient pages can
    // hide the pointer; no access policy treats it as a sensitivity.
    if system == crate::systems::ACT_CODE
        && coding.code.as_deref() == Some(crate::systems::NOT_FOR_PATIENT_VIEW)
    {
        labels.push(crate::systems::NOT_FOR_PATIENT_VIEW.to_owned());
        return;
    }
    if system != CONFIDENTIALITY && !CONFIDENTIALITY_ALIASES.contains(&system) {
        // Another kind of label (purpose, handling caveat): not a sensitivity.
        return;
    }
    let Some(code) = coding.code.as_deref() else {
        issues.push(Issue::required(format!("{path}.code")));
        return;
    };
    if CONFIDENTIALITY_CODES.contains(&code) {
        labels.push(code.to_owned());
        return;
    }
    let hint = CONFIDENTIALITY_CODES
        .iter()
        .find(|c| c.eq_ignore_ascii_case(code))
        .map(|c| format!(" (codes are case-sensitive: did you mean '{c}'?)"))
        .unwrap_or_default();
    issues.push(Issue::new(
        ErrorCode::InvalidCodeValue,
        IssueType::CodeInvalid,
        format!("{path}.code"),
        format!("'{code}' is not a confidentiality code; use one of U, L, M, N, R, V{hint}"),
    ));
}
