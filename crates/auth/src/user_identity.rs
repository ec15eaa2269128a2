//! End-user identity: the clinician behind a consumer call, proven by an
//! OIDC ID token from a trusted identity provider (NHS CIS2 in England),
//! passed in the `NHSD-User-Identity` header.
//!
//! The token is verified against its issuer's JWKS (inline, or fetched from
//! `jwks_url`, cached, refetched for an unknown `kid` at most once per
//! refresh interval; a failed or bad fetch never replaces a good set), then
//! `iss`, `aud`, `exp`, `nbf` and `iat` are checked with our clock. Verified
//! tokens are cached by token string until they expire, so a token costs one
//! signature check however many requests carry it.
//!
//! Claims read (CIS2 names where CIS2 has one):
//! - `sub`: the person id (CIS2 user UUID).
//! - `nhsid_nrbac_roles`: the user's role profiles, each with
//!   `person_roleid`, `org_code` (ODS), `role_code` and `activity_codes`.
//! - `selected_roleid`: the role profile chosen at login. The
//!   `NHSD-Session-URID` header, when sent, selects instead; a token with
//!   one role needs neither.
//! - `purpose_of_use`: nrls's own claim (CIS2 has none), an HL7 v3
//!   `ActReason` code such as `TREAT`. Callers may send the
//!   `NHSD-Purpose-Of-Use` header instead; if both are present they must agree.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use domain::OdsCode;
use domain::access::EndUser;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::error::{KeyError, KeyProblem};
use crate::expiring_map::{ExpiringMap, Lookup};
use crate::keys::{ID_TOKEN_ALGS, KeySet};
use crate::remote_keys::RemoteKeys;

mod claims;

use claims::{IdClaims, RoleClaim, peek, seconds};

/// The header carrying the ID token (the JWT itself, no `Bearer` prefix).
pub const USER_IDENTITY_HEADER: &str = "nhsd-user-identity";
/// The header naming the selected role profile (`person_roleid`).
pub const SESSION_URID_HEADER: &str = "nhsd-session-urid";
/// The header declaring the purpose of use when the token does not.
pub const PURPOSE_OF_USE_HEADER: &str = "nhsd-purpose-of-use";

/// CIS2 tokens with many roles run to a few KiB; anything this long is not one.
const MAX_TOKEN_LEN: usize = 16 * 1024;

/// One trusted identity provider, as in `[[trusted_issuers]]`.
///
/// ```toml
/// [[trusted_issuers]]
/// issuer = "https://am.nhsidentity.spineservices.nhs.uk:443/openam/oauth2/realms/root/realms/NHSIdentity/realms/Healthcare"
/// audience = "nrls-client-id-at-cis2"
/// jwks_url = "http://jwks-proxy.internal/cis2.json"   # or: jwks = { keys = [...] }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedIssuerConfig {
    /// The exact `iss` of its tokens.
    pub issuer: String,
    /// What `aud` must contain: nrls's client id at the provider.
    pub audience: String,
    /// An inline JWK set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<serde_json::Value>,
    /// Where the provider publishes its JWK set: `https://` (trusted as
    /// `[outbound_tls]` says) or `http://`; no credentials in the URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_url: Option<String>,
}

/// How ID tokens are checked. [`Default`] gives the documented values.
#[derive(Debug, Clone)]
pub struct UserIdentityOptions {
    /// Tolerated clock difference with the provider. Default 30 s.
    pub clock_skew: Duration,
    /// Verified tokens kept. Default 16 384.
    pub cache_capacity: usize,
    /// At most one JWKS fetch per issuer per interval. Default 60 s.
    pub jwks_refresh_interval: Duration,
    /// Default 5 s.
    pub jwks_fetch_timeout: Duration,
    /// The longest a token may be valid for, from now (`exp`) and from its
    /// issue (`exp - iat`). Default 12 h, a working shift: an identity token
    /// minted for a century is a stolen credential waiting to happen.
    pub max_token_lifetime: Duration,
    /// The oldest a token may be (`now - iat`). Default 12 h.
    pub max_token_age: Duration,
    /// Which servers an `https` JWKS URL may be served by.
    pub tls: crate::OutboundTls,
}

impl Default for UserIdentityOptions {
    fn default() -> Self {
        UserIdentityOptions {
            clock_skew: Duration::from_secs(30),
            cache_capacity: 16_384,
            jwks_refresh_interval: Duration::from_secs(60),
            jwks_fetch_timeout: Duration::from_secs(5),
            max_token_lifetime: Duration::from_secs(12 * 3600),
            max_token_age: Duration::from_secs(12 * 3600),
            tls: crate::OutboundTls::default(),
        }
    }
}

