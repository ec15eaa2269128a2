#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use serde_json::{Value, json};

use super::model::Primitive;
use super::primitive::{Fault, check_str, is_string_valued, matches_pattern, real_date};
use super::{PATTERNS, check_json};
use crate::issue::{ErrorCode, Issue, IssueType};
use crate::validation::tests::valid_json;
use crate::validation::{Submission, ValidationContext, validate, validate_submission};

pub(super) fn issues_of(value: &Value) -> Vec<Issue> {
    let mut issues = Vec::new();
    check_json(value.to_string().as_bytes(), &mut issues).unwrap();
    issues
}

/// Sets the element at a JSON pointer path (parent must exist).
fn with(path: &str, new: Value) -> Value {
    let mut v = valid_json();
    let (parent, key) = path.rsplit_once('/').unwrap();
    match v.pointer_mut(parent).unwrap() {
        Value::Object(map) => {
            map.insert(key.to_owned(), new);
        }
        Value::Array(items) => items[key.parse::<usize>().unwrap()] = new,
        _ => panic!("bad path {path}"),
    }
    v
}

/// The issues' expressions, sorted (serde_json's test values order their keys).
fn expressions(issues: &[Issue]) -> Vec<&str> {
    let mut out: Vec<&str> = issues
        .iter()
        .filter_map(|i| i.expression.as_deref())
        .collect();
    out.sort_unstable();
    out
}

/// Asserts exactly one R4 issue, at `expression`, of `issue_type`.
fn refused(value: &Value, expression: &str, issue_type: IssueType) {
    let issues = issues_of(value);
    assert_eq!(expressions(&issues), [expression], "{issues:#?}");
    assert_eq!(issues[0].issue_type, issue_type, "{issues:#?}");
    assert_eq!(issues[0].code, ErrorCode::InvalidResource);
}

#[test]
fn the_nrl_example_is_valid_fhir_r4() {
    assert_eq!(issues_of(&valid_json()), []);
}

// The examples of issue 11, item 1: each got 201 before.

#[test]
fn an_empty_or_null_description_is_refused() {
    let e = "DocumentReference.description";
    refused(&with("/description", json!("")), e, IssueType::Value);
    refused(&with("/description", json!("  ")), e, IssueType::Value);
    refused(&with("/description", Value::Null), e, IssueType::Structure);
}

#[test]
fn empty_arrays_are_refused() {
    for element in ["identifier", "securityLabel", "extension"] {
        let expression = format!("DocumentReference.{element}");
        refused(
            &with(&format!("/{element}"), json!([])),
            &expression,
            IssueType::Structure,
        );
    }
}

#[test]
fn an_empty_object_is_refused() {
    refused(
        &with("/text", json!({})),
        "DocumentReference.text",
        IssueType::Structure,
    );
}

#[test]
fn empty_strings_deep_inside_are_refused() {
    refused(
        &with("/content/0/attachment/title", json!("")),
        "DocumentReference.content[0].attachment.title",
        IssueType::Value,
    );
    refused(
        &with("/type/coding/0/display", json!("")),
        "DocumentReference.type.coding[0].display",
        IssueType::Value,
    );
}

#[test]
fn a_creation_that_is_not_a_date_time_is_refused() {
    let e = "DocumentReference.content[0].attachment.creation";
    refused(
        &with("/content/0/attachment/creation", json!("yesterday")),
        e,
        IssueType::Value,
    );
    refused(
        &with("/content/0/attachment/creation", json!("2023-02-29")),
        e,
        IssueType::Value,
    );
    refused(
        &with("/content/0/attachment/creation", json!("2024-01-31T09:00")),
        e,
        IssueType::Value,
    );
    for good in [
        "2024",
        "2024-02",
        "2024-02-29",
        "2024-01-31T09:00:00.5+01:00",
    ] {
        assert_eq!(
            issues_of(&with("/content/0/attachment/creation", json!(good))),
            [],
            "{good}"
        );
    }
}

