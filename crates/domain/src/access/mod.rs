//! The access policy: who may see which pointer, and why. Pure: the HTTP
//! layer gathers the inputs (caller, end user, patient state, access basis)
//! and asks [`AccessPolicy::decide`]; the answer is either a [`Denial`] with
//! a reason code, or a [`Grant`] whose [`PointerFilter`] then says, pointer
//! by pointer, what the caller may see.
//!
//! The rules (issue 3, item 2; docs/security.md explains them):
//!
//! 1. Producers manage their own pointers, whatever else is true.
//! 2. Consumers act for direct care only: the purpose of use must be
//!    treatment (`TREAT`) or emergency treatment (`ETREAT`).
//! 3. A consumer needs a legitimate relationship with the patient: recorded,
//!    or self-claimed with a reason, or break-glass with a reason. The last
//!    two are allowed, flagged and alerted.
//! 4. A security-labelled pointer (`R`, `V` by default) is invisible without
//!    one of the configured activity codes: not listed, not counted, 404 on read.
//! 5. If the patient objects to sharing, consumers see only the pointers their
//!    own organisation is custodian of, unless they break the glass.

mod policy;
mod reason;

pub use policy::{AccessPolicy, AppOnlyAccess, Denial, Grant, PointerFilter, Visibility};
pub use reason::ReasonCode;

use crate::{OdsCode, Role};

/// The end user a consumer call is made for, as verified from their
/// identity token. Borrowed so a cached identity needs no copies per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndUser<'a> {
    /// The user's person id (CIS2 `sub`).
    pub person_id: &'a str,
    /// The organisation the user's selected role belongs to.
    pub ods: &'a OdsCode,
    /// National RBAC role code of the selected role, e.g. `S0030:G0100:R0570`.
    pub role_code: Option<&'a str>,
    /// National RBAC activity codes of the selected role.
    pub activity_codes: &'a [String],
}

/// The app making the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallerApp<'a> {
    /// Producer or consumer.
    pub role: Role,
    /// The organisation the app acts for (`NHSD-End-User-Organisation-ODS`).
    pub ods: &'a OdsCode,
    /// The app is configured to require an end-user identity on every call.
    pub requires_user: bool,
}

/// Why the data is accessed, as HL7 v3 `ActReason` purpose-of-use codes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PurposeOfUse {
    /// `TREAT`: treatment, i.e. direct care.
    Treatment,
    /// `ETREAT`: emergency treatment, direct care too.
    EmergencyTreatment,
    /// Anything else (`HRESCH`, `HPAYMT`, `PUBHLTH`...): not direct care.
    Other(String),
}

/// The HL7 v3 code system of [`PurposeOfUse`] codes.
pub const PURPOSE_OF_USE_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/v3-ActReason";

impl PurposeOfUse {
    /// Reads a code, bare (`TREAT`) or as `system|code`; case-insensitive.
    pub fn parse(text: &str) -> PurposeOfUse {
        let text = text.trim();
        let code = match text.split_once('|') {
            Some((system, code)) if system == PURPOSE_OF_USE_SYSTEM => code,
            Some(_) => return PurposeOfUse::Other(text.to_owned()),
            None => text,
        };
        if code.eq_ignore_ascii_case("TREAT") {
            PurposeOfUse::Treatment
        } else if code.eq_ignore_ascii_case("ETREAT") {
            PurposeOfUse::EmergencyTreatment
        } else {
            PurposeOfUse::Other(code.to_owned())
        }
    }

    /// The code as written in the audit trail.
    pub fn code(&self) -> &str {
        match self {
            PurposeOfUse::Treatment => "TREAT",
            PurposeOfUse::EmergencyTreatment => "ETREAT",
            PurposeOfUse::Other(code) => code,
        }
    }

    /// `TREAT` and `ETREAT` are direct care; nothing else is.
    pub fn is_direct_care(&self) -> bool {
        matches!(
            self,
            PurposeOfUse::Treatment | PurposeOfUse::EmergencyTreatment
        )
    }
}

