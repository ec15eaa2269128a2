//! Server-rendered pages served by the nrls binary: the clinician viewer at
//! `/viewer/` and the patient pages at `/my-record/`, on one shared foundation:
//!
//! - `templates/`: askama templates (compile-time checked), one per page,
//!   on a shared NHS.UK layout ([`pages`]);
//! - [`assets`]: the vendored NHS.UK frontend, compiled in;
//! - [`headers`]: the Content-Security-Policy and other security headers,
//!   `Cache-Control: no-store` on every page;
//! - [`session`]: server-side sessions in the shared store, CSRF tokens;
//! - [`oidc`]: the OpenID Connect relying party (CIS2 and NHS login);
//! - [`error`]: the one place an error becomes an HTML page.
//!
//! Handlers call the same operations as the API (`api::operations::search`,
//! `api::operations::shared_care_record`, which audit as they answer) with a
//! caller built from the session: no second search, policy or audit.

pub mod assets;
pub mod config;
pub mod error;
pub mod headers;
pub mod oidc;
pub mod pages;
pub mod patient;
pub mod session;
pub mod viewer;

use std::collections::HashMap;
use std::sync::Arc;

use api::AppState;
use axum::Router;
use axum::routing::get;

pub use config::{ViewerConfig, ViewerConfigError};
pub use error::WebError;
use oidc::RelyingParty;
pub use patient::config::{PatientAccessConfig, PatientAccessConfigError};
use session::Sessions;

/// What the web pages share.
pub struct WebInner {
    pub api: AppState,
    pub sessions: Sessions,
    /// NHS CIS2 sign-in; `None` when `[viewer]` is not configured.
    pub cis2: Option<RelyingParty>,
    /// NHS login for the patient pages; `None` when `[patient_access]` is
    /// not configured.
    pub nhs_login: Option<RelyingParty>,
    /// Pointer type codes patients see (`[patient_access] visible_types`).
    pub patient_types: Vec<String>,
    /// `serve --demo`: the demo sign-in exists. Never true otherwise.
    pub demo: bool,
    /// Organisation names by ODS code, for custodians and roles.
    pub organisations: HashMap<String, String>,
    /// The public URL is https: `Strict-Transport-Security` is sent.
    pub https: bool,
}

/// Cheap to clone: one `Arc`.
#[derive(Clone)]
pub struct WebState(pub Arc<WebInner>);

impl std::ops::Deref for WebState {
    type Target = WebInner;
    fn deref(&self) -> &WebInner {
        &self.0
    }
}

impl WebInner {
    /// An organisation's name, or its ODS code when unknown.
    pub fn organisation_name(&self, ods: &str) -> String {
        self.organisations
            .get(ods)
            .cloned()
            .unwrap_or_else(|| format!("Organisation {ods}"))
    }
}

/// The web pages: the viewer and the assets they use. Served beside the
/// API with `api::router_with_pages`, so they share its observe layer
/// (access log, request metrics, traces).
pub fn router(state: WebState) -> Router {
    let https = state.https;
    let timeout = state.api.settings().request_timeout;
    Router::new()
        .route("/assets/{tag}/{*path}", get(assets::serve))
        .merge(viewer::router(state.clone()))
        .merge(patient::router(state))
        // The API's limit (`[server] request_timeout_seconds`), answered
        // with a page rather than an OperationOutcome, inside the security
        // headers so that page has them too.
        .layer(axum::middleware::from_fn_with_state(
            timeout,
            headers::timeout,
        ))
        .layer(axum::middleware::from_fn_with_state(
            https,
            headers::security,
        ))
}
