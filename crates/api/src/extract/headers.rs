//! Request tracing headers: `X-Request-Id` (required, a UUID, as NRL requires)
//! and the optional correlation ids, checked once and echoed on every response.

use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use domain::issue::{ErrorCode, Issue, IssueType};

use crate::error::ApiError;

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub const X_CORRELATION_ID: HeaderName = HeaderName::from_static("x-correlation-id");
pub const NHSD_CORRELATION_ID: HeaderName = HeaderName::from_static("nhsd-correlation-id");

pub use crate::caller::RequestIds;

fn header_issue(name: &str, diagnostics: String) -> Issue {
    Issue::new(
        ErrorCode::MissingOrInvalidHeader,
        IssueType::Invalid,
        name,
        diagnostics,
    )
}

fn is_uuid(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// A correlation id: visible ASCII, at most 200 characters.
fn optional_id(headers: &HeaderMap, name: &HeaderName, issues: &mut Vec<Issue>) -> Option<String> {
    let value = headers.get(name)?;
    match value.to_str() {
        Ok(text)
            if !text.is_empty()
                && text.len() <= 200
                && text.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            Some(text.to_owned())
        }
        _ => {
            issues.push(header_issue(
                name.as_str(),
                format!("{name} must be 1 to 200 visible ASCII characters"),
            ));
            None
        }
    }
}

impl RequestIds {
    pub fn from_headers(headers: &HeaderMap) -> Result<RequestIds, ApiError> {
        let mut issues = Vec::new();
        let request_id = match headers.get(&X_REQUEST_ID).map(|v| v.to_str()) {
            Some(Ok(text)) if is_uuid(text) => Some(text.to_owned()),
            Some(_) => {
                issues.push(header_issue(
                    "X-Request-Id",
                    "X-Request-Id must be a UUID".into(),
                ));
                None
            }
            None => {
                issues.push(header_issue(
                    "X-Request-Id",
                    "X-Request-Id is required (a UUID)".into(),
                ));
                None
            }
        };
        let correlation_id = optional_id(headers, &X_CORRELATION_ID, &mut issues);
        optional_id(headers, &NHSD_CORRELATION_ID, &mut issues);
        match request_id {
            Some(request_id) if issues.is_empty() => Ok(RequestIds {
                request_id,
                correlation_id,
            }),
            _ => Err(ApiError::Rejected(issues)),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RequestIds {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        RequestIds::from_headers(&parts.headers)
    }
}

/// Echoes `X-Request-Id` and `X-Correlation-Id` on every response, errors included.
pub async fn echo_ids(request: Request, next: Next) -> Response {
    let echoed: Vec<(HeaderName, HeaderValue)> = [X_REQUEST_ID, X_CORRELATION_ID]
        .into_iter()
        .filter_map(|name| request.headers().get(&name).cloned().map(|v| (name, v)))
        .collect();
    let mut response = next.run(request).await;
    for (name, value) in echoed {
        response.headers_mut().insert(name, value);
    }
    response
}

/// The version named by `If-Match` (`W/"3"` or `"3"`), if the header is present.
pub fn if_match_version(headers: &HeaderMap) -> Result<Option<u32>, ApiError> {
    let Some(value) = headers.get(axum::http::header::IF_MATCH) else {
        return Ok(None);
    };
    let parsed = value.to_str().ok().and_then(|t| {
        let t = t.trim();
        let t = t.strip_prefix("W/").unwrap_or(t);
        t.strip_prefix('"')?.strip_suffix('"')?.parse::<u32>().ok()
    });
    match parsed {
        Some(v) => Ok(Some(v)),
        None => Err(ApiError::one(header_issue(
            "If-Match",
            "If-Match must be an ETag this server issued, e.g. W/\"1\"".into(),
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_shape() {
        assert!(is_uuid("60E0B220-8136-4CA5-AE46-1D97EF59D068"));
        assert!(!is_uuid("60E0B22081364CA5AE461D97EF59D068"));
        assert!(!is_uuid("60E0B220-8136-4CA5-AE46-1D97EF59D06G"));
    }

    #[test]
    fn if_match_forms() {
        let mut h = HeaderMap::new();
        assert_eq!(if_match_version(&h).unwrap(), None);
        h.insert("if-match", HeaderValue::from_static("W/\"3\""));
        assert_eq!(if_match_version(&h).unwrap(), Some(3));
        h.insert("if-match", HeaderValue::from_static("\"4\""));
        assert_eq!(if_match_version(&h).unwrap(), Some(4));
        h.insert("if-match", HeaderValue::from_static("*"));
        assert!(if_match_version(&h).is_err());
    }
}
