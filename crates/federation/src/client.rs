//! Fetching one source: a FHIR search per resource type, in parallel, paged
//! through `next` links that must stay under the registered base URL. Every
//! answer is checked (size, shape, patient) before anything of it is used.

use std::sync::Arc;

use domain::systems::NHS_NUMBER;
use reqwest::header::{ACCEPT, AUTHORIZATION, DATE, HeaderMap, LAST_MODIFIED};
use reqwest::{Client, StatusCode, Url};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::{Rfc2822, Rfc3339};
use tokio::task::JoinSet;

use crate::registry::Source;
use crate::report::{AgeBasis, DataAge};

/// Bounds on what one source may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchLimits {
    /// Pages followed per resource type.
    pub max_pages: usize,
    /// Largest response body accepted, in bytes.
    pub max_response_bytes: usize,
}

impl Default for FetchLimits {
    fn default() -> Self {
        FetchLimits {
            max_pages: 10,
            max_response_bytes: 8 * 1024 * 1024,
        }
    }
}

/// Why a source's answer could not be used. The text is shown to consumers,
/// so it names what went wrong without internal detail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    #[error("answered HTTP {status}")]
    Status { status: u16 },
    #[error("answered with a redirect (HTTP {status}); redirects are never followed")]
    Redirect { status: u16 },
    #[error("could not be reached ({0})")]
    Transport(&'static str),
    #[error("sent a malformed answer: {0}")]
    Malformed(String),
    #[error("sent an answer larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("did not accept nrls's credentials: {0}")]
    Auth(String),
    #[error("linked to a URL outside its registered base URL; it was not followed")]
    Unregistered,
    #[error("answered with more than {0} pages for one resource type")]
    TooManyPages(usize),
}

impl FetchError {
    /// The HTTP status the source answered with, when that was the problem.
    pub fn status(&self) -> Option<u16> {
        match self {
            FetchError::Status { status } | FetchError::Redirect { status } => Some(*status),
            _ => None,
        }
    }

    /// A short, fixed name of the failure (a span's `error.type`): never
    /// free text, so nothing a source sent ends up in a trace.
    pub fn kind(&self) -> &'static str {
        match self {
            FetchError::Status { .. } => "http_status",
            FetchError::Redirect { .. } => "redirect",
            FetchError::Transport(_) => "transport",
            FetchError::Malformed(_) => "malformed",
            FetchError::TooLarge { .. } => "too_large",
            FetchError::Auth(_) => "auth",
            FetchError::Unregistered => "unregistered",
            FetchError::TooManyPages(_) => "too_many_pages",
        }
    }
}

/// What a source returned, checked.
#[derive(Debug, Clone, Default)]
pub struct Fetched {
    pub resources: Vec<Value>,
    /// The oldest of the ages of its answers.
    pub data_age: Option<DataAge>,
    /// The HTTP status of its first answer (for the call's trace span).
    pub status: Option<u16>,
}

/// One outbound request's context.
#[derive(Debug, Clone)]
pub struct FetchContext {
    pub http: Client,
    pub source: Arc<Source>,
    pub nhs_number: String,
    pub bearer: Option<String>,
    pub correlation_id: Option<String>,
    pub traceparent: Option<String>,
    pub limits: FetchLimits,
}

