//! `POST /-/reload` on the admin listener: re-reads the app registry from
//! the configuration file without a restart. What "reload" reads is up to the
//! process around the API (the binary passes a [`Reloader`]); this module
//! only runs it and reports.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::state::AppState;

/// Why a reload was rejected. The registry in force is unchanged.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct ReloadError(pub String);

/// Reloads the registry; `Ok` carries the number of apps now onboarded.
/// Blocking (it reads a file): run it off the async workers.
pub type Reloader = Arc<dyn Fn() -> Result<usize, ReloadError> + Send + Sync>;

/// Runs the reloader and reports the outcome as JSON: 200 with the app
/// count, 422 with the reason (and the old registry kept), 404 when this
/// service was built without a reloader.
pub async fn reload(State(state): State<AppState>) -> Response {
    let Some(reloader) = state.ops().reloader().cloned() else {
        return json(
            StatusCode::NOT_FOUND,
            json!({"status": "unsupported", "error": "this service has no configuration file to reload"}),
        );
    };
    match tokio::task::spawn_blocking(move || reloader()).await {
        Ok(Ok(apps)) => json(StatusCode::OK, json!({"status": "reloaded", "apps": apps})),
        Ok(Err(e)) => json(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({"status": "rejected", "error": e.0, "kept": "the previous app registry"}),
        ),
        Err(_) => json(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"status": "failed", "error": "the reload task stopped unexpectedly"}),
        ),
    }
}

fn json(status: StatusCode, body: serde_json::Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