/// A `[[trusted_issuers]]` entry that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IssuerConfigError {
    /// A required field is blank.
    #[error("trusted_issuers[{index}]: {field} must not be empty")]
    Empty {
        /// Position in `[[trusted_issuers]]`.
        index: usize,
        /// The empty field.
        field: &'static str,
    },
    /// Trusted issuer '…' is listed more than once.
    #[error("trusted issuer '{0}' is listed more than once")]
    Duplicate(String),
    /// Trusted issuer '…': needs `jwks` (inline) and/or `jwks_url`.
    #[error("trusted issuer '{0}': needs `jwks` (inline) and/or `jwks_url`")]
    NoKeySource(String),
    /// Trusted issuer '…': jwks: ….
    #[error("trusted issuer '{issuer}': jwks: {problem}")]
    Jwks {
        /// The issuer at fault.
        issuer: String,
        /// What is wrong with its keys.
        problem: KeyProblem,
    },
    /// Trusted issuer '…': jwks_url: ….
    #[error("trusted issuer '{issuer}': jwks_url: {problem}")]
    JwksUrl {
        /// The issuer at fault.
        issuer: String,
        /// What is wrong with the URL.
        problem: String,
    },
}

/// Why an ID token was refused. Every variant is a 401; Display is safe to
/// return to the caller (never token contents).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserIdentityError {
    /// The user identity token is not a well-formed signed JWT.
    #[error("the user identity token is not a well-formed signed JWT")]
    Malformed,
    /// The user identity token is too long.
    #[error("the user identity token is too long")]
    TooLong,
    /// The user identity token's alg is not accepted.
    #[error("the user identity token's alg is not accepted")]
    UnsupportedAlgorithm,
    /// The user identity token's issuer is not trusted.
    #[error("the user identity token's issuer is not trusted")]
    UnknownIssuer,
    /// The user identity token's key: ….
    #[error("the user identity token's key: {0}")]
    Key(KeyError),
    /// The user identity token's signature is invalid.
    #[error("the user identity token's signature is invalid")]
    BadSignature,
    /// The user identity token's claims are malformed.
    #[error("the user identity token's claims are malformed")]
    BadClaims,
    /// The user identity token is meant for another service.
    #[error("the user identity token is meant for another service")]
    WrongAudience,
    /// The user identity token has no exp.
    #[error("the user identity token has no exp")]
    MissingExpiry,
    /// The user identity token has expired.
    #[error("the user identity token has expired")]
    Expired,
    /// The user identity token is not valid yet.
    #[error("the user identity token is not valid yet")]
    NotYetValid,
    /// The user identity token is valid for longer than allowed.
    #[error("the user identity token is valid for longer than {max_seconds} s")]
    LifetimeTooLong {
        /// The configured bound.
        max_seconds: u64,
    },
    /// The user identity token was issued too long ago.
    #[error("the user identity token was issued more than {max_seconds} s ago")]
    TooOld {
        /// The configured bound.
        max_seconds: u64,
    },
    /// The user identity token has no sub.
    #[error("the user identity token has no sub")]
    MissingSubject,
    /// The user identity token carries no usable nhsid_nrbac_roles entry.
    #[error("the user identity token carries no usable nhsid_nrbac_roles entry")]
    NoRole,
    /// The selected role id is not among the token's roles.
    #[error(
        "the selected role (NHSD-Session-URID or selected_roleid) is not among the user's roles"
    )]
    RoleNotFound,
    /// The user has several roles: select one with NHSD-Session-URID.
    #[error("the user has several roles: select one with NHSD-Session-URID")]
    AmbiguousRole,
    /// The purpose of use in the token and in NHSD-Purpose-Of-Use differ.
    #[error("the purpose of use in the token and in NHSD-Purpose-Of-Use differ")]
    PurposeConflict,
}

impl UserIdentityError {
    /// Always 401: the caller must present a valid identity.
    pub fn http_status(&self) -> u16 {
        401
    }
}

/// One national RBAC role profile of the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NrbacRole {
    /// `person_roleid`: what `NHSD-Session-URID` and `selected_roleid` name.
    pub person_role_id: String,
    /// `org_code`: the organisation the role is held at.
    pub org: OdsCode,
    /// `role_code`: the national RBAC role, e.g. `S0030:G0100:R0570`.
    pub role_code: Option<String>,
    /// `activity_codes`: what the role may do, e.g. `B0264`.
    pub activity_codes: Vec<String>,
}

