//! Properties over every combination of inputs, and the filter inside
//! `paginate`.

use proptest::prelude::*;

use super::*;

fn arb_case() -> impl Strategy<Value = Case> {
    let basis = prop_oneof![
        Just(AccessBasis::Recorded),
        proptest::option::of("[a-z]{1,8}").prop_map(|reason| AccessBasis::SelfClaimed { reason }),
        proptest::option::of("[a-z]{1,8}").prop_map(|reason| AccessBasis::BreakGlass { reason }),
    ];
    let purpose = proptest::option::of(prop_oneof![
        Just("TREAT"),
        Just("ETREAT"),
        Just("HRESCH"),
        Just("PUBHLTH")
    ]);
    let app_only = prop_oneof![
        Just(AppOnlyAccess::TrustedApp),
        Just(AppOnlyAccess::RequireRelationship)
    ];
    (
        prop_oneof![Just(Role::Consumer), Just(Role::Producer)],
        any::<bool>(),
        proptest::option::of(any::<bool>()),
        any::<bool>(),
        purpose,
        basis,
        (any::<bool>(), any::<bool>(), app_only),
    )
        .prop_map(
            |(
                role,
                requires_user,
                user,
                activity,
                purpose,
                basis,
                (related, objection, app_only),
            )| Case {
                role,
                requires_user,
                user,
                activity,
                purpose,
                basis,
                related,
                objection,
                app_only,
            },
        )
}

proptest! {
    /// A labelled pointer of another organisation is visible only to a
    /// consumer holding the activity code: no basis, purpose or relationship
    /// changes that.
    #[test]
    fn labelled_pointers_need_the_activity_code(case in arb_case(), label in prop_oneof![Just("R"), Just("V")]) {
        let fixture = Fixture::new(&case);
        if let Ok(grant) = fixture.decide(&case) {
            let labels = vec![label.to_owned()];
            let visible = grant.filter.check(&fixture.other_ods, &labels) == Visibility::Visible;
            prop_assert!(!visible || (case.role == Role::Consumer && case.activity && case.user.is_some()));
        }
    }

    /// Under an objection, another custodian's pointer is visible only with
    /// break-glass and a reason.
    #[test]
    fn objections_yield_only_to_break_glass(case in arb_case()) {
        let case = Case { objection: true, ..case };
        let fixture = Fixture::new(&case);
        if let Ok(grant) = fixture.decide(&case) {
            let visible = grant.filter.check(&fixture.other_ods, &[]) == Visibility::Visible;
            let glass = matches!(case.basis, AccessBasis::BreakGlass { reason: Some(_) });
            prop_assert!(!visible || (case.role == Role::Consumer && glass && case.user.is_some()));
        }
    }

    /// Self-claimed and break-glass grants always name a verified clinician.
    #[test]
    fn unrecorded_bases_need_a_named_clinician(case in arb_case()) {
        let fixture = Fixture::new(&case);
        if let Ok(grant) = fixture.decide(&case)
            && matches!(grant.basis, ReasonCode::SelfClaimed | ReasonCode::BreakGlass)
        {
            prop_assert!(case.user.is_some());
        }
    }

    /// Producers always manage their own pointers and never see others'.
    #[test]
    fn producers_see_exactly_their_own(case in arb_case(), labelled in any::<bool>()) {
        let case = Case { role: Role::Producer, ..case };
        let fixture = Fixture::new(&case);
        let grant = fixture.decide(&case).unwrap();
        let labels = if labelled { vec!["V".to_owned()] } else { vec![] };
        prop_assert_eq!(grant.filter.check(&fixture.app_ods, &labels), Visibility::Visible);
        prop_assert_eq!(grant.filter.check(&fixture.other_ods, &labels), Visibility::Hidden(ReasonCode::NotCustodian));
    }

    /// Consumers are allowed only for direct care, and alerts come exactly
    /// with self-claimed and break-glass grants.
    #[test]
    fn consumer_grants_are_direct_care_and_alerted_when_unrecorded(case in arb_case()) {
        let case = Case { role: Role::Consumer, ..case };
        let fixture = Fixture::new(&case);
        if let Ok(grant) = fixture.decide(&case) {
            let purpose_ok = match case.purpose {
                Some(p) => PurposeOfUse::parse(p).is_direct_care(),
                None => case.user.is_none(),
            };
            prop_assert!(purpose_ok);
            let alerted = matches!(grant.basis, ReasonCode::SelfClaimed | ReasonCode::BreakGlass);
            prop_assert_eq!(grant.alert.is_some(), alerted);
            prop_assert!(!grant.basis.is_denial());
        } else if let Err(denial) = fixture.decide(&case) {
            prop_assert!(denial.reason.is_denial());
        }
    }
}

/// The filter plugged into `paginate`: hidden pointers are neither listed
/// nor counted, whatever page the caller asks for.
#[test]
fn hidden_pointers_are_not_listed_or_counted() {
    use crate::catalogue::Catalogue;
    use crate::search::{Audience, SearchLimits, paginate, parse};
    use crate::{NhsNumber, PointerId, PointerRecord};

    let crisis = "http://snomed.info/sct|736253002";
    let record = |n: usize, custodian: &str, labels: &[&str]| PointerRecord {
        id: PointerId::parse(&format!("{custodian}-{n}")).unwrap(),
        nhs_number: NhsNumber::parse("9999999999").unwrap(),
        custodian: ods(custodian),
        type_key: crisis.to_owned(),
        master_identifier: None,
        security_labels: labels.iter().map(|l| (*l).to_owned()).collect(),
        version: 1,
        last_updated: "2026-01-01T00:00:00Z".into(),
        json: "{}".into(),
    };
    let records = [
        record(1, "RX1", &[]),
        record(2, "Y1", &["V"]),
        record(3, "Y1", &[]),
        record(4, "RX1", &["R"]),
        record(5, "Y1", &["R"]),
    ];
    let catalogue = Catalogue::nrl_v3();
    let query = parse(
        [
            (
                "subject:identifier",
                "https://fhir.nhs.uk/Id/nhs-number|9999999999",
            ),
            ("_count", "1"),
        ],
        Audience::Consumer,
        SearchLimits::default(),
        catalogue,
    )
    .unwrap();
    let rows = || {
        records
            .iter()
            .enumerate()
            .rev()
            .map(|(i, r)| (i as i64 + 1, r))
    };
    let ids = |case: &Case| {
        let fixture = Fixture::new(case);
        let grant = fixture.decide(case).unwrap();
        let mut q = query.clone();
        let mut seen = Vec::new();
        loop {
            let page = paginate(&q, catalogue, rows(), |r| grant.filter.visible(r));
            seen.extend(page.entries.iter().map(|r| r.id.to_string()));
            match page.next {
                Some(next) => q.cursor = Some(next),
                None => return (page.total, seen),
            }
        }
    };
    assert_eq!(
        ids(&Case::default()),
        (2, vec!["Y1-3".to_owned(), "RX1-1".to_owned()])
    );
    let objection = Case {
        objection: true,
        activity: true,
        ..Case::default()
    };
    assert_eq!(
        ids(&objection),
        (2, vec!["RX1-4".to_owned(), "RX1-1".to_owned()])
    );
    assert_eq!(
        ids(&Case {
            activity: true,
            ..Case::default()
        })
        .0,
        5
    );
}
