use serde_json::{Value, json};

use super::*;
use crate::catalogue::Catalogue;
use crate::issue::ErrorCode;
use crate::permissions::TypeSet;
use crate::systems::CONFIDENTIALITY;

/// A pointer that passes every rule, as the NRL v3 producer spec's example.
pub(crate) fn valid_json() -> Value {
    json!({
        "resourceType": "DocumentReference",
        "status": "current",
        "docStatus": "final",
        "masterIdentifier": {"system": "urn:ietf:rfc:3986", "value": "urn:oid:1.2.3"},
        "type": {"coding": [{"system": "http://snomed.info/sct", "code": "736253002", "display": "Mental health crisis plan"}]},
        "category": [{"coding": [{"system": "http://snomed.info/sct", "code": "734163000", "display": "Care plan"}]}],
        "subject": {"identifier": {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9999999999"}},
        "author": [{"identifier": {"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "Y05868"}}],
        "custodian": {"identifier": {"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "Y05868"}},
        "content": [{
            "attachment": {"contentType": "application/pdf", "url": "ssp://example.thirdparty.nhs.uk/crisis-plan.pdf"},
            "format": {"system": "https://fhir.nhs.uk/England/CodeSystem/England-NRLFormatCode", "code": "urn:nhs-ic:unstructured"},
            "extension": [
                {"url": "https://fhir.nhs.uk/England/StructureDefinition/Extension-England-ContentStability",
                 "valueCodeableConcept": {"coding": [{"system": "https://fhir.nhs.uk/England/CodeSystem/England-NRLContentStability", "code": "static"}]}},
                {"url": "https://fhir.nhs.uk/England/StructureDefinition/Extension-England-NRLRetrievalMechanism",
                 "valueCodeableConcept": {"coding": [{"system": "https://fhir.nhs.uk/England/CodeSystem/England-NRLRetrievalMechanism", "code": "SSP"}]}}
            ]
        }],
        "context": {
            "practiceSetting": {"coding": [{"system": "http://snomed.info/sct", "code": "788002001"}]},
            "related": [{"identifier": {"system": "https://fhir.nhs.uk/Id/nhsSpineASID", "value": "200000000610"}}]
        }
    })
}

fn run(value: &Value) -> Result<ValidPointer, Vec<Issue>> {
    let doc: DocumentReference = serde_json::from_value(value.clone()).unwrap();
    let caller = OdsCode::parse("Y05868").unwrap();
    let catalogue = Catalogue::nrl_v3();
    let ctx = ValidationContext {
        catalogue,
        caller: &caller,
        permitted_types: TypeSet::all(catalogue),
    };
    validate(&doc, &ctx)
}

/// Sets (or with `None`, removes) the element at a JSON pointer path.
fn mutate(path: &str, new: Option<Value>) -> Value {
    let mut v = valid_json();
    let (parent, key) = path.rsplit_once('/').unwrap();
    let target = v.pointer_mut(parent).unwrap();
    match (target, new) {
        (Value::Object(map), Some(n)) => {
            map.insert(key.to_owned(), n);
        }
        (Value::Object(map), None) => {
            map.remove(key);
        }
        (Value::Array(items), Some(n)) => {
            let i = key.parse::<usize>().unwrap();
            if i == items.len() {
                items.push(n)
            } else {
                items[i] = n
            }
        }
        (Value::Array(items), None) => {
            items.remove(key.parse::<usize>().unwrap());
        }
        _ => panic!("bad path {path}"),
    }
    v
}

#[test]
fn the_example_is_valid() {
    let p = run(&valid_json()).unwrap();
    assert_eq!(p.nhs_number.to_string(), "9999999999");
    assert_eq!(p.pointer_type.code, "736253002");
    assert_eq!(
        p.master_identifier.as_deref(),
        Some("urn:ietf:rfc:3986|urn:oid:1.2.3")
    );
}

#[test]
fn each_rule_reports_its_code_and_expression() {
    use ErrorCode::*;
    let ssp_mech = "/content/0/extension/1/valueCodeableConcept/coding/0/code";
    let cases: Vec<(&str, Option<Value>, ErrorCode, &str)> = vec![
        (
            "/resourceType",
            Some(json!("Patient")),
            InvalidResource,
            "DocumentReference.resourceType",
        ),
        (
            "/foo",
            Some(json!(1)),
            InvalidResource,
            "DocumentReference.foo",
        ),
        ("/status", None, InvalidResource, "DocumentReference.status"),
        (
            "/status",
            Some(json!("superseded")),
            InvalidResource,
            "DocumentReference.status",
        ),
        (
            "/docStatus",
            Some(json!("draft")),
            InvalidResource,
            "DocumentReference.docStatus",
        ),
        (
            "/date",
            Some(json!("yesterday")),
            InvalidResource,
            "DocumentReference.date",
        ),
        (
            "/subject",
            None,
            InvalidResource,
            "DocumentReference.subject",
        ),
        (
            "/subject/identifier/system",
            Some(json!("urn:x")),
            InvalidIdentifierSystem,
            "DocumentReference.subject.identifier.system",
        ),
        (
            "/subject/identifier/value",
            Some(json!("9999999998")),
            InvalidNhsNumber,
            "DocumentReference.subject.identifier.value",
        ),
        (
            "/subject/identifier/value",
            Some(json!("12345")),
            InvalidNhsNumber,
            "DocumentReference.subject.identifier.value",
        ),
        (
            "/custodian/identifier/value",
            Some(json!("X26")),
            AuthorCredentialsError,
            "DocumentReference.custodian.identifier.value",
        ),
        (
            "/custodian/identifier/system",
            Some(json!("urn:x")),
            InvalidIdentifierSystem,
            "DocumentReference.custodian.identifier.system",
        ),
        (
            "/author",
            Some(json!([])),
            InvalidResource,
            "DocumentReference.author",
        ),
        (
            "/author/1",
            Some(
                json!({"identifier": {"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "X26"}}),
            ),
            InvalidResource,
            "DocumentReference.author",
        ),
        (
            "/author/0/identifier/value",
            Some(json!("bad code!")),
            InvalidIdentifierValue,
            "DocumentReference.author[0].identifier.value",
        ),
        ("/type", None, InvalidResource, "DocumentReference.type"),
        (
            "/type/coding/1",
            Some(json!({"system": "http://snomed.info/sct", "code": "736253002"})),
            InvalidResource,
            "DocumentReference.type.coding",
        ),
        (
            "/type/coding/0/code",
            Some(json!("736253001")),
            InvalidCodeValue,
            "DocumentReference.type.coding[0].code",
        ),
        (
            "/type/coding/0/system",
            Some(json!("urn:other")),
            InvalidCodeSystem,
            "DocumentReference.type.coding[0].system",
        ),
        (
            "/category",
            None,
            InvalidResource,
            "DocumentReference.category",
        ),
        (
            "/category/0/coding/0/code",
            Some(json!("1102421000000108")),
            InvalidCodeValue,
            "DocumentReference.category[0].coding[0].code",
        ),
        (
            "/category/0/coding/0/system",
            Some(json!("urn:x")),
            InvalidCodeSystem,
            "DocumentReference.category[0].coding[0].system",
        ),
        (
            "/content",
            Some(json!([])),
            InvalidResource,
            "DocumentReference.content",
        ),
        (
            "/content/0/attachment",
            None,
            InvalidResource,
            "DocumentReference.content[0].attachment",
        ),
        (
            "/content/0/attachment/url",
            None,
            InvalidResource,
            "DocumentReference.content[0].attachment.url",
        ),
        (
            "/content/0/attachment/data",
            Some(json!("aGVsbG8=")),
            InvalidResource,
            "DocumentReference.content[0].attachment.data",
        ),
        (
            "/content/0/attachment/contentType",
            Some(json!("pdf")),
            InvalidResource,
            "DocumentReference.content[0].attachment.contentType",
        ),
        (
            "/content/0/format",
            None,
            InvalidResource,
            "DocumentReference.content[0].format",
        ),
        (
            "/content/0/format/code",
            Some(json!("urn:nhs-ic:other")),
            InvalidCodeValue,
            "DocumentReference.content[0].format.code",
        ),
        (
            "/content/0/format/system",
            Some(json!("urn:x")),
            InvalidCodeSystem,
            "DocumentReference.content[0].format.system",
        ),
        (
            "/content/0/extension/0",
            None,
            InvalidResource,
            "DocumentReference.content[0].extension",
        ),
        (
            "/content/0/extension/0/valueCodeableConcept/coding/0/code",
            Some(json!("sometimes")),
            InvalidCodeValue,
            "DocumentReference.content[0].extension[0].valueCodeableConcept.coding[0].code",
        ),
        (
            ssp_mech,
            Some(json!("Carrier pigeon")),
            InvalidCodeValue,
            "DocumentReference.content[0].extension[1].valueCodeableConcept.coding[0].code",
        ),
        (
            "/content/0/attachment/url",
            Some(json!("https://example.org/x.pdf")),
            InvalidResource,
            "DocumentReference.content[0].attachment.url",
        ),
        (
            "/content/0/attachment/url",
            Some(json!("ftp://example.org/x.pdf")),
            InvalidResource,
            "DocumentReference.content[0].attachment.url",
        ),
        (
            "/context",
            None,
            InvalidResource,
            "DocumentReference.context",
        ),
        (
            "/context/practiceSetting",
            None,
            InvalidResource,
            "DocumentReference.context.practiceSetting",
        ),
        (
            "/context/related",
            None,
            InvalidResource,
            "DocumentReference.context.related",
        ),
        (
            "/context/related/0/identifier/value",
            Some(json!("12345")),
            InvalidIdentifierValue,
            "DocumentReference.context.related[0].identifier.value",
        ),
        (
            "/masterIdentifier/value",
            None,
            InvalidResource,
            "DocumentReference.masterIdentifier.value",
        ),
        (
            "/id",
            Some(json!("X26-abc")),
            InvalidResource,
            "DocumentReference.id",
        ),
        (
            "/id",
            Some(json!("Y05868-")),
            InvalidResource,
            "DocumentReference.id",
        ),
        (
            "/relatesTo",
            Some(json!([{"code": "replaces", "target": {"identifier": {"value": "not an id"}}}])),
            InvalidResource,
            "DocumentReference.relatesTo[0].target.identifier.value",
        ),
        (
            "/relatesTo",
            Some(json!([{"code": "supersedes"}])),
            InvalidResource,
            "DocumentReference.relatesTo[0].code",
        ),
        (
            "/relatesTo",
            Some(json!([{"code": "replaces"}])),
            InvalidResource,
            "DocumentReference.relatesTo[0].target.identifier.value",
        ),
    ];
    for (path, new, code, expression) in cases {
        let issues = run(&mutate(path, new.clone())).expect_err(path);
        assert!(
            issues
                .iter()
                .any(|i| i.code == code && i.expression.as_deref() == Some(expression)),
            "{path} = {new:?}: expected {code} at {expression}, got {issues:#?}"
        );
    }
}

#[test]
fn all_issues_of_a_payload_are_reported_together() {
    let mut v = mutate("/subject/identifier/value", Some(json!("9999999998")));
    v["status"] = json!("draft");
    v["content"][0]["attachment"]
        .as_object_mut()
        .unwrap()
        .remove("url");
    let issues = run(&v).unwrap_err();
    assert!(issues.len() >= 3, "{issues:#?}");
}

#[test]
fn producer_may_only_create_permitted_types() {
    let doc: DocumentReference = serde_json::from_value(valid_json()).unwrap();
    let caller = OdsCode::parse("Y05868").unwrap();
    let catalogue = Catalogue::nrl_v3();
    let other = catalogue
        .find_key("http://snomed.info/sct|1382601000000107")
        .unwrap();
    let ctx = ValidationContext {
        catalogue,
        caller: &caller,
        permitted_types: TypeSet::EMPTY.with(other.index),
    };
    let issues = validate(&doc, &ctx).unwrap_err();
    assert_eq!(issues[0].code, ErrorCode::AccessDeniedLevel);
}

#[test]
fn supersede_targets_are_collected() {
    let v = mutate(
        "/relatesTo",
        Some(
            json!([{"code": "replaces", "target": {"identifier": {"value": "Y05868-old"}}},
                     {"code": "appends", "target": {"identifier": {"value": "Y05868-x"}}}]),
        ),
    );
    let p = run(&v).unwrap();
    assert_eq!(p.supersedes.len(), 1);
    assert_eq!(p.supersedes[0].target.as_str(), "Y05868-old");
}

#[test]
fn security_labels_are_read_from_both_places() {
    let mut v = valid_json();
    v["meta"] = json!({"security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}]});
    v["securityLabel"] = json!([{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "V"}]}]);
    assert_eq!(
        run(&v).unwrap().security_labels,
        vec!["R".to_owned(), "V".to_owned()]
    );
}

/// Issue 14: a producer keeps a pointer from its patient's own view with
/// the ActCode `NOPAT` label; other ActCodes are not sensitivities and go.
#[test]
fn the_not_for_patient_view_label_is_kept() {
    let mut v = valid_json();
    v["meta"] = json!({"security": [
        {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "NOPAT"},
        {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "NORDSCLCD"},
    ]});
    assert_eq!(run(&v).unwrap().security_labels, vec!["NOPAT".to_owned()]);
}

/// Issue 11, item 3: equivalent spellings of the confidentiality system are
/// read as one; a label the policy could misread is refused, never ignored.
#[test]
fn security_labels_fail_closed() {
    let label = |system: Option<&str>, code: &str| match system {
        Some(system) => json!({"system": system, "code": code}),
        None => json!({"code": code}),
    };
    let with_meta = |labels: Vec<Value>| {
        let mut v = valid_json();
        v["meta"] = json!({"security": labels});
        v
    };
    let oid = "urn:oid:2.16.840.1.113883.5.25";
    let stu3 = "http://hl7.org/fhir/v3/Confidentiality";
    assert_eq!(
        run(&with_meta(vec![
            label(Some(oid), "V"),
            label(Some(stu3), "R")
        ]))
        .unwrap()
        .security_labels,
        vec!["R".to_owned(), "V".to_owned()]
    );
    // Labels of other systems are not sensitivities.
    let purpose = "http://terminology.hl7.org/CodeSystem/v3-ActReason";
    assert!(
        run(&with_meta(vec![label(Some(purpose), "TREAT")]))
            .unwrap()
            .security_labels
            .is_empty()
    );
    let refused = [
        (
            label(None, "V"),
            "DocumentReference.meta.security[0].system",
        ),
        (
            label(Some(CONFIDENTIALITY), "v"),
            "DocumentReference.meta.security[0].code",
        ),
        (
            label(Some(oid), "secret"),
            "DocumentReference.meta.security[0].code",
        ),
        (
            json!({"system": CONFIDENTIALITY}),
            "DocumentReference.meta.security[0].code",
        ),
    ];
    for (coding, expression) in refused {
        let issues = run(&with_meta(vec![coding.clone()])).unwrap_err();
        assert!(
            issues
                .iter()
                .any(|i| i.expression.as_deref() == Some(expression)),
            "{coding}: {issues:?}"
        );
    }
    let mut v = valid_json();
    v["securityLabel"] = json!([{"coding": [{"code": "R"}]}]);
    let issues = run(&v).unwrap_err();
    assert_eq!(
        issues[0].expression.as_deref(),
        Some("DocumentReference.securityLabel[0].coding[0].system")
    );
    let lower = run(&with_meta(vec![label(Some(CONFIDENTIALITY), "v")])).unwrap_err();
    assert!(
        lower[0].diagnostics.contains("did you mean 'V'"),
        "{lower:?}"
    );
}

#[test]
fn immutable_fields_cannot_change() {
    let old: DocumentReference = serde_json::from_value(valid_json()).unwrap();
    let mut new = old.clone();
    assert!(check_immutable_fields(&new, &old).is_empty());
    new.subject = serde_json::from_value(json!({"identifier": {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9000000009"}})).unwrap();
    new.master_identifier = None;
    let issues = check_immutable_fields(&new, &old);
    let exprs: Vec<_> = issues
        .iter()
        .filter_map(|i| i.expression.as_deref())
        .collect();
    assert_eq!(
        exprs,
        vec![
            "DocumentReference.subject",
            "DocumentReference.masterIdentifier"
        ]
    );
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    fn leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            "\\PC{0,12}".prop_map(Value::from),
        ]
    }

    proptest! {
        /// Replacing any element of a valid pointer with junk never panics and
        /// never produces an issue without an expression.
        #[test]
        fn junk_anywhere_is_reported_not_panicked(idx in 0usize..40, junk in leaf()) {
            let paths = [
                "/status", "/docStatus", "/date", "/id", "/subject/identifier/value",
                "/subject/identifier/system", "/custodian/identifier/value", "/type/coding/0/code",
                "/type/coding/0/system", "/category/0/coding/0/code", "/content/0/attachment/url",
                "/content/0/attachment/contentType", "/content/0/format/code",
                "/context/related/0/identifier/value", "/masterIdentifier/value",
                "/author/0/identifier/value", "/content/0/extension/0/url",
            ];
            let path = paths[idx % paths.len()];
            let v = mutate(path, Some(junk));
            if let Ok(doc) = serde_json::from_value::<DocumentReference>(v) {
                let caller = OdsCode::parse("Y05868").unwrap();
                let catalogue = Catalogue::nrl_v3();
                let ctx = ValidationContext { catalogue, caller: &caller, permitted_types: TypeSet::all(catalogue) };
                if let Err(issues) = validate(&doc, &ctx) {
                    prop_assert!(issues.iter().all(|i| i.expression.is_some()));
                }
            }
        }
    }
}
