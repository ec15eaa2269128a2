//! Table tests of the convergence rules.

use serde_json::{Value, json};

use super::ext::{CONFLICT_EXT, SOURCES_EXT};
use super::*;

const SCT: &str = "http://snomed.info/sct";
const DMD: &str = "https://dmd.nhs.uk";

fn concept(system: &str, code: &str) -> Value {
    json!({"coding": [{"system": system, "code": code}]})
}

fn status(code: &str) -> Value {
    json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": code}]})
}

fn allergy(id: &str, code: &str, criticality: &str, manifestation: &str) -> Value {
    json!({
        "resourceType": "AllergyIntolerance", "id": id,
        "code": concept(SCT, code), "criticality": criticality,
        "clinicalStatus": status("active"),
        "reaction": [{"manifestation": [concept(SCT, manifestation)], "severity": "mild"}],
    })
}

fn condition(id: &str, code: &str, onset: Option<&str>, clinical: &str) -> Value {
    let mut c = json!({
        "resourceType": "Condition", "id": id,
        "code": concept(SCT, code), "clinicalStatus": status(clinical),
    });
    if let Some(onset) = onset {
        c["onsetDateTime"] = json!(onset);
    }
    c
}

fn medication(kind: &str, id: &str, code: &str, start: &str, end: Option<&str>) -> Value {
    let mut period = json!({"start": start});
    if let Some(end) = end {
        period["end"] = json!(end);
    }
    let mut m = json!({
        "resourceType": kind, "id": id, "status": "active",
        "medicationCodeableConcept": concept(DMD, code),
    });
    if kind == "MedicationStatement" {
        m["effectivePeriod"] = period;
    } else {
        m["intent"] = json!("order");
        m["dispenseRequest"] = json!({"validityPeriod": period});
    }
    m
}

fn immunization(id: &str, code: &str, when: &str) -> Value {
    json!({
        "resourceType": "Immunization", "id": id, "status": "completed",
        "vaccineCode": concept(SCT, code), "occurrenceDateTime": when,
    })
}

fn sourced(input: &[(&str, Value)]) -> Vec<SourcedResource> {
    input
        .iter()
        .map(|(ods, resource)| SourcedResource {
            source: OdsCode::parse(ods).unwrap(),
            resource: resource.clone(),
        })
        .collect()
}

/// (resource type, sources, conflicting elements) of each entry, in order.
type Shape = (&'static str, Vec<&'static str>, Vec<&'static str>);
/// A rules-table row: what it shows, the input, the entries expected.
type Case = (&'static str, Vec<(&'static str, Value)>, Vec<Shape>);

fn shape(result: &Convergence) -> Vec<(String, Vec<String>, Vec<String>)> {
    result
        .entries
        .iter()
        .map(|e| {
            (
                e.resource["resourceType"].as_str().unwrap().to_owned(),
                e.sources.iter().map(|s| s.to_string()).collect(),
                e.conflicts.iter().map(|c| c.element.clone()).collect(),
            )
        })
        .collect()
}

fn owned(expected: &[Shape]) -> Vec<(String, Vec<String>, Vec<String>)> {
    expected
        .iter()
        .map(|(t, s, c)| {
            (
                (*t).to_owned(),
                s.iter().map(|x| (*x).to_owned()).collect(),
                c.iter().map(|x| (*x).to_owned()).collect(),
            )
        })
        .collect()
}

