//! The caller extractors: `Producer`, `Consumer` and `Admin` authenticate
//! the bearer token (or trust an API gateway's metadata), check the app's
//! grant and read what the request declares about its end user. All three
//! share one authentication path; the first two one extractor body.

use std::sync::{Arc, OnceLock};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, header};
use domain::catalogue::Catalogue;
use domain::issue::{ErrorCode, Issue, IssueType};
use domain::permissions::Permissions;
use domain::{OdsCode, Role};
use serde::Deserialize;

use crate::caller::{Actor, Caller, RequestAccess};
use crate::error::ApiError;
use crate::extract::RequestIds;
use crate::state::AppState;

pub const ODS_HEADER: HeaderName = HeaderName::from_static("nhsd-end-user-organisation-ods");
pub const CONNECTION_METADATA: HeaderName = HeaderName::from_static("nhsd-connection-metadata");

/// A caller acting as a producer.
pub struct Producer(pub Caller);
/// A caller acting as a consumer.
pub struct Consumer(pub Caller);

impl FromRequestParts<AppState> for Producer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        caller_in_role(parts, state, Role::Producer)
            .await
            .map(Producer)
    }
}

impl FromRequestParts<AppState> for Consumer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        caller_in_role(parts, state, Role::Consumer)
            .await
            .map(Consumer)
    }
}

/// The one extractor body of `Producer` and `Consumer`.
async fn caller_in_role(parts: &Parts, state: &AppState, role: Role) -> Result<Caller, ApiError> {
    let mut caller = authorise(&parts.headers, state, role)?;
    caller.access = request_access(&parts.headers, state).await?;
    if let Some(slot) = parts.extensions.get::<CallerSlot>() {
        // Only the first caller of a request is noted.
        let _ = slot.0.set(CallerNote {
            client_id: Arc::clone(&caller.client_id),
            ods: caller.ods.clone(),
        });
    }
    Ok(caller)
}

/// A caller of the subscription routes, in the role of the API it called:
/// a consumer (`PRODUCER = false`), or a producer subscribing to its own
/// pointers (`true`).
pub struct Subscriber<const PRODUCER: bool>(pub Caller);

impl<const PRODUCER: bool> FromRequestParts<AppState> for Subscriber<PRODUCER> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let role = if PRODUCER {
            Role::Producer
        } else {
            Role::Consumer
        };
        caller_in_role(parts, state, role).await.map(Subscriber)
    }
}

/// Who called, once an extractor has authorised them: the app and ODS code
/// the access log and the request span name.
#[derive(Debug, Clone)]
pub struct CallerNote {
    pub client_id: Arc<str>,
    pub ods: OdsCode,
}

/// A request extension the observer (`ops::observe`) puts in every request
/// and reads after the response; the caller extractors fill it.
#[derive(Clone, Default)]
pub struct CallerSlot(Arc<OnceLock<CallerNote>>);

impl CallerSlot {
    pub fn get(&self) -> Option<&CallerNote> {
        self.0.get()
    }
}

/// An app allowed to call the admin API (`ApiSettings::admin_clients`).
pub struct Admin {
    pub client_id: Arc<str>,
    pub ids: RequestIds,
}

impl Admin {
    /// Who this admin app is in the audit trail.
    pub fn actor(&self) -> Actor<'_> {
        Actor {
            client_id: &self.client_id,
            organisation: None,
            request_id: &self.ids.request_id,
            access: None,
        }
    }
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let (_, client_id) = authenticate(&parts.headers, state)?;
        let ids = RequestIds::from_headers(&parts.headers)?;
        if !state
            .settings()
            .admin_clients
            .iter()
            .any(|c| **c == *client_id)
        {
            return Err(ApiError::forbidden(
                ErrorCode::AccessDeniedLevel,
                format!("app {client_id} is not an admin app"),
            ));
        }
        Ok(Admin { client_id, ids })
    }
}

/// The bearer token's app, within its rate limit: the authentication every
/// caller extractor shares.
fn authenticate(
    headers: &HeaderMap,
    state: &AppState,
) -> Result<(auth::Principal, Arc<str>), ApiError> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .ok_or_else(|| {
            ApiError::Unauthenticated(
                "an Authorization: Bearer <access token> header is required".into(),
            )
        })?;
    let principal = state
        .auth()
        .authenticate(bearer.trim())
        .map_err(|e| ApiError::Unauthenticated(e.to_string()))?;
    let client_id: Arc<str> = Arc::from(principal.app.client_id.as_str());
    if let Some(limit) = principal.app.rate_limit_per_second {
        state
            .rate_limiter()
            .check(&client_id, limit)
            .map_err(|retry_after_seconds| ApiError::RateLimited {
                retry_after_seconds,
            })?;
    }
    Ok((principal, client_id))
}

fn ods_header(headers: &HeaderMap) -> Result<OdsCode, ApiError> {
    let issue = |why: &str| {
        ApiError::one(Issue::new(
            ErrorCode::MissingOrInvalidHeader,
            IssueType::Invalid,
            "NHSD-End-User-Organisation-ODS",
            why,
        ))
    };
    let value = headers.get(&ODS_HEADER).ok_or_else(|| {
        issue("NHSD-End-User-Organisation-ODS is required: the ODS code you act for")
    })?;
    value
        .to_str()
        .ok()
        .and_then(OdsCode::parse)
        .ok_or_else(|| issue("NHSD-End-User-Organisation-ODS is not an ODS code"))
}

