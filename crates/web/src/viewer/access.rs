//! When the policy refuses for lack of a relationship: the page asking why,
//! and its form. The declaration is kept in the session for this patient
//! and sent with every later view as the access basis, exactly as an API
//! caller sends `NHSD-Access-Basis` and `NHSD-Access-Reason`; the policy
//! then allows, flags and alerts (the privacy officer's alert is the
//! AuditEvent of the view, as on the API).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use domain::NhsNumber;

use super::patient::from_path;
use super::{form, respond, see_other, signed_in};
use crate::WebState;
use crate::error::WebError;
use crate::pages::{Chrome, FieldError, PatientRef, RelationshipPage, render};
use crate::session::Session;
use crate::session::data::{BasisKind, PatientBasis};

/// The reasons offered; the free text says more. The same list the patient
/// pages show a category from (and nothing else).
pub const REASONS: &[&str] = api::operations::patient_audit::REASON_CATEGORIES;

/// Longest free text accepted.
const MAX_DETAIL: usize = 500;

/// What the form held, to show it again with its errors.
#[derive(Default)]
pub(super) struct Entered {
    pub basis: String,
    pub category: String,
    pub detail: String,
}

pub(super) fn relationship_page(
    state: &WebState,
    session: &Session,
    nhs: NhsNumber,
    errors: Vec<FieldError>,
    entered: Entered,
) -> RelationshipPage {
    let org_name = session
        .data
        .user
        .as_ref()
        .and_then(|u| u.role())
        .map(|r| {
            r.org_name
                .clone()
                .unwrap_or_else(|| state.organisation_name(&r.org))
        })
        .unwrap_or_else(|| "Your organisation".to_owned());
    RelationshipPage {
        chrome: Chrome::new(state, session),
        patient: PatientRef::new(nhs),
        org_name,
        errors,
        reasons: REASONS,
        basis: entered.basis,
        category: entered.category,
        detail: entered.detail,
    }
}

/// Checks the form; every problem is reported at once.
fn check(entered: &Entered) -> Result<(BasisKind, String), Vec<FieldError>> {
    let mut errors = Vec::new();
    let kind = match entered.basis.as_str() {
        "self-claimed" => Some(BasisKind::SelfClaimed),
        "break-glass" => Some(BasisKind::BreakGlass),
        _ => {
            errors.push(FieldError {
                field: "basis",
                message: "Select how you are involved in the patient's care",
            });
            None
        }
    };
    if !REASONS.contains(&entered.category.as_str()) {
        errors.push(FieldError {
            field: "category",
            message: "Select a reason",
        });
    }
    let detail = entered.detail.trim();
    if detail.is_empty() {
        errors.push(FieldError {
            field: "detail",
            message: "Enter what you are doing for the patient",
        });
    } else if detail.chars().count() > MAX_DETAIL {
        errors.push(FieldError {
            field: "detail",
            message: "What you are doing for the patient must be 500 characters or fewer",
        });
    }
    match kind {
        Some(kind) if errors.is_empty() => Ok((kind, format!("{}: {detail}", entered.category))),
        _ => Err(errors),
    }
}

/// POST `/viewer/patient/{nhs}/access`.
pub(super) async fn declare(
    State(state): State<WebState>,
    headers: HeaderMap,
    Path(nhs): Path<String>,
    body: Bytes,
) -> Result<Response, WebError> {
    let mut session = state.sessions.load(&headers).await?;
    signed_in(&session)?;
    let nhs = from_path(&nhs)?;
    let fields = form(&session, &body)?;
    let field = |name: &str| fields.get(name).cloned().unwrap_or_default();
    let entered = Entered {
        basis: field("basis"),
        category: field("category"),
        detail: field("detail"),
    };
    match check(&entered) {
        Ok((kind, reason)) => {
            let digits = nhs.to_string();
            session.data.access.retain(|b| b.nhs_number != digits);
            session.data.access.push(PatientBasis {
                nhs_number: digits,
                kind,
                reason,
            });
            let to = format!("/viewer/patient/{nhs}/records");
            respond(&state, session, see_other(&to)).await
        }
        Err(errors) => {
            let page = relationship_page(&state, &session, nhs, errors, entered);
            let html = render(&page)?;
            respond(&state, session, (StatusCode::BAD_REQUEST, html)).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_declaration_needs_a_basis_a_listed_reason_and_words() {
        let errors = check(&Entered::default()).unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field).collect();
        assert_eq!(fields, vec!["basis", "category", "detail"]);
        let ok = check(&Entered {
            basis: "break-glass".into(),
            category: "Emergency treatment".into(),
            detail: " unconscious, no history ".into(),
        })
        .unwrap();
        assert_eq!(ok.0, BasisKind::BreakGlass);
        assert_eq!(ok.1, "Emergency treatment: unconscious, no history");
        assert!(
            check(&Entered {
                basis: "break-glass".into(),
                category: "Made up".into(),
                detail: "x".into(),
            })
            .is_err()
        );
    }
}