#[test]
fn an_attachment_size_must_be_an_unsigned_json_number() {
    let e = "DocumentReference.content[0].attachment.size";
    refused(
        &with("/content/0/attachment/size", json!(-1)),
        e,
        IssueType::Value,
    );
    refused(
        &with("/content/0/attachment/size", json!("12")),
        e,
        IssueType::Structure,
    );
    refused(
        &with("/content/0/attachment/size", json!(1.5)),
        e,
        IssueType::Value,
    );
    refused(
        &with("/content/0/attachment/size", json!(4_294_967_296u64)),
        e,
        IssueType::Value,
    );
    assert_eq!(issues_of(&with("/content/0/attachment/size", json!(0))), []);
}

#[test]
fn an_extension_needs_a_value_or_extensions_but_not_both() {
    let url = "https://example.org/ext";
    let e = "DocumentReference.extension[0]";
    refused(
        &with("/extension", json!([{"url": url}])),
        e,
        IssueType::Invariant,
    );
    refused(
        &with(
            "/extension",
            json!([{"url": url, "valueString": "a", "extension": [{"url": "x", "valueBoolean": true}]}]),
        ),
        e,
        IssueType::Invariant,
    );
    refused(
        &with("/extension", json!([{"valueString": "a"}])),
        "DocumentReference.extension[0].url",
        IssueType::Required,
    );
    assert_eq!(
        issues_of(&with(
            "/extension",
            json!([{"url": url, "valueBoolean": false}])
        )),
        []
    );
    assert_eq!(
        issues_of(&with(
            "/extension",
            json!([{"url": url, "extension": [{"url": "a", "valueCode": "b"}]}])
        )),
        []
    );
}

#[test]
fn a_choice_has_one_variant() {
    let two = with(
        "/extension",
        json!([{"url": "https://example.org/ext", "valueString": "a", "valueBoolean": true}]),
    );
    // The second variant read is the one reported (keys here are in sorted order).
    refused(
        &two,
        "DocumentReference.extension[0].valueString",
        IssueType::Structure,
    );
}

#[test]
fn a_contained_resource_is_refused() {
    let contained = json!([{"resourceType": "Patient", "id": "p1", "unknown": 1}]);
    refused(
        &with("/contained", contained),
        "DocumentReference.contained[0]",
        IssueType::NotSupported,
    );
}

#[test]
fn a_period_start_must_be_a_date_time() {
    refused(
        &with("/context/period", json!({"start": "soon"})),
        "DocumentReference.context.period.start",
        IssueType::Value,
    );
}

#[test]
fn every_violation_is_reported_together() {
    let mut v = with("/description", json!(""));
    v["text"] = json!({});
    v["content"][0]["attachment"]["size"] = json!(-1);
    v["context"]["period"] = json!({"start": "soon"});
    v["identifier"] = json!([]);
    assert_eq!(
        expressions(&issues_of(&v)),
        [
            "DocumentReference.content[0].attachment.size",
            "DocumentReference.context.period.start",
            "DocumentReference.description",
            "DocumentReference.identifier",
            "DocumentReference.text",
        ]
    );
}

#[test]
fn shapes_and_names_follow_the_definitions() {
    // A single element given as an array, a repeating one as an object.
    refused(
        &with("/subject", json!([{"display": "x"}])),
        "DocumentReference.subject",
        IssueType::Structure,
    );
    refused(
        &with("/author", json!({"display": "x"})),
        "DocumentReference.author",
        IssueType::Structure,
    );
    // An unknown element, nested.
    refused(
        &with("/subject/identfier", json!({"value": "1"})),
        "DocumentReference.subject.identfier",
        IssueType::Structure,
    );
    // A required element of a datatype (Identifier.assigner is fine; relatesTo.code is 1..1).
    refused(
        &with("/relatesTo", json!([{"target": {"display": "x"}}])),
        "DocumentReference.relatesTo[0].code",
        IssueType::Required,
    );
    // Codes have no stray whitespace; ids have their pattern; booleans are booleans.
    refused(
        &with("/docStatus", json!(" final")),
        "DocumentReference.docStatus",
        IssueType::Value,
    );
    refused(
        &with("/id", json!("Y05868 1")),
        "DocumentReference.id",
        IssueType::Value,
    );
    refused(
        &with("/content/0/format/userSelected", json!("true")),
        "DocumentReference.content[0].format.userSelected",
        IssueType::Structure,
    );
    // An object with only an id has no value (ele-1).
    refused(
        &with("/subject", json!({"id": "n"})),
        "DocumentReference.subject",
        IssueType::Invariant,
    );
}

