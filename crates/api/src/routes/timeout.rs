//! A deadline for every request: one that runs longer is answered 503 with an
//! OperationOutcome, so a stuck dependency never holds a client forever.

use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use domain::issue::{ErrorCode, Issue, IssueType};

use crate::error::ApiError;

pub async fn request_timeout(
    State(limit): State<Duration>,
    request: Request,
    next: Next,
) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::one(Issue::general(
            ErrorCode::ServiceUnavailable,
            IssueType::Transient,
            format!(
                "the request took longer than {} s; retry shortly",
                limit.as_secs_f64()
            ),
        ))
        .into_response(),
    }
}
