//! Every rule a pointer must satisfy, applied in one pass that reports all the
//! issues of a payload together. Each issue names the element at fault with a
//! FHIRPath expression rooted at `DocumentReference`.

mod content;
pub mod r4;
mod references;
mod resource;
mod terminology;
mod update;

use fhir::{DocumentReference, Meta};

use crate::catalogue::{Catalogue, PointerType};
use crate::permissions::TypeSet;
use crate::{Issue, NhsNumber, OdsCode, PointerId, PointerRecord, Supersede};

pub use update::check_immutable_fields;

/// What validation needs to know about the caller.
pub struct ValidationContext<'a> {
    pub catalogue: &'static Catalogue,
    /// The ODS code the producer acts for; the pointer's custodian must equal it.
    pub caller: &'a OdsCode,
    /// Pointer types the producer may create.
    pub permitted_types: TypeSet,
}

/// The facts of a pointer that passed every rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidPointer {
    pub id: Option<PointerId>,
    pub nhs_number: NhsNumber,
    pub custodian: OdsCode,
    pub pointer_type: &'static PointerType,
    pub master_identifier: Option<String>,
    pub security_labels: Vec<String>,
    pub supersedes: Vec<Supersede>,
}

impl ValidPointer {
    /// Stamps the server-owned elements (`id`, `meta.versionId`,
    /// `meta.lastUpdated`, and `date` when absent) and serialises the pointer once,
    /// as it will be served from now on.
    pub fn into_record(
        self,
        mut doc: DocumentReference,
        id: PointerId,
        version: u32,
        now: &str,
    ) -> Result<PointerRecord, serde_json::Error> {
        doc.id = Some(id.to_string());
        let meta = doc.meta.get_or_insert_with(Meta::default);
        meta.version_id = Some(version.to_string());
        meta.last_updated = Some(now.to_owned());
        if doc.date.is_none() {
            doc.date = Some(now.to_owned());
        }
        Ok(PointerRecord {
            json: serde_json::to_string(&doc)?,
            id,
            nhs_number: self.nhs_number,
            custodian: self.custodian,
            type_key: self.pointer_type.key(),
            master_identifier: self.master_identifier,
            security_labels: self.security_labels,
            version,
            last_updated: now.to_owned(),
        })
    }
}

/// A DocumentReference as a client sent it: parsed, with the FHIR R4 issues
/// of its JSON text (which sees what the typed parse drops: `null`s, repeated
/// keys). Validate it with [`validate_submission`].
#[derive(Debug, Clone)]
pub struct Submission {
    pub doc: DocumentReference,
    r4_issues: Vec<Issue>,
}

impl Submission {
    /// Parses JSON text. `Err` holds every issue when it cannot be read as a
    /// DocumentReference at all: not JSON (`MESSAGE_NOT_WELL_FORMED`), or an
    /// element of the wrong JSON type (each one, from the R4 check).
    pub fn parse(json: &[u8]) -> Result<Submission, Vec<Issue>> {
        match std::str::from_utf8(json) {
            Ok(text) => Submission::parse_text(text),
            // Not UTF-8: not JSON either, and serde_json's error reading the
            // bytes says where.
            Err(_) => match serde_json::from_slice::<serde::de::IgnoredAny>(json) {
                Err(e) => Err(vec![not_well_formed(&e)]),
                Ok(_) => Err(vec![Issue::general(
                    crate::ErrorCode::MessageNotWellFormed,
                    crate::IssueType::Structure,
                    "the body is not UTF-8 text".to_owned(),
                )]),
            },
        }
    }

    /// [`Submission::parse`] for text already known to be UTF-8. Both passes
    /// (the R4 walk and the typed parse) read it as text, which spares
    /// serde_json a UTF-8 check of every string.
    pub fn parse_text(text: &str) -> Result<Submission, Vec<Issue>> {
        let mut r4_issues = Vec::new();
        if let Err(e) = r4::check_text(text, &mut r4_issues) {
            return Err(vec![not_well_formed(&e)]);
        }
        match serde_json::from_str::<DocumentReference>(text) {
            Ok(doc) => Ok(Submission { doc, r4_issues }),
            // The R4 walk skips what it refuses unread; the typed parse reads
            // all, and finds the nesting past serde_json's limit in there.
            Err(e) if e.is_syntax() || e.is_eof() => Err(vec![not_well_formed(&e)]),
            Err(_) if !r4_issues.is_empty() => Err(r4_issues),
            Err(e) => Err(vec![Issue::new(
                crate::ErrorCode::InvalidResource,
                crate::IssueType::Structure,
                "DocumentReference",
                format!("the body is not a DocumentReference: {e}"),
            )]),
        }
    }