#[test]
fn rules_table() {
    let penicillin = "91936005";
    let asthma = "195967001";
    let cases: Vec<Case> = vec![
        (
            "allergy: same substance from two sources is one entry; criticality resolved and flagged",
            vec![
                ("QWO", allergy("a1", penicillin, "low", "271807003")),
                ("QE1", allergy("b1", penicillin, "high", "39579001")),
            ],
            vec![(
                "AllergyIntolerance",
                vec!["QE1", "QWO"],
                vec!["criticality"],
            )],
        ),
        (
            "allergy: different substances stay apart",
            vec![
                ("QWO", allergy("a1", penicillin, "low", "271807003")),
                ("QE1", allergy("b1", "227493005", "low", "271807003")),
            ],
            vec![
                ("AllergyIntolerance", vec!["QE1"], vec![]),
                ("AllergyIntolerance", vec!["QWO"], vec![]),
            ],
        ),
        (
            "allergy: a shared secondary coding is enough",
            vec![
                ("QWO", allergy("a1", penicillin, "low", "271807003")),
                ("QE1", {
                    let mut a = allergy("b1", "764146007", "low", "271807003");
                    a["code"]["coding"]
                        .as_array_mut()
                        .unwrap()
                        .push(json!({"system": SCT, "code": penicillin}));
                    a
                }),
            ],
            vec![("AllergyIntolerance", vec!["QE1", "QWO"], vec![])],
        ),
        (
            "allergy: text-only codes pass through unmerged",
            vec![
                (
                    "QWO",
                    json!({"resourceType": "AllergyIntolerance", "id": "t1", "code": {"text": "penicillin"}}),
                ),
                (
                    "QE1",
                    json!({"resourceType": "AllergyIntolerance", "id": "t2", "code": {"text": "penicillin"}}),
                ),
            ],
            vec![
                ("AllergyIntolerance", vec!["QE1"], vec![]),
                ("AllergyIntolerance", vec!["QWO"], vec![]),
            ],
        ),
        (
            "condition: onsets 10 days apart are one problem",
            vec![
                ("QWO", condition("c1", asthma, Some("2015-03-01"), "active")),
                ("QRV", condition("c2", asthma, Some("2015-03-11"), "active")),
            ],
            vec![("Condition", vec!["QRV", "QWO"], vec![])],
        ),
        (
            "condition: onsets 60 days apart are two problems",
            vec![
                ("QWO", condition("c1", asthma, Some("2015-03-01"), "active")),
                ("QRV", condition("c2", asthma, Some("2015-04-30"), "active")),
            ],
            vec![
                ("Condition", vec!["QRV"], vec![]),
                ("Condition", vec!["QWO"], vec![]),
            ],
        ),
        (
            "condition: active in one source, resolved in another is flagged",
            vec![
                ("QWO", condition("c1", asthma, Some("2015-03-01"), "active")),
                (
                    "QRV",
                    condition("c2", asthma, Some("2015-03-05"), "resolved"),
                ),
            ],
            vec![("Condition", vec!["QRV", "QWO"], vec!["clinicalStatus"])],
        ),
        (
            "condition: the window is measured from the first onset, not chained",
            vec![
                ("QWO", condition("c1", asthma, Some("2015-03-01"), "active")),
                ("QRV", condition("c2", asthma, Some("2015-03-21"), "active")),
                ("QE1", condition("c3", asthma, Some("2015-04-10"), "active")),
            ],
            vec![
                ("Condition", vec!["QE1"], vec![]),
                ("Condition", vec!["QRV", "QWO"], vec![]),
            ],
        ),
        (
            "condition: undated entries pass through",
            vec![
                ("QWO", condition("c1", asthma, None, "active")),
                ("QRV", condition("c2", asthma, None, "active")),
            ],
            vec![
                ("Condition", vec!["QRV"], vec![]),
                ("Condition", vec!["QWO"], vec![]),
            ],
        ),
        (
            "medication: overlapping periods are one; a later course is another",
            vec![
                (
                    "QWO",
                    medication(
                        "MedicationStatement",
                        "m1",
                        "3257011000001106",
                        "2024-01-01",
                        Some("2024-06-30"),
                    ),
                ),
                (
                    "QE1",
                    medication(
                        "MedicationStatement",
                        "m2",
                        "3257011000001106",
                        "2024-06-01",
                        None,
                    ),
                ),
                (
                    "QRV",
                    medication(
                        "MedicationStatement",
                        "m3",
                        "3257011000001106",
                        "2022-01-01",
                        Some("2022-02-01"),
                    ),
                ),
            ],
            vec![
                ("MedicationStatement", vec!["QE1", "QWO"], vec![]),
                ("MedicationStatement", vec!["QRV"], vec![]),
            ],
        ),
        (
            "medication: statements and requests converge within their own type only",
            vec![
                (
                    "QWO",
                    medication(
                        "MedicationStatement",
                        "m1",
                        "3257011000001106",
                        "2024-01-01",
                        None,
                    ),
                ),
                (
                    "QE1",
                    medication(
                        "MedicationRequest",
                        "r1",
                        "3257011000001106",
                        "2024-01-01",
                        None,
                    ),
                ),
            ],
            vec![
                ("MedicationStatement", vec!["QWO"], vec![]),
                ("MedicationRequest", vec!["QE1"], vec![]),
            ],
        ),
        (
            "immunisation: same vaccine on the same day is one, another day another",
            vec![
                (
                    "QWO",
                    immunization("i1", "1324681000000101", "2024-10-01T09:00:00Z"),
                ),
                ("QE1", immunization("i2", "1324681000000101", "2024-10-01")),
                ("QRV", immunization("i3", "1324681000000101", "2023-10-02")),
            ],
            vec![
                ("Immunization", vec!["QE1", "QWO"], vec![]),
                ("Immunization", vec!["QRV"], vec![]),
            ],
        ),
        (
            "entered-in-error is dropped; a resource sent twice appears once; encounters come last",
            vec![
                (
                    "QWO",
                    json!({"resourceType": "Encounter", "id": "e1", "status": "finished", "period": {"start": "2024-01-01"}}),
                ),
                (
                    "QWO",
                    json!({"resourceType": "Encounter", "id": "e1", "status": "finished", "period": {"start": "2024-01-01"}}),
                ),
                (
                    "QE1",
                    json!({"resourceType": "Immunization", "id": "x", "status": "entered-in-error", "vaccineCode": concept(SCT, "1")}),
                ),
                ("QE1", condition("c1", asthma, Some("2015-03-01"), "active")),
            ],
            vec![
                ("Condition", vec!["QE1"], vec![]),
                ("Encounter", vec!["QWO"], vec![]),
            ],
        ),
        (
            "the same fact twice from one source is one entry with one source",
            vec![
                ("QWO", immunization("i1", "1324681000000101", "2024-10-01")),
                ("QWO", immunization("i2", "1324681000000101", "2024-10-01")),
            ],
            vec![("Immunization", vec!["QWO"], vec![])],
        ),
    ];
    for (name, input, expected) in cases {
        let result = converge(sourced(&input), &Rules::default());
        assert_eq!(shape(&result), owned(&expected), "{name}");
    }
}

