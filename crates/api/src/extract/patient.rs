//! The patient extractors: who a patient request is for. A patient token
//! (`Authorization: Bearer`, issued at `POST /patient/token`) or the web
//! session of `/my-record/` (its cookie); either way the NHS number is the
//! one NHS login verified, never one the request names.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use domain::NhsNumber;
use domain::issue::ErrorCode;

use crate::error::{ApiError, Dependency};
use crate::operations::patient::PatientCaller;
use crate::patient_access::{SessionPatient, SessionReadError};
use crate::state::AppState;

/// The only proofing level that may see record data.
pub const REQUIRED_PROOFING: &str = "P9";

/// A patient proved to P9, acting for themselves.
pub struct Patient(pub PatientCaller);

/// The patient of the request's web session, whatever their level (the
/// token endpoint checks the level itself).
pub struct PatientSession(pub SessionPatient);

impl FromRequestParts<AppState> for Patient {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let patient = match bearer(&parts.headers) {
            Some(token) => {
                let principal = state
                    .auth()
                    .authenticate_patient(token)
                    .map_err(|e| ApiError::Unauthenticated(e.to_string()))?;
                let patient = SessionPatient {
                    nhs_number: NhsNumber::parse(&principal.nhs_number).ok(),
                    proofing_level: principal.proofing_level,
                    session: Some(principal.session),
                    subject: None,
                };
                session_lives(&patient, state).await?;
                patient
            }
            None => session_patient(&parts.headers, state).await?,
        };
        proved(&patient).map(|nhs| Patient(PatientCaller::new(nhs)))
    }
}

impl FromRequestParts<AppState> for PatientSession {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        session_patient(&parts.headers, state)
            .await
            .map(PatientSession)
    }
}

/// The NHS number of a patient proved to P9; 403 below, explaining why.
pub fn proved(patient: &SessionPatient) -> Result<NhsNumber, ApiError> {
    match patient.nhs_number {
        Some(nhs) if patient.proofing_level == REQUIRED_PROOFING => Ok(nhs),
        _ => Err(ApiError::forbidden(
            ErrorCode::AccessDeniedLevel,
            format!(
                "NHS login proved who you are to level {}; seeing your records needs level P9 (high). Prove who you are with NHS login (for example with photo ID in the NHS App), then sign in again",
                patient.proofing_level
            ),
        )),
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// A patient token is good only while the `/my-record/` session it was
/// issued from lasts, for the same patient: the signature check is cached,
/// this is one session store read.
async fn session_lives(token: &SessionPatient, state: &AppState) -> Result<(), ApiError> {
    let ended = || {
        ApiError::Unauthenticated(
            "the NHS login session this token was issued from has ended: sign in again at /my-record/ and get a new token".into(),
        )
    };
    let (Some(sessions), Some(sid)) = (
        state.patient_access().sessions.as_ref(),
        token.session.as_deref(),
    ) else {
        return Err(ended());
    };
    match sessions.patient_of_session(sid).await {
        Ok(Some(live)) if live.nhs_number.is_some() && live.nhs_number == token.nhs_number => {
            Ok(())
        }
        Ok(_) => Err(ended()),
        Err(e) => Err(session_failure(e)),
    }
}

/// A session store outage is the caller's 503 (try again), not a 500.
fn session_failure(e: SessionReadError) -> ApiError {
    tracing::warn!(error = %e, "the session store could not be read");
    match e {
        SessionReadError::Unavailable(_) => ApiError::Unavailable(Dependency::Sessions),
        SessionReadError::Internal(e) => ApiError::Internal(format!("session store: {e}")),
    }
}

async fn session_patient(
    headers: &HeaderMap,
    state: &AppState,
) -> Result<SessionPatient, ApiError> {
    let signed_out = || {
        ApiError::Unauthenticated(
            "sign in with NHS login: send Authorization: Bearer <patient token> (from POST /patient/token) or the /my-record/ session cookie".into(),
        )
    };
    let sessions = state
        .patient_access()
        .sessions
        .as_ref()
        .ok_or_else(signed_out)?;
    match sessions.patient(headers).await {
        Ok(Some(patient)) => Ok(patient),
        Ok(None) => Err(signed_out()),
        Err(e) => Err(session_failure(e)),
    }
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;

    use super::session_failure;
    use crate::patient_access::SessionReadError;

    #[test]
    fn a_session_store_outage_is_503_and_a_fault_500() {
        let away = session_failure(SessionReadError::Unavailable("connection refused".into()));
        assert_eq!(away.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            away.summary().contains("the session store"),
            "{}",
            away.summary()
        );
        let fault = session_failure(SessionReadError::Internal("bad row".into()));
        assert_eq!(fault.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
