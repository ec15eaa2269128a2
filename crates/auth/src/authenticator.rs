//! The two things the HTTP layer asks of this crate: exchange a client
//! assertion for an access token (the token endpoint), and turn a bearer
//! token into the app it was issued to (every other endpoint).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};

use crate::access_token::{AccessTokenKeys, MAX_TOKEN_LEN, bearer_token};
use crate::assertion::{self, AssertionRules};
use crate::clock::Clock;
use crate::error::{AuthError, ClientRejection, ConfigError, TokenError};
use crate::expiring_map::{ExpiringMap, InsertRefused, Lookup};
use crate::hash_for_log;
use crate::registry::{App, AppRegistry};
use crate::token_request::TokenRequest;

/// HS256 is only as strong as its key: RFC 7518 §3.2 asks for 256 bits.
const MIN_SECRET_LEN: usize = 32;

/// How tokens are issued and checked.
#[derive(Clone)]
pub struct TokenSettings {
    /// nrls's base URL: `iss` and `aud` of every access token.
    pub issuer: String,
    /// The exact URL a client assertion's `aud` must name.
    pub token_endpoint: String,
    /// Default 15 minutes.
    pub access_token_lifetime: Duration,
    /// HS256 key shared by all nodes; at least 32 bytes.
    pub signing_secret: Vec<u8>,
    /// How far ahead an assertion's `exp` may be. Default 5 minutes.
    pub max_assertion_lifetime: Duration,
    /// Tolerated difference between a client's clock and ours when checking
    /// assertion `exp`, `nbf` and `iat`. Default 30 s. Access tokens get
    /// none: we minted them with our own clock.
    pub clock_skew: Duration,
    /// Verified access tokens kept in memory. Default 65 536 (~25 MB).
    pub token_cache_capacity: usize,
    /// Assertion `jti`s remembered until they expire. Default 100 000;
    /// when full of live ones, token requests get 503 rather than risk a
    /// replay.
    pub replay_cache_capacity: usize,
}

impl TokenSettings {
    /// Settings with the documented defaults.
    pub fn new(
        issuer: impl Into<String>,
        token_endpoint: impl Into<String>,
        signing_secret: Vec<u8>,
    ) -> TokenSettings {
        TokenSettings {
            issuer: issuer.into(),
            token_endpoint: token_endpoint.into(),
            access_token_lifetime: Duration::from_secs(15 * 60),
            signing_secret,
            max_assertion_lifetime: Duration::from_secs(5 * 60),
            clock_skew: Duration::from_secs(30),
            token_cache_capacity: 65_536,
            replay_cache_capacity: 100_000,
        }
    }

    fn check(&self) -> Result<(), ConfigError> {
        let problem = |field, problem| Err(ConfigError::Settings { field, problem });
        if self.issuer.trim().is_empty() {
            return problem("issuer", "must not be empty");
        }
        if self.token_endpoint.trim().is_empty() {
            return problem("token_endpoint", "must not be empty");
        }
        if self.signing_secret.len() < MIN_SECRET_LEN {
            return problem("signing_secret", "must be at least 32 bytes");
        }
        if self.access_token_lifetime.as_secs() == 0 {
            return problem("access_token_lifetime", "must be at least one second");
        }
        if self.max_assertion_lifetime.as_secs() == 0 {
            return problem("max_assertion_lifetime", "must be at least one second");
        }
        Ok(())
    }
}

// Hand-written so the secret never reaches a log.
impl fmt::Debug for TokenSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSettings")
            .field("issuer", &self.issuer)
            .field("token_endpoint", &self.token_endpoint)
            .field("access_token_lifetime", &self.access_token_lifetime)
            .field("signing_secret", &"<redacted>")
            .field("max_assertion_lifetime", &self.max_assertion_lifetime)
            .field("clock_skew", &self.clock_skew)
            .field("token_cache_capacity", &self.token_cache_capacity)
            .field("replay_cache_capacity", &self.replay_cache_capacity)
            .finish()
    }
}

/// The token endpoint's success body (RFC 6749 §5.1).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    /// Always `bearer`.
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
}

impl fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenResponse")
            .field("access_token", &hash_for_log(&self.access_token))
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

/// The app a request acts as. Cheap to clone (one `Arc`).
#[derive(Debug, Clone)]
pub struct Principal {
    pub app: Arc<App>,
    /// Unix seconds.
    pub token_expires_at: i64,
}

impl Principal {
    pub fn client_id(&self) -> &str {
        &self.app.client_id
    }
}

