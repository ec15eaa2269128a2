//! Rules on the references of a pointer: patient, custodian, author,
//! master identifier and the pointers it supersedes.

use fhir::{DocumentReference, Identifier, Reference};

use crate::issue::{ErrorCode, Issue, IssueType};
use crate::systems::{NHS_NUMBER, ODS_CODE};
use crate::{NhsNumber, OdsCode, PointerId, Supersede};

/// Reads `<path>.identifier` of a reference, reporting what is missing.
fn identifier<'d>(
    reference: Option<&'d Reference>,
    path: &str,
    issues: &mut Vec<Issue>,
) -> Option<&'d Identifier> {
    let Some(reference) = reference else {
        issues.push(Issue::required(path));
        return None;
    };
    let Some(identifier) = reference.identifier.as_ref() else {
        issues.push(Issue::required(format!("{path}.identifier")));
        return None;
    };
    Some(identifier)
}

/// Checks the identifier's system, returning its value when both are present.
fn system_value<'d>(
    identifier: &'d Identifier,
    path: &str,
    system: &str,
    issues: &mut Vec<Issue>,
) -> Option<&'d str> {
    match identifier.system.as_deref() {
        Some(s) if s == system => {}
        Some(other) => {
            issues.push(Issue::new(
                ErrorCode::InvalidIdentifierSystem,
                IssueType::Value,
                format!("{path}.identifier.system"),
                format!("identifier system must be '{system}', not '{other}'"),
            ));
            return None;
        }
        None => {
            issues.push(Issue::required(format!("{path}.identifier.system")));
            return None;
        }
    }
    match identifier.value.as_deref() {
        Some(v) => Some(v),
        None => {
            issues.push(Issue::required(format!("{path}.identifier.value")));
            None
        }
    }
}

pub(super) fn subject(doc: &DocumentReference, issues: &mut Vec<Issue>) -> Option<NhsNumber> {
    let path = "DocumentReference.subject";
    let identifier = identifier(doc.subject.as_ref(), path, issues)?;
    let value = system_value(identifier, path, NHS_NUMBER, issues)?;
    match NhsNumber::parse(value) {
        Ok(n) => Some(n),
        Err(e) => {
            issues.push(Issue::new(
                ErrorCode::InvalidNhsNumber,
                IssueType::Value,
                format!("{path}.identifier.value"),
                format!("'{value}' is not a valid NHS number: {e}"),
            ));
            None
        }
    }
}

pub(super) fn custodian(
    doc: &DocumentReference,
    caller: &OdsCode,
    issues: &mut Vec<Issue>,
) -> Option<OdsCode> {
    let path = "DocumentReference.custodian";
    let identifier = identifier(doc.custodian.as_ref(), path, issues)?;
    let value = system_value(identifier, path, ODS_CODE, issues)?;
    let Some(ods) = OdsCode::parse(value) else {
        issues.push(Issue::new(
            ErrorCode::InvalidIdentifierValue,
            IssueType::Value,
            format!("{path}.identifier.value"),
            format!("'{value}' is not an ODS code"),
        ));
        return None;
    };
    if &ods != caller {
        issues.push(Issue::new(
            ErrorCode::AuthorCredentialsError,
            IssueType::Forbidden,
            format!("{path}.identifier.value"),
            format!(
                "the custodian '{ods}' does not match the organisation you act for \
                 (NHSD-End-User-Organisation-ODS: {caller})"
            ),
        ));
        return None;
    }
    Some(ods)
}

pub(super) fn author(doc: &DocumentReference, issues: &mut Vec<Issue>) {
    let authors = doc.author.as_deref().unwrap_or_default();
    if authors.len() != 1 {
        let issue = if authors.is_empty() {
            Issue::required("DocumentReference.author")
        } else {
            Issue::invalid(
                "DocumentReference.author",
                "author must have exactly one entry",
            )
        };
        issues.push(issue);
        return;
    }
    let path = "DocumentReference.author[0]";
    let Some(identifier) = identifier(authors.first(), path, issues) else {
        return;
    };
    if let Some(value) = system_value(identifier, path, ODS_CODE, issues)
        && OdsCode::parse(value).is_none()
    {
        issues.push(Issue::new(
            ErrorCode::InvalidIdentifierValue,
            IssueType::Value,
            format!("{path}.identifier.value"),
            format!("'{value}' is not an ODS code"),
        ));
    }
}

pub(super) fn master_identifier(
    doc: &DocumentReference,
    issues: &mut Vec<Issue>,
) -> Option<String> {
    let mi = doc.master_identifier.as_ref()?;
    let path = "DocumentReference.masterIdentifier";
    match (mi.system.as_deref(), mi.value.as_deref()) {
        (Some(system), Some(value)) if !system.is_empty() && !value.is_empty() => {
            Some(format!("{system}|{value}"))
        }
        (_, None) | (_, Some("")) => {
            issues.push(Issue::required(format!("{path}.value")));
            None
        }
        _ => {
            issues.push(Issue::required(format!("{path}.system")));
            None
        }
    }
}

const RELATION_CODES: &[&str] = &["replaces", "transforms", "signs", "appends"];

pub(super) fn relates_to(doc: &DocumentReference, issues: &mut Vec<Issue>) -> Vec<Supersede> {
    let mut supersedes: Vec<Supersede> = Vec::new();
    for (i, relation) in doc
        .relates_to
        .as_deref()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let path = format!("DocumentReference.relatesTo[{i}]");
        match relation.code.as_deref() {
            Some("replaces") => {}
            Some(code) if RELATION_CODES.contains(&code) => continue,
            Some(code) => {
                issues.push(Issue::invalid(
                    format!("{path}.code"),
                    format!(
                        "relatesTo code must be one of {}, not '{code}'",
                        RELATION_CODES.join(", ")
                    ),
                ));
                continue;
            }
            None => {
                issues.push(Issue::required(format!("{path}.code")));
                continue;
            }
        }
        let target_path = format!("{path}.target.identifier.value");
        let value = relation
            .target
            .as_ref()
            .and_then(|t| t.identifier.as_ref())
            .and_then(|i| i.value.as_deref());
        let Some(value) = value else {
            issues.push(Issue::required(target_path));
            continue;
        };
        match PointerId::parse(value) {
            Some(target) if supersedes.iter().any(|s| s.target == target) => {
                issues.push(Issue::invalid(
                    target_path,
                    format!("pointer {target} is replaced twice"),
                ));
            }
            Some(target) => supersedes.push(Supersede {
                target,
                expression: target_path,
            }),
            None => issues.push(Issue::invalid(
                target_path,
                format!("'{value}' is not a pointer id"),
            )),
        }
    }
    supersedes
}
