//! Synthetic pointers: valid NRL v3 DocumentReferences for NHS numbers in the
//! never-issued 999 range. Used by the demo and by the benchmark data generator
//! (`generator.rs`, behind `nrls generate`).

use domain::catalogue::PointerType;
use domain::{NhsNumber, OdsCode};
use serde_json::Value;

mod generator;

pub(crate) use generator::Rng;
pub use generator::{Dataset, GeneratedPointer};

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
    let mut text = String::with_capacity(1536);
    write_document_reference(spec, &mut text);
    // The writer only emits well-formed JSON (its tests parse every type).
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// Appends the pointer of `spec` to `out` as one line of compact JSON (no
/// newline). Written directly rather than through `serde_json::Value`, which
/// is five times slower: the generator writes hundreds of thousands a second.
pub fn write_document_reference(spec: &PointerSpec<'_>, out: &mut String) {
    use std::fmt::Write;
    let t = spec.pointer_type;
    let ods = spec.custodian.as_str();
    let lower = ods.to_ascii_lowercase();
    let local = spec.local_id;
    let structured = t.code == "887181000000106";
    let mut created = String::with_capacity(20);
    push_timestamp(&mut created, spec.created_offset);
    const ODS_SYSTEM: &str = "https://fhir.nhs.uk/Id/ods-organization-code";
    // `write!` into a String cannot fail.
    let _ = write!(
        out,
        r#"{{"resourceType":"DocumentReference","id":"{ods}-{local}","masterIdentifier":{{"system":"urn:ietf:rfc:3986","value":"urn:nrls:demo:{ods}:{local}"}},"status":"current","docStatus":"final","type":{{"coding":[{{"system":"#
    );
    push_str(out, &t.system);
    out.push_str(r#","code":"#);
    push_str(out, &t.code);
    out.push_str(r#","display":"#);
    push_str(out, &t.display);
    out.push_str(r#"}]},"category":[{"coding":[{"system":"http://snomed.info/sct","code":"#);
    push_str(out, &t.category_code);
    out.push_str(r#","display":"#);
    push_str(out, &t.category_display);
    let _ = write!(
        out,
        r#"}}]}}],"subject":{{"identifier":{{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"{nhs}"}}}},"date":"{created}","author":[{{"identifier":{{"system":"{ODS_SYSTEM}","value":"{ods}"}}}}],"custodian":{{"identifier":{{"system":"{ODS_SYSTEM}","value":"{ods}"}}}},"description":"#,
        nhs = spec.nhs_number,
    );
    push_str(out, &format!("{} held by {ods}", t.display));
    out.push_str(r#","content":[{"attachment":{"contentType":"#);
    if structured {
        let _ = write!(
            out,
            r#""application/fhir+json","url":"https://{lower}.records.example.nhs.uk/FHIR/R4/Patient/{local}","title":"#
        );
    } else {
        let _ = write!(
            out,
            r#""application/pdf","url":"ssp://{lower}.thirdparty.nhs.uk/documents/{local}.pdf","title":"#
        );
    }
    push_str(out, &t.display);
    let (format, format_display, stability, mechanism) = if structured {
        (
            "urn:nhs-ic:structured",
            "Structured Document",
            "dynamic",
            "Direct",
        )
    } else {
        (
            "urn:nhs-ic:unstructured",
            "Unstructured Document",
            "static",
            "SSP",
        )
    };
    let _ = write!(
        out,
        r#","creation":"{created}"}},"format":{{"system":"https://fhir.nhs.uk/England/CodeSystem/England-NRLFormatCode","code":"{format}","display":"{format_display}"}},"extension":[{{"url":"https://fhir.nhs.uk/England/StructureDefinition/Extension-England-ContentStability","valueCodeableConcept":{{"coding":[{{"system":"https://fhir.nhs.uk/England/CodeSystem/England-NRLContentStability","code":"{stability}"}}]}}}},{{"url":"https://fhir.nhs.uk/England/StructureDefinition/Extension-England-NRLRetrievalMechanism","valueCodeableConcept":{{"coding":[{{"system":"https://fhir.nhs.uk/England/CodeSystem/England-NRLRetrievalMechanism","code":"{mechanism}"}}]}}}}]}}],"context":{{"practiceSetting":{{"coding":[{{"system":"http://snomed.info/sct","code":"788002001","display":"Adult mental health service"}}]}}"#
    );
    if !structured {
        let _ = write!(
            out,
            r#","related":[{{"identifier":{{"system":"https://fhir.nhs.uk/Id/nhsSpineASID","value":"{}"}}}}]"#,
            asid(ods)
        );
    }
    out.push_str("}}");
}

/// Appends `text` as a JSON string. Catalogue and generated values are plain
/// text, but escaping keeps any display with a quote well-formed.
fn push_str(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                use std::fmt::Write;
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A stable 12-digit ASID per organisation.
fn asid(ods: &str) -> String {
    let n = ods.bytes().fold(200_000_000_000u64, |acc, b| {
        (acc * 31 + u64::from(b)) % 900_000_000_000
    });
    format!("{:012}", 100_000_000_000 + n)
}

/// `2020-01-01T00:00:00Z` plus `offset` seconds, as a FHIR dateTime.
fn push_timestamp(out: &mut String, offset: u32) {
    use std::fmt::Write;
    let days = offset / 86_400;
    let rem = offset % 86_400;
    // Whole months of 28 days keep every generated date valid and monotonic.
    let (year, month, day) = (2020 + days / 336, 1 + (days % 336) / 28, 1 + days % 28);
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    );
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