    /// The FHIR R4 issues found in the text.
    pub fn r4_issues(&self) -> &[Issue] {
        &self.r4_issues
    }
}

fn not_well_formed(e: &serde_json::Error) -> Issue {
    Issue::general(
        crate::ErrorCode::MessageNotWellFormed,
        crate::IssueType::Structure,
        format!("the body is not well-formed JSON: {e}"),
    )
}

/// Checks `doc` against FHIR R4 (as it will be serialised) and every NRL v3
/// rule (and nrls's stricter ones). For a body a client sent, prefer
/// [`Submission::parse`] and [`validate_submission`], which also see the
/// `null`s and repeated keys a typed parse drops and do not serialise again.
pub fn validate(
    doc: &DocumentReference,
    ctx: &ValidationContext<'_>,
) -> Result<ValidPointer, Vec<Issue>> {
    let mut issues = Vec::new();
    r4::check_document(doc, &mut issues);
    nrl_rules(doc, ctx, issues)
}

/// Checks a parsed body: its FHIR R4 issues, then every NRL v3 rule, all
/// reported together (an NRL issue on an element the R4 check already named
/// is left out: one element, one complaint).
pub fn validate_submission(
    submission: &Submission,
    ctx: &ValidationContext<'_>,
) -> Result<ValidPointer, Vec<Issue>> {
    nrl_rules(&submission.doc, ctx, submission.r4_issues.clone())
}

fn nrl_rules(
    doc: &DocumentReference,
    ctx: &ValidationContext<'_>,
    r4_issues: Vec<Issue>,
) -> Result<ValidPointer, Vec<Issue>> {
    let mut issues = Vec::new();
    resource::check(doc, &mut issues);
    let id = resource::id(doc, ctx.caller, &mut issues);
    let nhs_number = references::subject(doc, &mut issues);
    let custodian = references::custodian(doc, ctx.caller, &mut issues);
    references::author(doc, &mut issues);
    let pointer_type = terminology::pointer_type(doc, ctx, &mut issues);
    terminology::category(doc, pointer_type, &mut issues);
    content::check(doc, &mut issues);
    let supersedes = references::relates_to(doc, &mut issues);
    let master_identifier = references::master_identifier(doc, &mut issues);
    let security_labels = terminology::security_labels(doc, &mut issues);
    if !r4_issues.is_empty() {
        merge(&mut issues, r4_issues);
    }

    match (nhs_number, custodian, pointer_type) {
        (Some(nhs_number), Some(custodian), Some(pointer_type)) if issues.is_empty() => {
            Ok(ValidPointer {
                id,
                nhs_number,
                custodian,
                pointer_type,
                master_identifier,
                security_labels,
                supersedes,
            })
        }
        _ => Err(issues),
    }
}

/// Puts the R4 issues first, with one issue per element: where an NRL rule
/// names the same element, its issue wins when it carries a specific NRL code
/// (`INVALID_NHS_NUMBER` tells a client more than "empty string"), the R4 one
/// otherwise.
fn merge(nrl: &mut Vec<Issue>, mut r4_issues: Vec<Issue>) {
    let same = |a: &Issue, b: &Issue| a.expression.is_some() && a.expression == b.expression;
    let generic = |i: &Issue| i.code == crate::ErrorCode::InvalidResource;
    r4_issues.retain(|r| !nrl.iter().any(|n| same(n, r) && !generic(n)));
    nrl.retain(|n| !(generic(n) && r4_issues.iter().any(|r| same(n, r))));
    nrl.splice(0..0, r4_issues);
}

#[cfg(test)]
pub(crate) mod tests;
