//! A generic OpenID Connect relying party: authorization-code flow with PKCE
//! (S256), as a confidential client authenticating with `private_key_jwt`
//! (RFC 7523). Identity-provider specifics live in claims mappers beside it
//! ([`cis2`] for NHS CIS2, [`nhs_login`] for the patient pages).
//!
//! What is checked, and where:
//! - `state` (bound to the browser's session) and the login's age, in
//!   [`RelyingParty::complete`];
//! - the ID token ([`verify`]): signature from the issuer's JWKS (fetched
//!   through the discovery document, cached, refetched once for an unknown
//!   `kid`), `iss`, `aud` (and `azp` when several audiences), `exp` and `iat`
//!   within a small skew, `nonce`;
//! - userinfo is used only when its `sub` is the ID token's.

pub mod cis2;
mod keys;
pub mod nhs_login;
mod verify;

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use tokio::sync::RwLock;

use crate::session::data::PendingLogin;
use crate::session::{now, random_token};
pub use keys::ClientKey;
use keys::Jwks;

/// A login older than this when it comes back is refused.
const LOGIN_LIFETIME: i64 = 600;

/// How the relying party is set up for one identity provider.
#[derive(Clone)]
pub struct RpConfig {
    /// The issuer URL: its discovery document is `<issuer>/.well-known/openid-configuration`.
    pub issuer: String,
    pub client_id: String,
    /// Where the provider sends the browser back (registered with it).
    pub redirect_url: String,
    /// Where the provider sends the browser after sign-out.
    pub post_logout_redirect_url: Option<String>,
    pub key: ClientKey,
    pub scopes: Vec<String>,
    /// Further authorization request parameters (e.g. NHS login's `vtr`).
    pub extra_params: Vec<(String, String)>,
    /// Tolerated clock difference with the provider.
    pub clock_skew: Duration,
    /// ID token algorithms accepted.
    pub id_token_algs: Vec<Algorithm>,
    pub http_timeout: Duration,
}

/// Why a sign-in failed. Display is for the log; the page says less.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("discovery document: {0}")]
    Discovery(String),
    #[error("JWKS: {0}")]
    Jwks(String),
    #[error("token endpoint: {0}")]
    Token(String),
    #[error("userinfo: {0}")]
    Userinfo(String),
    #[error("the identity provider answered: {0}")]
    Provider(String),
    #[error("no sign-in is under way in this session, or its state does not match")]
    StateMismatch,
    #[error("the sign-in took too long")]
    LoginExpired,
    #[error("ID token refused: {0}")]
    IdToken(verify::IdTokenProblem),
    #[error("client assertion: {0}")]
    Assertion(String),
}

/// The provider's discovery document: the parts used.
#[derive(Debug, Clone, Deserialize)]
pub struct Discovery {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    #[serde(default)]
    pub userinfo_endpoint: Option<String>,
    #[serde(default)]
    pub end_session_endpoint: Option<String>,
}

/// A completed sign-in: the verified claims (ID token, then userinfo for
/// what the ID token lacks) and the ID token itself.
#[derive(Debug, Clone)]
pub struct VerifiedLogin {
    pub claims: Map<String, Value>,
    pub id_token: String,
    /// Unix seconds.
    pub expires_at: i64,
}

/// A relying party for one provider. Discovery and keys are fetched on
/// first use, so a provider that is down does not stop nrls starting.
pub struct RelyingParty {
    config: RpConfig,
    http: reqwest::Client,
    discovery: RwLock<Option<Discovery>>,
    jwks: Jwks,
}

#[derive(Deserialize)]
struct TokenResponse {
    id_token: Option<String>,
    access_token: Option<String>,
}

impl RelyingParty {
    pub fn new(config: RpConfig) -> Result<RelyingParty, OidcError> {
        let http = reqwest::Client::builder()
            .timeout(config.http_timeout)
            // A provider redirecting its API calls elsewhere is not followed.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| OidcError::Discovery(e.to_string()))?;
        Ok(RelyingParty {
            jwks: Jwks::new(http.clone(), keys::REFETCH_INTERVAL),
            config,
            http,
            discovery: RwLock::new(None),
        })
    }

    pub fn config(&self) -> &RpConfig {
        &self.config
    }

    /// The discovery document, fetched once; its `issuer` must be ours.
    pub async fn discovery(&self) -> Result<Discovery, OidcError> {
        if let Some(found) = self.discovery.read().await.as_ref() {
            return Ok(found.clone());
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.config.issuer.trim_end_matches('/')
        );
        let fetched: Discovery = self
            .http
            .get(&url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| OidcError::Discovery(e.to_string()))?
            .json()
            .await
            .map_err(|e| OidcError::Discovery(e.to_string()))?;
        if fetched.issuer != self.config.issuer {
            return Err(OidcError::Discovery(format!(
                "it names issuer {} instead of {}",
                fetched.issuer, self.config.issuer
            )));
        }
        *self.discovery.write().await = Some(fetched.clone());
        Ok(fetched)
    }

