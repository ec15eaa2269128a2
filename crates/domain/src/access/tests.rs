//! Table tests of every rule, then properties over all inputs.

use proptest::prelude::*;

use super::*;
use crate::OdsCode;

const SENSITIVE_CODE: &str = "B9999";

fn ods(code: &str) -> OdsCode {
    OdsCode::parse(code).unwrap()
}

fn policy(app_only: AppOnlyAccess) -> AccessPolicy {
    AccessPolicy {
        sensitive_activity_codes: vec![SENSITIVE_CODE.to_owned()],
        app_only,
        ..AccessPolicy::default()
    }
}

/// One request, described by the facts that matter.
#[derive(Debug, Clone)]
struct Case {
    role: Role,
    requires_user: bool,
    /// `Some(same_org)` when an end user is present.
    user: Option<bool>,
    activity: bool,
    purpose: Option<&'static str>,
    basis: AccessBasis,
    related: bool,
    objection: bool,
    app_only: AppOnlyAccess,
}

impl Default for Case {
    fn default() -> Self {
        Case {
            role: Role::Consumer,
            requires_user: false,
            user: Some(true),
            activity: false,
            purpose: Some("TREAT"),
            basis: AccessBasis::Recorded,
            related: true,
            objection: false,
            app_only: AppOnlyAccess::TrustedApp,
        }
    }
}

struct Fixture {
    app_ods: OdsCode,
    other_ods: OdsCode,
    activity: Vec<String>,
    purpose: Option<PurposeOfUse>,
    patient: PatientAccess,
    policy: AccessPolicy,
}

impl Fixture {
    fn new(case: &Case) -> Fixture {
        let app_ods = ods("RX1");
        Fixture {
            patient: PatientAccess {
                related_organisations: if case.related {
                    vec![ods("Y1"), app_ods.clone()]
                } else {
                    vec![ods("Y1")]
                },
                objection: case.objection,
            },
            app_ods,
            other_ods: ods("Y1"),
            activity: if case.activity {
                vec!["B0001".to_owned(), SENSITIVE_CODE.to_owned()]
            } else {
                vec!["B0001".to_owned()]
            },
            purpose: case.purpose.map(PurposeOfUse::parse),
            policy: policy(case.app_only),
        }
    }

    fn decide<'a>(&'a self, case: &'a Case) -> Result<Grant<'a>, Denial> {
        let user = case.user.map(|same| EndUser {
            person_id: "555000111222",
            ods: if same { &self.app_ods } else { &self.other_ods },
            role_code: Some("S0030:G0100:R0570"),
            activity_codes: &self.activity,
        });
        self.policy.decide(&AccessRequest {
            app: CallerApp {
                role: case.role,
                ods: &self.app_ods,
                requires_user: case.requires_user,
            },
            user,
            purpose_of_use: self.purpose.as_ref(),
            basis: &case.basis,
            patient: &self.patient,
        })
    }
}

fn reason(text: &str) -> Option<String> {
    Some(text.to_owned())
}

/// A grant's basis and alert, or a denial's reason.
type Expected = Result<(ReasonCode, Option<AlertKind>), ReasonCode>;

fn outcome(case: &Case) -> Expected {
    let fixture = Fixture::new(case);
    fixture
        .decide(case)
        .map(|g| (g.basis, g.alert))
        .map_err(|d| d.reason)
}