#[test]
fn a_primitive_may_carry_extensions_in_its_companion() {
    let v = with(
        "/_description",
        json!({"extension": [{"url": "https://example.org/e", "valueCode": "x"}]}),
    );
    assert_eq!(issues_of(&v), []);
    refused(
        &with("/_description", json!({})),
        "DocumentReference.description",
        IssueType::Structure,
    );
}

#[test]
fn repeated_keys_are_refused() {
    let text =
        valid_json()
            .to_string()
            .replacen('{', r#"{"description":"a","description":"b","#, 1);
    let mut issues = Vec::new();
    check_json(text.as_bytes(), &mut issues).unwrap();
    assert_eq!(expressions(&issues), ["DocumentReference.description"]);
}

#[test]
fn a_narrative_needs_an_xhtml_div() {
    let good = json!({"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">Plan</div>"});
    assert_eq!(issues_of(&with("/text", good)), []);
    refused(
        &with("/text", json!({"status": "generated", "div": "Plan"})),
        "DocumentReference.text.div",
        IssueType::Value,
    );
}

pub(super) fn context() -> (crate::OdsCode, &'static crate::Catalogue) {
    (
        crate::OdsCode::parse("Y05868").unwrap(),
        crate::Catalogue::nrl_v3(),
    )
}

#[test]
fn submissions_report_r4_and_nrl_issues_together_once_per_element() {
    let mut v = with("/description", Value::Null);
    v["content"][0]["attachment"]["url"] = json!("");
    v["subject"]["identifier"]["value"] = json!("123");
    let (caller, catalogue) = context();
    let ctx = ValidationContext {
        catalogue,
        caller: &caller,
        permitted_types: crate::permissions::TypeSet::all(catalogue),
    };
    let submission = Submission::parse(v.to_string().as_bytes()).unwrap();
    let issues = validate_submission(&submission, &ctx).unwrap_err();
    assert_eq!(
        expressions(&issues),
        [
            "DocumentReference.content[0].attachment.url",
            "DocumentReference.description",
            "DocumentReference.subject.identifier.value",
        ],
        "{issues:#?}"
    );
    // The specific NRL code wins over the R4 one on the same element.
    let nhs = issues
        .iter()
        .find(|i| i.expression.as_deref() == Some("DocumentReference.subject.identifier.value"));
    assert_eq!(nhs.map(|i| i.code), Some(ErrorCode::InvalidNhsNumber));
    let mut blank = with("/subject/identifier/value", json!(""));
    blank["description"] = json!("");
    let submission = Submission::parse(blank.to_string().as_bytes()).unwrap();
    let issues = validate_submission(&submission, &ctx).unwrap_err();
    let codes: Vec<_> = issues
        .iter()
        .map(|i| (i.code, i.expression.as_deref().unwrap()))
        .collect();
    assert_eq!(
        codes,
        [
            (ErrorCode::InvalidResource, "DocumentReference.description"),
            (
                ErrorCode::InvalidNhsNumber,
                "DocumentReference.subject.identifier.value"
            ),
        ]
    );
    // The typed path sees what will be stored (the null is dropped, the rest refused).
    let doc: fhir::DocumentReference = serde_json::from_value(v).unwrap();
    assert!(validate(&doc, &ctx).is_err());
}

#[test]
fn a_body_with_wrong_types_is_refused_with_every_issue() {
    let mut v = with("/date", json!(5));
    v["status"] = json!(["current"]);
    let issues = Submission::parse(v.to_string().as_bytes()).unwrap_err();
    assert_eq!(
        expressions(&issues),
        ["DocumentReference.date", "DocumentReference.status"],
        "{issues:#?}"
    );
    let issues = Submission::parse(b"{\"status\":").unwrap_err();
    assert_eq!(issues[0].code, ErrorCode::MessageNotWellFormed);
}

/// The hand-written matchers say exactly what the definitions' regular expressions say.
#[test]
fn matchers_agree_with_the_definitions_patterns() {
    let samples = [
        "",
        " ",
        "a",
        "a b",
        "a  b",
        " a",
        "a ",
        "a\tb",
        "0",
        "00",
        "01",
        "-0",
        "-1",
        "1.5",
        "1.",
        ".5",
        "1e5",
        "1E-5",
        "2024",
        "0000",
        "2024-1",
        "2024-01",
        "2024-13",
        "2024-01-31",
        "2024-01-32",
        "2024-01-31T09:00:00Z",
        "2024-01-31T09:00:00",
        "2024-01-31T24:00:00Z",
        "2024-01-31T09:00:60.123+14:00",
        "2024-01-31T09:00:00+14:01",
        "2024-01-31T09:00:00-13:59",
        "09:00:00",
        "09:00",
        "23:59:60.1",
        "true",
        "false",
        "True",
        "urn:oid:1.2.3",
        "urn:oid:3.1",
        "urn:oid:1",
        "urn:oid:1.02",
        "urn:uuid:0f8fad5b-d9cb-469f-a165-70867728950e",
        "urn:uuid:0F8FAD5B-d9cb-469f-a165-70867728950e",
        "QUJD",
        "QUJD RA==",
        "QU JD",
        "QUJ",
        "Y05868-abc.1",
        "a/b",
        "http://x y",
        "x\u{0B}y",
        "\u{0C}",
        "line\nbreak",
    ];
    let regexes: Vec<(Primitive, regex::Regex)> = PATTERNS
        .iter()
        .filter_map(|(p, rx)| rx.map(|rx| (*p, regex::Regex::new(&format!("^(?:{rx})$")).unwrap())))
        .collect();
    assert_eq!(
        regexes.len(),
        PATTERNS.len() - 1,
        "only xhtml has no pattern"
    );
    for (p, rx) in &regexes {
        for s in samples {
            // The definitions' \s is XML Schema's: ASCII whitespace only.
            assert_eq!(matches_pattern(*p, s), rx.is_match(s), "{p:?} on {s:?}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    /// Random strings over the characters the patterns care about.
    #[test]
    fn matchers_agree_on_random_text(s in "[0-9a-fA-Z:\\-+.T /=\t\n]{0,30}") {
        for (p, rx) in PATTERNS.iter().filter_map(|(p, rx)| rx.map(|rx| (*p, rx))) {
            let rx = regex::Regex::new(&format!("^(?:{rx})$")).unwrap();
            prop_assert_eq!(matches_pattern(p, &s), rx.is_match(&s), "{:?} on {:?}", p, s);
        }
    }
}

/// `check_str` as the rules read, one after the other: the fast version must
/// give the same answer on every string.
fn check_str_by_the_rules(p: Primitive, text: &str) -> Result<(), Fault> {
    if text.trim().is_empty() {
        return Err(Fault::Empty);
    }
    if text.chars().count() > 1024 * 1024 {
        return Err(Fault::TooLong);
    }
    if text
        .bytes()
        .any(|b| b < 0x20 && !matches!(b, b'\t' | b'\r' | b'\n'))
    {
        return Err(Fault::Control);
    }
    if !matches_pattern(p, text) {
        return Err(Fault::Pattern);
    }
    let calendar = !matches!(
        p,
        Primitive::Date | Primitive::DateTime | Primitive::Instant
    ) || real_date(text);
    if calendar {
        Ok(())
    } else {
        Err(Fault::Calendar)
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    /// Control characters, every kind of space (ASCII and not) and the
    /// characters of dates and URIs, in any order.
    #[test]
    fn check_str_agrees_with_the_rules_in_order(
        s in "[0-9a-zA-Z:\\-+.T /=\t\n\r\u{0B}\u{0C}\u{01}\u{1F}\u{A0}\u{2003}é]{0,30}"
    ) {
        for (p, _) in PATTERNS.iter().filter(|(p, _)| is_string_valued(*p)) {
            prop_assert_eq!(check_str(*p, &s), check_str_by_the_rules(*p, &s), "{:?} on {:?}", p, s);
        }
    }
}
