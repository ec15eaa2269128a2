//! Every way authentication can fail, typed so the HTTP layer maps each to a
//! status without inspecting strings. Messages are safe to show a client: they
//! never carry a token, an assertion or key material.

use std::fmt;

/// A configuration the registry or the authenticator refuses at start-up.
/// Every variant names the app (by client id) and the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "apps[{index}]: client_id must be 1 to 128 visible ASCII characters, got {client_id:?}"
    )]
    BadClientId { index: usize, client_id: String },
    #[error("app '{client_id}': client_id is registered more than once")]
    DuplicateClientId { client_id: String },
    #[error("app '{client_id}': {field} must not be empty")]
    EmptyField {
        client_id: String,
        field: &'static str,
    },
    #[error("app '{client_id}': needs a key source: `jwks` (inline) and/or `jwks_url`")]
    NoKeySource { client_id: String },
    #[error("app '{client_id}': jwks_url {url:?}: {problem}")]
    JwksUrl {
        client_id: String,
        url: String,
        problem: String,
    },
    #[error("app '{client_id}': jwks: {problem}")]
    Jwks {
        client_id: String,
        problem: KeyProblem,
    },
    #[error("app '{client_id}': organisations: at least one organisation is required")]
    NoOrganisations { client_id: String },
    #[error("app '{client_id}': organisations: ods {ods:?} is not an ODS code")]
    BadOds { client_id: String, ods: String },
    #[error("app '{client_id}': organisations: ods '{ods}' is listed more than once")]
    DuplicateOds { client_id: String, ods: String },
    #[error("app '{client_id}': organisation '{ods}': roles: {role:?} is not producer or consumer")]
    UnknownRole {
        client_id: String,
        ods: String,
        role: String,
    },
    #[error("app '{client_id}': organisation '{ods}': roles must name producer and/or consumer")]
    NoRoles { client_id: String, ods: String },
    #[error("app '{client_id}': organisation '{ods}': pointer_types: {problem}")]
    UnknownPointerType {
        client_id: String,
        ods: String,
        problem: String,
    },
    #[error("app '{client_id}': organisation '{ods}': pointer_types must not be empty")]
    NoPointerTypes { client_id: String, ods: String },
    #[error("JWKS HTTP client could not be built: {0}")]
    HttpClient(String),
    #[error("token settings: {field}: {problem}")]
    Settings {
        field: &'static str,
        problem: &'static str,
    },
}

/// Why one JWK (or a whole key set) cannot be used to verify client assertions.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyProblem {
    #[error("not a JWK set: {0}")]
    NotAKeySet(String),
    #[error("the key set holds no keys")]
    Empty,
    #[error("key {key}: {problem}")]
    Key { key: String, problem: &'static str },
    #[error("kid '{0}' is used by more than one key")]
    DuplicateKid(String),
}

/// Why a signing key for a client assertion could not be found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("no key with this kid is registered for the client")]
    UnknownKid,
    #[error("the key with this kid cannot verify this alg")]
    AlgorithmMismatch,
    #[error("the client's JWKS could not be fetched")]
    KeySetUnavailable,
}

/// A failed request to the token endpoint, shaped as an RFC 6749 §5.2 error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("invalid_request: {0}")]
    InvalidRequest(RequestProblem),
    #[error("unsupported_grant_type: grant_type must be client_credentials")]
    UnsupportedGrantType,
    #[error("invalid_client: {0}")]
    InvalidClient(ClientRejection),
    /// The replay cache is full of live assertions. We fail closed rather
    /// than forget a jti that could then be replayed.
    #[error("temporarily_unavailable: too many recent client assertions, retry shortly")]
    TemporarilyUnavailable,
    /// Signing the access token failed; nothing the client did.
    #[error("server_error: the access token could not be issued")]
    ServerError,
}

impl TokenError {
    /// The RFC 6749 `error` code.
    pub fn oauth_code(&self) -> &'static str {
        match self {
            TokenError::InvalidRequest(_) => "invalid_request",
            TokenError::UnsupportedGrantType => "unsupported_grant_type",
            TokenError::InvalidClient(_) => "invalid_client",
            TokenError::TemporarilyUnavailable => "temporarily_unavailable",
            TokenError::ServerError => "server_error",
        }
    }

    /// The RFC 6749 `error_description`: what to fix, never key material.
    pub fn description(&self) -> String {
        match self {
            TokenError::InvalidRequest(p) => p.to_string(),
            TokenError::InvalidClient(r) => r.to_string(),
            TokenError::UnsupportedGrantType => "grant_type must be client_credentials".to_owned(),
            TokenError::TemporarilyUnavailable => {
                "too many recent client assertions, retry shortly".to_owned()
            }
            TokenError::ServerError => "the access token could not be issued".to_owned(),
        }
    }

    /// 400 for a bad request, 401 for a client that failed authentication
    /// (RFC 6749 §5.2), 503 and 500 for our own trouble.
    pub fn http_status(&self) -> u16 {
        match self {
            TokenError::InvalidRequest(_) | TokenError::UnsupportedGrantType => 400,
            TokenError::InvalidClient(_) => 401,
            TokenError::TemporarilyUnavailable => 503,
            TokenError::ServerError => 500,
        }
    }

    /// The JSON body for the token endpoint's error response.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({ "error": self.oauth_code(), "error_description": self.description() })
    }
}