/// A patient, from a patient token nrls issued after NHS login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatientPrincipal {
    /// As NHS login verified it (ten digits).
    pub nhs_number: String,
    /// NHS login's `identity_proofing_level`: only `P9` may see data.
    pub proofing_level: String,
    /// The web session the token was issued from (`sid`): the token is
    /// good only while that session lasts, which the caller checks.
    pub session: String,
    /// Unix seconds.
    pub token_expires_at: i64,
}

/// Issues and verifies tokens for the apps of one registry.
pub struct Authenticator {
    /// Swapped whole by [`Authenticator::reload`]: a request sees the old
    /// registry or the new one, never a mix.
    registry: ArcSwap<AppRegistry>,
    settings: TokenSettings,
    access_tokens: AccessTokenKeys,
    /// Verified access tokens, so the hot path skips the HMAC.
    verified: ExpiringMap<Principal>,
    /// Verified patient tokens, likewise.
    verified_patients: ExpiringMap<PatientPrincipal>,
    /// `client_id \n jti` of accepted assertions, until they expire.
    seen_assertions: ExpiringMap<()>,
    clock: Clock,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field("apps", &self.registry.load().len())
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    pub fn new(registry: Arc<AppRegistry>, settings: TokenSettings) -> Result<Self, ConfigError> {
        settings.check()?;
        let access_tokens = AccessTokenKeys::new(&settings.signing_secret, &settings.issuer)
            .map_err(|_| ConfigError::Settings {
                field: "signing_secret",
                problem: "is unusable",
            })?;
        Ok(Authenticator {
            verified: ExpiringMap::new(settings.token_cache_capacity),
            verified_patients: ExpiringMap::new(settings.token_cache_capacity),
            seen_assertions: ExpiringMap::new(settings.replay_cache_capacity),
            registry: ArcSwap::new(registry),
            settings,
            access_tokens,
            clock: Clock::system(),
        })
    }

    /// Replaces the wall clock; for tests.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The registry in force now.
    pub fn registry(&self) -> Arc<AppRegistry> {
        self.registry.load_full()
    }

    /// Puts `registry` in force atomically (configuration reload) and
    /// forgets every verified access token, so a removed app or a narrowed
    /// grant takes effect on the next request rather than at token expiry.
    /// Tokens stay valid for apps still onboarded: they are re-verified
    /// against the new registry. Returns the number of apps now onboarded.
    pub fn reload(&self, registry: AppRegistry) -> usize {
        let apps = registry.len();
        self.registry.store(Arc::new(registry));
        self.verified.clear();
        apps
    }

    pub fn settings(&self) -> &TokenSettings {
        &self.settings
    }

    /// Handles a token request given its `application/x-www-form-urlencoded`
    /// fields, already decoded.
    pub async fn issue_token(
        &self,
        form: &[(String, String)],
    ) -> Result<TokenResponse, TokenError> {
        let request = TokenRequest::parse(form)?;
        let unverified = assertion::peek(request.assertion)?;
        let reject = |reason: ClientRejection| {
            // Debug-formatted: an unregistered iss is attacker text.
            tracing::info!(client_id = ?unverified.issuer, %reason, "client assertion refused");
            TokenError::InvalidClient(reason)
        };
        let registry = self.registry.load_full();
        let app = registry
            .app(&unverified.issuer)
            .ok_or_else(|| reject(ClientRejection::UnknownClient))?;
        if request.client_id.is_some_and(|id| id != app.client_id) {
            return Err(reject(ClientRejection::ClientIdMismatch));
        }
        let key = registry
            .resolve_key(&app, &unverified.kid, unverified.alg)
            .await
            .map_err(|e| reject(ClientRejection::Key(e)))?;
        let now = self.clock.now();
        let skew = secs(self.settings.clock_skew);
        let rules = AssertionRules {
            audience: &self.settings.token_endpoint,
            max_lifetime_secs: secs(self.settings.max_assertion_lifetime),
            clock_skew_secs: skew,
            now,
        };
        let verified = assertion::verify(
            request.assertion,
            unverified.alg,
            &key,
            &app.client_id,
            &rules,
        )
        .map_err(reject)?;
        // Remembered until the assertion could no longer be accepted anyway.
        let replay_key = format!("{}\n{}", app.client_id, verified.jti);
        match self.seen_assertions.insert_new(
            replay_key,
            (),
            verified.expires_at.saturating_add(skew),
            now,
        ) {
            Ok(()) => {}
            Err(InsertRefused::Present) => return Err(reject(ClientRejection::Replayed)),
            Err(InsertRefused::Full) => {
                tracing::warn!("assertion replay cache is full of live entries");
                return Err(TokenError::TemporarilyUnavailable);
            }
        }
        let lifetime = self.settings.access_token_lifetime.as_secs();
        let expires_at = now.saturating_add(secs(self.settings.access_token_lifetime));
        let access_token = self
            .access_tokens
            .mint(&app.client_id, now, expires_at)
            .map_err(|e| {
                tracing::error!(error = %e, "access token signing failed");
                TokenError::ServerError
            })?;
        tracing::info!(client_id = %app.client_id, token = %hash_for_log(&access_token), "access token issued");
        Ok(TokenResponse {
            access_token,
            token_type: "bearer".to_owned(),
            expires_in: lifetime,
        })
    }