#[test]
fn request_decisions() {
    use ReasonCode::*;
    let self_claim = AccessBasis::SelfClaimed {
        reason: reason("seen in clinic today"),
    };
    let glass = AccessBasis::BreakGlass {
        reason: reason("unconscious patient"),
    };
    let table: Vec<(&str, Case, Expected)> = vec![
        (
            "recorded relationship",
            Case::default(),
            Ok((RecordedRelationship, None)),
        ),
        (
            "emergency treatment is direct care",
            Case {
                purpose: Some("ETREAT"),
                ..Case::default()
            },
            Ok((RecordedRelationship, None)),
        ),
        (
            "purpose as system|code",
            Case {
                purpose: Some("http://terminology.hl7.org/CodeSystem/v3-ActReason|TREAT"),
                ..Case::default()
            },
            Ok((RecordedRelationship, None)),
        ),
        (
            "research is not direct care",
            Case {
                purpose: Some("HRESCH"),
                ..Case::default()
            },
            Err(PurposeNotDirectCare),
        ),
        (
            "TREAT from another system is not ours",
            Case {
                purpose: Some("http://example.org|TREAT"),
                ..Case::default()
            },
            Err(PurposeNotDirectCare),
        ),
        (
            "a user must declare a purpose",
            Case {
                purpose: None,
                ..Case::default()
            },
            Err(PurposeNotDirectCare),
        ),
        (
            "purpose is checked before break-glass",
            Case {
                purpose: Some("HPAYMT"),
                basis: glass.clone(),
                ..Case::default()
            },
            Err(PurposeNotDirectCare),
        ),
        (
            "no relationship",
            Case {
                related: false,
                ..Case::default()
            },
            Err(NoLegitimateRelationship),
        ),
        (
            "self-claimed with reason",
            Case {
                related: false,
                basis: self_claim.clone(),
                ..Case::default()
            },
            Ok((SelfClaimed, Some(AlertKind::SelfClaimed))),
        ),
        (
            "self-claimed without reason",
            Case {
                related: false,
                basis: AccessBasis::SelfClaimed { reason: None },
                ..Case::default()
            },
            Err(SelfClaimReasonRequired),
        ),
        (
            "self-claim alerts even with a recorded relationship",
            Case {
                basis: self_claim.clone(),
                ..Case::default()
            },
            Ok((SelfClaimed, Some(AlertKind::SelfClaimed))),
        ),
        (
            "break-glass with reason",
            Case {
                related: false,
                basis: glass.clone(),
                ..Case::default()
            },
            Ok((BreakGlass, Some(AlertKind::BreakGlass))),
        ),
        (
            "break-glass without reason",
            Case {
                related: false,
                basis: AccessBasis::BreakGlass { reason: None },
                ..Case::default()
            },
            Err(BreakGlassReasonRequired),
        ),
        (
            "user of another organisation",
            Case {
                user: Some(false),
                ..Case::default()
            },
            Err(UserOrganisationMismatch),
        ),
        (
            "app requires a user, none sent",
            Case {
                user: None,
                requires_user: true,
                ..Case::default()
            },
            Err(UserIdentityRequired),
        ),
        (
            "app requires a user, one sent",
            Case {
                requires_user: true,
                ..Case::default()
            },
            Ok((RecordedRelationship, None)),
        ),
        (
            "app-only, trusted, no relationship",
            Case {
                user: None,
                related: false,
                purpose: None,
                ..Case::default()
            },
            Ok((TrustedApp, None)),
        ),
        (
            "app-only, relationship recorded",
            Case {
                user: None,
                purpose: None,
                ..Case::default()
            },
            Ok((RecordedRelationship, None)),
        ),
        (
            "app-only, relationship required",
            Case {
                user: None,
                related: false,
                purpose: None,
                app_only: AppOnlyAccess::RequireRelationship,
                ..Case::default()
            },
            Err(NoLegitimateRelationship),
        ),
        (
            "app-only declaring research",
            Case {
                user: None,
                purpose: Some("HRESCH"),
                ..Case::default()
            },
            Err(PurposeNotDirectCare),
        ),
        (
            "app-only break-glass",
            Case {
                user: None,
                related: false,
                basis: glass.clone(),
                app_only: AppOnlyAccess::RequireRelationship,
                ..Case::default()
            },
            Ok((BreakGlass, Some(AlertKind::BreakGlass))),
        ),
        (
            "producer, no user, no relationship",
            Case {
                role: Role::Producer,
                user: None,
                related: false,
                purpose: None,
                ..Case::default()
            },
            Ok((ProducerOwn, None)),
        ),
        (
            "producer ignores purpose",
            Case {
                role: Role::Producer,
                purpose: Some("HRESCH"),
                related: false,
                ..Case::default()
            },
            Ok((ProducerOwn, None)),
        ),
        (
            "producer with objection",
            Case {
                role: Role::Producer,
                objection: true,
                ..Case::default()
            },
            Ok((ProducerOwn, None)),
        ),
    ];
    for (name, case, expected) in table {
        assert_eq!(outcome(&case), expected, "{name}");
    }
}

/// Pointer visibility: (custodian is the caller's organisation, labelled).
#[test]
fn pointer_visibility() {
    use ReasonCode::*;
    use Visibility::*;
    let glass = AccessBasis::BreakGlass {
        reason: reason("emergency"),
    };
    let table: Vec<(&str, Case, [Visibility; 4])> = vec![
        // own plain, own labelled, other plain, other labelled
        (
            "consumer, no activity code",
            Case::default(),
            [
                Visible,
                Hidden(SensitiveHidden),
                Visible,
                Hidden(SensitiveHidden),
            ],
        ),
        (
            "consumer with the activity code",
            Case {
                activity: true,
                ..Case::default()
            },
            [Visible, Visible, Visible, Visible],
        ),
        (
            "objection",
            Case {
                objection: true,
                activity: true,
                ..Case::default()
            },
            [
                Visible,
                Visible,
                Hidden(PatientObjection),
                Hidden(PatientObjection),
            ],
        ),
        (
            "objection, no activity code",
            Case {
                objection: true,
                ..Case::default()
            },
            [
                Visible,
                Hidden(SensitiveHidden),
                Hidden(PatientObjection),
                Hidden(PatientObjection),
            ],
        ),
        (
            "objection, break-glass",
            Case {
                objection: true,
                basis: glass.clone(),
                ..Case::default()
            },
            [
                Visible,
                Hidden(SensitiveHidden),
                Visible,
                Hidden(SensitiveHidden),
            ],
        ),
        (
            "break-glass does not lift labels",
            Case {
                basis: glass.clone(),
                related: false,
                ..Case::default()
            },
            [
                Visible,
                Hidden(SensitiveHidden),
                Visible,
                Hidden(SensitiveHidden),
            ],
        ),
        (
            "app-only never sees labels",
            Case {
                user: None,
                purpose: None,
                ..Case::default()
            },
            [
                Visible,
                Hidden(SensitiveHidden),
                Visible,
                Hidden(SensitiveHidden),
            ],
        ),
        (
            "producer sees only its own, labels or not",
            Case {
                role: Role::Producer,
                objection: true,
                ..Case::default()
            },
            [Visible, Visible, Hidden(NotCustodian), Hidden(NotCustodian)],
        ),
    ];
    let plain: Vec<String> = vec![];
    let labelled = vec!["N".to_owned(), "R".to_owned()];
    for (name, case, expected) in table {
        let fixture = Fixture::new(&case);
        let grant = fixture.decide(&case).unwrap();
        let own = &fixture.app_ods;
        let other = &fixture.other_ods;
        let got = [
            grant.filter.check(own, &plain),
            grant.filter.check(own, &labelled),
            grant.filter.check(other, &plain),
            grant.filter.check(other, &labelled),
        ];
        assert_eq!(got, expected, "{name}");
        if case.objection && matches!(case.basis, AccessBasis::BreakGlass { .. }) {
            assert!(grant.objection_overridden, "{name}");
        }
    }
}