#[test]
fn allergy_merge_keeps_highest_criticality_and_all_reactions() {
    let input = sourced(&[
        ("QWO", allergy("a1", "91936005", "low", "271807003")),
        ("QE1", allergy("b1", "91936005", "high", "39579001")),
        ("QRV", {
            let mut a = allergy("c1", "91936005", "low", "271807003");
            a["reaction"][0]["severity"] = json!("severe");
            a
        }),
    ]);
    let result = converge(input, &Rules::default());
    assert_eq!(result.entries.len(), 1);
    let entry = &result.entries[0];
    assert_eq!(entry.resource["criticality"], "high");
    let reactions = entry.resource["reaction"].as_array().unwrap();
    assert_eq!(reactions.len(), 2, "{reactions:?}");
    let rash = reactions
        .iter()
        .find(|r| r["manifestation"][0]["coding"][0]["code"] == "271807003")
        .unwrap();
    assert_eq!(rash["severity"], "severe");
    let conflict = &entry.conflicts[0];
    assert_eq!(conflict.element, "criticality");
    assert_eq!(conflict.reported.len(), 3);
    assert!(conflict.resolution.as_deref().unwrap().contains("highest"));
    assert_eq!(entry.members.len(), 3);
}

#[test]
fn entries_carry_their_sources_and_conflicts_as_extensions() {
    let input = sourced(&[
        (
            "QWO",
            condition("c1", "195967001", Some("2015-03-01"), "active"),
        ),
        (
            "QRV",
            condition("c2", "195967001", Some("2015-03-05"), "resolved"),
        ),
    ]);
    let entry = &converge(input, &Rules::default()).entries[0];
    let extensions = entry.resource["extension"].as_array().unwrap();
    let sources = extensions.iter().find(|e| e["url"] == SOURCES_EXT).unwrap();
    assert_eq!(
        sources["extension"][0],
        json!({"url": "count", "valueInteger": 2})
    );
    assert_eq!(sources["extension"][1]["valueIdentifier"]["value"], "QRV");
    assert_eq!(sources["extension"][2]["valueIdentifier"]["value"], "QWO");
    let conflict = extensions
        .iter()
        .find(|e| e["url"] == CONFLICT_EXT)
        .unwrap();
    assert_eq!(conflict["extension"][0]["valueString"], "clinicalStatus");
    let reported: Vec<&Value> = conflict["extension"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["url"] == "reported")
        .collect();
    assert_eq!(reported.len(), 2);
    assert_eq!(entry.resource["meta"]["tag"][0]["code"], "conflict");
    assert_eq!(entry.resource["id"], json!(entry.id));
    let reported: Vec<(&str, &str)> = entry.conflicts[0]
        .reported
        .iter()
        .map(|(s, v)| (s.as_str(), v.as_str()))
        .collect();
    assert_eq!(reported, [("QRV", "resolved"), ("QWO", "active")]);
}

