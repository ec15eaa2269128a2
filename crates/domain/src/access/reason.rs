//! Stable reason codes: the why of every access decision. They are returned
//! in the OperationOutcome of a denial and written to the audit trail, so
//! their text never changes once released.

use std::fmt;

/// Why a request was allowed or denied, or why a pointer was hidden.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReasonCode {
    // Allowed, and on what basis.
    /// A producer manages its own pointers.
    ProducerOwn,
    /// The user's organisation has a recorded relationship with the patient.
    RecordedRelationship,
    /// The user claimed a relationship and gave a reason. Alerted.
    SelfClaimed,
    /// Emergency access with a reason. Alerted.
    BreakGlass,
    /// An app-only call (no end user), trusted as NRL trusts calling systems.
    TrustedApp,

    // Denied.
    /// The declared purpose of use is not direct care (or none was declared).
    PurposeNotDirectCare,
    /// No recorded relationship, and neither a self-claim nor break-glass.
    NoLegitimateRelationship,
    /// A self-claimed relationship without a reason.
    SelfClaimReasonRequired,
    /// Break-glass without a reason.
    BreakGlassReasonRequired,
    /// The app is configured to require an end-user identity and none came.
    UserIdentityRequired,
    /// The user's organisation is not the organisation the app acts for.
    UserOrganisationMismatch,
    /// Self-claim or break-glass without a verified end user: both are acts
    /// of a named clinician, never of a calling system.
    ClinicianIdentityRequired,

    // A pointer hidden from an allowed request.
    /// A security-labelled pointer and the user lacks the activity code.
    SensitiveHidden,
    /// The patient objects to sharing and the caller is not the custodian.
    PatientObjection,
    /// A producer sees only pointers its organisation is custodian of.
    NotCustodian,
}

impl ReasonCode {
    /// Every code, for documentation and exhaustive tests.
    pub const ALL: [ReasonCode; 15] = [
        ReasonCode::ProducerOwn,
        ReasonCode::RecordedRelationship,
        ReasonCode::SelfClaimed,
        ReasonCode::BreakGlass,
        ReasonCode::TrustedApp,
        ReasonCode::PurposeNotDirectCare,
        ReasonCode::NoLegitimateRelationship,
        ReasonCode::SelfClaimReasonRequired,
        ReasonCode::BreakGlassReasonRequired,
        ReasonCode::UserIdentityRequired,
        ReasonCode::UserOrganisationMismatch,
        ReasonCode::ClinicianIdentityRequired,
        ReasonCode::SensitiveHidden,
        ReasonCode::PatientObjection,
        ReasonCode::NotCustodian,
    ];

    /// The stable code, e.g. `BREAK_GLASS`.
    pub fn as_str(self) -> &'static str {
        use ReasonCode::*;
        match self {
            ProducerOwn => "PRODUCER_OWN",
            RecordedRelationship => "RECORDED_RELATIONSHIP",
            SelfClaimed => "SELF_CLAIMED",
            BreakGlass => "BREAK_GLASS",
            TrustedApp => "TRUSTED_APP",
            PurposeNotDirectCare => "PURPOSE_NOT_DIRECT_CARE",
            NoLegitimateRelationship => "NO_LEGITIMATE_RELATIONSHIP",
            SelfClaimReasonRequired => "SELF_CLAIM_REASON_REQUIRED",
            BreakGlassReasonRequired => "BREAK_GLASS_REASON_REQUIRED",
            UserIdentityRequired => "USER_IDENTITY_REQUIRED",
            UserOrganisationMismatch => "USER_ORGANISATION_MISMATCH",
            ClinicianIdentityRequired => "CLINICIAN_IDENTITY_REQUIRED",
            SensitiveHidden => "SENSITIVE_HIDDEN",
            PatientObjection => "PATIENT_OBJECTION",
            NotCustodian => "NOT_CUSTODIAN",
        }
    }

    /// A sentence for the OperationOutcome's diagnostics. Denials only say
    /// what the caller can act on; hidden-pointer codes are for the audit
    /// trail and never sent to a client (that would reveal the pointer).
    pub fn description(self) -> &'static str {
        use ReasonCode::*;
        match self {
            ProducerOwn => "the producer manages its own pointers",
            RecordedRelationship => "the organisation has a recorded relationship with the patient",
            SelfClaimed => "the user claimed a legitimate relationship, with a reason",
            BreakGlass => "emergency (break-glass) access, with a reason",
            TrustedApp => "app-only access by a trusted calling system",
            PurposeNotDirectCare => {
                "the purpose of use must be direct care (TREAT or ETREAT) to access patient records"
            }
            NoLegitimateRelationship => {
                "your organisation has no recorded relationship with this patient; \
                 claim one with a reason or use break-glass"
            }
            SelfClaimReasonRequired => "a self-claimed relationship needs a reason",
            BreakGlassReasonRequired => "break-glass access needs a reason",
            UserIdentityRequired => {
                "this app must send the end user's identity (NHSD-User-Identity)"
            }
            UserOrganisationMismatch => {
                "the user's organisation does not match NHSD-End-User-Organisation-ODS"
            }
            ClinicianIdentityRequired => {
                "self-claimed and break-glass access are acts of a named clinician: \
                 send the user's verified identity (NHSD-User-Identity)"
            }
            SensitiveHidden => {
                "the pointer is security-labelled and the user lacks the activity code"
            }
            PatientObjection => {
                "the patient objects to sharing and the caller is not the custodian"
            }
            NotCustodian => "the caller's organisation is not the pointer's custodian",
        }
    }

    /// Whether the code is a denial of the whole request (always HTTP 403).
    pub fn is_denial(self) -> bool {
        use ReasonCode::*;
        matches!(
            self,
            PurposeNotDirectCare
                | NoLegitimateRelationship
                | SelfClaimReasonRequired
                | BreakGlassReasonRequired
                | UserIdentityRequired
                | UserOrganisationMismatch
                | ClinicianIdentityRequired
        )
    }

    /// Parses a code written by [`ReasonCode::as_str`].
    pub fn parse(text: &str) -> Option<ReasonCode> {
        ReasonCode::ALL.into_iter().find(|c| c.as_str() == text)
    }
}

impl fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
