use super::*;
use crate::PointerRecord;
use crate::search::paginate;
use proptest::prelude::*;

const SUBJECT: &str = "https://fhir.nhs.uk/Id/nhs-number|9999999999";
const CRISIS: &str = "http://snomed.info/sct|736253002";

fn consumer(pairs: &[(&str, &str)]) -> Result<SearchQuery, Vec<Issue>> {
    parse(
        pairs.iter().copied(),
        Audience::Consumer,
        SearchLimits::default(),
        Catalogue::nrl_v3(),
    )
}

fn first_code(pairs: &[(&str, &str)]) -> (ErrorCode, String) {
    let issues = consumer(pairs).unwrap_err();
    (
        issues[0].code,
        issues[0].expression.clone().unwrap_or_default(),
    )
}

#[test]
fn parses_all_filters() {
    let q = consumer(&[
        ("subject:identifier", SUBJECT),
        (
            "type",
            "http://snomed.info/sct|736253002,http://snomed.info/sct|1382601000000107",
        ),
        ("category", "http://snomed.info/sct|734163000"),
        (
            "custodian:identifier",
            "https://fhir.nhs.uk/Id/ods-organization-code|y05868",
        ),
        ("_count", "5"),
    ])
    .unwrap();
    assert_eq!(q.types.unwrap().bits().count_ones(), 2);
    assert_eq!(q.categories.unwrap(), vec!["734163000".to_owned()]);
    assert_eq!(q.custodians.unwrap()[0].as_str(), "Y05868");
    assert_eq!(q.count, 5);
    assert!(!q.summary_count);
}

#[test]
fn every_bad_parameter_is_named() {
    use ErrorCode::*;
    type Case<'a> = (Vec<(&'a str, &'a str)>, ErrorCode, &'a str);
    let cases: Vec<Case> = vec![
        (vec![], InvalidParameter, "subject:identifier"),
        (
            vec![("subject:identifier", "9999999999")],
            InvalidParameter,
            "subject:identifier",
        ),
        (
            vec![("subject:identifier", "urn:x|9999999999")],
            InvalidIdentifierSystem,
            "subject:identifier",
        ),
        (
            vec![(
                "subject:identifier",
                "https://fhir.nhs.uk/Id/nhs-number|9999999998",
            )],
            InvalidNhsNumber,
            "subject:identifier",
        ),
        (
            vec![("subject:identifier", SUBJECT), ("colour", "red")],
            InvalidParameter,
            "colour",
        ),
        (
            vec![
                ("subject:identifier", SUBJECT),
                ("type", CRISIS),
                ("type", CRISIS),
            ],
            InvalidParameter,
            "type",
        ),
        (
            vec![
                ("subject:identifier", SUBJECT),
                ("type", "http://snomed.info/sct|1"),
            ],
            InvalidCodeValue,
            "type",
        ),
        (
            vec![
                ("subject:identifier", SUBJECT),
                ("category", "http://snomed.info/sct|1"),
            ],
            InvalidCodeValue,
            "category",
        ),
        (
            vec![
                ("subject:identifier", SUBJECT),
                ("custodian:identifier", "Y05868"),
            ],
            InvalidIdentifierSystem,
            "custodian:identifier",
        ),
        (
            vec![("subject:identifier", SUBJECT), ("_summary", "true")],
            InvalidParameter,
            "_summary",
        ),
        (
            vec![("subject:identifier", SUBJECT), ("_count", "0")],
            InvalidParameter,
            "_count",
        ),
        (
            vec![("subject:identifier", SUBJECT), ("_count", "501")],
            InvalidParameter,
            "_count",
        ),
        (
            vec![("subject:identifier", SUBJECT), ("_cursor", "garbage")],
            InvalidParameter,
            "_cursor",
        ),
    ];
    for (pairs, code, expression) in cases {
        assert_eq!(
            first_code(&pairs),
            (code, expression.to_owned()),
            "{pairs:?}"
        );
    }
}

/// Issue 11, item 4: `_format` and `_pretty` as FHIR clients send them.
#[test]
fn format_parameters_are_accepted_when_json() {
    let subject = (
        "subject:identifier",
        "https://fhir.nhs.uk/Id/nhs-number|9999999999",
    );
    for format in [
        "json",
        "application/fhir+json",
        "application/json+fhir",
        "application/json; charset=utf-8",
    ] {
        assert!(
            consumer(&[subject, ("_format", format)]).is_ok(),
            "{format}"
        );
    }
    assert!(consumer(&[subject, ("_pretty", "true"), ("_format", "json")]).is_ok());
    assert_eq!(
        first_code(&[subject, ("_format", "xml")]),
        (ErrorCode::InvalidParameter, "_format".to_owned())
    );
    assert_eq!(
        first_code(&[subject, ("_pretty", "yes")]),
        (ErrorCode::InvalidParameter, "_pretty".to_owned())
    );
}

#[test]
fn producers_cannot_filter_by_custodian() {
    let r = parse(
        [
            ("subject:identifier", SUBJECT),
            ("custodian:identifier", "x"),
        ],
        Audience::Producer,
        SearchLimits::default(),
        Catalogue::nrl_v3(),
    );
    assert_eq!(
        r.unwrap_err()[0].expression.as_deref(),
        Some("custodian:identifier")
    );
}