/// Fetches every type from one source in parallel. Callers bound the time.
pub async fn fetch_source(
    context: FetchContext,
    resource_types: &[&'static str],
) -> Result<Fetched, FetchError> {
    let mut tasks = JoinSet::new();
    for (i, resource_type) in resource_types.iter().copied().enumerate() {
        let context = context.clone();
        tasks.spawn(async move { (i, fetch_type(&context, resource_type).await) });
    }
    let mut answers: Vec<(usize, Fetched)> = Vec::with_capacity(resource_types.len());
    while let Some(joined) = tasks.join_next().await {
        let (i, result) = joined.map_err(|_| FetchError::Transport("request task failed"))?;
        answers.push((i, result?));
    }
    // Keep the requested type order so nothing depends on arrival order.
    answers.sort_by_key(|(i, _)| *i);
    let mut fetched = Fetched::default();
    for (_, answer) in answers {
        fetched.resources.extend(answer.resources);
        fetched.data_age = match (fetched.data_age.take(), answer.data_age) {
            (Some(a), Some(b)) => Some(if b.as_of_unix < a.as_of_unix { b } else { a }),
            (a, b) => a.or(b),
        };
        fetched.status = fetched.status.or(answer.status);
    }
    Ok(fetched)
}

async fn fetch_type(context: &FetchContext, resource_type: &str) -> Result<Fetched, FetchError> {
    let source = &context.source;
    let mut url = source.search_url(resource_type, &context.nhs_number);
    let mut fetched = Fetched::default();
    let mut headers_age = None;
    for page in 0.. {
        if page >= context.limits.max_pages {
            return Err(FetchError::TooManyPages(context.limits.max_pages));
        }
        // Defence in depth: nothing leaves nrls for a URL outside the base.
        if !source.contains(&url) {
            return Err(FetchError::Unregistered);
        }
        let (status, headers, bundle) = get_bundle(context, url.clone()).await?;
        if page == 0 {
            fetched.status = Some(status);
            headers_age = Some(headers);
            fetched.data_age = bundle_age(&bundle);
        }
        for resource in entries(&bundle)? {
            if resource.get("resourceType").and_then(Value::as_str) != Some(resource_type) {
                // Included resources and search OperationOutcomes are not record content.
                continue;
            }
            check_patient(resource, &context.nhs_number)?;
            fetched.resources.push(resource.clone());
        }
        match next_link(&bundle) {
            None => break,
            Some(next) => {
                url = url
                    .join(next)
                    .map_err(|_| FetchError::Malformed("a next link is not a URL".into()))?;
            }
        }
    }
    if fetched.data_age.is_none()
        && let Some(headers) = headers_age
    {
        fetched.data_age = header_age(&headers, LAST_MODIFIED, AgeBasis::LastModified)
            .or_else(|| newest_resource(&fetched.resources))
            .or_else(|| header_age(&headers, DATE, AgeBasis::ResponseDate));
    }
    Ok(fetched)
}

async fn get_bundle(
    context: &FetchContext,
    url: Url,
) -> Result<(u16, HeaderMap, Value), FetchError> {
    let mut request = context
        .http
        .get(url)
        .header(ACCEPT, "application/fhir+json");
    if let Some(token) = &context.bearer {
        request = request.header(AUTHORIZATION, format!("Bearer {token}"));
    }
    if let Some(id) = &context.correlation_id {
        request = request.header("X-Correlation-Id", id);
    }
    if let Some(traceparent) = &context.traceparent {
        request = request.header("traceparent", traceparent);
    }
    let mut response = request.send().await.map_err(|e| transport(&e))?;
    let status = response.status();
    if status.is_redirection() {
        return Err(FetchError::Redirect {
            status: status.as_u16(),
        });
    }
    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        return Err(FetchError::Auth(format!("HTTP {}", status.as_u16())));
    }
    if !status.is_success() {
        return Err(FetchError::Status {
            status: status.as_u16(),
        });
    }
    let limit = context.limits.max_response_bytes;
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(FetchError::TooLarge { limit });
    }
    let headers = response.headers().clone();
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| transport(&e))? {
        if body.len() + chunk.len() > limit {
            return Err(FetchError::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    let bundle: Value = serde_json::from_slice(&body)
        .map_err(|_| FetchError::Malformed("the body is not JSON".into()))?;
    if bundle.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
        return Err(FetchError::Malformed(
            "the body is not a FHIR Bundle".into(),
        ));
    }
    Ok((status.as_u16(), headers, bundle))
}

pub(crate) fn transport(error: &reqwest::Error) -> FetchError {
    tracing::warn!(error = %error, "federation: source request failed");
    FetchError::Transport(auth::outbound::transport_problem(error))
}

fn entries(bundle: &Value) -> Result<Vec<&Value>, FetchError> {
    let Some(entry) = bundle.get("entry") else {
        return Ok(Vec::new());
    };
    let list = entry
        .as_array()
        .ok_or_else(|| FetchError::Malformed("Bundle.entry is not a list".into()))?;
    list.iter()
        .map(|e| match e.get("resource") {
            Some(r) if r.get("resourceType").and_then(Value::as_str).is_some() => Ok(r),
            _ => Err(FetchError::Malformed(
                "a Bundle entry has no resource with a resourceType".into(),
            )),
        })
        .collect()
}

fn next_link(bundle: &Value) -> Option<&str> {
    bundle
        .get("link")?
        .as_array()?
        .iter()
        .find(|l| l.get("relation").and_then(Value::as_str) == Some("next"))?
        .get("url")?
        .as_str()
}

/// A resource naming another patient by NHS number means the source answered
/// the wrong question: nothing of the answer is used.
fn check_patient(resource: &Value, nhs_number: &str) -> Result<(), FetchError> {
    for element in ["patient", "subject"] {
        let Some(identifier) = resource.get(element).and_then(|r| r.get("identifier")) else {
            continue;
        };
        if identifier.get("system").and_then(Value::as_str) == Some(NHS_NUMBER)
            && identifier.get("value").and_then(Value::as_str) != Some(nhs_number)
        {
            return Err(FetchError::Malformed(
                "it returned a resource about another patient".into(),
            ));
        }
    }
    Ok(())
}

fn instant_age(text: &str, basis: AgeBasis) -> Option<DataAge> {
    let at = OffsetDateTime::parse(text, &Rfc3339).ok()?;
    Some(DataAge {
        as_of: at.to_offset(time::UtcOffset::UTC).format(&Rfc3339).ok()?,
        as_of_unix: at.unix_timestamp(),
        basis,
    })
}

fn bundle_age(bundle: &Value) -> Option<DataAge> {
    let text = bundle.pointer("/meta/lastUpdated")?.as_str()?;
    instant_age(text, AgeBasis::BundleLastUpdated)
}

fn newest_resource(resources: &[Value]) -> Option<DataAge> {
    resources
        .iter()
        .filter_map(|r| r.pointer("/meta/lastUpdated")?.as_str())
        .filter_map(|t| instant_age(t, AgeBasis::ResourceLastUpdated))
        .max_by_key(|a| a.as_of_unix)
}

/// An HTTP-date header (RFC 9110 IMF-fixdate, which RFC 2822 parsing accepts).
fn header_age(
    headers: &HeaderMap,
    name: reqwest::header::HeaderName,
    basis: AgeBasis,
) -> Option<DataAge> {
    let text = headers.get(name)?.to_str().ok()?;
    let at = OffsetDateTime::parse(text, &Rfc2822).ok()?;
    Some(DataAge {
        as_of: at.to_offset(time::UtcOffset::UTC).format(&Rfc3339).ok()?,
        as_of_unix: at.unix_timestamp(),
        basis,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;
    use serde_json::json;

    #[test]
    fn http_dates_give_an_age() {
        let mut headers = HeaderMap::new();
        headers.insert(
            LAST_MODIFIED,
            HeaderValue::from_static("Wed, 25 Nov 2026 10:00:00 GMT"),
        );
        let age = header_age(&headers, LAST_MODIFIED, AgeBasis::LastModified).unwrap();
        assert_eq!(age.as_of, "2026-11-25T10:00:00Z");
        assert_eq!(age.age_seconds(age.as_of_unix + 90), 90);
        assert!(header_age(&headers, DATE, AgeBasis::ResponseDate).is_none());
    }

    #[test]
    fn answers_are_checked() {
        let ok = json!({"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "Condition"}}]});
        assert_eq!(entries(&ok).unwrap().len(), 1);
        assert!(entries(&json!({"resourceType": "Bundle", "entry": {}})).is_err());
        assert!(entries(&json!({"resourceType": "Bundle", "entry": [{"fullUrl": "x"}]})).is_err());
        let other =
            json!({"patient": {"identifier": {"system": NHS_NUMBER, "value": "9000000017"}}});
        assert!(check_patient(&other, "9000000009").is_err());
        let same =
            json!({"subject": {"identifier": {"system": NHS_NUMBER, "value": "9000000009"}}});
        assert!(check_patient(&same, "9000000009").is_ok());
        let link =
            json!({"link": [{"relation": "self", "url": "a"}, {"relation": "next", "url": "b"}]});
        assert_eq!(next_link(&link), Some("b"));
        let aged = json!({"meta": {"lastUpdated": "2026-11-25T09:00:00+01:00"}});
        assert_eq!(bundle_age(&aged).unwrap().as_of, "2026-11-25T08:00:00Z");
    }
}
