//! Routers by audience. Each handler extracts checked input, calls one pointer
//! operation and shapes the response; nothing else.

pub mod admin;
pub mod capability;
mod consumer;
mod negotiate;
mod oauth;
mod producer;
pub mod shared_care_record;
mod status;
pub mod table;
mod timeout;

pub use capability::capability_statement;
pub use consumer::router as consumer_router;
pub use negotiate::{method_not_allowed, negotiate, not_found};
pub use oauth::{TOKEN_PATH, router as oauth_router};
pub use producer::router as producer_router;
pub use status::status;
pub use timeout::request_timeout;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use domain::PointerRecord;
use domain::systems::NRLF_SUCCESS_CODES;
use fhir::{Coding, OperationOutcome, OutcomeIssue};

use audit::Interaction;
use domain::search::Audience;

use crate::audit_trail::{AuditDraft, audited};
use crate::error::{ApiError, fhir_response};
use crate::extract::{Caller, SearchParams};
use crate::state::AppState;

pub const PRODUCER_BASE: &str = "/producer/FHIR/R4";
pub const CONSUMER_BASE: &str = "/consumer/FHIR/R4";
/// Where each API's pointers live; the base of `fullUrl` and paging links.
const PRODUCER_POINTERS: &str = "/producer/FHIR/R4/DocumentReference";
const CONSUMER_POINTERS: &str = "/consumer/FHIR/R4/DocumentReference";

/// A 2xx OperationOutcome such as NRL returns for writes.
pub(crate) fn success(status: StatusCode, system: &str, code: &str, display: &str) -> Response {
    let issue = OutcomeIssue::coded(
        "information",
        "informational",
        Coding::new(system, code, display),
        display,
        vec![],
    );
    let body = serde_json::to_string(&OperationOutcome::new(None, vec![issue])).unwrap_or_default();
    fhir_response(status, body)
}

pub(crate) fn success_code(status: StatusCode, code: &str, display: &str) -> Response {
    success(status, NRLF_SUCCESS_CODES, code, display)
}

/// `W/"<version>"`.
pub(crate) fn etag(version: u32) -> HeaderValue {
    HeaderValue::from_str(&format!("W/\"{version}\""))
        .unwrap_or(HeaderValue::from_static("W/\"0\""))
}

/// A pointer as stored, with its ETag.
pub(crate) fn pointer_response(record: PointerRecord) -> Response {
    let version = record.version;
    let mut response = fhir_response(StatusCode::OK, record.json);
    response.headers_mut().insert(header::ETAG, etag(version));
    response
}

/// A search for either audience, audited: GET and POST `_search` of both
/// APIs land here.
pub(crate) async fn audited_search(
    state: &AppState,
    caller: &Caller,
    audience: Audience,
    params: &SearchParams,
) -> Result<Response, ApiError> {
    let base = match audience {
        Audience::Producer => PRODUCER_POINTERS,
        Audience::Consumer => CONSUMER_POINTERS,
    };
    let mut draft = AuditDraft::new(Interaction::Search);
    let result = crate::pointers::search(state, caller, audience, params, base, &mut draft)
        .await
        .map(|outcome| fhir_response(StatusCode::OK, outcome.bundle));
    audited(state, caller, draft, result).await
}
