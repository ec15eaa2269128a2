//! Rules on the resource as a whole: its type, status and dates.

use fhir::DocumentReference;

use crate::issue::{ErrorCode, Issue, IssueType};
use crate::systems::DOC_STATUS;
use crate::{OdsCode, PointerId, clock};

pub(super) fn check(doc: &DocumentReference, issues: &mut Vec<Issue>) {
    if doc.resource_type.as_deref() != Some("DocumentReference") {
        issues.push(Issue::invalid(
            "DocumentReference.resourceType",
            "resourceType must be 'DocumentReference'",
        ));
    }
    // Elements outside FHIR R4 DocumentReference are refused by the R4 check
    // (`r4`), whose element list is generated from the definitions.
    match doc.status.as_deref() {
        Some("current") => {}
        None => issues.push(Issue::required("DocumentReference.status")),
        Some(other) => issues.push(Issue::invalid(
            "DocumentReference.status",
            format!("status must be 'current', not '{other}'"),
        )),
    }
    if let Some(doc_status) = doc.doc_status.as_deref()
        && !DOC_STATUS.contains(&doc_status)
    {
        issues.push(Issue::invalid(
            "DocumentReference.docStatus",
            format!("docStatus must be one of {}", DOC_STATUS.join(", ")),
        ));
    }
    if let Some(date) = doc.date.as_deref()
        && !clock::is_date_time(date)
    {
        issues.push(Issue::invalid(
            "DocumentReference.date",
            "date must be a dateTime with a time zone, e.g. 2024-01-31T09:00:00Z",
        ));
    }
}

/// A client may choose the id (so imports can be re-run), provided it is a
/// valid pointer id prefixed with the caller's own ODS code.
pub(super) fn id(
    doc: &DocumentReference,
    caller: &OdsCode,
    issues: &mut Vec<Issue>,
) -> Option<PointerId> {
    let text = doc.id.as_deref()?;
    let Some(id) = PointerId::parse(text) else {
        issues.push(Issue::new(
            ErrorCode::InvalidResource,
            IssueType::Value,
            "DocumentReference.id",
            "id must be '<ODS code>-<local id>' of letters, digits, '_' and '-', at most 64 characters",
        ));
        return None;
    };
    if id.custodian_prefix().as_ref() != Some(caller) {
        issues.push(Issue::invalid(
            "DocumentReference.id",
            format!("id must start with your ODS code followed by '-' ({caller}-...)"),
        ));
        return None;
    }
    Some(id)
}