#[derive(Debug)]
struct VerifiedIdToken {
    issuer: String,
    person_id: String,
    roles: Vec<NrbacRole>,
    selected_role_id: Option<String>,
    purpose_of_use: Option<String>,
    expires_at: i64,
}

/// A verified end user acting in one role. Cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct UserIdentity {
    token: Arc<VerifiedIdToken>,
    role: usize,
}

impl fmt::Debug for UserIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserIdentity")
            .field("issuer", &self.issuer())
            .field("person_id", &self.person_id())
            .field("role", self.role())
            .finish_non_exhaustive()
    }
}

impl UserIdentity {
    /// The trusted issuer that signed the token.
    pub fn issuer(&self) -> &str {
        &self.token.issuer
    }

    /// The person id (`sub`).
    pub fn person_id(&self) -> &str {
        &self.token.person_id
    }

    /// The role the user acts in.
    pub fn role(&self) -> &NrbacRole {
        &self.token.roles[self.role]
    }

    /// Unix seconds.
    pub fn expires_at(&self) -> i64 {
        self.token.expires_at
    }

    /// The purpose of use: the token's `purpose_of_use` claim or the
    /// `NHSD-Purpose-Of-Use` header; both present must agree.
    pub fn purpose_of_use<'a>(
        &'a self,
        header: Option<&'a str>,
    ) -> Result<Option<&'a str>, UserIdentityError> {
        let header = header.map(str::trim).filter(|h| !h.is_empty());
        match (self.token.purpose_of_use.as_deref(), header) {
            (Some(claim), Some(header)) if !claim.eq_ignore_ascii_case(header) => {
                Err(UserIdentityError::PurposeConflict)
            }
            (Some(claim), _) => Ok(Some(claim)),
            (None, header) => Ok(header),
        }
    }

    /// A user whose ID token a relying party of nrls (the web viewer) has
    /// already verified at sign-in, acting in the role they chose there: the
    /// same identity the access policy and the audit trail see for a
    /// verified `NHSD-User-Identity`. `selected_role_id` must be one of
    /// `roles` (or be `None` with exactly one role).
    pub fn signed_in(
        issuer: &str,
        person_id: &str,
        roles: Vec<NrbacRole>,
        selected_role_id: Option<&str>,
        expires_at: i64,
    ) -> Result<UserIdentity, UserIdentityError> {
        if person_id.is_empty() {
            return Err(UserIdentityError::MissingSubject);
        }
        let token = Arc::new(VerifiedIdToken {
            issuer: issuer.to_owned(),
            person_id: person_id.to_owned(),
            roles,
            selected_role_id: None,
            purpose_of_use: None,
            expires_at,
        });
        select_role(token, selected_role_id)
    }

    /// The user as the access policy sees them.
    pub fn end_user(&self) -> EndUser<'_> {
        let role = self.role();
        EndUser {
            person_id: self.person_id(),
            ods: &role.org,
            role_code: role.role_code.as_deref(),
            activity_codes: &role.activity_codes,
        }
    }
}

struct Issuer {
    audience: String,
    inline: KeySet,
    remote: Option<RemoteKeys>,
}

/// Verifies ID tokens from the configured trusted issuers.
pub struct UserIdentityVerifier {
    issuers: HashMap<String, Issuer>,
    verified: ExpiringMap<Arc<VerifiedIdToken>>,
    skew: i64,
    max_lifetime: i64,
    max_age: i64,
    clock: Clock,
}

impl fmt::Debug for UserIdentityVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut issuers: Vec<&String> = self.issuers.keys().collect();
        issuers.sort();
        f.debug_struct("UserIdentityVerifier")
            .field("issuers", &issuers)
            .finish_non_exhaustive()
    }
}