fn authorise(headers: &HeaderMap, state: &AppState, role: Role) -> Result<Caller, ApiError> {
    if state.settings().gateway_mode
        && let Some(meta) = headers.get(&CONNECTION_METADATA)
    {
        return gateway_caller(meta.as_bytes(), headers, role);
    }
    let (principal, client_id) = authenticate(headers, state)?;
    let app = &principal.app;
    let ods = ods_header(headers)?;
    let ids = RequestIds::from_headers(headers)?;
    let grant = app.grant(&ods).ok_or_else(|| {
        ApiError::forbidden(
            ErrorCode::AccessDenied,
            format!(
                "app {} is not onboarded to act for organisation {ods}",
                app.client_id
            ),
        )
    })?;
    if !grant.has_role(role) {
        return Err(ApiError::forbidden(
            ErrorCode::AccessDenied,
            format!(
                "app {} may not act as a {} for {ods}",
                app.client_id,
                role_name(role)
            ),
        ));
    }
    Ok(Caller {
        access: RequestAccess::default(),
        requires_user: app.requires_user_identity,
        client_id,
        ods,
        role,
        types: grant.permissions.for_role(role),
        ids,
    })
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Producer => "producer",
        Role::Consumer => "consumer",
    }
}

/// `NHSD-Connection-Metadata` as an API gateway in front of NRL sets it.
#[derive(Deserialize)]
struct ConnectionMetadata {
    #[serde(rename = "nrl.ods-code")]
    ods_code: String,
    #[serde(rename = "nrl.pointer-types", default)]
    pointer_types: Vec<String>,
    #[serde(rename = "client_rp_details", default)]
    client: Option<ClientDetails>,
}

#[derive(Deserialize)]
struct ClientDetails {
    #[serde(rename = "developer.app.id", default)]
    app_id: Option<String>,
}

/// Gateway mode: the gateway authenticated the app and states its organisation
/// and pointer types. Only safe when nrls is reachable through the gateway alone,
/// hence off by default.
fn gateway_caller(meta: &[u8], headers: &HeaderMap, role: Role) -> Result<Caller, ApiError> {
    let bad = |why: String| {
        ApiError::one(Issue::new(
            ErrorCode::MissingOrInvalidHeader,
            IssueType::Invalid,
            "NHSD-Connection-Metadata",
            why,
        ))
    };
    let meta: ConnectionMetadata = serde_json::from_slice(meta)
        .map_err(|e| bad(format!("NHSD-Connection-Metadata is not valid: {e}")))?;
    let ods = OdsCode::parse(&meta.ods_code)
        .ok_or_else(|| bad("nrl.ods-code is not an ODS code".into()))?;
    if ods_header(headers)? != ods {
        return Err(ApiError::forbidden(
            ErrorCode::AccessDenied,
            "NHSD-End-User-Organisation-ODS does not match the organisation in NHSD-Connection-Metadata",
        ));
    }
    let types = Permissions::type_set(Catalogue::nrl_v3(), &meta.pointer_types)
        .map_err(|e| bad(format!("nrl.pointer-types: {e}")))?;
    let ids = RequestIds::from_headers(headers)?;
    let client_id = meta
        .client
        .and_then(|c| c.app_id)
        .unwrap_or_else(|| "gateway".to_owned());
    Ok(Caller {
        access: RequestAccess::default(),
        requires_user: false,
        client_id: Arc::from(client_id.as_str()),
        ods,
        role,
        types,
        ids,
    })
}

pub const ACCESS_BASIS: HeaderName = HeaderName::from_static("nhsd-access-basis");
pub const ACCESS_REASON: HeaderName = HeaderName::from_static("nhsd-access-reason");

fn header_text<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h str>, ApiError> {
    match headers.get(name) {
        None => Ok(None),
        Some(value) => value.to_str().map(Some).map_err(|_| {
            ApiError::one(Issue::new(
                ErrorCode::MissingOrInvalidHeader,
                IssueType::Invalid,
                name,
                format!("{name} must be visible ASCII text"),
            ))
        }),
    }
}

/// Reads the end user (`NHSD-User-Identity`, a signed ID token from a trusted
/// issuer), the purpose of use and the access basis. A user identity that
/// does not verify is 401; a malformed basis is 400.
async fn request_access(headers: &HeaderMap, state: &AppState) -> Result<RequestAccess, ApiError> {
    use auth::user_identity::{PURPOSE_OF_USE_HEADER, SESSION_URID_HEADER, USER_IDENTITY_HEADER};
    use domain::access::{AccessBasis, PurposeOfUse};

    let token = header_text(headers, USER_IDENTITY_HEADER)?;
    let purpose_header = header_text(headers, PURPOSE_OF_USE_HEADER)?;
    let user = match (token, &state.access().users) {
        (None, _) => None,
        (Some(_), None) => {
            return Err(ApiError::Unauthenticated(
                "NHSD-User-Identity was sent but this server trusts no identity provider".into(),
            ));
        }
        (Some(token), Some(users)) => {
            let session = header_text(headers, SESSION_URID_HEADER)?;
            Some(
                users
                    .verify(token, session)
                    .await
                    .map_err(|e| ApiError::Unauthenticated(format!("NHSD-User-Identity: {e}")))?,
            )
        }
    };
    let purpose_text = match &user {
        Some(u) => u
            .purpose_of_use(purpose_header)
            .map_err(|e| ApiError::Unauthenticated(format!("purpose of use: {e}")))?
            .map(str::to_owned),
        None => purpose_header.map(str::to_owned),
    };
    let basis = AccessBasis::parse(
        header_text(headers, ACCESS_BASIS.as_str())?,
        header_text(headers, ACCESS_REASON.as_str())?,
    )
    .map_err(|e| {
        ApiError::one(Issue::new(
            ErrorCode::MissingOrInvalidHeader,
            IssueType::Invalid,
            "NHSD-Access-Basis",
            e.to_string(),
        ))
    })?;
    Ok(RequestAccess {
        user,
        purpose: purpose_text.as_deref().map(PurposeOfUse::parse),
        basis,
    })
}
