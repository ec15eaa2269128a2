//! Sign-in with NHS login, the page for patients not yet proved to P9, and
//! sign-out.

use std::collections::HashMap;

use api::operations::patient_session::{self, PatientLogin};
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};

use super::{PatientChrome, html, patient, respond};
use crate::WebState;
use crate::error::WebError;
use crate::oidc::nhs_login::{self, Proofing, SignedInPatient};
use crate::oidc::{self, OidcError, RelyingParty};
use crate::pages::{PatientProvePage, PatientSignInPage, PatientSignedOutPage};
use crate::session::Session;
use crate::viewer::{form, see_other};

/// The NHS App's single sign-on hint is a JWT; anything longer than this
/// is not one and is not forwarded.
const MAX_ASSERTED_IDENTITY: usize = 4096;

fn query(raw: Option<String>) -> HashMap<String, String> {
    form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// `assertedLoginIdentity` from the NHS App, when it looks like a JWT.
fn asserted_identity(query: &HashMap<String, String>) -> Option<&str> {
    query
        .get("assertedLoginIdentity")
        .map(String::as_str)
        .filter(|v| {
            !v.is_empty()
                && v.len() <= MAX_ASSERTED_IDENTITY
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        })
}

fn nhs_login(state: &WebState) -> Result<&RelyingParty, WebError> {
    state.nhs_login.as_ref().ok_or(WebError::NotFound)
}

/// Off to NHS login, with state, nonce and PKCE verifier kept in the session.
async fn go_to_nhs_login(
    state: &WebState,
    mut session: Session,
    asserted: Option<&str>,
) -> Result<Response, WebError> {
    let rp = nhs_login(state)?;
    let extra: Vec<(&str, &str)> = asserted
        .map(|a| ("assertedLoginIdentity", a))
        .into_iter()
        .collect();
    let (url, pending) = rp
        .begin_with(&extra)
        .await
        .map_err(WebError::PatientSignIn)?;
    session.data.login = Some(pending);
    respond(state, session, see_other(&url)).await
}

/// `GET /my-record/sign-in`. From the NHS App with `assertedLoginIdentity`,
/// straight on to NHS login (the App has already signed the patient in;
/// NHS login recognises them without asking again).
pub(super) async fn page(
    State(state): State<WebState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, WebError> {
    let session = state.sessions.load(&headers).await?;
    let query = query(raw);
    if let Some(asserted) = asserted_identity(&query)
        && state.nhs_login.is_some()
    {
        return go_to_nhs_login(&state, session, Some(asserted)).await;
    }
    let page = PatientSignInPage {
        chrome: PatientChrome::new(&state, &session, &headers),
        nhs_login: state.nhs_login.is_some(),
    };
    let body = html(&page)?;
    // Saved even when anonymous: the form's CSRF token lives in it.
    respond(&state, session, body).await
}

/// POST: the "Continue" button.
pub(super) async fn start(
    State(state): State<WebState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, WebError> {
    let session = state.sessions.load(&headers).await?;
    form(&session, &body)?;
    go_to_nhs_login(&state, session, None).await
}

/// `GET /my-record/callback?code=…&state=…` (or `?error=…`).
pub(super) async fn callback(
    State(state): State<WebState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, WebError> {
    let query = query(raw);
    let mut session = state.sessions.load(&headers).await?;
    let rp = nhs_login(&state)?;
    // A login is answered once, whatever happens.
    let pending = session.data.login.take();
    let outcome = match (query.get("error"), query.get("code"), query.get("state")) {
        (Some(error), _, _) => Err(OidcError::Provider(error.chars().take(100).collect())),
        (None, Some(code), Some(returned)) => rp.complete(pending.as_ref(), code, returned).await,
        _ => Err(OidcError::StateMismatch),
    };
    let login = match outcome {
        Ok(login) => login,
        Err(e) => {
            patient_session::sign_in_failed(&state.api.context(), &failure(&e)).await?;
            state.sessions.commit(session).await?;
            return Err(WebError::PatientSignIn(e));
        }
    };
    // An unusable identity from NHS login is a failed sign-in, worded for
    // patients (not the clinician viewer's "NHS Care Identity" page).
    let patient = match nhs_login::patient(&rp.config().issuer, &login) {
        Ok(patient) => patient,
        Err(e) => {
            let why = format!("the identity NHS login gave is unusable: {e}");
            patient_session::sign_in_failed(&state.api.context(), &why).await?;
            return Err(WebError::PatientSignIn(OidcError::Provider(e.to_string())));
        }
    };
    begin_session(&state, session, patient).await
}

/// Why a sign-in failed, for its AuditEvent: the kind of failure only. The
/// provider's own error text and URLs are left out (the text came in on
/// the query string, from anyone).
fn failure(e: &OidcError) -> String {
    match e {
        OidcError::Provider(_) => "NHS login answered with an error".to_owned(),
        OidcError::Discovery(_)
        | OidcError::Jwks(_)
        | OidcError::Token(_)
        | OidcError::Userinfo(_) => "NHS login could not be reached or answered badly".to_owned(),
        other => other.to_string(),
    }
}

/// The audit's view of a signed-in patient: the NHS number only at P9.
fn login_of(patient: &SignedInPatient) -> PatientLogin {
    PatientLogin {
        subject: patient.subject.clone(),
        nhs_number: patient.verified_nhs_number(),
    }
}

/// Signs `patient` in: a new session id, any clinician identity dropped.
pub(crate) async fn begin_session(
    state: &WebState,
    mut session: Session,
    patient: SignedInPatient,
) -> Result<Response, WebError> {
    session.rotate();
    session.data.user = None;
    session.data.access.clear();
    session.data.recent.clear();
    let next = match patient.proofing {
        Proofing::P9 => "/my-record/where-my-records-are",
        Proofing::Lower => "/my-record/prove-who-you-are",
    };
    tracing::info!(issuer = %patient.issuer, level = %patient.stated_level, "patient sign-in");
    patient_session::signed_in(&state.api.context(), &login_of(&patient)).await?;
    session.data.patient = Some(patient);
    respond(state, session, see_other(next)).await
}

/// For patients NHS login has not proved to P9: how to, and no data.
pub(super) async fn prove(
    State(state): State<WebState>,
    headers: HeaderMap,
) -> Result<Response, WebError> {
    let session = state.sessions.load(&headers).await?;
    let patient = patient(&session)?;
    if patient.proofing == Proofing::P9 {
        return Ok(see_other("/my-record/where-my-records-are"));
    }
    patient_session::explanation_viewed(&state.api.context(), &login_of(patient)).await?;
    let page = PatientProvePage {
        chrome: PatientChrome::new(&state, &session, &headers),
    };
    Ok(html(&page)?.into_response())
}

/// POST: ends the session here, then at NHS login.
pub(super) async fn sign_out(
    State(state): State<WebState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, WebError> {
    let session = state.sessions.load(&headers).await?;
    form(&session, &body)?;
    if let Some(patient) = &session.data.patient {
        patient_session::signed_out(&state.api.context(), &login_of(patient)).await?;
    }
    let id_token = session.data.patient.as_ref().and_then(|p| {
        let ours = state
            .nhs_login
            .as_ref()
            .is_some_and(|rp| rp.config().issuer == p.issuer);
        ours.then(|| p.id_token.clone()).flatten()
    });
    let at_issuer = id_token
        .as_deref()
        .zip(state.nhs_login.as_ref())
        .map(|(hint, rp)| (rp, Some(hint)));
    oidc::sign_out(&state.sessions, session, at_issuer, "/my-record/signed-out").await
}

pub(super) async fn signed_out(
    State(state): State<WebState>,
    headers: HeaderMap,
) -> Result<Response, WebError> {
    let session = state.sessions.load(&headers).await?;
    let page = PatientSignedOutPage {
        chrome: PatientChrome::new(&state, &session, &headers),
    };
    Ok(html(&page)?.into_response())
}