impl UserIdentityVerifier {
    /// Validates every issuer; fails on the first problem, naming it.
    pub fn new(
        configs: &[TrustedIssuerConfig],
        options: &UserIdentityOptions,
    ) -> Result<UserIdentityVerifier, IssuerConfigError> {
        let http = if configs.iter().any(|c| c.jwks_url.is_some()) {
            Some(
                options
                    .tls
                    .client_builder()
                    .timeout(options.jwks_fetch_timeout)
                    .build()
                    .map_err(|e| IssuerConfigError::JwksUrl {
                        issuer: String::new(),
                        problem: e.to_string(),
                    })?,
            )
        } else {
            None
        };
        let mut issuers = HashMap::with_capacity(configs.len());
        for (index, config) in configs.iter().enumerate() {
            let issuer = build_issuer(index, config, options, http.as_ref())?;
            if issuers.insert(config.issuer.clone(), issuer).is_some() {
                return Err(IssuerConfigError::Duplicate(config.issuer.clone()));
            }
        }
        Ok(UserIdentityVerifier {
            issuers,
            verified: ExpiringMap::new(options.cache_capacity),
            skew: i64::try_from(options.clock_skew.as_secs()).unwrap_or(i64::MAX),
            max_lifetime: i64::try_from(options.max_token_lifetime.as_secs()).unwrap_or(i64::MAX),
            max_age: i64::try_from(options.max_token_age.as_secs()).unwrap_or(i64::MAX),
            clock: Clock::system(),
        })
    }

    /// Replaces the wall clock; for tests.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// No trusted issuer is configured: every user identity is refused.
    pub fn is_empty(&self) -> bool {
        self.issuers.is_empty()
    }

    /// As [`UserIdentityVerifier::verify`] for the optional header value:
    /// `Ok(None)` when no identity was sent.
    pub async fn verify_header(
        &self,
        header: Option<&str>,
        session_urid: Option<&str>,
    ) -> Result<Option<UserIdentity>, UserIdentityError> {
        match header.map(str::trim).filter(|h| !h.is_empty()) {
            None => Ok(None),
            Some(token) => self.verify(token, session_urid).await.map(Some),
        }
    }

    /// Verifies an ID token and selects the user's role (`session_urid`
    /// from `NHSD-Session-URID`, else the token's `selected_roleid`, else
    /// the only role).
    pub async fn verify(
        &self,
        token: &str,
        session_urid: Option<&str>,
    ) -> Result<UserIdentity, UserIdentityError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(UserIdentityError::TooLong);
        }
        let now = self.clock.now();
        let verified = match self.verified.get(token, now) {
            Lookup::Live(verified) => verified,
            Lookup::Expired => return Err(UserIdentityError::Expired),
            Lookup::Absent => {
                let verified = Arc::new(self.check(token, now).await?);
                let until = verified.expires_at.saturating_add(self.skew);
                self.verified
                    .insert(token.to_owned(), Arc::clone(&verified), until, now);
                verified
            }
        };
        select_role(verified, session_urid)
    }

    async fn check(&self, token: &str, now: i64) -> Result<VerifiedIdToken, UserIdentityError> {
        let peeked = peek(token)?;
        let issuer = self
            .issuers
            .get(&peeked.issuer)
            .ok_or(UserIdentityError::UnknownIssuer)?;
        let key = issuer
            .resolve(&peeked.kid, peeked.alg)
            .await
            .map_err(UserIdentityError::Key)?;
        let mut validation = Validation::new(peeked.alg);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        let claims = jsonwebtoken::decode::<IdClaims>(token, &key, &validation)
            .map_err(|e| match e.kind() {
                ErrorKind::Json(_) | ErrorKind::Utf8(_) => UserIdentityError::BadClaims,
                _ => UserIdentityError::BadSignature,
            })?
            .claims;
        if claims.iss.as_deref() != Some(peeked.issuer.as_str()) {
            return Err(UserIdentityError::UnknownIssuer);
        }
        if !claims
            .aud
            .as_ref()
            .is_some_and(|aud| aud.contains(&issuer.audience))
        {
            return Err(UserIdentityError::WrongAudience);
        }
        let exp = seconds(claims.exp).ok_or(UserIdentityError::MissingExpiry)?;
        if exp <= now - self.skew {
            return Err(UserIdentityError::Expired);
        }
        let future = |t: Option<f64>| seconds(t).is_some_and(|t| t > now + self.skew);
        if future(claims.nbf) || future(claims.iat) {
            return Err(UserIdentityError::NotYetValid);
        }
        let issued = seconds(claims.iat);
        let expires_at = self.bound(now, exp, issued)?;
        let person_id = claims
            .sub
            .filter(|s| !s.is_empty())
            .ok_or(UserIdentityError::MissingSubject)?;
        let roles = claims
            .nhsid_nrbac_roles
            .unwrap_or_default()
            .into_iter()
            .filter_map(RoleClaim::into_role)
            .collect();
        Ok(VerifiedIdToken {
            issuer: peeked.issuer,
            person_id,
            roles,
            selected_role_id: claims.selected_roleid,
            purpose_of_use: claims.purpose_of_use.filter(|p| !p.trim().is_empty()),
            expires_at,
        })
    }

    /// Refuses a token valid for too long or issued too long ago, and says
    /// until when it may be cached: its expiry or the end of its allowed age,
    /// whichever comes first.
    fn bound(&self, now: i64, exp: i64, issued: Option<i64>) -> Result<i64, UserIdentityError> {
        let secs = |v: i64| u64::try_from(v).unwrap_or(0);
        let lifetime_limit = self.max_lifetime.saturating_add(self.skew);
        let too_long = exp.saturating_sub(now) > lifetime_limit
            || issued.is_some_and(|iat| exp.saturating_sub(iat) > lifetime_limit);
        if too_long {
            return Err(UserIdentityError::LifetimeTooLong {
                max_seconds: secs(self.max_lifetime),
            });
        }
        let Some(iat) = issued else {
            return Ok(exp);
        };
        // Like `exp`, the age limit gets the clock skew once, where the
        // cache entry ends (`verify` adds it).
        let aged_out = iat.saturating_add(self.max_age);
        if now > aged_out.saturating_add(self.skew) {
            return Err(UserIdentityError::TooOld {
                max_seconds: secs(self.max_age),
            });
        }
        Ok(exp.min(aged_out))
    }
}

