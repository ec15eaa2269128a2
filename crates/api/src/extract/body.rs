//! FHIR JSON request bodies: media type, size limit and parsing, each failure a
//! clear OperationOutcome rather than a framework default.

use axum::body::to_bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, header};
use domain::issue::{ErrorCode, Issue, IssueType};
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::state::AppState;

/// A JSON body parsed into the resource `T`.
pub struct FhirBody<T>(pub T);

/// A resource a body may hold: its type names the body's elements in
/// issues (`DocumentReference.subject`).
pub trait FhirResource: DeserializeOwned {
    const RESOURCE_TYPE: &'static str;
}

impl FhirResource for fhir::DocumentReference {
    const RESOURCE_TYPE: &'static str = "DocumentReference";
}

/// The media type of the body without its parameters, lower-cased.
pub fn content_type_essence(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    Some(
        value
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase(),
    )
}

/// Accepts `application/fhir+json` and `application/json`, with any parameters
/// (`charset=utf-8`, `version=1`, `fhirVersion=4.0`).
pub fn check_json_media_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let essence = content_type_essence(headers);
    match essence.as_deref() {
        Some("application/fhir+json" | "application/json") => Ok(()),
        other => Err(ApiError::one(Issue::new(
            ErrorCode::UnsupportedMediaType,
            IssueType::NotSupported,
            "Content-Type",
            format!(
                "the body must be application/fhir+json or application/json, not {}",
                other.unwrap_or("(none)")
            ),
        ))),
    }
}

/// Reads the whole body up to `limit` bytes.
pub async fn read_body(request: Request, limit: usize) -> Result<axum::body::Bytes, ApiError> {
    to_bytes(request.into_body(), limit).await.map_err(|_| {
        ApiError::one(Issue::general(
            ErrorCode::PayloadTooLarge,
            IssueType::TooLong,
            format!("the body is larger than {limit} bytes"),
        ))
    })
}

/// Parses JSON into `T`: a syntax error is `MESSAGE_NOT_WELL_FORMED`, a wrong
/// type is `INVALID_RESOURCE` naming the element.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8], root: &str) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_data() {
            let expression = if path == "." || path.is_empty() {
                root.to_owned()
            } else {
                format!("{root}.{path}")
            };
            ApiError::one(Issue::new(
                ErrorCode::InvalidResource,
                IssueType::Structure,
                expression,
                format!("element has the wrong type: {inner}"),
            ))
        } else {
            not_well_formed(&inner)
        }
    })?;
    de.end().map_err(|e| not_well_formed(&e))?;
    Ok(value)
}

fn not_well_formed(e: &serde_json::Error) -> ApiError {
    ApiError::one(Issue::general(
        ErrorCode::MessageNotWellFormed,
        IssueType::Structure,
        format!("the body is not well-formed JSON: {e}"),
    ))
}

impl<T: FhirResource> FromRequest<AppState> for FhirBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, ApiError> {
        check_json_media_type(request.headers())?;
        let bytes = read_body(request, state.settings().body_limit).await?;
        parse_json(&bytes, T::RESOURCE_TYPE).map(FhirBody)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syntax_and_type_errors_differ() {
        let e = parse_json::<fhir::DocumentReference>(b"{\"status\":", "DocumentReference")
            .unwrap_err();
        assert!(
            matches!(&e, ApiError::Rejected(i) if i[0].code == ErrorCode::MessageNotWellFormed)
        );
        let e = parse_json::<fhir::DocumentReference>(
            br#"{"subject":{"identifier":{"value":5}}}"#,
            "DocumentReference",
        )
        .unwrap_err();
        match e {
            ApiError::Rejected(i) => {
                assert_eq!(i[0].code, ErrorCode::InvalidResource);
                assert_eq!(
                    i[0].expression.as_deref(),
                    Some("DocumentReference.subject.identifier.value")
                );
            }
            other => panic!("{other:?}"),
        }
        let e =
            parse_json::<fhir::DocumentReference>(b"{} trailing", "DocumentReference").unwrap_err();
        assert!(
            matches!(&e, ApiError::Rejected(i) if i[0].code == ErrorCode::MessageNotWellFormed)
        );
    }
}