#[test]
fn a_cursor_only_fits_its_own_query() {
    let q = consumer(&[("subject:identifier", SUBJECT), ("type", CRISIS)]).unwrap();
    let cursor = Cursor {
        before_seq: 10,
        fingerprint: q.fingerprint(),
    }
    .encode();
    assert!(
        consumer(&[
            ("subject:identifier", SUBJECT),
            ("type", CRISIS),
            ("_cursor", &cursor)
        ])
        .is_ok()
    );
    let (code, expr) = first_code(&[("subject:identifier", SUBJECT), ("_cursor", &cursor)]);
    assert_eq!(
        (code, expr.as_str()),
        (ErrorCode::InvalidParameter, "_cursor")
    );
}

#[test]
fn asking_for_an_unpermitted_type_is_refused() {
    let c = Catalogue::nrl_v3();
    let q = consumer(&[("subject:identifier", SUBJECT), ("type", CRISIS)]).unwrap();
    let respect = c
        .find_key("http://snomed.info/sct|1382601000000107")
        .unwrap();
    assert!(require_permitted(&q, TypeSet::EMPTY.with(respect.index), c).is_err());
    assert!(require_permitted(&q, TypeSet::all(c), c).is_ok());
}

fn record(n: usize, type_key: &str) -> PointerRecord {
    PointerRecord {
        id: crate::PointerId::parse(&format!("Y05868-{n}")).unwrap(),
        nhs_number: NhsNumber::parse("9999999999").unwrap(),
        custodian: OdsCode::parse("Y05868").unwrap(),
        type_key: type_key.to_owned(),
        master_identifier: None,
        security_labels: vec![],
        version: 1,
        last_updated: "2026-01-01T00:00:00Z".into(),
        json: "{}".into(),
    }
}

#[test]
fn pages_walk_every_match_once_newest_first() {
    let c = Catalogue::nrl_v3();
    let records: Vec<PointerRecord> = (1..=7).map(|n| record(n, CRISIS)).collect();
    let rows = || {
        records
            .iter()
            .enumerate()
            .rev()
            .map(|(i, r)| (i as i64 + 1, r))
    };
    let mut q = consumer(&[("subject:identifier", SUBJECT), ("_count", "3")]).unwrap();
    let mut seen = Vec::new();
    loop {
        let page = paginate(&q, c, rows(), |_| true);
        assert_eq!(page.total, 7);
        seen.extend(page.entries.iter().map(|r| r.id.to_string()));
        match page.next {
            Some(next) => q.cursor = Some(next),
            None => break,
        }
    }
    let expected: Vec<String> = (1..=7).rev().map(|n| format!("Y05868-{n}")).collect();
    assert_eq!(seen, expected);
}

#[test]
fn hidden_pointers_are_not_counted() {
    let c = Catalogue::nrl_v3();
    let records = [
        record(1, CRISIS),
        record(2, "http://snomed.info/sct|1382601000000107"),
    ];
    let q = consumer(&[("subject:identifier", SUBJECT), ("_summary", "count")]).unwrap();
    let page = paginate(
        &q,
        c,
        records.iter().enumerate().map(|(i, r)| (i as i64, r)),
        |r| r.type_key == CRISIS,
    );
    assert_eq!(page.total, 1);
    assert!(page.entries.is_empty());
}

proptest! {
    #[test]
    fn parse_never_panics(name in "[a-z_:]{0,20}", value in "\\PC{0,40}") {
        let _ = consumer(&[("subject:identifier", SUBJECT), (&name, &value)]);
        let _ = consumer(&[("subject:identifier", &value)]);
    }

    /// Paging with any page size visits each match exactly once.
    #[test]
    fn paging_is_complete(n in 0usize..40, count in 1usize..10, hidden_every in 2usize..5) {
        let c = Catalogue::nrl_v3();
        let records: Vec<PointerRecord> = (0..n).map(|i| record(i, CRISIS)).collect();
        let rows = || records.iter().enumerate().rev().map(|(i, r)| (i as i64, r));
        let visible = |r: &PointerRecord| !r.id.as_str().ends_with(&format!("-{}", hidden_every));
        let mut q = consumer(&[("subject:identifier", SUBJECT), ("_count", &count.to_string())]).unwrap();
        let mut seen = 0u64;
        loop {
            let page = paginate(&q, c, rows(), visible);
            seen += page.entries.len() as u64;
            prop_assert!(page.entries.len() <= count);
            match page.next { Some(next) => q.cursor = Some(next), None => { prop_assert_eq!(seen, page.total); break; } }
        }
    }
}

/// Issue 11: `?=x` gave an issue whose expression was `[""]`, which strict
/// FHIR clients refuse; now it names no element and says what is wrong.
#[test]
fn a_parameter_without_a_name_has_no_empty_expression() {
    let issues = consumer(&[("subject:identifier", SUBJECT), ("", "x")]).unwrap_err();
    assert_eq!(issues.len(), 1, "{issues:?}");
    assert_eq!(issues[0].code, ErrorCode::InvalidParameter);
    assert_eq!(issues[0].expression, None);
    assert!(issues[0].diagnostics.contains("no name"), "{issues:?}");
}
