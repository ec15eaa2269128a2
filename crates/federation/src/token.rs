//! Access tokens for sources that want OAuth 2.0 client credentials with a
//! signed-JWT client assertion (RFC 7523). A token is credentials, not
//! clinical content, so it is kept until shortly before it expires.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use domain::OdsCode;
use reqwest::Client;
use serde::Deserialize;

use crate::client::{FetchError, transport};
use crate::registry::{Source, SourceAuth};

/// How long a client assertion nrls signs is valid.
const ASSERTION_LIFETIME: Duration = Duration::from_secs(60);
/// A token is renewed this long before it expires.
const RENEW_BEFORE: Duration = Duration::from_secs(30);

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// Tokens per source.
#[derive(Default)]
pub struct Tokens {
    cache: Mutex<HashMap<OdsCode, (String, Instant)>>,
}

// Hand-written so a logged federator never shows a token.
impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tokens(<redacted>)")
    }
}

impl Tokens {
    fn cached(&self, ods: &OdsCode, now: Instant) -> Option<String> {
        let cache = self
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        cache
            .get(ods)
            .filter(|(_, until)| now < *until)
            .map(|(token, _)| token.clone())
    }

    /// The bearer token for `source`, or `None` when it takes no credentials.
    pub async fn bearer(
        &self,
        http: &Client,
        source: &Source,
    ) -> Result<Option<String>, FetchError> {
        let SourceAuth::ClientCredentials {
            token_url,
            client_id,
            key,
            scope,
        } = &source.auth
        else {
            return Ok(None);
        };
        let now = Instant::now();
        if let Some(token) = self.cached(&source.ods, now) {
            return Ok(Some(token));
        }
        let assertion =
            auth::mint_client_assertion(client_id, token_url.as_str(), key, ASSERTION_LIFETIME)
                .map_err(|e| FetchError::Auth(format!("cannot sign a client assertion: {e}")))?;
        let mut form = vec![
            ("grant_type", "client_credentials"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", assertion.as_str()),
        ];
        if let Some(scope) = scope {
            form.push(("scope", scope.as_str()));
        }
        let response = http
            .post(token_url.clone())
            .form(&form)
            .send()
            .await
            .map_err(|e| transport(&e))?;
        if !response.status().is_success() {
            return Err(FetchError::Auth(format!(
                "its token endpoint answered HTTP {}",
                response.status().as_u16()
            )));
        }
        let answer: TokenAnswer = response
            .json()
            .await
            .map_err(|_| FetchError::Auth("its token endpoint sent no access_token".into()))?;
        let lifetime = Duration::from_secs(answer.expires_in.unwrap_or(300));
        let until = now + lifetime.saturating_sub(RENEW_BEFORE);
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(source.ods.clone(), (answer.access_token.clone(), until));
        Ok(Some(answer.access_token))
    }
}
