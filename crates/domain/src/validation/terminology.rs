//! Rules on coded elements: the pointer type, its category and security labels.

use fhir::DocumentReference;

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

/// Confidentiality codes from `meta.security` and `securityLabel`, deduplicated.
pub(super) fn security_labels(doc: &DocumentReference) -> Vec<String> {
    let from_meta = doc.meta.iter().flat_map(|m| m.security.iter().flatten());
    let from_labels = doc
        .security_label
        .iter()
        .flatten()
        .flat_map(|c| c.codings().iter());
    let mut labels: Vec<String> = from_meta
        .chain(from_labels)
        .filter(|c| c.system.as_deref() == Some(CONFIDENTIALITY))
        .filter_map(|c| c.code.clone())
        .collect();
    labels.sort();
    labels.dedup();
    labels
}
