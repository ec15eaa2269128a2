//! Issues: what is wrong with a request, in terms an OperationOutcome can carry.

use std::fmt;

/// Codes from the Spine `ErrorOrWarningCode` system that NRL returns, plus the few
/// nrls adds where NRL has none (marked, and listed in docs/nrl-compatibility.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    BadRequest,
    MessageNotWellFormed,
    InvalidResource,
    InvalidParameter,
    InvalidNhsNumber,
    InvalidIdentifierSystem,
    InvalidIdentifierValue,
    InvalidCodeSystem,
    InvalidCodeValue,
    MissingOrInvalidHeader,
    UnsupportedMediaType,
    AccessDenied,
    AccessDeniedLevel,
    AuthorCredentialsError,
    ResourceNotFound,
    DuplicateRejected,
    UnprocessableEntity,
    /// nrls: `If-Match` or `meta.versionId` did not match the stored version.
    PreconditionFailed,
    /// nrls: another write changed the pointer first.
    Conflict,
    /// nrls: the request method is not supported on this path.
    MethodNotAllowed,
    /// nrls: the body is larger than the configured limit.
    PayloadTooLarge,
    /// nrls: the caller exceeded its rate limit.
    TooManyRequests,
    InternalServerError,
    ServiceUnavailable,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        use ErrorCode::*;
        match self {
            BadRequest => "BAD_REQUEST",
            MessageNotWellFormed => "MESSAGE_NOT_WELL_FORMED",
            InvalidResource => "INVALID_RESOURCE",
            InvalidParameter => "INVALID_PARAMETER",
            InvalidNhsNumber => "INVALID_NHS_NUMBER",
            InvalidIdentifierSystem => "INVALID_IDENTIFIER_SYSTEM",
            InvalidIdentifierValue => "INVALID_IDENTIFIER_VALUE",
            InvalidCodeSystem => "INVALID_CODE_SYSTEM",
            InvalidCodeValue => "INVALID_CODE_VALUE",
            MissingOrInvalidHeader => "MISSING_OR_INVALID_HEADER",
            UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
            AccessDenied => "ACCESS_DENIED",
            AccessDeniedLevel => "ACCESS_DENIED_LEVEL",
            AuthorCredentialsError => "AUTHOR_CREDENTIALS_ERROR",
            ResourceNotFound => "RESOURCE_NOT_FOUND",
            DuplicateRejected => "DUPLICATE_REJECTED",
            UnprocessableEntity => "UNPROCESSABLE_ENTITY",
            PreconditionFailed => "PRECONDITION_FAILED",
            Conflict => "CONFLICT",
            MethodNotAllowed => "METHOD_NOT_ALLOWED",
            PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            TooManyRequests => "TOO_MANY_REQUESTS",
            InternalServerError => "INTERNAL_SERVER_ERROR",
            ServiceUnavailable => "SERVICE_UNAVAILABLE",
        }
    }

    /// The display text that goes with the code.
    pub fn display(self) -> &'static str {
        use ErrorCode::*;
        match self {
            BadRequest => "Bad request",
            MessageNotWellFormed => "Message not well formed",
            InvalidResource => "Invalid validation of resource",
            InvalidParameter => "Invalid parameter",
            InvalidNhsNumber => "Invalid NHS number",
            InvalidIdentifierSystem => "Invalid identifier system",
            InvalidIdentifierValue => "Invalid identifier value",
            InvalidCodeSystem => "Invalid code system",
            InvalidCodeValue => "Invalid code value",
            MissingOrInvalidHeader => "There is a required header missing or invalid",
            UnsupportedMediaType => "Unsupported media type",
            AccessDenied => "Access has been denied to process this request",
            AccessDeniedLevel => "Access has been denied because you need higher level permissions",
            AuthorCredentialsError => "Author credentials error",
            ResourceNotFound => "Resource not found",
            DuplicateRejected => "Create would lead to creation of a duplicate resource",
            UnprocessableEntity => "Unprocessable Entity",
            PreconditionFailed => "Precondition failed",
            Conflict => "Conflict",
            MethodNotAllowed => "Method not allowed",
            PayloadTooLarge => "Payload too large",
            TooManyRequests => "Too many requests",
            InternalServerError => "Unexpected internal server error",
            ServiceUnavailable => "Service unavailable",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// FHIR `IssueType` codes nrls uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IssueType {
    Invalid,
    Structure,
    Required,
    /// A FHIR invariant (e.g. ext-1) is broken.
    Invariant,
    Value,
    CodeInvalid,
    Security,
    Forbidden,
    NotFound,
    Conflict,
    Duplicate,
    NotSupported,
    TooLong,
    Throttled,
    Processing,
    Exception,
    Transient,
}

impl IssueType {
    pub fn as_str(self) -> &'static str {
        use IssueType::*;
        match self {
            Invalid => "invalid",
            Structure => "structure",
            Required => "required",
            Invariant => "invariant",
            Value => "value",
            CodeInvalid => "code-invalid",
            Security => "security",
            Forbidden => "forbidden",
            NotFound => "not-found",
            Conflict => "conflict",
            Duplicate => "duplicate",
            NotSupported => "not-supported",
            TooLong => "too-long",
            Throttled => "throttled",
            Processing => "processing",
            Exception => "exception",
            Transient => "transient",
        }
    }
}

/// One problem with a request: a stable code, a FHIR issue type, the FHIRPath of
/// the element at fault (when there is one) and a sentence for a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    pub code: ErrorCode,
    pub issue_type: IssueType,
    pub expression: Option<String>,
    pub diagnostics: String,
}

impl Issue {
    /// An issue about the element at `expression`. An empty expression (a
    /// query parameter with no name, say) is no FHIRPath: the issue then names
    /// no element rather than carry `""`, which strict clients refuse.
    pub fn new(
        code: ErrorCode,
        issue_type: IssueType,
        expression: impl Into<String>,
        diagnostics: impl Into<String>,
    ) -> Self {
        let expression: String = expression.into();
        Issue {
            code,
            issue_type,
            expression: (!expression.trim().is_empty()).then_some(expression),
            diagnostics: diagnostics.into(),
        }
    }

    /// An issue about the request as a whole, not one element.
    pub fn general(code: ErrorCode, issue_type: IssueType, diagnostics: impl Into<String>) -> Self {
        Issue {
            code,
            issue_type,
            expression: None,
            diagnostics: diagnostics.into(),
        }
    }

    /// A required element is absent.
    pub fn required(expression: impl Into<String>) -> Self {
        let expression = expression.into();
        let diagnostics = format!("{expression} is required");
        Issue::new(
            ErrorCode::InvalidResource,
            IssueType::Required,
            expression,
            diagnostics,
        )
    }

    /// An element has a value that breaks a rule.
    pub fn invalid(expression: impl Into<String>, diagnostics: impl Into<String>) -> Self {
        Issue::new(
            ErrorCode::InvalidResource,
            IssueType::Value,
            expression,
            diagnostics,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_expression_names_no_element() {
        let issue = Issue::new(ErrorCode::InvalidParameter, IssueType::Invalid, "", "x");
        assert_eq!(issue.expression, None);
        let issue = Issue::new(
            ErrorCode::InvalidParameter,
            IssueType::Invalid,
            "_count",
            "x",
        );
        assert_eq!(issue.expression.as_deref(), Some("_count"));
    }
}
