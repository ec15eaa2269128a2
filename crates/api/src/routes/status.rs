use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;

use crate::error::fhir_response;
use crate::state::AppState;

/// `/_status`: whether this node can serve, and its store's state. Public: it
/// reveals no patient data.
pub async fn status(State(state): State<AppState>) -> Response {
    let store = state.store();
    let (code, store_state) = match store.health().await {
        Ok(()) => (StatusCode::OK, "ok"),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
    };
    let body = json!({
        "resourceType": "OperationOutcome",
        "issue": [{
            "severity": if code == StatusCode::OK { "information" } else { "error" },
            "code": if code == StatusCode::OK { "informational" } else { "transient" },
            "diagnostics": format!("nrls {}: store {} ({store_state}), up {} s",
                env!("CARGO_PKG_VERSION"), store.backend(), state.uptime_seconds()),
        }]
    });
    fhir_response(code, body.to_string())
}
