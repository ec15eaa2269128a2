//! Every rule a pointer must satisfy, applied in one pass that reports all the
//! issues of a payload together. Each issue names the element at fault with a
//! FHIRPath expression rooted at `DocumentReference`.

mod content;
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

/// Checks `doc` against every NRL v3 rule (and nrls's stricter ones).
pub fn validate(
    doc: &DocumentReference,
    ctx: &ValidationContext<'_>,
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

#[cfg(test)]
mod tests;
