//! The clinician viewer at `/viewer/`: sign in, find a patient, see where
//! their records are and their shared care record, declare a relationship
//! or break the glass.
//!
//! URLs carry no patient data except the NHS number route
//! `/viewer/patient/<NHS number>/…` (documented in docs/viewer.md); searches
//! are POSTed and redirected there, so the number never sits in a query
//! string. `Referrer-Policy: no-referrer` keeps it from leaving the site.

mod access;
pub(crate) mod caller;
pub mod demo;
mod patient;
pub(crate) mod records;
pub(crate) mod shared_record;
mod sign_in;

use std::collections::HashMap;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use crate::WebState;
use crate::error::WebError;
use crate::pages::{Chrome, HelpPage, render};
use crate::session::Session;
use crate::session::data::SignedInUser;

/// The viewer's routes. The demo sign-in is mounted only in demo mode (and
/// its handlers check again).
pub fn router(state: WebState) -> Router {
    let mut router = Router::new()
        .route("/viewer", get(|| async { Redirect::to("/viewer/") }))
        .route("/viewer/", get(home))
        .route("/viewer/sign-in", get(sign_in::page).post(sign_in::start))
        .route("/viewer/callback", get(sign_in::callback))
        .route(
            "/viewer/choose-role",
            get(sign_in::choose_role_page).post(sign_in::choose_role),
        )
        .route("/viewer/sign-out", post(sign_in::sign_out))
        .route("/viewer/signed-out", get(sign_in::signed_out))
        .route("/viewer/help", get(help))
        .route("/viewer/patient", get(patient::page).post(patient::find))
        .route("/viewer/patient/{nhs}/records", get(records::page))
        .route("/viewer/patient/{nhs}/record", get(shared_record::page))
        .route("/viewer/patient/{nhs}/access", post(access::declare))
        .route("/viewer/{*rest}", get(not_found).post(not_found));
    if state.demo {
        router = router.route("/viewer/demo-sign-in", get(demo::page).post(demo::sign_in));
    }
    router.with_state(state)
}

async fn home(State(state): State<WebState>, headers: HeaderMap) -> Result<Response, WebError> {
    let session = state.sessions.load(&headers).await?;
    let to = match session.data.user.as_ref() {
        None => "/viewer/sign-in",
        Some(user) if user.role().is_none() => "/viewer/choose-role",
        Some(_) => "/viewer/patient",
    };
    Ok(Redirect::to(to).into_response())
}

async fn help(State(state): State<WebState>, headers: HeaderMap) -> Result<Response, WebError> {
    let session = state.sessions.load(&headers).await?;
    let page = HelpPage {
        chrome: Chrome::new(&state, &session),
    };
    Ok(render(&page)?.into_response())
}

async fn not_found() -> WebError {
    WebError::NotFound
}

/// Saves the session and sends its cookie with `response` when needed.
async fn respond(
    state: &WebState,
    session: Session,
    response: impl IntoResponse,
) -> Result<Response, WebError> {
    let cookie = state.sessions.commit(session).await?;
    let mut response = response.into_response();
    if let Some(cookie) = cookie {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    Ok(response)
}

/// A redirect after a POST (303: the browser follows with a GET).
pub(crate) fn see_other(to: &str) -> Response {
    let mut response = axum::http::StatusCode::SEE_OTHER.into_response();
    if let Ok(location) = HeaderValue::from_str(to) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

/// The signed-in user acting in a chosen role.
fn signed_in(session: &Session) -> Result<&SignedInUser, WebError> {
    let user = session.data.user.as_ref().ok_or(WebError::SignInRequired)?;
    if user.role().is_none() {
        return Err(WebError::RoleRequired);
    }
    Ok(user)
}

/// A urlencoded form body, and its CSRF token checked against the session.
pub(crate) fn form(session: &Session, body: &Bytes) -> Result<HashMap<String, String>, WebError> {
    let fields: HashMap<String, String> = form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if !crate::session::csrf::verify(&session.data.csrf, fields.get("csrf").map(String::as_str)) {
        return Err(WebError::Csrf);
    }
    Ok(fields)
}

#[cfg(test)]
pub(crate) mod tests;
