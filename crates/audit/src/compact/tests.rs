use proptest::prelude::*;

use super::*;
use crate::chain::Body;
use crate::fields::SearchFields;
use crate::tests::{NODE, facts, patient};

/// A consumer search as the bench and the API make it.
fn search() -> AuditFacts {
    AuditFacts {
        interaction: Interaction::Search,
        outcome: AuditOutcome::Success,
        outcome_desc: None,
        recorded: "2026-12-05T03:17:53.12Z".to_owned(),
        request_id: Some("00000000-0000-4000-8000-00000000002a".to_owned()),
        client_id: "bench-consumer".to_owned(),
        organisation: Some("RX9".to_owned()),
        user: None,
        purpose_of_use: None,
        patient: Some(patient(7)),
        resources: (0..4)
            .map(|k| format!("DocumentReference/RA0-g1p2k3n{k}"))
            .collect(),
        query: Some(format!(
            "subject%3Aidentifier=https%3A%2F%2Ffhir.nhs.uk%2FId%2Fnhs-number%7C{}",
            patient(7).as_u64()
        )),
        access: Some(AccessFacts {
            basis: "recorded".into(),
            reason: None,
            decision: "TRUSTED_APP".into(),
            alert: false,
            objection_overridden: false,
        }),
        session: None,
        login_subject: None,
    }
}

#[test]
fn a_search_round_trips_in_a_tenth_of_its_json() {
    let f = search();
    let bytes = encode(&f, "nrls");
    assert_eq!(decode(&bytes).unwrap(), (f.clone(), "nrls".to_owned()));
    let json = serde_json::to_string(&f.to_event("nrls")).unwrap();
    assert!(bytes.len() <= 130, "{} bytes", bytes.len());
    assert!(
        json.len() > 10 * bytes.len(),
        "{} vs {}",
        json.len(),
        bytes.len()
    );
}

#[test]
fn rendering_gives_the_event_of_the_facts() {
    for f in [search(), facts("app-a", 1, 3)] {
        let rendered = Body::Compact(encode(&f, NODE)).render();
        let direct = serde_json::to_string(&f.to_event(NODE)).unwrap();
        assert_eq!(rendered, direct);
    }
}

#[test]
fn damaged_bytes_are_refused() {
    let bytes = encode(&search(), "nrls");
    assert!(decode(&bytes[..bytes.len() - 1]).is_err(), "truncated");
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(decode(&longer).is_err(), "trailing byte");
    let mut other = bytes.clone();
    other[0] = 1;
    assert!(decode(&other).is_err(), "unknown format");
    assert!(decode(&[]).is_err());
    // Text that renders back exactly must be stored as ms.
    let mut f = search();
    f.recorded = "not a time".into();
    assert_eq!(decode(&encode(&f, "n")).unwrap().0.recorded, "not a time");
}

// Boxed: the unboxed strategy types overflow a test thread's stack in
// debug builds.
fn text() -> BoxedStrategy<String> {
    prop_oneof![
        "[a-zA-Z0-9 :/%|=.-]{0,24}",
        Just(String::new()),
        "\\PC{0,8}",
        Just("DocumentReference/".to_owned()),
        Just("00000000-0000-4000-8000-00000000002A".to_owned()),
        Just("00000000-0000-4000-8000-00000000002a".to_owned()),
        Just("2026-03-01T10:00:00Z".to_owned()),
        Just("2026-03-01T10:00:00.100Z".to_owned()),
        Just("2026-03-01T10:00:00.1Z".to_owned()),
        Just("recorded".to_owned()),
        Just("BREAK_GLASS".to_owned()),
    ]
    .boxed()
}

fn prefixed_text(table: &'static [&'static str]) -> BoxedStrategy<String> {
    (0..table.len(), text())
        .prop_map(move |(i, rest)| format!("{}{rest}", table[i]))
        .boxed()
}

fn arbitrary_access() -> BoxedStrategy<AccessFacts> {
    (
        prefixed_text(BASES),
        prefixed_text(DECISIONS),
        proptest::option::of(text()),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(basis, decision, reason, alert, objection_overridden)| AccessFacts {
                basis: basis.into(),
                decision: decision.into(),
                reason,
                alert,
                objection_overridden,
            },
        )
        .boxed()
}

