//! The one place where every failure becomes an `OperationOutcome` with its
//! HTTP status. Handlers return `Result<_, ApiError>` and never build error
//! bodies themselves.

use audit::AuditError;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use domain::issue::{ErrorCode, Issue, IssueType};
use domain::systems::SPINE_ERROR_CODES;
use fhir::{Coding, OperationOutcome, OutcomeIssue};
use store::StoreError;
use store::access::AccessStoreError;

/// A service a request depends on, named when it fails so that the caller
/// (and the operator reading the log) knows which one is away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dependency {
    PointerStore,
    /// Relationships and objections (the access store).
    AccessFacts,
    AuditTrail,
    /// The web sessions a patient request or patient token depends on.
    Sessions,
}

impl Dependency {
    pub fn name(self) -> &'static str {
        match self {
            Dependency::PointerStore => "the pointer store",
            Dependency::AccessFacts => "the access store",
            Dependency::AuditTrail => "the audit trail",
            Dependency::Sessions => "the session store",
        }
    }
}

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request broke one or more rules; all of them are reported.
    #[error("request rejected with {} issue(s)", .0.len())]
    Rejected(Vec<Issue>),
    #[error("authentication failed: {0}")]
    Unauthenticated(String),
    /// A pointer-store rule broke (not found, duplicate, conflict...).
    #[error(transparent)]
    Store(StoreError),
    /// A dependency cannot be reached now: 503, naming which.
    #[error("{} is unavailable", .0.name())]
    Unavailable(Dependency),
    /// The app exceeded its rate limit; retry after this many seconds.
    #[error("rate limit exceeded")]
    RateLimited { retry_after_seconds: u64 },
    /// A fault of ours. Logged with a correlation id; the caller sees only the id.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn one(issue: Issue) -> Self {
        ApiError::Rejected(vec![issue])
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        ApiError::one(Issue::general(
            ErrorCode::ResourceNotFound,
            IssueType::NotFound,
            what,
        ))
    }

    pub fn forbidden(code: ErrorCode, diagnostics: impl Into<String>) -> Self {
        ApiError::one(Issue::general(code, IssueType::Forbidden, diagnostics))
    }

    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        self.parts().0
    }

    /// The first issue's code and sentence, for the audit trail.
    pub fn summary(&self) -> String {
        let (_, issues) = self.parts();
        issues
            .first()
            .map(|i| format!("{}: {}", i.code.as_str(), i.diagnostics))
            .unwrap_or_default()
    }

    /// The HTTP status and the issues to report.
    fn parts(&self) -> (StatusCode, Vec<Issue>) {
        match self {
            ApiError::Rejected(issues) => {
                let status = issues
                    .iter()
                    .map(|i| status_of(i.code))
                    .max()
                    .unwrap_or(StatusCode::BAD_REQUEST);
                (status, issues.clone())
            }
            ApiError::Unauthenticated(why) => (
                StatusCode::UNAUTHORIZED,
                vec![Issue::new(
                    ErrorCode::AccessDenied,
                    IssueType::Security,
                    "Authorization",
                    why.clone(),
                )],
            ),
            ApiError::Store(e) => store_issue(e),
            ApiError::Unavailable(dependency) => (
                StatusCode::SERVICE_UNAVAILABLE,
                vec![unavailable_issue(*dependency)],
            ),
            ApiError::RateLimited {
                retry_after_seconds,
            } => (
                StatusCode::TOO_MANY_REQUESTS,
                vec![Issue::general(
                    ErrorCode::TooManyRequests,
                    IssueType::Throttled,
                    format!("your app exceeded its rate limit; retry in {retry_after_seconds} s"),
                )],
            ),
            ApiError::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                vec![Issue::general(
                    ErrorCode::InternalServerError,
                    IssueType::Exception,
                    "an unexpected error occurred; quote the X-Request-Id when reporting it",
                )],
            ),
        }
    }
}

/// The HTTP status each code is returned with.
pub fn status_of(code: ErrorCode) -> StatusCode {
    use ErrorCode::*;
    match code {
        BadRequest
        | MessageNotWellFormed
        | InvalidResource
        | InvalidParameter
        | InvalidNhsNumber
        | InvalidIdentifierSystem
        | InvalidIdentifierValue
        | InvalidCodeSystem
        | InvalidCodeValue
        | MissingOrInvalidHeader => StatusCode::BAD_REQUEST,
        UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        AccessDenied | AccessDeniedLevel | AuthorCredentialsError => StatusCode::FORBIDDEN,
        ResourceNotFound => StatusCode::NOT_FOUND,
        MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        DuplicateRejected | Conflict => StatusCode::CONFLICT,
        PreconditionFailed => StatusCode::PRECONDITION_FAILED,
        PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        UnprocessableEntity => StatusCode::UNPROCESSABLE_ENTITY,
        TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
        InternalServerError => StatusCode::INTERNAL_SERVER_ERROR,
        ServiceUnavailable => StatusCode::SERVICE_UNAVAILABLE,
    }
}