    /// Starts a sign-in: the URL to send the browser to, and what to keep
    /// in the session to check the answer.
    pub async fn begin(&self) -> Result<(String, PendingLogin), OidcError> {
        self.begin_with(&[]).await
    }

    /// [`RelyingParty::begin`] with further parameters for this one request
    /// (the NHS App's `assertedLoginIdentity`).
    pub async fn begin_with(
        &self,
        request_params: &[(&str, &str)],
    ) -> Result<(String, PendingLogin), OidcError> {
        let discovery = self.discovery().await?;
        let pending = PendingLogin {
            state: random_token(),
            nonce: random_token(),
            verifier: random_token(),
            started_at: now(),
        };
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(pending.verifier.as_bytes()));
        let scope = self.config.scopes.join(" ");
        let mut query = form_urlencoded::Serializer::new(String::new());
        query
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.config.client_id)
            .append_pair("redirect_uri", &self.config.redirect_url)
            .append_pair("scope", &scope)
            .append_pair("state", &pending.state)
            .append_pair("nonce", &pending.nonce)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        for (k, v) in &self.config.extra_params {
            query.append_pair(k, v);
        }
        for (k, v) in request_params {
            query.append_pair(k, v);
        }
        let separator = if discovery.authorization_endpoint.contains('?') {
            '&'
        } else {
            '?'
        };
        let url = format!(
            "{}{separator}{}",
            discovery.authorization_endpoint,
            query.finish()
        );
        Ok((url, pending))
    }

    /// Completes a sign-in from the callback's `code` and `state`.
    pub async fn complete(
        &self,
        pending: Option<&PendingLogin>,
        code: &str,
        state: &str,
    ) -> Result<VerifiedLogin, OidcError> {
        let pending = pending
            .filter(|p| crate::session::csrf::verify(&p.state, Some(state)))
            .ok_or(OidcError::StateMismatch)?;
        if now() - pending.started_at > LOGIN_LIFETIME {
            return Err(OidcError::LoginExpired);
        }
        let discovery = self.discovery().await?;
        let assertion = self.client_assertion(&discovery.token_endpoint)?;
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", &self.config.redirect_url),
            ("code_verifier", &pending.verifier),
            ("client_id", &self.config.client_id),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", &assertion),
        ];
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let response = self
            .http
            .post(&discovery.token_endpoint)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .map_err(|e| OidcError::Token(e.to_string()))?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            return Err(OidcError::Token(format!(
                "{status}: {}",
                text.chars().take(300).collect::<String>()
            )));
        }
        let tokens: TokenResponse = response
            .json()
            .await
            .map_err(|e| OidcError::Token(e.to_string()))?;
        let id_token = tokens
            .id_token
            .ok_or_else(|| OidcError::Token("no id_token in the response".into()))?;
        let mut claims = verify::id_token(
            &id_token,
            &self.config,
            &self.jwks,
            &discovery,
            &pending.nonce,
        )
        .await
        .map_err(OidcError::IdToken)?;
        let expires_at = claims.get("exp").and_then(Value::as_i64).unwrap_or(0);
        if let (Some(endpoint), Some(access)) =
            (&discovery.userinfo_endpoint, tokens.access_token.as_deref())
        {
            self.merge_userinfo(endpoint, access, &mut claims).await?;
        }
        Ok(VerifiedLogin {
            claims,
            id_token,
            expires_at,
        })
    }

    /// Adds userinfo claims the ID token lacks, when userinfo is about the
    /// same subject; userinfo about anyone else is discarded.
    async fn merge_userinfo(
        &self,
        endpoint: &str,
        access_token: &str,
        claims: &mut Map<String, Value>,
    ) -> Result<(), OidcError> {
        let info: Map<String, Value> = self
            .http
            .get(endpoint)
            .bearer_auth(access_token)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| OidcError::Userinfo(e.to_string()))?
            .json()
            .await
            .map_err(|e| OidcError::Userinfo(e.to_string()))?;
        if info.get("sub") != claims.get("sub") {
            tracing::warn!("userinfo names another subject than the ID token: discarded");
            return Ok(());
        }
        for (k, v) in info {
            claims.entry(k).or_insert(v);
        }
        Ok(())
    }

    /// The `private_key_jwt` client assertion for the token endpoint.
    fn client_assertion(&self, audience: &str) -> Result<String, OidcError> {
        let now = now();
        let claims = serde_json::json!({
            "iss": self.config.client_id,
            "sub": self.config.client_id,
            "aud": audience,
            "jti": uuid::Uuid::new_v4().to_string(),
            "iat": now,
            "exp": now + 300,
        });
        let mut header = Header::new(self.config.key.alg);
        header.kid = Some(self.config.key.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.config.key.key)
            .map_err(|e| OidcError::Assertion(e.to_string()))
    }

    /// Where to send the browser to end the session at the provider too, if
    /// its discovery document offers RP-initiated logout.
    pub async fn end_session_url(&self, id_token_hint: Option<&str>) -> Option<String> {
        let discovery = self.discovery().await.ok()?;
        let endpoint = discovery.end_session_endpoint?;
        let mut query = form_urlencoded::Serializer::new(String::new());
        query.append_pair("client_id", &self.config.client_id);
        if let Some(hint) = id_token_hint {
            query.append_pair("id_token_hint", hint);
        }
        if let Some(back) = &self.config.post_logout_redirect_url {
            query.append_pair("post_logout_redirect_uri", back);
        }
        let separator = if endpoint.contains('?') { '&' } else { '?' };
        Some(format!("{endpoint}{separator}{}", query.finish()))
    }
}

