//! Find a patient by NHS number; recent patients of this session.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use domain::NhsNumber;
use domain::nhs_number::NhsNumberError;

use super::{form, respond, see_other, signed_in};
use crate::WebState;
use crate::error::WebError;
use crate::pages::{Chrome, FindPatientPage, PatientRef, render};
use crate::session::Session;

/// What the user typed, checked: spaces and dashes are allowed between
/// digits (as NHS numbers are printed), nothing else.
pub fn parse_entered(text: &str) -> Result<NhsNumber, &'static str> {
    let compact: String = text
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .collect();
    if compact.is_empty() {
        return Err("Enter the patient's NHS number");
    }
    if compact.len() != 10 || !compact.bytes().all(|b| b.is_ascii_digit()) {
        return Err("NHS number must be 10 digits");
    }
    NhsNumber::parse(&compact).map_err(|e| match e {
        NhsNumberError::CheckDigit => {
            "This is not a valid NHS number: check the digits (the last digit does not match)"
        }
        _ => "NHS number must be 10 digits",
    })
}

fn find_page(
    state: &WebState,
    session: &Session,
    error: Option<&'static str>,
    entered: String,
) -> FindPatientPage {
    FindPatientPage {
        chrome: Chrome::new(state, session),
        error,
        entered,
        recent: session
            .data
            .recent
            .iter()
            .filter_map(|n| NhsNumber::parse(n).ok())
            .map(PatientRef::new)
            .collect(),
    }
}

pub(super) async fn page(
    State(state): State<WebState>,
    headers: HeaderMap,
) -> Result<Response, WebError> {
    let session = state.sessions.load(&headers).await?;
    signed_in(&session)?;
    let html = render(&find_page(&state, &session, None, String::new()))?;
    respond(&state, session, html).await
}

/// POST: the NHS number goes in the body, then to the documented route.
pub(super) async fn find(
    State(state): State<WebState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, WebError> {
    let session = state.sessions.load(&headers).await?;
    signed_in(&session)?;
    let fields = form(&session, &body)?;
    let entered = fields.get("nhs_number").cloned().unwrap_or_default();
    match parse_entered(&entered) {
        Ok(nhs) => Ok(see_other(&format!("/viewer/patient/{nhs}/records"))),
        Err(message) => {
            let entered: String = entered.chars().take(20).collect();
            let html = render(&find_page(&state, &session, Some(message), entered))?;
            Ok((StatusCode::BAD_REQUEST, html).into_response())
        }
    }
}

/// The patient of a `/viewer/patient/{nhs}/…` route; anything else is 404.
pub(super) fn from_path(text: &str) -> Result<NhsNumber, WebError> {
    if text.len() != 10 {
        return Err(WebError::NotFound);
    }
    NhsNumber::parse(text).map_err(|_| WebError::NotFound)
}

#[cfg(test)]
mod tests {
    use super::parse_entered;

    #[test]
    fn nhs_numbers_are_checked_with_clear_messages() {
        assert_eq!(
            parse_entered("999 000 0018").unwrap().to_string(),
            "9990000018"
        );
        assert_eq!(
            parse_entered("999-000-0018").unwrap().to_string(),
            "9990000018"
        );
        assert_eq!(
            parse_entered("  ").unwrap_err(),
            "Enter the patient's NHS number"
        );
        assert_eq!(
            parse_entered("12345").unwrap_err(),
            "NHS number must be 10 digits"
        );
        assert_eq!(
            parse_entered("99900000a8").unwrap_err(),
            "NHS number must be 10 digits"
        );
        assert!(
            parse_entered("9990000019")
                .unwrap_err()
                .contains("not a valid NHS number")
        );
    }
}