/// What the caller says entitles it to see the patient's records.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum AccessBasis {
    /// A relationship recorded through the admin API (the default).
    #[default]
    Recorded,
    /// The user asserts a relationship nrls has no record of.
    SelfClaimed {
        /// Why; required, so `None` is denied.
        reason: Option<String>,
    },
    /// Emergency access.
    BreakGlass {
        /// Why; required, so `None` is denied.
        reason: Option<String>,
    },
}

/// The longest reason kept; longer ones are refused, not cut.
pub const MAX_REASON_LEN: usize = 1024;

/// An access basis that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BasisError {
    /// Not one of the three bases.
    #[error("access basis {0:?} is not recorded, self-claimed or break-glass")]
    UnknownKind(String),
    /// Longer than [`MAX_REASON_LEN`].
    #[error("the access reason is longer than {MAX_REASON_LEN} characters")]
    ReasonTooLong,
    /// A reason with the recorded basis (probably a forgotten basis header).
    #[error("an access reason was given without a self-claimed or break-glass basis")]
    ReasonWithoutBasis,
}

impl AccessBasis {
    /// Reads the basis from its two request values (the HTTP layer uses the
    /// `NHSD-Access-Basis` and `NHSD-Access-Reason` headers). A blank reason
    /// counts as none, so the policy can deny it with a precise code.
    pub fn parse(kind: Option<&str>, reason: Option<&str>) -> Result<AccessBasis, BasisError> {
        let reason = reason.map(str::trim).filter(|r| !r.is_empty());
        if reason.is_some_and(|r| r.chars().count() > MAX_REASON_LEN) {
            return Err(BasisError::ReasonTooLong);
        }
        let reason = reason.map(str::to_owned);
        match kind.map(str::trim).filter(|k| !k.is_empty()) {
            None | Some("recorded") if reason.is_some() => Err(BasisError::ReasonWithoutBasis),
            None | Some("recorded") => Ok(AccessBasis::Recorded),
            Some("self-claimed") => Ok(AccessBasis::SelfClaimed { reason }),
            Some("break-glass") => Ok(AccessBasis::BreakGlass { reason }),
            Some(other) => Err(BasisError::UnknownKind(other.to_owned())),
        }
    }

    /// The code written to the audit trail: `recorded`, `self-claimed`, `break-glass`.
    pub fn kind(&self) -> &'static str {
        match self {
            AccessBasis::Recorded => "recorded",
            AccessBasis::SelfClaimed { .. } => "self-claimed",
            AccessBasis::BreakGlass { .. } => "break-glass",
        }
    }

    /// The reason given for a self-claim or break-glass, if any.
    pub fn reason(&self) -> Option<&str> {
        match self {
            AccessBasis::Recorded => None,
            AccessBasis::SelfClaimed { reason } | AccessBasis::BreakGlass { reason } => {
                reason.as_deref()
            }
        }
    }
}

/// What nrls knows about a patient that bears on access.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PatientAccess {
    /// Organisations with a current recorded relationship with the patient.
    pub related_organisations: Vec<OdsCode>,
    /// The patient has an objection to sharing on record.
    pub objection: bool,
}

/// Everything one decision needs.
#[derive(Debug, Clone, Copy)]
pub struct AccessRequest<'a> {
    /// The calling app.
    pub app: CallerApp<'a>,
    /// The verified end user, if the call named one.
    pub user: Option<EndUser<'a>>,
    /// The declared purpose of use (ID token claim or `NHSD-Purpose-Of-Use`).
    pub purpose_of_use: Option<&'a PurposeOfUse>,
    /// What the caller says entitles it.
    pub basis: &'a AccessBasis,
    /// The patient's relationships and objection.
    pub patient: &'a PatientAccess,
}

/// An alert a privacy officer must review.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlertKind {
    /// A self-claimed relationship.
    SelfClaimed,
    /// Emergency access.
    BreakGlass,
}

impl AlertKind {
    /// `self-claimed` or `break-glass`, as the audit trail writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::SelfClaimed => "self-claimed",
            AlertKind::BreakGlass => "break-glass",
        }
    }
}

#[cfg(test)]
mod tests;