/// A token request that is malformed before any client is identified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestProblem {
    MissingParameter(&'static str),
    DuplicateParameter(&'static str),
    WrongAssertionType,
    AssertionTooLong,
    MalformedAssertion,
    MissingKid,
    MissingIssuer,
}

impl fmt::Display for RequestProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestProblem::MissingParameter(p) => write!(f, "missing parameter {p}"),
            RequestProblem::DuplicateParameter(p) => write!(f, "parameter {p} is repeated"),
            RequestProblem::WrongAssertionType => f.write_str(
                "client_assertion_type must be urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            RequestProblem::AssertionTooLong => f.write_str("client_assertion is too long"),
            RequestProblem::MalformedAssertion => {
                f.write_str("client_assertion is not a well-formed signed JWT")
            }
            RequestProblem::MissingKid => f.write_str("client_assertion header has no kid"),
            RequestProblem::MissingIssuer => f.write_str("client_assertion has no iss claim"),
        }
    }
}

/// Why a client assertion did not authenticate its client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientRejection {
    UnknownClient,
    SubjectNotIssuer,
    ClientIdMismatch,
    UnsupportedAlgorithm,
    Key(KeyError),
    BadSignature,
    BadClaims,
    MissingExpiry,
    Expired,
    LifetimeTooLong { max_seconds: u64 },
    NotYetValid,
    WrongAudience { expected: String },
    MissingJti,
    Replayed,
}

impl fmt::Display for ClientRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientRejection::UnknownClient => f.write_str("iss is not a registered client_id"),
            ClientRejection::SubjectNotIssuer => f.write_str("sub must equal iss"),
            ClientRejection::ClientIdMismatch => {
                f.write_str("client_id does not match the client assertion")
            }
            ClientRejection::UnsupportedAlgorithm => {
                f.write_str("client_assertion alg must be RS384, PS384 or ES384")
            }
            ClientRejection::Key(e) => e.fmt(f),
            ClientRejection::BadSignature => f.write_str("client_assertion signature is invalid"),
            ClientRejection::BadClaims => f.write_str("client_assertion claims are malformed"),
            ClientRejection::MissingExpiry => f.write_str("client_assertion has no exp claim"),
            ClientRejection::Expired => f.write_str("client_assertion has expired"),
            ClientRejection::LifetimeTooLong { max_seconds } => write!(
                f,
                "client_assertion exp must be no more than {max_seconds} seconds in the future"
            ),
            ClientRejection::NotYetValid => {
                f.write_str("client_assertion is not valid yet (nbf or iat in the future)")
            }
            ClientRejection::WrongAudience { expected } => {
                write!(f, "client_assertion aud must be {expected}")
            }
            ClientRejection::MissingJti => f.write_str("client_assertion has no jti claim"),
            ClientRejection::Replayed => f.write_str("client_assertion jti has already been used"),
        }
    }
}

/// Why a bearer access token was refused. Display is safe to return.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no bearer access token was supplied")]
    Missing,
    #[error("the access token is malformed")]
    Malformed,
    #[error("the access token signature is invalid")]
    BadSignature,
    #[error("the access token has expired")]
    Expired,
    #[error("the access token names an unknown client")]
    UnknownClient,
    #[error("the access token was issued by another service")]
    WrongIssuer,
    #[error("the access token is meant for another service")]
    WrongAudience,
    /// A patient's token on an app route, or an app's on a patient route.
    #[error(
        "the access token is for another API: patient tokens open only /patient/FHIR/R4, app tokens never do"
    )]
    WrongKind,
}

impl AuthError {
    /// The RFC 6750 §3.1 error code for `WWW-Authenticate`; none when no token
    /// was sent, as the RFC asks.
    pub fn bearer_error(&self) -> Option<&'static str> {
        match self {
            AuthError::Missing => None,
            _ => Some("invalid_token"),
        }
    }

    /// Always 401: every variant means "authenticate again".
    pub fn http_status(&self) -> u16 {
        401
    }
}

/// A client assertion that could not be minted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssertionError {
    #[error("the signing key is not a valid {alg} private key in PEM (PKCS#8; PKCS#1 for RSA)")]
    InvalidKey { alg: &'static str },
    #[error("the client assertion could not be signed")]
    Signing,
}
