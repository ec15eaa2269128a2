//! Properties of the R4 check (single mutations from issue 11 are refused,
//! valid pointers stay valid, no input panics) and its cost per pointer.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use serde_json::{Value, json};

use super::check_json;
use super::tests::{context, issues_of};
use crate::validation::tests::valid_json;
use crate::validation::{Submission, ValidationContext, validate, validate_submission};

/// One mutation from the issue's list, as (JSON pointer of the parent, key, value).
fn mutation() -> impl Strategy<Value = (&'static str, &'static str, Value)> {
    prop_oneof![
        Just(("", "description", json!(""))),
        Just(("", "description", Value::Null)),
        Just(("", "identifier", json!([]))),
        Just(("", "securityLabel", json!([]))),
        Just(("", "extension", json!([]))),
        Just(("", "text", json!({}))),
        Just(("/content/0/attachment", "title", json!(""))),
        Just(("/type/coding/0", "display", json!(""))),
        Just(("/content/0/attachment", "creation", json!("yesterday"))),
        Just(("/content/0/attachment", "size", json!(-1))),
        Just(("/content/0/attachment", "size", json!("12"))),
        Just(("", "extension", json!([{"url": "https://example.org/e"}]))),
        Just((
            "",
            "contained",
            json!([{"resourceType": "Patient", "x": 1}])
        )),
        Just(("/context", "period", json!({"start": "soon"}))),
        Just(("/subject", "display", Value::Null)),
        Just(("/custodian/identifier", "value", json!(""))),
    ]
}

/// Optional valid additions, so the property is not about one fixed pointer.
fn addition() -> impl Strategy<Value = Option<(&'static str, &'static str, Value)>> {
    proptest::option::of(prop_oneof![
        "[a-zA-Z][a-zA-Z .,]{0,20}".prop_map(|s| ("", "description", json!(s))),
        (0u32..100_000).prop_map(|n| ("/content/0/attachment", "size", json!(n))),
        (1990u32..2030, 1u32..13, 1u32..29).prop_map(|(y, m, d)| (
            "/context",
            "period",
            json!({"start": format!("{y}-{m:02}-{d:02}")})
        )),
        Just((
            "",
            "securityLabel",
            json!([{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}]}])
        )),
    ])
}

fn set(v: &mut Value, (parent, key, value): (&str, &str, Value)) {
    v.pointer_mut(parent).unwrap()[key] = value;
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn valid_pointers_stay_valid_and_each_mutation_is_refused(
        extra in addition(),
        change in mutation(),
    ) {
        let mut v = valid_json();
        if let Some(a) = extra {
            set(&mut v, a);
        }
        prop_assert_eq!(issues_of(&v), vec![]);
        let (parent, key, _) = change.clone();
        set(&mut v, change);
        let issues = issues_of(&v);
        prop_assert!(!issues.is_empty(), "{} accepted", v);
        let at = format!("DocumentReference{}.{key}", parent.replace("/0", "[0]").replace('/', "."));
        prop_assert!(
            issues.iter().all(|i| i.expression.as_deref().is_some_and(|e| e.starts_with(&at))),
            "{:#?} not at {}", issues, at
        );
    }

    /// Any bytes: the check reports or refuses, never panics.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let mut issues = Vec::new();
        let _ = check_json(&bytes, &mut issues);
        let _ = Submission::parse(&bytes);
    }
}

/// The cost of validation per pointer, for callgrind (see docs/performance.md):
/// `NRLS_COST_CASE` is `r4` (the R4 walk of the text), `body` (what a create
/// does: `Submission::parse` + `validate_submission`) or `typed` (`validate`
/// of a parsed pointer, which serialises it for the R4 walk);
/// `NRLS_COST_ITERATIONS` how many times.
#[test]
#[ignore = "a measurement, run under callgrind"]
fn cost_per_pointer() {
    let n: u64 = std::env::var("NRLS_COST_ITERATIONS").map_or(1, |v| v.parse().unwrap());
    let case = std::env::var("NRLS_COST_CASE").unwrap_or_else(|_| "body".to_owned());
    let text = valid_json().to_string();
    let (caller, catalogue) = context();
    let ctx = ValidationContext {
        catalogue,
        caller: &caller,
        permitted_types: crate::permissions::TypeSet::all(catalogue),
    };
    let doc: fhir::DocumentReference = serde_json::from_str(&text).unwrap();
    let mut issues = Vec::new();
    for _ in 0..n {
        match case.as_str() {
            "r4" => {
                check_json(std::hint::black_box(text.as_bytes()), &mut issues).unwrap();
                assert!(issues.is_empty());
            }
            "typed" => {
                std::hint::black_box(validate(std::hint::black_box(&doc), &ctx)).unwrap();
            }
            _ => {
                let s = Submission::parse(std::hint::black_box(text.as_bytes())).unwrap();
                std::hint::black_box(validate_submission(&s, &ctx)).unwrap();
            }
        }
    }
}
