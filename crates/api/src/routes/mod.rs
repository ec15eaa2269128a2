//! Routers by audience. Each handler extracts checked input, calls one
//! operation (`operations`) and shapes the response: status, headers, URLs.

pub mod admin;
pub mod capability;
mod consumer;
mod negotiate;
mod oauth;
pub mod patient;
mod producer;
pub mod shared_care_record;
mod status;
pub mod subscriptions;

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
use fhir::{BundleEntry, Coding, OperationOutcome, OutcomeIssue, SearchsetBuilder};

use crate::error::fhir_response;
use crate::extract::SearchParams;
use crate::operations::SearchPage;

pub const PRODUCER_BASE: &str = "/producer/FHIR/R4";
pub const CONSUMER_BASE: &str = "/consumer/FHIR/R4";
pub const ADMIN_BASE: &str = "/admin";
/// Where each API's pointers live; the base of `fullUrl` and paging links.
pub const PRODUCER_POINTERS: &str = "/producer/FHIR/R4/DocumentReference";
pub const CONSUMER_POINTERS: &str = "/consumer/FHIR/R4/DocumentReference";

/// A 2xx OperationOutcome such as NRL returns for writes. One code system
/// for create, update and delete: `NRLF-SuccessCode`, as NRLF answers (its
/// OpenAPI example for create names `NRLF-ResponseCode`, its service and
/// its own feature tests do not).
pub(crate) fn success(status: StatusCode, code: &str, display: &str) -> Response {
    let issue = OutcomeIssue::coded(
        "information",
        "informational",
        Coding::new(NRLF_SUCCESS_CODES, code, display),
        display,
        vec![],
    );
    let body = serde_json::to_string(&OperationOutcome::new(None, vec![issue])).unwrap_or_default();
    fhir_response(status, body)
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

/// A search page as a searchset Bundle: `fullUrl`s and paging links under
/// `public_url` + `pointers` (the API's DocumentReference path). Pointers
/// are stored as the JSON that is served, never re-serialised.
pub fn searchset(
    page: &SearchPage,
    params: &SearchParams,
    public_url: &str,
    pointers: &str,
) -> Response {
    let link = |cursor: Option<&str>| {
        let mut url = String::with_capacity(256);
        url.push_str(public_url);
        url.push_str(pointers);
        url.push('?');
        let mut form = form_urlencoded::Serializer::new(String::new());
        for (k, v) in params.pairs().filter(|(k, _)| *k != "_cursor") {
            form.append_pair(k, v);
        }
        if let Some(c) = cursor {
            form.append_pair("_cursor", c);
        }
        url.push_str(&form.finish());
        url
    };
    let self_url = link(page.cursor.as_deref());
    let next_url = page.next_cursor.as_deref().map(|c| link(Some(c)));
    let size: usize = page.entries.iter().map(|r| r.json.len() + 160).sum();
    let mut bundle = SearchsetBuilder::new(page.total, &self_url, next_url.as_deref(), size);
    let mut full_url = String::with_capacity(public_url.len() + pointers.len() + 72);
    for record in &page.entries {
        full_url.clear();
        full_url.push_str(public_url);
        full_url.push_str(pointers);
        full_url.push('/');
        full_url.push_str(record.id.as_str());
        bundle.push(BundleEntry {
            full_url: &full_url,
            resource_json: &record.json,
        });
    }
    fhir_response(StatusCode::OK, bundle.finish())
}
