//! The one place an error becomes a page. Faults of ours are logged with a
//! reference the page shows; nothing internal (no stack trace, no SQL, no
//! token contents) ever reaches the browser.

use askama::Template;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};

use crate::oidc::OidcError;
use crate::pages::{Chrome, ErrorPage};
use crate::session::store::SessionStoreError;

/// Why a page could not be shown.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// Not signed in: go to the sign-in page.
    #[error("sign-in required")]
    SignInRequired,
    /// Signed in with several roles and none chosen yet.
    #[error("a role must be chosen")]
    RoleRequired,
    /// A POST without this session's CSRF token.
    #[error("the form's CSRF token is missing or wrong")]
    Csrf,
    #[error("page not found")]
    NotFound,
    /// The demo sign-in outside `serve --demo`.
    #[error("the demo sign-in is not available")]
    DemoDisabled,
    /// Sign-in at the identity provider failed or was refused.
    #[error("sign-in failed: {0}")]
    SignIn(#[from] OidcError),
    /// The identity is usable for sign-in but not for nrls (no role...).
    #[error("sign-in refused: {0}")]
    Identity(String),
    #[error(transparent)]
    Session(#[from] SessionStoreError),
    /// An operation shared with the API failed.
    #[error("operation: {0}")]
    Api(#[from] api::ApiError),
    #[error("rendering: {0}")]
    Render(#[from] askama::Error),
    #[error("internal: {0}")]
    Internal(String),
    /// A patient page without a patient signed in.
    #[error("patient sign-in required")]
    PatientSignInRequired,
    /// A patient signed in below P9 asked for record data.
    #[error("identity not proved to P9")]
    ProofingRequired,
    /// NHS login sign-in failed or was refused.
    #[error("NHS login failed: {0}")]
    PatientSignIn(OidcError),
    /// The page took longer than `[server] request_timeout_seconds`.
    #[error("the page took longer than {0:?}")]
    TimedOut(std::time::Duration),
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let (status, heading, message, reference) = match &self {
            WebError::SignInRequired => return Redirect::to("/viewer/sign-in").into_response(),
            WebError::RoleRequired => return Redirect::to("/viewer/choose-role").into_response(),
            WebError::PatientSignInRequired => {
                return Redirect::to("/my-record/sign-in").into_response();
            }
            WebError::ProofingRequired => {
                return Redirect::to("/my-record/prove-who-you-are").into_response();
            }
            WebError::PatientSignIn(e) => {
                let reference = reference();
                tracing::warn!(%reference, error = %e, "NHS login sign-in failed");
                (
                    StatusCode::UNAUTHORIZED,
                    "Sign-in failed",
                    "We could not sign you in with NHS login. Try again.".to_owned(),
                    Some(reference),
                )
            }
            WebError::Csrf => (
                StatusCode::FORBIDDEN,
                "This form has expired",
                "Go back, reload the page and try again.".to_owned(),
                None,
            ),
            WebError::NotFound | WebError::DemoDisabled => (
                StatusCode::NOT_FOUND,
                "Page not found",
                "If you typed the web address, check it is correct.".to_owned(),
                None,
            ),
            WebError::SignIn(e) => {
                let reference = reference();
                tracing::warn!(%reference, error = %e, "viewer sign-in failed");
                (
                    StatusCode::UNAUTHORIZED,
                    "Sign-in failed",
                    "We could not sign you in with your NHS Care Identity. Try again.".to_owned(),
                    Some(reference),
                )
            }
            WebError::Identity(why) => (
                StatusCode::FORBIDDEN,
                "You cannot use this service",
                format!("Your NHS Care Identity cannot be used here: {why}."),
                None,
            ),
            WebError::Api(e) if e.status() == StatusCode::SERVICE_UNAVAILABLE => unavailable(&self),
            WebError::Session(SessionStoreError::Unavailable(_)) | WebError::TimedOut(_) => {
                unavailable(&self)
            }
            WebError::Api(e) if e.status().is_client_error() => (
                e.status(),
                "The request could not be completed",
                e.summary(),
                None,
            ),
            _ => {
                let reference = reference();
                tracing::error!(%reference, error = %self, "viewer page failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Sorry, there is a problem with the service",
                    "Try again later.".to_owned(),
                    Some(reference),
                )
            }
        };
        let page = ErrorPage {
            chrome: Chrome::anonymous(),
            heading,
            message,
            reference,
        };
        match page.render() {
            Ok(html) => (status, Html(html)).into_response(),
            Err(_) => (
                status,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                heading,
            )
                .into_response(),
        }
    }
}

fn unavailable(error: &WebError) -> (StatusCode, &'static str, String, Option<String>) {
    let reference = reference();
    tracing::warn!(%reference, %error, "viewer page unavailable");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        "Sorry, the service is unavailable",
        "Try again in a few minutes.".to_owned(),
        Some(reference),
    )
}

fn reference() -> String {
    uuid::Uuid::new_v4().to_string()
}
