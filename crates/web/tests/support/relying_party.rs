//! A minimal OpenID Connect relying party, written to test the harness itself
//! (and as a reference for what nrls's own must do): discovery, an
//! authorization URL with `state`, `nonce` and PKCE (S256), the code exchange
//! authenticated by `private_key_jwt`, and ID token verification against the
//! OP's JWKS. It is deliberately not nrls's implementation: the harness must
//! be proven by something other than the code it will test.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::oidc::RelyingPartyClient;

pub struct TestRelyingParty {
    pub client: RelyingPartyClient,
    pub issuer: String,
    pub discovery: Value,
    http: reqwest::Client,
}

/// One authorization request's secrets, kept by the RP until the callback.
pub struct PendingLogin {
    pub url: String,
    pub state: String,
    pub nonce: String,
    pub code_verifier: String,
}

/// What the token endpoint answered.
pub struct Tokens {
    pub id_token: String,
    pub access_token: String,
}

fn random() -> String {
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).expect("randomness");
    URL_SAFE_NO_PAD.encode(bytes)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

impl TestRelyingParty {
    pub async fn discover(issuer: &str, client: RelyingPartyClient) -> TestRelyingParty {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .expect("http client");
        let discovery: Value = http
            .get(format!("{issuer}/.well-known/openid-configuration"))
            .send()
            .await
            .expect("discovery")
            .json()
            .await
            .expect("discovery JSON");
        TestRelyingParty {
            client,
            issuer: issuer.to_owned(),
            discovery,
            http,
        }
    }

    /// An authorization URL; `extra` adds parameters (NHS login's `vtr`).
    pub fn authorize(&self, scope: &str, extra: &[(&str, &str)]) -> PendingLogin {
        let (state, nonce, code_verifier) = (random(), random(), random() + &random());
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(code_verifier.as_bytes()));
        let mut url = reqwest::Url::parse(
            self.discovery["authorization_endpoint"]
                .as_str()
                .expect("authorization_endpoint"),
        )
        .expect("authorization URL");
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.client.client_id)
            .append_pair("redirect_uri", &self.client.redirect_uris[0])
            .append_pair("scope", scope)
            .append_pair("state", &state)
            .append_pair("nonce", &nonce)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256")
            .extend_pairs(extra);
        PendingLogin {
            url: url.to_string(),
            state,
            nonce,
            code_verifier,
        }
    }

    /// Checks the callback's `state` and `iss` and exchanges its code.
    pub async fn exchange(&self, pending: &PendingLogin, callback: &str) -> Result<Tokens, String> {
        let callback = reqwest::Url::parse(callback).expect("callback URL");
        let param = |name: &str| {
            callback
                .query_pairs()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
        };
        if let Some(error) = param("error") {
            return Err(format!(
                "authorization error {error}: {}",
                param("error_description").unwrap_or_default()
            ));
        }
        if param("state").as_deref() != Some(pending.state.as_str()) {
            return Err("state mismatch".into());
        }
        if param("iss").as_deref() != Some(self.issuer.as_str()) {
            return Err(format!("iss {:?} is not the issuer", param("iss")));
        }
        let code = param("code").ok_or("no code")?;
        let token_endpoint = self.discovery["token_endpoint"]
            .as_str()
            .expect("token_endpoint");
        let answer = self
            .http
            .post(token_endpoint)
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code.as_str()),
                ("redirect_uri", self.client.redirect_uris[0].as_str()),
                ("code_verifier", pending.code_verifier.as_str()),
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ),
                ("client_assertion", &self.client_assertion()),
            ])
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = answer.status();
        let body: Value = answer.json().await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!("token endpoint {status}: {body}"));
        }
        Ok(Tokens {
            id_token: body["id_token"].as_str().ok_or("no id_token")?.to_owned(),
            access_token: body["access_token"]
                .as_str()
                .ok_or("no access_token")?
                .to_owned(),
        })
    }

    /// RFC 7523 client assertion signed with the client's key.
    fn client_assertion(&self) -> String {
        let mut header = jsonwebtoken::Header::new(Algorithm::RS512);
        header.kid = Some(self.client.key.kid.clone());
        let claims = json!({
            "iss": self.client.client_id, "sub": self.client.client_id, "aud": self.issuer,
            "jti": random(), "iat": now(), "exp": now() + 60,
        });
        jsonwebtoken::encode(&header, &claims, &self.client.key.encoding_key())
            .expect("client assertion")
    }

    /// Verifies an ID token as an RP must: signature by a key from the OP's
    /// JWKS with the one expected `alg`, `iss`, `aud`, `exp` (no leeway) and
    /// `nonce`. Returns the claims or why it was refused.
    pub async fn verify(
        &self,
        id_token: &str,
        expected_alg: Algorithm,
        nonce: &str,
    ) -> Result<Value, String> {
        let header = jsonwebtoken::decode_header(id_token).map_err(|e| format!("header: {e}"))?;
        if header.alg != expected_alg {
            return Err(format!("alg {:?} is not {expected_alg:?}", header.alg));
        }
        let jwks: JwkSet = self
            .http
            .get(self.discovery["jwks_uri"].as_str().expect("jwks_uri"))
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        let jwk = jwks
            .find(header.kid.as_deref().unwrap_or_default())
            .ok_or("unknown kid")?;
        let key = DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
        let mut validation = Validation::new(expected_alg);
        validation.leeway = 0;
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.client.client_id]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        let claims = jsonwebtoken::decode::<Value>(id_token, &key, &validation)
            .map_err(|e| format!("{:?}", e.kind()))?
            .claims;
        if claims["nonce"].as_str() != Some(nonce) {
            return Err("nonce mismatch".into());
        }
        Ok(claims)
    }

    /// GET the userinfo endpoint with an access token.
    pub async fn userinfo(&self, access_token: &str) -> Value {
        self.http
            .get(
                self.discovery["userinfo_endpoint"]
                    .as_str()
                    .expect("userinfo_endpoint"),
            )
            .bearer_auth(access_token)
            .send()
            .await
            .expect("userinfo")
            .json()
            .await
            .expect("userinfo JSON")
    }
}
