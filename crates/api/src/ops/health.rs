//! Probes and the metrics scrape. Unlike NRL's `/_status` (a FHIR
//! OperationOutcome for API clients), these answer orchestrators and
//! monitoring in their own terms, and need no credentials.

use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::Phase;
use crate::error::json_response;
use crate::state::AppState;

/// A store that takes longer than this to answer a health check is not ready.
const STORE_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// `GET /livez`: 200 whenever the process can answer at all. It checks
/// nothing else on purpose: restarting nrls does not fix an unreachable store.
pub async fn livez() -> Response {
    json_response(StatusCode::OK, json!({"status": "alive"}))
}

/// `GET /readyz`: 200 only when serving, the store (and its read replica)
/// answer their health check and the audit trail can take appends; 503
/// while starting, during shutdown, and while any of them is unreachable.
pub async fn readyz(State(state): State<AppState>) -> Response {
    let phase = state.ops().lifecycle().phase();
    if phase != Phase::Ready {
        return json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": phase.as_str()}),
        );
    }
    let store = state.store();
    let replica = state.consumer_store();
    // With a read replica, consumers depend on it as much as on the primary.
    let stores = async {
        store.health().await?;
        if !std::sync::Arc::ptr_eq(store, replica) {
            replica.health().await?;
        }
        Ok::<(), store::StoreError>(())
    };
    let unready = |status: &str| {
        json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": status, "store": store.backend()}),
        )
    };
    match tokio::time::timeout(STORE_CHECK_TIMEOUT, stores).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: store unhealthy");
            return unready("store_unavailable");
        }
        Err(_) => return unready("store_timeout"),
    }
    // Every patient-data request must write its AuditEvent before it is
    // answered: a node that cannot is not ready, whatever its store says.
    let audit = &state.access().audit;
    match tokio::time::timeout(STORE_CHECK_TIMEOUT, audit.health()).await {
        Ok(Ok(())) => json_response(
            StatusCode::OK,
            json!({"status": "ready", "store": store.backend(), "audit": audit.backend()}),
        ),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: audit trail unavailable");
            unready("audit_unavailable")
        }
        Err(_) => unready("audit_timeout"),
    }
}

/// `GET /metrics`: the Prometheus text exposition.
pub async fn metrics(State(state): State<AppState>) -> Response {
    let mut response = state.ops().metrics().render().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(telemetry::CONTENT_TYPE),
    );
    response
}
