//! Synthetic pointers: valid NRL v3 DocumentReferences for NHS numbers in the
//! never-issued 999 range. Used by the demo and by the benchmark data generator.

use domain::catalogue::PointerType;
use domain::{NhsNumber, OdsCode};
use serde_json::{Value, json};

/// What varies between synthetic pointers.
pub struct PointerSpec<'a> {
    pub nhs_number: NhsNumber,
    pub custodian: &'a OdsCode,
    pub pointer_type: &'a PointerType,
    /// Unique per custodian; becomes the id suffix and the masterIdentifier.
    pub local_id: &'a str,
    /// Seconds since 2020-01-01, for `date` and `attachment.creation`.
    pub created_offset: u32,
}

/// Clinical summaries are structured and fetched directly (the record source a
/// shared care record publishes); every other type is an SSP-retrieved PDF.
pub fn document_reference(spec: &PointerSpec<'_>) -> Value {
    let t = spec.pointer_type;
    let ods = spec.custodian.as_str();
    let structured = t.code == "887181000000106";
    let created = timestamp(spec.created_offset);
    let (content_type, url, format, format_display, stability, mechanism) = if structured {
        (
            "application/fhir+json",
            format!(
                "https://{}.records.example.nhs.uk/FHIR/R4/Patient/{}",
                ods.to_ascii_lowercase(),
                spec.local_id
            ),
            "urn:nhs-ic:structured",
            "Structured Document",
            "dynamic",
            "Direct",
        )
    } else {
        (
            "application/pdf",
            format!(
                "ssp://{}.thirdparty.nhs.uk/documents/{}.pdf",
                ods.to_ascii_lowercase(),
                spec.local_id
            ),
            "urn:nhs-ic:unstructured",
            "Unstructured Document",
            "static",
            "SSP",
        )
    };
    let mut context = json!({
        "practiceSetting": {"coding": [{"system": "http://snomed.info/sct", "code": "788002001", "display": "Adult mental health service"}]},
    });
    if !structured {
        context["related"] = json!([{"identifier": {"system": "https://fhir.nhs.uk/Id/nhsSpineASID", "value": asid(ods)}}]);
    }
    json!({
        "resourceType": "DocumentReference",
        "id": format!("{ods}-{}", spec.local_id),
        "masterIdentifier": {"system": "urn:ietf:rfc:3986", "value": format!("urn:nrls:demo:{ods}:{}", spec.local_id)},
        "status": "current",
        "docStatus": "final",
        "type": {"coding": [{"system": t.system, "code": t.code, "display": t.display}]},
        "category": [{"coding": [{"system": "http://snomed.info/sct", "code": t.category_code, "display": t.category_display}]}],
        "subject": {"identifier": {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": spec.nhs_number.to_string()}},
        "date": created,
        "author": [{"identifier": {"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": ods}}],
        "custodian": {"identifier": {"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": ods}},
        "description": format!("{} held by {ods}", t.display),
        "content": [{
            "attachment": {"contentType": content_type, "url": url, "title": t.display, "creation": created},
            "format": {"system": "https://fhir.nhs.uk/England/CodeSystem/England-NRLFormatCode", "code": format, "display": format_display},
            "extension": [
                {"url": "https://fhir.nhs.uk/England/StructureDefinition/Extension-England-ContentStability",
                 "valueCodeableConcept": {"coding": [{"system": "https://fhir.nhs.uk/England/CodeSystem/England-NRLContentStability", "code": stability}]}},
                {"url": "https://fhir.nhs.uk/England/StructureDefinition/Extension-England-NRLRetrievalMechanism",
                 "valueCodeableConcept": {"coding": [{"system": "https://fhir.nhs.uk/England/CodeSystem/England-NRLRetrievalMechanism", "code": mechanism}]}}
            ]
        }],
        "context": context,
    })
}

/// A stable 12-digit ASID per organisation.
fn asid(ods: &str) -> String {
    let n = ods.bytes().fold(200_000_000_000u64, |acc, b| {
        (acc * 31 + u64::from(b)) % 900_000_000_000
    });
    format!("{:012}", 100_000_000_000 + n)
}

/// `2020-01-01T00:00:00Z` plus `offset` seconds, as a FHIR dateTime.
fn timestamp(offset: u32) -> String {
    let days = offset / 86_400;
    let rem = offset % 86_400;
    // Whole months of 28 days keep every generated date valid and monotonic.
    let (year, month, day) = (2020 + days / 336, 1 + (days % 336) / 28, 1 + days % 28);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::catalogue::Catalogue;
    use domain::permissions::TypeSet;
    use domain::validation::{ValidationContext, validate};

    #[test]
    fn every_type_generates_a_valid_pointer() {
        let catalogue = Catalogue::nrl_v3();
        let ods = OdsCode::parse("RR8").unwrap();
        for (i, t) in catalogue.types().iter().enumerate() {
            let spec = PointerSpec {
                nhs_number: NhsNumber::parse("9999999999").unwrap(),
                custodian: &ods,
                pointer_type: t,
                local_id: &format!("p{i}"),
                created_offset: (i as u32) * 1_000_003,
            };
            let doc: fhir::DocumentReference =
                serde_json::from_value(document_reference(&spec)).unwrap();
            let ctx = ValidationContext {
                catalogue,
                caller: &ods,
                permitted_types: TypeSet::all(catalogue),
            };
            if let Err(issues) = validate(&doc, &ctx) {
                panic!("{}: {issues:#?}", t.code);
            }
        }
    }
}
