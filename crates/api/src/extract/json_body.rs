//! Plain JSON request bodies (the admin API's), with the same media-type,
//! size and parse checks as FHIR bodies, so a bad body is an OperationOutcome
//! naming the field rather than the framework's plain text.

use axum::extract::{FromRequest, OptionalFromRequest, Request};
use axum::http::header;
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::extract::body::{check_json_media_type, parse_json, read_body};
use crate::state::AppState;

/// A JSON body parsed into `T`; issue expressions name its fields.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, ApiError> {
        check_json_media_type(request.headers())?;
        let bytes = read_body(request, state.settings().body_limit).await?;
        parse_json(&bytes, "").map(JsonBody)
    }
}

/// An optional body: absent (no bytes, no `Content-Type`) is `None`; one
/// that is present is checked as strictly as a required one.
impl<T: DeserializeOwned> OptionalFromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Option<Self>, ApiError> {
        let typed = request.headers().contains_key(header::CONTENT_TYPE);
        let headers = request.headers().clone();
        let bytes = read_body(request, state.settings().body_limit).await?;
        if bytes.is_empty() && !typed {
            return Ok(None);
        }
        check_json_media_type(&headers)?;
        parse_json(&bytes, "").map(|body| Some(JsonBody(body)))
    }
}