#[test]
fn sensitive_labels_are_configurable() {
    let case = Case::default();
    let mut fixture = Fixture::new(&case);
    fixture.policy.sensitive_labels = vec!["V".to_owned()];
    let grant = fixture.decide(&case).unwrap();
    let restricted = vec!["R".to_owned()];
    let very = vec!["V".to_owned()];
    assert_eq!(
        grant.filter.check(&fixture.other_ods, &restricted),
        Visibility::Visible
    );
    assert_eq!(
        grant.filter.check(&fixture.other_ods, &very),
        Visibility::Hidden(ReasonCode::SensitiveHidden)
    );
}

#[test]
fn default_policy_hides_sensitive_from_everyone_but_producers() {
    let policy = AccessPolicy::default();
    let o = ods("RX1");
    let patient = PatientAccess::default();
    let codes = vec!["B0001".to_owned()];
    let basis = AccessBasis::BreakGlass {
        reason: reason("x"),
    };
    let grant = policy
        .decide(&AccessRequest {
            app: CallerApp {
                role: Role::Consumer,
                ods: &o,
                requires_user: false,
            },
            user: Some(EndUser {
                person_id: "p",
                ods: &o,
                role_code: None,
                activity_codes: &codes,
            }),
            purpose_of_use: Some(&PurposeOfUse::Treatment),
            basis: &basis,
            patient: &patient,
        })
        .unwrap();
    assert!(!grant.filter.sees_sensitive());
}

#[test]
fn access_basis_parsing() {
    assert_eq!(AccessBasis::parse(None, None), Ok(AccessBasis::Recorded));
    assert_eq!(
        AccessBasis::parse(Some("recorded"), Some("  ")),
        Ok(AccessBasis::Recorded)
    );
    assert_eq!(
        AccessBasis::parse(Some("break-glass"), Some(" cardiac arrest ")),
        Ok(AccessBasis::BreakGlass {
            reason: reason("cardiac arrest")
        })
    );
    assert_eq!(
        AccessBasis::parse(Some("self-claimed"), None),
        Ok(AccessBasis::SelfClaimed { reason: None })
    );
    assert_eq!(
        AccessBasis::parse(Some("emergency"), None),
        Err(BasisError::UnknownKind("emergency".into()))
    );
    assert_eq!(
        AccessBasis::parse(None, Some("why")),
        Err(BasisError::ReasonWithoutBasis)
    );
    let long = "x".repeat(MAX_REASON_LEN + 1);
    assert_eq!(
        AccessBasis::parse(Some("break-glass"), Some(&long)),
        Err(BasisError::ReasonTooLong)
    );
}

#[test]
fn reason_codes_are_stable_and_round_trip() {
    let texts: Vec<&str> = ReasonCode::ALL.iter().map(|c| c.as_str()).collect();
    let mut unique = texts.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), texts.len());
    for code in ReasonCode::ALL {
        assert_eq!(ReasonCode::parse(code.as_str()), Some(code));
        assert!(!code.description().is_empty());
    }
    assert_eq!(
        ReasonCode::BreakGlassReasonRequired.as_str(),
        "BREAK_GLASS_REASON_REQUIRED"
    );
    assert!(ReasonCode::NoLegitimateRelationship.is_denial());
    assert!(!ReasonCode::SensitiveHidden.is_denial());
}

#[test]
fn policy_reads_from_toml_shape() {
    let policy: AccessPolicy = serde_json::from_value(serde_json::json!({
        "sensitive_activity_codes": ["B1"], "app_only": "require-relationship"
    }))
    .unwrap();
    assert_eq!(policy.sensitive_labels, vec!["R", "V"]);
    assert_eq!(policy.app_only, AppOnlyAccess::RequireRelationship);
    assert!(serde_json::from_value::<AccessPolicy>(serde_json::json!({ "labels": [] })).is_err());
}

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
            prop_assert!(!visible || (case.role == Role::Consumer && glass));
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
