//! The decision itself: one call per request, then a cheap per-pointer filter.

use serde::{Deserialize, Serialize};

use super::{AccessBasis, AccessRequest, AlertKind, ReasonCode};
use crate::{OdsCode, PointerRecord, Role};

/// How app-only consumer calls (no end user) are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AppOnlyAccess {
    /// As NRL: the calling system vouches for its users, so no recorded
    /// relationship is needed. The other rules (purpose, sensitive labels,
    /// objections) still apply. Apps that must name their user set
    /// `requires_user_identity = true`.
    #[default]
    TrustedApp,
    /// The app's organisation needs a relationship like a user's would.
    RequireRelationship,
}

/// The operator's access settings (`[access]` in the server configuration).
///
/// ```toml
/// [access]
/// sensitive_labels = ["R", "V"]
/// sensitive_activity_codes = ["B1234"]   # your RBAC baseline's code(s)
/// app_only = "trusted-app"               # or "require-relationship"
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccessPolicy {
    /// Security label codes (`meta.security`, `securityLabel`) that make a
    /// pointer sensitive. Default `R` (restricted) and `V` (very restricted).
    pub sensitive_labels: Vec<String>,
    /// National RBAC activity codes, any one of which lets a user see
    /// sensitive pointers. No default: with none configured, consumers never
    /// see a sensitive pointer (fail closed).
    pub sensitive_activity_codes: Vec<String>,
    /// How app-only consumer calls are treated.
    pub app_only: AppOnlyAccess,
}

impl Default for AccessPolicy {
    fn default() -> Self {
        AccessPolicy {
            sensitive_labels: vec!["R".to_owned(), "V".to_owned()],
            sensitive_activity_codes: Vec::new(),
            app_only: AppOnlyAccess::default(),
        }
    }
}

/// A request refused as a whole: HTTP 403 with the reason code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{}: {}", .reason.as_str(), .reason.description())]
pub struct Denial {
    /// One of the denial codes ([`ReasonCode::is_denial`]).
    pub reason: ReasonCode,
}

/// A request allowed, with what it may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant<'a> {
    /// On what basis: `PRODUCER_OWN`, `RECORDED_RELATIONSHIP`, `SELF_CLAIMED`,
    /// `BREAK_GLASS` or `TRUSTED_APP`.
    pub basis: ReasonCode,
    /// Raised for self-claimed and break-glass access.
    pub alert: Option<AlertKind>,
    /// Break-glass lifted a recorded patient objection.
    pub objection_overridden: bool,
    /// What the caller may see, pointer by pointer.
    pub filter: PointerFilter<'a>,
}

/// Whether one pointer may be shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visibility {
    /// Shown.
    Visible,
    /// Hidden, and why (for the audit trail only: never tell the caller).
    Hidden(ReasonCode),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope<'a> {
    /// Producers: only pointers this organisation is custodian of.
    OwnOnly(&'a OdsCode),
    /// Objection on record: only this organisation's own pointers.
    CustodianOnly(&'a OdsCode),
    All,
}

/// The per-pointer half of a decision. `Copy`, allocation-free: meant to be
/// called for every row inside `domain::search::paginate`'s `visible`
/// closure and on every read (a hidden pointer reads as 404).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PointerFilter<'a> {
    scope: Scope<'a>,
    sees_sensitive: bool,
    sensitive_labels: &'a [String],
}

