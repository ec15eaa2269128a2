//! What the listeners answer before the service is built: while the store
//! opens and PostgreSQL migrations run (which may wait for another node's
//! migration, for up to ten minutes). Binding first and answering like this
//! lets an orchestrator tell "alive, not ready yet" from "dead": `/livez` is
//! 200, `/readyz` is 503 `starting`, and any API call is a 503
//! OperationOutcome instead of a refused or hanging connection.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use store::StoreError;

use super::health::livez;
use crate::ApiError;
use crate::error::json_response;

/// The router served until the real one is ready.
pub fn router() -> Router {
    Router::new()
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .fallback(not_yet)
}

async fn readyz() -> Response {
    json_response(
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        json!({"status": super::Phase::Starting.as_str()}),
    )
}

async fn not_yet() -> Response {
    let mut response = ApiError::Store(StoreError::Unavailable(
        "nrls is starting (opening the store, applying migrations)".into(),
    ))
    .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    use super::*;

    async fn call(path: &str) -> (StatusCode, String) {
        let response = router()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn alive_but_not_ready_and_the_api_says_so() {
        assert_eq!(call("/livez").await.0, StatusCode::OK);
        let (status, body) = call("/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("starting"), "{body}");
        let (status, body) = call("/consumer/FHIR/R4/DocumentReference").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("OperationOutcome"), "{body}");
    }
}
