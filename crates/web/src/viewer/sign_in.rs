//! Sign-in with NHS CIS2, role choice and sign-out.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};

use super::{form, respond, see_other};
use crate::WebState;
use crate::error::WebError;
use crate::oidc::{self, OidcError, cis2};
use crate::pages::{
    ChooseRolePage, Chrome, RoleChoice, SignInPage, SignedOutPage, render, role_label,
};
use crate::session::data::SignedInUser;

pub(super) async fn page(
    State(state): State<WebState>,
    headers: HeaderMap,
) -> Result<Response, WebError> {
    let session = state.sessions.load(&headers).await?;
    let page = SignInPage {
        chrome: Chrome::new(&state, &session),
        cis2: state.cis2.is_some(),
    };
    let html = render(&page)?;
    // Saved even when anonymous: the form's CSRF token lives in it.
    respond(&state, session, html).await
}

/// POST: off to CIS2, with state, nonce and PKCE verifier kept in the session.
pub(super) async fn start(
    State(state): State<WebState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, WebError> {
    let mut session = state.sessions.load(&headers).await?;
    form(&session, &body)?;
    let rp = state.cis2.as_ref().ok_or(WebError::NotFound)?;
    let (url, pending) = rp.begin().await?;
    session.data.login = Some(pending);
    respond(&state, session, see_other(&url)).await
}

/// `GET /viewer/callback?code=…&state=…` (or `?error=…`).
pub(super) async fn callback(
    State(state): State<WebState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, WebError> {
    let query: HashMap<String, String> = form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let mut session = state.sessions.load(&headers).await?;
    let rp = state.cis2.as_ref().ok_or(WebError::NotFound)?;
    // A login is answered once, whatever happens.
    let pending = session.data.login.take();
    if let Some(error) = query.get("error") {
        state.sessions.commit(session).await?;
        return Err(OidcError::Provider(error.chars().take(100).collect()).into());
    }
    let (Some(code), Some(returned_state)) = (query.get("code"), query.get("state")) else {
        state.sessions.commit(session).await?;
        return Err(OidcError::StateMismatch.into());
    };
    let login = match rp.complete(pending.as_ref(), code, returned_state).await {
        Ok(login) => login,
        Err(e) => {
            state.sessions.commit(session).await?;
            return Err(e.into());
        }
    };
    let user =
        cis2::user(&rp.config().issuer, &login).map_err(|e| WebError::Identity(e.to_string()))?;
    begin_session(&state, session, user).await
}

/// Signs `user` in: a new session id (an id planted before sign-in is
/// worthless after it), then the role choice if there is one to make.
pub(super) async fn begin_session(
    state: &WebState,
    mut session: crate::session::Session,
    user: SignedInUser,
) -> Result<Response, WebError> {
    session.rotate();
    // A session is a clinician's or a patient's, never both.
    session.data.patient = None;
    session.data.access.clear();
    session.data.recent.clear();
    let next = if user.role().is_some() {
        "/viewer/patient"
    } else {
        "/viewer/choose-role"
    };
    tracing::info!(issuer = %user.issuer, roles = user.roles.len(), "viewer sign-in");
    session.data.user = Some(user);
    respond(state, session, see_other(next)).await
}

fn role_choices(state: &WebState, user: &SignedInUser) -> Vec<RoleChoice> {
    user.roles
        .iter()
        .map(|r| RoleChoice {
            id: r.person_role_id.clone(),
            label: role_label(state, r),
        })
        .collect()
}

fn choose_page(
    state: &WebState,
    session: &crate::session::Session,
    user: &SignedInUser,
    error: Option<&'static str>,
) -> ChooseRolePage {
    let roles = role_choices(state, user);
    ChooseRolePage {
        chrome: Chrome::new(state, session),
        first_id: roles.first().map(|r| r.id.clone()).unwrap_or_default(),
        roles,
        error,
    }
}

pub(super) async fn choose_role_page(
    State(state): State<WebState>,
    headers: HeaderMap,
) -> Result<Response, WebError> {
    let session = state.sessions.load(&headers).await?;
    let user = session.data.user.as_ref().ok_or(WebError::SignInRequired)?;
    Ok(render(&choose_page(&state, &session, user, None))?.into_response())
}

pub(super) async fn choose_role(
    State(state): State<WebState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, WebError> {
    let mut session = state.sessions.load(&headers).await?;
    let fields = form(&session, &body)?;
    let user = session.data.user.as_ref().ok_or(WebError::SignInRequired)?;
    let wanted = fields.get("role");
    let Some(role) = wanted.filter(|w| user.roles.iter().any(|r| &&r.person_role_id == w)) else {
        let page = choose_page(
            &state,
            &session,
            user,
            Some("Select the role you are working in"),
        );
        let html = render(&page)?;
        return Ok((axum::http::StatusCode::BAD_REQUEST, html).into_response());
    };
    let role = role.clone();
    if let Some(user) = session.data.user.as_mut() {
        // A new role is a new basis for access: declarations start over.
        user.selected = Some(role);
    }
    session.data.access.clear();
    respond(&state, session, see_other("/viewer/patient")).await
}

/// POST: ends the session here, then at CIS2 when it supports it.
pub(super) async fn sign_out(
    State(state): State<WebState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, WebError> {
    let session = state.sessions.load(&headers).await?;
    form(&session, &body)?;
    let id_token = session.data.user.as_ref().and_then(|u| u.id_token.clone());
    let cis2 = state.cis2.as_ref().filter(|rp| {
        session
            .data
            .user
            .as_ref()
            .is_some_and(|u| u.issuer == rp.config().issuer)
    });
    let at_issuer = cis2.map(|rp| (rp, id_token.as_deref()));
    oidc::sign_out(&state.sessions, session, at_issuer, "/viewer/signed-out").await
}

pub(super) async fn signed_out(
    State(state): State<WebState>,
    headers: HeaderMap,
) -> Result<Response, WebError> {
    let session = state.sessions.load(&headers).await?;
    let page = SignedOutPage {
        chrome: Chrome::new(&state, &session),
    };
    Ok(render(&page)?.into_response())
}