impl PointerFilter<'_> {
    /// Whether a pointer with this custodian and these security labels is
    /// visible, and if not, why.
    pub fn check(&self, custodian: &OdsCode, labels: &[String]) -> Visibility {
        match self.scope {
            Scope::OwnOnly(ods) if custodian != ods => {
                return Visibility::Hidden(ReasonCode::NotCustodian);
            }
            // Producers see their own pointers whatever their labels.
            Scope::OwnOnly(_) => return Visibility::Visible,
            Scope::CustodianOnly(ods) if custodian != ods => {
                return Visibility::Hidden(ReasonCode::PatientObjection);
            }
            Scope::CustodianOnly(_) | Scope::All => {}
        }
        if !self.sees_sensitive && labels.iter().any(|l| self.sensitive_labels.contains(l)) {
            return Visibility::Hidden(ReasonCode::SensitiveHidden);
        }
        Visibility::Visible
    }

    /// [`PointerFilter::check`] on a stored pointer.
    pub fn check_record(&self, record: &PointerRecord) -> Visibility {
        self.check(&record.custodian, &record.security_labels)
    }

    /// True when `record` may be shown; the shape `paginate` wants.
    pub fn visible(&self, record: &PointerRecord) -> bool {
        self.check_record(record) == Visibility::Visible
    }

    /// Whether the caller may see security-labelled pointers at all.
    pub fn sees_sensitive(&self) -> bool {
        self.sees_sensitive
    }
}

impl AccessPolicy {
    /// Decides one request. Producers are always allowed (they see only
    /// their own pointers); consumers go through purpose, relationship and
    /// basis checks in that order, and the first failure is the reason.
    pub fn decide<'a>(&'a self, request: &AccessRequest<'a>) -> Result<Grant<'a>, Denial> {
        let app = request.app;
        if app.role == Role::Producer {
            return Ok(Grant {
                basis: ReasonCode::ProducerOwn,
                alert: None,
                objection_overridden: false,
                filter: PointerFilter {
                    scope: Scope::OwnOnly(app.ods),
                    sees_sensitive: true,
                    sensitive_labels: &self.sensitive_labels,
                },
            });
        }
        let deny = |reason| Err(Denial { reason });
        if app.requires_user && request.user.is_none() {
            return deny(ReasonCode::UserIdentityRequired);
        }
        if let Some(user) = request.user
            && user.ods != app.ods
        {
            return deny(ReasonCode::UserOrganisationMismatch);
        }
        // App-only calls that declare nothing are taken as direct care (NRL
        // has no purpose header); a user must always declare it.
        let direct_care = match request.purpose_of_use {
            Some(purpose) => purpose.is_direct_care(),
            None => request.user.is_none(),
        };
        if !direct_care {
            return deny(ReasonCode::PurposeNotDirectCare);
        }
        // Checked before the reason so an app-only caller learns the real
        // obstacle: no reason it could add would make it a clinician.
        if request.user.is_none() && *request.basis != AccessBasis::Recorded {
            return deny(ReasonCode::ClinicianIdentityRequired);
        }
        let (basis, alert) = match request.basis {
            AccessBasis::Recorded => {
                if request.patient.related_organisations.contains(app.ods) {
                    (ReasonCode::RecordedRelationship, None)
                } else if request.user.is_none() && self.app_only == AppOnlyAccess::TrustedApp {
                    (ReasonCode::TrustedApp, None)
                } else {
                    return deny(ReasonCode::NoLegitimateRelationship);
                }
            }
            AccessBasis::SelfClaimed { reason: None } => {
                return deny(ReasonCode::SelfClaimReasonRequired);
            }
            AccessBasis::SelfClaimed { reason: Some(_) } => {
                (ReasonCode::SelfClaimed, Some(AlertKind::SelfClaimed))
            }
            AccessBasis::BreakGlass { reason: None } => {
                return deny(ReasonCode::BreakGlassReasonRequired);
            }
            AccessBasis::BreakGlass { reason: Some(_) } => {
                (ReasonCode::BreakGlass, Some(AlertKind::BreakGlass))
            }
        };
        let break_glass = basis == ReasonCode::BreakGlass;
        let objection = request.patient.objection;
        let sees_sensitive = request.user.is_some_and(|user| {
            user.activity_codes
                .iter()
                .any(|code| self.sensitive_activity_codes.contains(code))
        });
        Ok(Grant {
            basis,
            alert,
            objection_overridden: objection && break_glass,
            filter: PointerFilter {
                scope: if objection && !break_glass {
                    Scope::CustodianOnly(app.ods)
                } else {
                    Scope::All
                },
                sees_sensitive,
                sensitive_labels: &self.sensitive_labels,
            },
        })
    }
}
