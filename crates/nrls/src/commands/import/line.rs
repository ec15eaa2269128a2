//! One NDJSON line to one stored record, with the API's validation.

use domain::catalogue::Catalogue;
use domain::clock::is_date_time;
use domain::permissions::TypeSet;
use domain::validation::{Submission, ValidationContext, validate_submission};
use domain::{OdsCode, PointerId, PointerRecord};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// Why a line was not stored: one entry per issue, as written to the error file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LineIssue {
    pub line: u64,
    /// FHIRPath of the element at fault, rooted at `DocumentReference`.
    pub expression: String,
    /// The Spine error code the API would have answered with.
    pub code: String,
    pub reason: String,
}

/// Parses and validates one line exactly as `POST /producer/.../DocumentReference`
/// would for a producer acting for the pointer's own custodian and allowed
/// every pointer type, then stamps it for storage.
///
/// Differences from the API, all for idempotent re-runs: the id is kept when
/// given and otherwise derived from a hash of the line (not random);
/// `meta.versionId` and `meta.lastUpdated` are kept when present (so an export
/// re-imports byte for byte); a pointer without `meta.lastUpdated` is stamped
/// with its `date`, or with `fallback_now` when it has none.
pub fn to_record(
    line_number: u64,
    line: &str,
    fallback_now: &str,
) -> Result<PointerRecord, Vec<LineIssue>> {
    let issue = |expression: &str, code: &str, reason: String| LineIssue {
        line: line_number,
        expression: expression.to_owned(),
        code: code.to_owned(),
        reason,
    };
    let to_line_issues = |issues: Vec<domain::Issue>| {
        issues
            .into_iter()
            .map(|i| LineIssue {
                line: line_number,
                expression: i
                    .expression
                    .unwrap_or_else(|| "DocumentReference".to_owned()),
                code: i.code.as_str().to_owned(),
                reason: i.diagnostics,
            })
            .collect::<Vec<_>>()
    };
    let submission = Submission::parse_text(line).map_err(to_line_issues)?;
    let doc = &submission.doc;
    let custodian = doc
        .custodian
        .as_ref()
        .and_then(|c| c.identifier.as_ref())
        .and_then(|i| i.value.as_deref())
        .and_then(OdsCode::parse)
        .ok_or_else(|| {
            vec![issue(
                "DocumentReference.custodian.identifier.value",
                "INVALID_RESOURCE",
                "an import needs the custodian's ODS code: it acts as that producer".into(),
            )]
        })?;
    let catalogue = Catalogue::nrl_v3();
    let ctx = ValidationContext {
        catalogue,
        caller: &custodian,
        permitted_types: TypeSet::all(catalogue),
    };
    let mut valid = validate_submission(&submission, &ctx).map_err(to_line_issues)?;
    let id = match valid.id.take() {
        Some(id) => id,
        None => derived_id(&custodian, line).ok_or_else(|| {
            vec![issue(
                "DocumentReference.id",
                "INVALID_RESOURCE",
                "cannot derive an id from this custodian's ODS code".into(),
            )]
        })?,
    };
    let meta = doc.meta.as_ref();
    let version = meta
        .and_then(|m| m.version_id.as_deref())
        .and_then(|v| v.parse::<u32>().ok())
        .filter(|v| *v >= 1)
        .unwrap_or(1);
    let stamp = meta
        .and_then(|m| m.last_updated.as_deref())
        .or(doc.date.as_deref())
        .filter(|t| is_date_time(t))
        .unwrap_or(fallback_now)
        .to_owned();
    // Supersedes are producer requests ("delete that one as you create this"),
    // not part of a pointer at rest: an import loads pointers as they are.
    valid.supersedes.clear();
    valid
        .into_record(submission.doc, id, version, &stamp)
        .map_err(|e| {
            vec![issue(
                "DocumentReference",
                "INTERNAL_SERVER_ERROR",
                format!("cannot serialise the pointer: {e}"),
            )]
        })
}

/// `<ODS>-i<first 128 bits of SHA-256 of the line, hex>`: the same line always
/// gets the same id, so re-running an import never duplicates it.
fn derived_id(custodian: &OdsCode, line: &str) -> Option<PointerId> {
    let digest = Sha256::digest(line.as_bytes());
    let mut local = String::with_capacity(33);
    local.push('i');
    for b in &digest[..16] {
        local.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
        local.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
    }
    PointerId::generate(custodian, &local)
}
