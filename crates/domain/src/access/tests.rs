//! Table tests of every rule, then properties over all inputs.

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
        // Issue 11, item 3: break-glass and self-claim are acts of a named
        // clinician; an app alone can neither lift an objection nor get past
        // `require-relationship` with them.
        (
            "app-only break-glass",
            Case {
                user: None,
                related: false,
                basis: glass.clone(),
                app_only: AppOnlyAccess::RequireRelationship,
                ..Case::default()
            },
            Err(ClinicianIdentityRequired),
        ),
        (
            "app-only break-glass on a patient who objects",
            Case {
                user: None,
                objection: true,
                purpose: None,
                basis: glass.clone(),
                ..Case::default()
            },
            Err(ClinicianIdentityRequired),
        ),
        (
            "app-only self-claim under require-relationship",
            Case {
                user: None,
                related: false,
                purpose: None,
                basis: self_claim.clone(),
                app_only: AppOnlyAccess::RequireRelationship,
                ..Case::default()
            },
            Err(ClinicianIdentityRequired),
        ),
        (
            "app-only self-claim without a reason",
            Case {
                user: None,
                purpose: None,
                basis: AccessBasis::SelfClaimed { reason: None },
                ..Case::default()
            },
            Err(ClinicianIdentityRequired),
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

mod properties;
