//! Rules that compare an update with the pointer it replaces.

use fhir::DocumentReference;

use crate::issue::Issue;

/// Elements a producer may not change once a pointer exists (NRL v3).
/// `date` may be omitted on update, in which case the stored one is kept.
pub fn check_immutable_fields(new: &DocumentReference, old: &DocumentReference) -> Vec<Issue> {
    let mut issues = Vec::new();
    let mut same = |changed: bool, element: &str| {
        if changed {
            issues.push(Issue::invalid(
                format!("DocumentReference.{element}"),
                format!("{element} cannot be changed by an update"),
            ));
        }
    };
    let ident = |r: &Option<fhir::Reference>| {
        r.as_ref()
            .and_then(|r| r.identifier.as_ref())
            .map(|i| (i.system.clone(), i.value.clone()))
    };
    same(ident(&new.subject) != ident(&old.subject), "subject");
    same(ident(&new.custodian) != ident(&old.custodian), "custodian");
    let codes = |d: &DocumentReference| {
        d.kind.as_ref().map(|k| {
            k.codings()
                .iter()
                .map(|c| (c.system.clone(), c.code.clone()))
                .collect::<Vec<_>>()
        })
    };
    same(codes(new) != codes(old), "type");
    let master = |d: &DocumentReference| {
        d.master_identifier
            .as_ref()
            .map(|m| (m.system.clone(), m.value.clone()))
    };
    same(master(new) != master(old), "masterIdentifier");
    same(new.date.is_some() && new.date != old.date, "date");
    same(
        new.relates_to.is_some() && new.relates_to != old.relates_to,
        "relatesTo",
    );
    issues
}
