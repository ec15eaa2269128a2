//! Path segments. A segment axum cannot decode (invalid UTF-8 such as
//! `%00%ff`, or a non-number where a number is expected) names nothing nrls
//! holds: a 404 OperationOutcome like any unknown id, never the framework's
//! plain-text rejection.

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// The route's path parameters, decoded into `T`.
pub struct PathParam<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for PathParam<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(PathParam(value)),
            Err(_) => Err(ApiError::not_found(
                "the path does not name anything this server holds",
            )),
        }
    }
}
