//! Extractors that turn an HTTP request into checked domain inputs.

mod body;
mod caller;
pub mod headers;
mod json_body;
mod path;
mod patient;
mod search_params;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use telemetry::TraceContext;

pub use crate::caller::{Caller, RequestIds};
pub use body::PointerBody;
pub use caller::{Admin, CallerNote, CallerSlot, Consumer, Producer, Subscriber};
pub use headers::if_match_version;
pub use json_body::JsonBody;
pub use path::PathParam;
pub use patient::{Patient, PatientSession, REQUIRED_PROOFING, proved};
pub use search_params::SearchParams;

/// The request's W3C trace (joined or started by the observer), for
/// handlers that call out: each outgoing call becomes a span of it.
pub struct RequestTrace(pub Option<TraceContext>);

impl<S: Send + Sync> FromRequestParts<S> for RequestTrace {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(RequestTrace(
            parts.extensions.get::<TraceContext>().copied(),
        ))
    }
}