#[test]
fn the_most_recently_updated_copy_represents_the_fact() {
    let mut old = condition("c1", "195967001", Some("2015-03-01"), "active");
    old["meta"] = json!({"lastUpdated": "2020-01-01T00:00:00Z"});
    old["note"] = json!([{"text": "old"}]);
    let mut new = condition("c2", "195967001", Some("2015-03-02"), "active");
    new["meta"] = json!({"lastUpdated": "2024-01-01T00:00:00Z"});
    new["note"] = json!([{"text": "new"}]);
    let entry = &converge(sourced(&[("QWO", old), ("QE1", new)]), &Rules::default()).entries[0];
    assert_eq!(entry.resource["note"][0]["text"], "new");
}

#[test]
fn output_is_the_same_whatever_the_input_order() {
    let input = vec![
        ("QWO", allergy("a1", "91936005", "low", "271807003")),
        ("QE1", allergy("b1", "91936005", "high", "39579001")),
        (
            "QE1",
            condition("c1", "195967001", Some("2015-03-01"), "active"),
        ),
        (
            "QRV",
            condition("c2", "195967001", Some("2015-03-05"), "resolved"),
        ),
        (
            "QRV",
            condition("c3", "38341003", Some("2019-01-01"), "active"),
        ),
        ("QWO", immunization("i1", "1324681000000101", "2024-10-01")),
        (
            "QRV",
            json!({"resourceType": "Encounter", "id": "e1", "status": "finished"}),
        ),
        (
            "QWO",
            json!({"resourceType": "AllergyIntolerance", "id": "t", "code": {"text": "dust"}}),
        ),
    ];
    let reference = serde_json::to_string(
        &converge(sourced(&input), &Rules::default())
            .entries
            .iter()
            .map(|e| e.resource.clone())
            .collect::<Vec<_>>(),
    )
    .unwrap();
    // Every rotation and the reverse of every rotation.
    for shift in 0..input.len() {
        let mut rotated = input.clone();
        rotated.rotate_left(shift);
        for order in [rotated.clone(), rotated.into_iter().rev().collect()] {
            let got = serde_json::to_string(
                &converge(sourced(&order), &Rules::default())
                    .entries
                    .iter()
                    .map(|e| e.resource.clone())
                    .collect::<Vec<_>>(),
            )
            .unwrap();
            assert_eq!(got, reference);
        }
    }
}

#[test]
fn newest_first_within_a_type_and_counts_of_dropped_items() {
    let input = sourced(&[
        ("QWO", condition("old", "1", Some("2001-01-01"), "active")),
        ("QWO", condition("new", "2", Some("2021-01-01"), "active")),
        ("QWO", condition("undated", "3", None, "active")),
        ("QWO", json!({"no": "resourceType"})),
        (
            "QWO",
            json!({"resourceType": "Condition", "verificationStatus": {"coding": [{"system": "x", "code": "entered-in-error"}]}}),
        ),
    ]);
    let result = converge(input, &Rules::default());
    let codes: Vec<&str> = result
        .entries
        .iter()
        .map(|e| e.resource["code"]["coding"][0]["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["2", "1", "3"]);
    assert_eq!(result.unusable, 1);
    assert_eq!(result.entered_in_error, 1);
}

#[test]
fn entry_ids_are_uuid_shaped_and_stable() {
    let input = sourced(&[("QWO", immunization("i1", "1", "2024-10-01"))]);
    let a = converge(input.clone(), &Rules::default()).entries[0]
        .id
        .clone();
    let b = converge(input, &Rules::default()).entries[0].id.clone();
    assert_eq!(a, b);
    assert_eq!(a.len(), 36);
    assert_eq!(&a[14..15], "8");
    assert!(a.chars().all(|c| c == '-' || c.is_ascii_hexdigit()));
}

#[test]
fn date_bounds_use_the_clinical_date() {
    use query::parse;
    let nhs = "https://fhir.nhs.uk/Id/nhs-number|9000000009";
    let q = parse([("patient.identifier", nhs), ("date.ge", "2024-01-01")]).unwrap();
    let ongoing = medication("MedicationStatement", "m", "1", "2020-01-01", None);
    let ended = medication(
        "MedicationStatement",
        "m",
        "1",
        "2020-01-01",
        Some("2021-01-01"),
    );
    assert!(q.dates.admits(&ongoing));
    assert!(!q.dates.admits(&ended));
    assert!(!q.dates.admits(&condition("c", "1", None, "active")));
    assert!(q.dates.admits(&immunization("i", "1", "2024-01-01")));
    let q = parse([("patient.identifier", nhs), ("date.le", "2019")]).unwrap();
    assert!(!q.dates.admits(&ongoing));
    assert!(
        q.dates
            .admits(&condition("c", "1", Some("2019-12-31"), "active"))
    );
}
