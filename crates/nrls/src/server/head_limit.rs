//! The exact request-head limit. hyper's `max_buf_size` bounds its read
//! buffer, not the head: a head that arrives in one large read is parsed
//! whole, so a 100 KB header passed a 64 KB limit. This counts the head as
//! sent (request line and every header line) and refuses it past the limit.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use domain::systems::SPINE_ERROR_CODES;
use fhir::{Coding, OperationOutcome, OutcomeIssue};

/// The bytes of a request's head as it was sent on the wire.
pub fn head_bytes(request: &Request) -> usize {
    // "METHOD target HTTP/1.1\r\n" … "name: value\r\n" … "\r\n"
    let target = request
        .uri()
        .path_and_query()
        .map_or(1, |p| p.as_str().len());
    let line = request.method().as_str().len() + 1 + target + " HTTP/1.1\r\n".len();
    let headers: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + 2 + value.len() + 2)
        .sum();
    line + headers + 2
}

/// Refuses a request whose head exceeds `max` bytes with 431 and an
/// OperationOutcome (the router behind may be the FHIR API).
pub async fn refuse_large_heads(
    State(max): State<usize>,
    request: Request,
    next: Next,
) -> Response {
    let size = head_bytes(&request);
    if size <= max {
        return next.run(request).await;
    }
    let issue = OutcomeIssue::coded(
        "error",
        "too-long",
        Coding::new(
            SPINE_ERROR_CODES,
            "REQUEST_HEADERS_TOO_LARGE",
            "Request headers too large",
        ),
        format!("the request line and headers are {size} bytes; the limit is {max}"),
        vec![],
    );
    let body = serde_json::to_string(&OperationOutcome::new(None, vec![issue])).unwrap_or_default();
    let mut response = (
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        Body::from(body),
    )
        .into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/fhir+json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_head_is_counted_as_sent() {
        let request = Request::builder()
            .method("GET")
            .uri("/a?b=c")
            .header("host", "x")
            .body(Body::empty())
            .unwrap_or_default();
        // "GET /a?b=c HTTP/1.1\r\n" = 21, "host: x\r\n" = 9, "\r\n" = 2
        assert_eq!(head_bytes(&request), 32);
    }
}