/// Ends `session` here, then sends the browser to the issuer's sign-out
/// (RP-initiated logout) when `at_issuer` names a relying party that
/// supports it, else to the local `signed_out` page.
pub(crate) async fn sign_out(
    sessions: &crate::session::Sessions,
    session: crate::session::Session,
    at_issuer: Option<(&RelyingParty, Option<&str>)>,
    signed_out: &str,
) -> Result<axum::response::Response, crate::error::WebError> {
    let clear = sessions.end(session).await?;
    let mut to = signed_out.to_owned();
    if let Some((rp, hint)) = at_issuer
        && let Some(url) = rp.end_session_url(hint).await
    {
        to = url;
    }
    let mut response = crate::viewer::see_other(&to);
    response
        .headers_mut()
        .append(axum::http::header::SET_COOKIE, clear);
    Ok(response)
}

/// The four settings every sign-in needs, as a configuration section holds
/// them: all set, or none (sign-in off).
pub struct ClientSettings<'a> {
    pub issuer: &'a Option<String>,
    pub client_id: &'a Option<String>,
    pub key_file: &'a Option<std::path::PathBuf>,
    pub redirect_url: &'a Option<String>,
    pub key_id: &'a str,
}

/// What is wrong with a section's [`ClientSettings`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientSettingsError {
    /// Some but not all are set: the missing ones, comma-separated.
    Incomplete(String),
    /// The key file cannot be read or holds no usable key.
    Key { path: String, problem: String },
}

/// The settings, complete and with the client's key read.
pub struct CompleteClientSettings {
    pub issuer: String,
    pub client_id: String,
    pub redirect_url: String,
    pub key: ClientKey,
}

impl ClientSettings<'_> {
    /// `None` when nothing is set; an error naming what is missing when only
    /// some are; otherwise the settings with the key read from its file.
    pub fn complete(&self) -> Result<Option<CompleteClientSettings>, ClientSettingsError> {
        let blank = |v: &Option<String>| v.as_deref().is_none_or(|s| s.trim().is_empty());
        let missing: Vec<&str> = [
            ("issuer", blank(self.issuer)),
            ("client_id", blank(self.client_id)),
            ("key_file", self.key_file.is_none()),
            ("redirect_url", blank(self.redirect_url)),
        ]
        .into_iter()
        .filter_map(|(name, absent)| absent.then_some(name))
        .collect();
        if missing.len() == 4 {
            return Ok(None);
        }
        let (Some(issuer), Some(client_id), Some(key_file), Some(redirect_url), true) = (
            self.issuer,
            self.client_id,
            self.key_file,
            self.redirect_url,
            missing.is_empty(),
        ) else {
            return Err(ClientSettingsError::Incomplete(missing.join(", ")));
        };
        let key_error = |problem: String| ClientSettingsError::Key {
            path: key_file.display().to_string(),
            problem,
        };
        let pem = std::fs::read_to_string(key_file).map_err(|e| key_error(e.to_string()))?;
        let key = client_key_from_pem(&pem, self.key_id).map_err(key_error)?;
        Ok(Some(CompleteClientSettings {
            issuer: issuer.clone(),
            client_id: client_id.clone(),
            redirect_url: redirect_url.clone(),
            key,
        }))
    }
}

/// Reads a client signing key: RSA signs RS512 (as NHS CIS2 and NHS login
/// require for `private_key_jwt`), EC signs ES384.
pub fn client_key_from_pem(pem: &str, kid: &str) -> Result<ClientKey, String> {
    if let Ok(key) = EncodingKey::from_rsa_pem(pem.as_bytes()) {
        return Ok(ClientKey {
            key,
            alg: Algorithm::RS512,
            kid: kid.to_owned(),
        });
    }
    EncodingKey::from_ec_pem(pem.as_bytes())
        .map(|key| ClientKey {
            key,
            alg: Algorithm::ES384,
            kid: kid.to_owned(),
        })
        .map_err(|_| "not an RSA or EC private key in PEM".to_owned())
}
