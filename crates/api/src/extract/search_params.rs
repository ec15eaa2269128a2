//! Search parameters from a query string (GET) or a body (POST `_search`).
//! NRL sends `_search` bodies as a JSON object; FHIR clients send a form. Both
//! end up as the same list of pairs, so GET and POST share one search.

use axum::extract::{FromRequest, Request};
use axum::http::Method;
use domain::issue::{ErrorCode, Issue, IssueType};

use crate::error::ApiError;
use crate::extract::body::{content_type_essence, parse_json, read_body};
use crate::state::AppState;

pub use crate::operations::SearchParams;

fn from_form(bytes: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(bytes)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

impl FromRequest<AppState> for SearchParams {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, ApiError> {
        let mut pairs = from_form(request.uri().query().unwrap_or_default().as_bytes());
        if request.method() != Method::POST {
            return Ok(SearchParams(pairs));
        }
        let essence = content_type_essence(request.headers());
        let limit = state.settings().body_limit;
        match essence.as_deref() {
            Some("application/x-www-form-urlencoded") => {
                pairs.extend(from_form(&read_body(request, limit).await?));
            }
            Some("application/json" | "application/fhir+json") => {
                let bytes = read_body(request, limit).await?;
                let object: serde_json::Map<String, serde_json::Value> =
                    parse_json(&bytes, "Parameters")?;
                for (name, value) in object {
                    let serde_json::Value::String(text) = value else {
                        return Err(ApiError::one(Issue::new(
                            ErrorCode::InvalidParameter,
                            IssueType::Invalid,
                            name.as_str(),
                            format!("search parameter '{name}' must be a string"),
                        )));
                    };
                    pairs.push((name, text));
                }
            }
            None => {}
            Some(other) => {
                return Err(ApiError::one(Issue::new(
                    ErrorCode::UnsupportedMediaType,
                    IssueType::NotSupported,
                    "Content-Type",
                    format!("a _search body must be JSON or a form, not {other}"),
                )));
            }
        }
        Ok(SearchParams(pairs))
    }
}