/// Client id, organisation, user and purpose of use.
type Who = (String, Option<String>, Option<AuditUser>, Option<String>);

fn who() -> BoxedStrategy<Who> {
    (
        text(),
        proptest::option::of(text()),
        proptest::option::of((text(), proptest::option::of(text()))),
        proptest::option::of(text()),
    )
        .prop_map(|(client, org, user, purpose)| {
            let user = user.map(|(person_id, role_code)| AuditUser {
                person_id,
                role_code,
            });
            (client, org, user, purpose)
        })
        .boxed()
}

fn arbitrary_facts() -> BoxedStrategy<AuditFacts> {
    let head = (
        0..5usize,
        0..3usize,
        proptest::option::of(text()),
        prop_oneof![
            text(),
            (0u64..4_000_000_000_000).prop_map(|ms| format_ms(ms).unwrap())
        ],
        proptest::option::of(text()),
    )
        .boxed();
    let touched = (
        proptest::option::of(0u32..5000),
        proptest::collection::vec(prefixed_text(RESOURCE_PREFIXES), 0..5),
        proptest::option::of(prefixed_text(QUERY_PREFIXES)),
        proptest::option::of(arbitrary_access()),
    )
        .boxed();
    let session = (
        proptest::option::of(prop_oneof![
            Just(SessionEvent::Login),
            Just(SessionEvent::Logout),
            Just(SessionEvent::TokenIssued),
        ]),
        proptest::option::of(text()),
    )
        .boxed();
    (head, who(), touched, session)
        .prop_map(
            |(
                (interaction, outcome, outcome_desc, recorded, request_id),
                (client_id, organisation, user, purpose_of_use),
                (patient_n, resources, query, access),
                (session, login_subject),
            )| AuditFacts {
                interaction: INTERACTIONS[interaction],
                outcome: OUTCOMES[outcome],
                outcome_desc,
                recorded,
                request_id,
                client_id,
                organisation,
                user,
                purpose_of_use,
                patient: patient_n.map(patient),
                resources,
                query,
                access,
                session,
                login_subject,
            },
        )
        .boxed()
}

proptest! {
    #[test]
    fn facts_round_trip_and_index_as_their_event(f in arbitrary_facts(), node in text()) {
        let bytes = encode(&f, &node);
        let (back, back_node) = decode(&bytes).unwrap();
        prop_assert_eq!(&back, &f);
        prop_assert_eq!(back_node, node.clone());
        prop_assert_eq!(SearchFields::of_facts(&f), SearchFields::of(&f.to_event(&node)));
        prop_assert_eq!(
            Body::Compact(bytes).render(),
            serde_json::to_string(&f.to_event(&node)).unwrap()
        );
    }

    /// Whatever bytes a file holds, decode never panics, and what it accepts
    /// is canonical: the facts encode back to the same bytes.
    #[test]
    fn decode_is_total_and_canonical(f in arbitrary_facts(), flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4)) {
        let mut bytes = encode(&f, "n");
        for (at, byte) in flips {
            let len = bytes.len();
            bytes[at % len] = byte;
        }
        if let Ok((facts, node)) = decode(&bytes) {
            prop_assert_eq!(encode(&facts, &node), bytes);
        }
    }
}

#[test]
fn a_patient_session_event_keeps_its_kind_and_login_account() {
    let mut f = facts("nrls-patient", 7, 1);
    f.session = Some(SessionEvent::Logout);
    f.login_subject = Some("nhs-login-sub-1".into());
    let (back, _) = decode(&encode(&f, NODE)).unwrap();
    assert_eq!(back, f);
    let event = serde_json::to_value(back.to_event(NODE)).unwrap();
    assert_eq!(event["type"]["code"], crate::USER_AUTHENTICATION);
    assert_eq!(event["subtype"][0]["code"], "110123");
    let requestor = event["agent"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["requestor"] == true)
        .unwrap();
    assert_eq!(
        requestor["who"]["identifier"]["value"], "nhs-login-sub-1",
        "{event}"
    );
}
