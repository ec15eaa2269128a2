//! `Accept` negotiation: nrls answers FHIR JSON only, so a client that accepts
//! none of its forms gets a 406 OperationOutcome up front.

use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use domain::issue::{ErrorCode, Issue, IssueType};

use crate::error::{ApiError, fhir_response, outcome};

const ACCEPTABLE: &[&str] = &[
    "*/*",
    "application/*",
    "application/fhir+json",
    "application/json",
    // The DSTU2 media type some FHIR clients still send.
    "application/json+fhir",
];

fn accepts_json(accept: &str) -> bool {
    accept.split(',').any(|range| {
        let essence = range
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        ACCEPTABLE.contains(&essence.as_str())
    })
}

pub async fn negotiate(request: Request, next: Next) -> Response {
    let acceptable = request
        .headers()
        .get(header::ACCEPT)
        .map(|v| v.to_str().map(accepts_json).unwrap_or(false))
        .unwrap_or(true);
    if acceptable {
        return next.run(request).await;
    }
    let issue = Issue::new(
        ErrorCode::UnsupportedMediaType,
        IssueType::NotSupported,
        "Accept",
        "nrls answers application/fhir+json (or application/json) only",
    );
    let body = serde_json::to_string(&outcome(&[issue])).unwrap_or_default();
    fhir_response(StatusCode::NOT_ACCEPTABLE, body)
}

/// 404 for any path nrls does not serve.
pub async fn not_found() -> Response {
    ApiError::not_found(
        "no such endpoint; see /producer/FHIR/R4/metadata and /consumer/FHIR/R4/metadata",
    )
    .into_response()
}

/// 405 for a known path with a method it does not support.
pub async fn method_not_allowed() -> Response {
    ApiError::one(Issue::general(
        ErrorCode::MethodNotAllowed,
        IssueType::NotSupported,
        "this endpoint does not support that HTTP method",
    ))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_ranges() {
        assert!(accepts_json("application/fhir+json;version=1"));
        assert!(accepts_json("text/html, application/json;q=0.9"));
        assert!(accepts_json("*/*"));
        assert!(accepts_json("application/json+fhir"));
        assert!(!accepts_json("application/xml"));
        assert!(!accepts_json("text/html"));
    }
}
