//! The patient pages at `/my-record/`: sign in with NHS login, then see
//! where your records are (docs/patient-access.md).
//!
//! One patient per session: the NHS number is never in a URL; every page
//! is about the session's own NHS number, taken from NHS login's verified
//! `nhs_number` claim at P9. Below P9 the patient is signed in but sees an
//! explanation of how to prove who they are, and no data.
//!
//! Inside the NHS App (its User-Agent carries `nhsapp-android` or
//! `nhsapp-ios`) the pages leave out their own header and footer: the App
//! draws its own, as NHS App web integrations must.

mod api_sessions;
pub mod config;
pub mod demo;
mod records;
mod sharing;
mod sign_in;
mod summary;
mod who_looked;

use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

pub use api_sessions::PatientSessionReader;

use crate::WebState;
use crate::error::WebError;
use crate::oidc::nhs_login::{Proofing, SignedInPatient};
use crate::session::Session;

/// The patient pages' routes.
pub fn router(state: WebState) -> Router {
    let mut router = Router::new()
        .route("/my-record", get(|| async { Redirect::to("/my-record/") }))
        .route("/my-record/", get(home))
        .route(
            "/my-record/sign-in",
            get(sign_in::page).post(sign_in::start),
        )
        .route("/my-record/callback", get(sign_in::callback))
        .route("/my-record/prove-who-you-are", get(sign_in::prove))
        .route("/my-record/sign-out", post(sign_in::sign_out))
        .route("/my-record/signed-out", get(sign_in::signed_out))
        .route("/my-record/where-my-records-are", get(records::page))
        .route(
            "/my-record/sharing",
            get(sharing::page).post(sharing::change),
        )
        .route("/my-record/who-looked", get(who_looked::page))
        .route("/my-record/shared-care-record", get(summary::page))
        .route("/my-record/{*rest}", get(not_found).post(not_found));
    // The demo NHS login exists only under `serve --demo` (and its handlers
    // check again).
    if state.demo {
        router = router.route(
            "/my-record/demo-sign-in",
            get(demo::page).post(demo::sign_in),
        );
    }
    router.with_state(state)
}

/// What the patient layout needs on every page.
pub struct PatientChrome {
    pub assets: String,
    pub csrf: String,
    pub demo: bool,
    pub signed_in: bool,
    /// Inside the NHS App: no header or footer of our own.
    pub nhs_app: bool,
}

impl PatientChrome {
    pub fn new(state: &WebState, session: &Session, headers: &HeaderMap) -> PatientChrome {
        PatientChrome {
            assets: crate::assets::base(),
            csrf: session.data.csrf.clone(),
            demo: state.demo,
            signed_in: session.data.patient.is_some(),
            nhs_app: in_nhs_app(headers),
        }
    }
}

/// The request comes from the NHS App's web view.
pub fn in_nhs_app(headers: &HeaderMap) -> bool {
    headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ua| {
            let ua = ua.to_ascii_lowercase();
            ua.contains("nhsapp-android") || ua.contains("nhsapp-ios")
        })
}

/// The signed-in patient, whatever their proofing level.
fn patient(session: &Session) -> Result<&SignedInPatient, WebError> {
    session
        .data
        .patient
        .as_ref()
        .ok_or(WebError::PatientSignInRequired)
}

/// The session's NHS number: only for a patient proved to P9.
fn verified_nhs_number(session: &Session) -> Result<domain::NhsNumber, WebError> {
    patient(session)?
        .verified_nhs_number()
        .ok_or(WebError::ProofingRequired)
}

async fn home(State(state): State<WebState>, headers: HeaderMap) -> Result<Response, WebError> {
    let session = state.sessions.load(&headers).await?;
    let to = match session.data.patient.as_ref().map(|p| p.proofing) {
        None => "/my-record/sign-in",
        Some(Proofing::Lower) => "/my-record/prove-who-you-are",
        Some(Proofing::P9) => "/my-record/where-my-records-are",
    };
    Ok(Redirect::to(to).into_response())
}

/// No page takes an NHS number. A request whose path or query names one
/// that is not the session's own (a guessed or edited URL) is 404 like any
/// unknown page, and, for a patient proved to P9, audited as a failure in
/// their own trail (`api::operations::patient::refuse_other_patient`).
async fn not_found(
    State(state): State<WebState>,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> WebError {
    let Ok(session) = state.sessions.load(&headers).await else {
        return WebError::NotFound;
    };
    let Ok(own) = verified_nhs_number(&session) else {
        return WebError::NotFound;
    };
    let named = uri
        .to_string()
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|digits| domain::NhsNumber::parse(digits).ok())
        .find(|nhs| *nhs != own);
    if let Some(other) = named {
        let caller = api::operations::patient::PatientCaller::new(own);
        let refused = api::operations::patient::refuse_other_patient(
            &state.api.context(),
            &caller,
            audit::Interaction::Read,
            &other.to_string(),
        )
        .await;
        if refused.status().is_server_error() {
            return WebError::from(refused);
        }
    }
    WebError::NotFound
}

/// Renders a page; saves the session and sends its cookie when needed.
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

fn html(page: &impl Template) -> Result<axum::response::Html<String>, WebError> {
    crate::pages::render(page)
}

#[cfg(test)]
mod tests;