impl Issuer {
    async fn resolve(&self, kid: &str, alg: Algorithm) -> Result<DecodingKey, KeyError> {
        if let Some(key) = self.inline.find(kid) {
            return if key.accepts_jwt(alg) {
                Ok(key.decoding_key().clone())
            } else {
                Err(KeyError::AlgorithmMismatch)
            };
        }
        match &self.remote {
            Some(remote) => remote.resolve_jwt(kid, alg).await,
            None => Err(KeyError::UnknownKid),
        }
    }
}

fn build_issuer(
    index: usize,
    config: &TrustedIssuerConfig,
    options: &UserIdentityOptions,
    http: Option<&reqwest::Client>,
) -> Result<Issuer, IssuerConfigError> {
    if config.issuer.trim().is_empty() {
        return Err(IssuerConfigError::Empty {
            index,
            field: "issuer",
        });
    }
    if config.audience.trim().is_empty() {
        return Err(IssuerConfigError::Empty {
            index,
            field: "audience",
        });
    }
    let name = || config.issuer.clone();
    if config.jwks.is_none() && config.jwks_url.is_none() {
        return Err(IssuerConfigError::NoKeySource(name()));
    }
    let inline = match &config.jwks {
        Some(value) => KeySet::parse_strict_for(value, &ID_TOKEN_ALGS).map_err(|problem| {
            IssuerConfigError::Jwks {
                issuer: name(),
                problem,
            }
        })?,
        None => KeySet::default(),
    };
    let remote = match (&config.jwks_url, http) {
        (Some(text), Some(http)) => {
            let problem = |problem: String| IssuerConfigError::JwksUrl {
                issuer: name(),
                problem,
            };
            let url = reqwest::Url::parse(text).map_err(|e| problem(e.to_string()))?;
            if !matches!(url.scheme(), "https" | "http")
                || url.host_str().is_none_or(str::is_empty)
                || !url.username().is_empty()
                || url.password().is_some()
            {
                return Err(problem(
                    "must be an https (or http) URL with a host and no credentials".into(),
                ));
            }
            Some(RemoteKeys::for_algs(
                &config.issuer,
                url,
                http.clone(),
                options.jwks_refresh_interval,
                &ID_TOKEN_ALGS,
            ))
        }
        _ => None,
    };
    Ok(Issuer {
        audience: config.audience.clone(),
        inline,
        remote,
    })
}

fn select_role(
    token: Arc<VerifiedIdToken>,
    session_urid: Option<&str>,
) -> Result<UserIdentity, UserIdentityError> {
    if token.roles.is_empty() {
        return Err(UserIdentityError::NoRole);
    }
    let wanted = session_urid
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .or(token.selected_role_id.as_deref());
    let role = match wanted {
        Some(id) => token
            .roles
            .iter()
            .position(|r| r.person_role_id == id)
            .ok_or(UserIdentityError::RoleNotFound)?,
        None if token.roles.len() == 1 => 0,
        None => return Err(UserIdentityError::AmbiguousRole),
    };
    Ok(UserIdentity { token, role })
}

#[cfg(test)]
#[path = "user_identity/tests.rs"]
mod tests;