fn store_issue(e: &StoreError) -> (StatusCode, Vec<Issue>) {
    use ErrorCode::*;
    let issue = match e {
        StoreError::NotFound(id) => Issue::general(
            ResourceNotFound,
            IssueType::NotFound,
            format!("pointer {id} does not exist"),
        ),
        StoreError::DuplicateId(id) => Issue::new(
            DuplicateRejected,
            IssueType::Duplicate,
            "DocumentReference.id",
            format!("a pointer with id {id} already exists"),
        ),
        StoreError::DuplicateMasterIdentifier(mi) => Issue::new(
            DuplicateRejected,
            IssueType::Duplicate,
            "DocumentReference.masterIdentifier",
            format!("your organisation already has a pointer with masterIdentifier {mi}"),
        ),
        StoreError::VersionConflict {
            id,
            expected,
            actual,
        } => Issue::new(
            Conflict,
            IssueType::Conflict,
            "DocumentReference.meta.versionId",
            format!(
                "pointer {id} changed while this request ran (expected version {expected}, now {actual}); read it again and retry"
            ),
        ),
        StoreError::SupersedeTargetMissing(s) => Issue::new(
            UnprocessableEntity,
            IssueType::NotFound,
            s.expression.clone(),
            format!("the pointer to supersede, {}, does not exist", s.target),
        ),
        StoreError::SupersedeMismatch { target, field } => Issue::new(
            UnprocessableEntity,
            IssueType::Value,
            target.expression.clone(),
            format!(
                "the pointer to supersede, {}, has a different {field}; only a pointer of the same patient, custodian and type can be superseded",
                target.target
            ),
        ),
        StoreError::Unavailable(_) => unavailable_issue(Dependency::PointerStore),
        StoreError::Internal(_) => Issue::general(
            InternalServerError,
            IssueType::Exception,
            "an unexpected error occurred; quote the X-Request-Id when reporting it",
        ),
    };
    (status_of(issue.code), vec![issue])
}

fn unavailable_issue(dependency: Dependency) -> Issue {
    Issue::general(
        ErrorCode::ServiceUnavailable,
        IssueType::Transient,
        format!("{} is unavailable; retry shortly", dependency.name()),
    )
}

/// A pointer store's failure: its outages and faults become ours, its rule
/// breaks are answered by `store_issue`.
impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(why) => {
                tracing::error!(error = %why, "pointer store unavailable");
                ApiError::Unavailable(Dependency::PointerStore)
            }
            StoreError::Internal(why) => ApiError::Internal(format!("pointer store: {why}")),
            rule => ApiError::Store(rule),
        }
    }
}

/// An access store's failure (relationships and objections).
impl From<AccessStoreError> for ApiError {
    fn from(e: AccessStoreError) -> Self {
        match e {
            AccessStoreError::RelationshipNotFound(id) => {
                ApiError::not_found(format!("relationship {id} does not exist"))
            }
            AccessStoreError::DuplicateRelationship(id) => ApiError::one(Issue::general(
                ErrorCode::DuplicateRejected,
                IssueType::Duplicate,
                format!("this relationship is already recorded as {id}"),
            )),
            AccessStoreError::Unavailable(why) => {
                tracing::error!(error = %why, "access store unavailable");
                ApiError::Unavailable(Dependency::AccessFacts)
            }
            AccessStoreError::Internal(why) => ApiError::Internal(format!("access store: {why}")),
        }
    }
}

/// An audit trail's failure on a read or an alert acknowledgement (a failed
/// append is always a 503: see `audit_trail::audited`).
impl From<AuditError> for ApiError {
    fn from(e: AuditError) -> Self {
        match e {
            AuditError::AlertNotFound(seq) => {
                ApiError::not_found(format!("alert {seq} does not exist"))
            }
            AuditError::AlreadyAcknowledged(seq) => ApiError::one(Issue::general(
                ErrorCode::Conflict,
                IssueType::Conflict,
                format!("alert {seq} is already acknowledged"),
            )),
            AuditError::Unavailable(why) => {
                tracing::error!(error = %why, "audit trail unavailable");
                ApiError::Unavailable(Dependency::AuditTrail)
            }
            other => ApiError::Internal(format!("audit trail: {other}")),
        }
    }
}

/// Renders issues as an OperationOutcome body.
pub fn outcome(issues: &[Issue]) -> OperationOutcome {
    let issue = issues
        .iter()
        .map(|i| {
            let mut detail = Coding::new(SPINE_ERROR_CODES, i.code.as_str(), i.code.display());
            detail.version = Some("1".to_owned());
            OutcomeIssue::coded(
                "error",
                i.issue_type.as_str(),
                detail,
                i.diagnostics.clone(),
                i.expression.iter().cloned().collect(),
            )
        })
        .collect();
    OperationOutcome::new(None, issue)
}

/// A plain JSON response that must not be cached: probes and the OAuth token
/// endpoint (RFC 6749 requires `no-store` on token responses).
pub fn json_response(status: StatusCode, body: serde_json::Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A FHIR JSON response with the right media type.
pub fn fhir_response(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(fhir::FHIR_JSON),
    );
    response
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, issues) = self.parts();
        match &self {
            ApiError::Internal(why) => tracing::error!(error = %why, "internal error"),
            ApiError::Store(e @ (StoreError::Internal(_) | StoreError::Unavailable(_))) => {
                tracing::error!(error = %e, "store failure")
            }
            _ => {}
        }
        let body = serde_json::to_string(&outcome(&issues)).unwrap_or_else(|_| {
            r#"{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"exception"}]}"#.to_owned()
        });
        let mut response = fhir_response(status, body);
        if let ApiError::RateLimited {
            retry_after_seconds,
        } = &self
            && let Ok(value) = HeaderValue::from_str(&retry_after_seconds.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
