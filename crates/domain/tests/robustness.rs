//! Bounded, always-on versions of the fuzz targets in `fuzz/`: the parsers
//! that read untrusted input never panic, and what they accept round-trips.
//! `cargo fuzz` explores far more (see docs/security.md); these keep the
//! same properties checked on every `cargo test`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use domain::catalogue::Catalogue;
use domain::permissions::TypeSet;
use domain::search::{Audience, Cursor, SearchLimits, parse};
use domain::validation::{Submission, ValidationContext, r4, validate, validate_submission};
use domain::{OdsCode, PointerId};
use proptest::prelude::*;
use serde_json::{Value, json};

const CASES: u32 = 2_000;

fn valid_pointer() -> Value {
    json!({
        "resourceType": "DocumentReference", "status": "current",
        "type": {"coding": [{"system": "http://snomed.info/sct", "code": "736253002"}]},
        "category": [{"coding": [{"system": "http://snomed.info/sct", "code": "734163000"}]}],
        "subject": {"identifier": {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9999999999"}},
        "author": [{"identifier": {"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "Y05868"}}],
        "custodian": {"identifier": {"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "Y05868"}},
        "content": [{
            "attachment": {"contentType": "application/pdf", "url": "https://example.nhs.uk/plan.pdf"},
            "format": {"system": "https://fhir.nhs.uk/England/CodeSystem/England-NRLFormatCode", "code": "urn:nhs-ic:unstructured"}
        }],
        "context": {"practiceSetting": {"coding": [{"system": "http://snomed.info/sct", "code": "788002001"}]}}
    })
}

/// The DocumentReference target: the API's parse (R4 check of the text, then
/// typed), every rule, and a valid pointer serialises into a record that is
/// itself FHIR R4 valid. Also the typed path (`validate`) never panics.
fn parse_and_validate(bytes: &[u8]) {
    let caller = OdsCode::parse("Y05868").unwrap();
    let catalogue = Catalogue::nrl_v3();
    let ctx = ValidationContext {
        catalogue,
        caller: &caller,
        permitted_types: TypeSet::all(catalogue),
    };
    if let Ok(doc) = serde_json::from_slice::<fhir::DocumentReference>(bytes) {
        let _ = validate(&doc, &ctx);
    }
    let Ok(submission) = Submission::parse(bytes) else {
        return;
    };
    if let Ok(valid) = validate_submission(&submission, &ctx) {
        let id = valid
            .id
            .clone()
            .unwrap_or_else(|| PointerId::parse("Y05868-x").unwrap());
        let record = valid
            .into_record(submission.doc, id, 1, "2026-01-01T00:00:00Z")
            .unwrap();
        let mut issues = Vec::new();
        r4::check_json(record.json.as_bytes(), &mut issues).unwrap();
        assert_eq!(issues, [], "{}", record.json);
    }
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("[a-z]{1,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn document_reference_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        parse_and_validate(&bytes);
    }

    /// A valid pointer with one element replaced by arbitrary JSON.
    #[test]
    fn document_reference_mutations(
        key in prop_oneof![
            Just("status"), Just("type"), Just("category"), Just("subject"), Just("author"),
            Just("custodian"), Just("content"), Just("context"), Just("relatesTo"),
            Just("masterIdentifier"), Just("meta"), Just("securityLabel"), Just("id"), Just("date"),
        ],
        value in json_value(),
    ) {
        let mut doc = valid_pointer();
        doc[key] = value;
        parse_and_validate(&serde_json::to_vec(&doc).unwrap());
    }

    #[test]
    fn search_queries(
        consumer in any::<bool>(),
        pairs in prop::collection::vec((
            prop_oneof![
                Just("subject:identifier".to_owned()), Just("type".to_owned()),
                Just("category".to_owned()), Just("custodian:identifier".to_owned()),
                Just("_count".to_owned()), Just("_summary".to_owned()),
                Just("_cursor".to_owned()), ".{0,10}",
            ],
            prop_oneof![
                Just("https://fhir.nhs.uk/Id/nhs-number|9999999999".to_owned()),
                Just("http://snomed.info/sct|736253002".to_owned()),
                ".{0,40}",
            ],
        ), 0..6),
    ) {
        let audience = if consumer { Audience::Consumer } else { Audience::Producer };
        let borrowed = pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        if let Ok(query) = parse(borrowed, audience, SearchLimits::default(), Catalogue::nrl_v3()) {
            let cursor = Cursor { before_seq: 1, fingerprint: query.fingerprint() };
            prop_assert_eq!(Cursor::decode(&cursor.encode()), Some(cursor));
        }
    }

    #[test]
    fn cursors(text in ".{0,160}") {
        if let Some(cursor) = Cursor::decode(&text) {
            prop_assert_eq!(Cursor::decode(&cursor.encode()), Some(cursor));
        }
    }
}