    /// The principal of a bearer access token (the token alone, without the
    /// `Bearer ` prefix). Hot path: a token seen before costs one sharded
    /// map lookup plus the expiry check, which runs on every hit.
    pub fn authenticate(&self, bearer: &str) -> Result<Principal, AuthError> {
        if bearer.is_empty() {
            return Err(AuthError::Missing);
        }
        if bearer.len() > MAX_TOKEN_LEN {
            return Err(AuthError::Malformed);
        }
        let now = self.clock.now();
        match self.verified.get(bearer, now) {
            Lookup::Live(principal) => return Ok(principal),
            Lookup::Expired => return Err(AuthError::Expired),
            Lookup::Absent => {}
        }
        let claims = self.access_tokens.verify(bearer)?;
        if claims.exp <= now {
            return Err(AuthError::Expired);
        }
        let app = self
            .registry
            .load()
            .app(&claims.sub)
            .ok_or(AuthError::UnknownClient)?;
        let principal = Principal {
            app,
            token_expires_at: claims.exp,
        };
        self.verified
            .insert(bearer.to_owned(), principal.clone(), claims.exp, now);
        Ok(principal)
    }

    /// A token for the patient API (`/patient/FHIR/R4`), bound to the NHS
    /// number and proofing level NHS login verified; the caller (the web
    /// session) has checked both. Lives as long as app tokens.
    pub fn issue_patient_token(
        &self,
        nhs_number: &str,
        proofing_level: &str,
        session: &str,
    ) -> Result<TokenResponse, TokenError> {
        let now = self.clock.now();
        let expires_at = now.saturating_add(secs(self.settings.access_token_lifetime));
        let access_token = self
            .access_tokens
            .mint_patient(nhs_number, proofing_level, session, now, expires_at)
            .map_err(|e| {
                tracing::error!(error = %e, "patient token signing failed");
                TokenError::ServerError
            })?;
        tracing::info!(token = %hash_for_log(&access_token), "patient token issued");
        Ok(TokenResponse {
            access_token,
            token_type: "bearer".to_owned(),
            expires_in: self.settings.access_token_lifetime.as_secs(),
        })
    }

    /// The patient of a patient token. An app's token is refused
    /// ([`AuthError::WrongKind`]), as a patient token is by
    /// [`Authenticator::authenticate`]. Verified once, then cached.
    pub fn authenticate_patient(&self, bearer: &str) -> Result<PatientPrincipal, AuthError> {
        if bearer.is_empty() {
            return Err(AuthError::Missing);
        }
        if bearer.len() > MAX_TOKEN_LEN {
            return Err(AuthError::Malformed);
        }
        let now = self.clock.now();
        match self.verified_patients.get(bearer, now) {
            Lookup::Live(principal) => return Ok(principal),
            Lookup::Expired => return Err(AuthError::Expired),
            Lookup::Absent => {}
        }
        let claims = self.access_tokens.verify_patient(bearer)?;
        if claims.exp <= now {
            return Err(AuthError::Expired);
        }
        let (Some(nhs_number), Some(proofing_level), Some(session)) =
            (claims.nhs_number, claims.proofing_level, claims.sid)
        else {
            return Err(AuthError::Malformed);
        };
        let principal = PatientPrincipal {
            nhs_number,
            proofing_level,
            session,
            token_expires_at: claims.exp,
        };
        self.verified_patients
            .insert(bearer.to_owned(), principal.clone(), claims.exp, now);
        Ok(principal)
    }

    /// As [`Authenticator::authenticate`], from an `Authorization` header value.
    pub fn authenticate_header(&self, authorization: Option<&str>) -> Result<Principal, AuthError> {
        self.authenticate(bearer_token(authorization)?)
    }
}

fn secs(duration: Duration) -> i64 {
    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)
}

#[cfg(test)]
#[path = "authenticator/tests.rs"]
mod tests;
