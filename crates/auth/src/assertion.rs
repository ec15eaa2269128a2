//! Client assertions (RFC 7523 `private_key_jwt`): the short-lived JWT an app
//! signs with its private key to prove who it is at the token endpoint.
//! Minting lives here for the `nrls token` CLI and for tests; checking lives
//! here so both sides agree on the claims.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::error::{AssertionError, ClientRejection, RequestProblem, TokenError};

/// The signature algorithms we accept on client assertions: those named by
/// NHS signed-JWT auth (RS512 aside) and SMART Backend Services (RS384,
/// ES384). PS384 is RSA-PSS with the same keys as RS384. Nothing weaker
/// (RS256/ES256) and never `none` or HMAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AssertionAlg {
    Es384,
    Rs384,
    Ps384,
}

impl AssertionAlg {
    /// The JOSE name, e.g. `ES384`.
    pub fn name(self) -> &'static str {
        match self {
            AssertionAlg::Es384 => "ES384",
            AssertionAlg::Rs384 => "RS384",
            AssertionAlg::Ps384 => "PS384",
        }
    }

    pub fn from_name(name: &str) -> Option<AssertionAlg> {
        match name {
            "ES384" => Some(AssertionAlg::Es384),
            "RS384" => Some(AssertionAlg::Rs384),
            "PS384" => Some(AssertionAlg::Ps384),
            _ => None,
        }
    }

    pub(crate) fn jwt(self) -> Algorithm {
        match self {
            AssertionAlg::Es384 => Algorithm::ES384,
            AssertionAlg::Rs384 => Algorithm::RS384,
            AssertionAlg::Ps384 => Algorithm::PS384,
        }
    }
}

impl fmt::Display for AssertionAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for AssertionAlg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AssertionAlg::from_name(&s.to_ascii_uppercase())
            .ok_or_else(|| format!("unsupported alg {s:?}: use ES384, RS384 or PS384"))
    }
}

/// An app's private signing key: PKCS#8 PEM (PKCS#1 also works for RSA),
/// the algorithm to sign with, and the `kid` its public JWK carries.
#[derive(Clone)]
pub struct SigningKeyPem {
    pub pem: String,
    pub alg: AssertionAlg,
    pub kid: String,
}

impl SigningKeyPem {
    pub fn new(pem: impl Into<String>, alg: AssertionAlg, kid: impl Into<String>) -> Self {
        SigningKeyPem {
            pem: pem.into(),
            alg,
            kid: kid.into(),
        }
    }

    fn encoding_key(&self) -> Result<EncodingKey, AssertionError> {
        let invalid = |_| AssertionError::InvalidKey {
            alg: self.alg.name(),
        };
        match self.alg {
            AssertionAlg::Es384 => EncodingKey::from_ec_pem(self.pem.as_bytes()).map_err(invalid),
            AssertionAlg::Rs384 | AssertionAlg::Ps384 => {
                EncodingKey::from_rsa_pem(self.pem.as_bytes()).map_err(invalid)
            }
        }
    }
}

// Hand-written so a logged key never shows its PEM.
impl fmt::Debug for SigningKeyPem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKeyPem")
            .field("pem", &"<redacted>")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .finish()
    }
}

/// The claims of a client assertion as we mint them.
#[derive(Debug, Serialize)]
struct MintedClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    iat: i64,
    exp: i64,
    jti: String,
}

/// Signs a client assertion for `client_id`, valid for `lifetime` from now.
/// `audience` must be the token endpoint URL exactly as the server knows it.
pub fn mint_client_assertion(
    client_id: &str,
    audience: &str,
    key: &SigningKeyPem,
    lifetime: Duration,
) -> Result<String, AssertionError> {
    mint_client_assertion_at(
        client_id,
        audience,
        key,
        lifetime,
        crate::clock::system_now(),
    )
}

/// As [`mint_client_assertion`], issued at `issued_at` (Unix seconds).
pub fn mint_client_assertion_at(
    client_id: &str,
    audience: &str,
    key: &SigningKeyPem,
    lifetime: Duration,
    issued_at: i64,
) -> Result<String, AssertionError> {
    let lifetime = i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX);
    let claims = MintedClaims {
        iss: client_id,
        sub: client_id,
        aud: audience,
        iat: issued_at,
        exp: issued_at.saturating_add(lifetime),
        jti: uuid::Uuid::new_v4().to_string(),
    };
    let mut header = Header::new(key.alg.jwt());
    header.kid = Some(key.kid.clone());
    jsonwebtoken::encode(&header, &claims, &key.encoding_key()?).map_err(|e| match e.kind() {
        ErrorKind::InvalidEcdsaKey | ErrorKind::InvalidRsaKey(_) | ErrorKind::InvalidKeyFormat => {
            AssertionError::InvalidKey {
                alg: key.alg.name(),
            }
        }
        _ => AssertionError::Signing,
    })
}

/// What can be read from an assertion before its signature is checked:
/// enough to find the key that must have signed it.
#[derive(Debug)]
pub(crate) struct Unverified {
    pub alg: AssertionAlg,
    pub kid: String,
    pub issuer: String,
}

/// Reads header and issuer without trusting them (`jws::peek`): an
/// unsupported `alg` is reported as such, not as a malformed token.
pub(crate) fn peek(assertion: &str) -> Result<Unverified, TokenError> {
    let malformed = TokenError::InvalidRequest(RequestProblem::MalformedAssertion);
    let peeked = crate::jws::peek(assertion).ok_or(malformed.clone())?;
    let alg = peeked.alg.ok_or(malformed)?;
    let alg = AssertionAlg::from_name(&alg).ok_or(TokenError::InvalidClient(
        ClientRejection::UnsupportedAlgorithm,
    ))?;
    let kid = peeked
        .kid
        .ok_or(TokenError::InvalidRequest(RequestProblem::MissingKid))?;
    let issuer = peeked
        .issuer
        .ok_or(TokenError::InvalidRequest(RequestProblem::MissingIssuer))?;
    Ok(Unverified { alg, kid, issuer })
}

/// The limits a verified assertion's claims must respect.
#[derive(Debug, Clone)]
pub(crate) struct AssertionRules<'a> {
    pub audience: &'a str,
    pub max_lifetime_secs: i64,
    pub clock_skew_secs: i64,
    pub now: i64,
}

/// A client assertion whose signature and claims have been checked.
#[derive(Debug)]
pub(crate) struct VerifiedAssertion {
    pub jti: String,
    pub expires_at: i64,
}

/// RFC 7519 NumericDate may be fractional; we only need whole seconds.
#[derive(Deserialize)]
struct ReceivedClaims {
    iss: Option<String>,
    sub: Option<String>,
    aud: Option<Audience>,
    exp: Option<f64>,
    nbf: Option<f64>,
    iat: Option<f64>,
    jti: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn contains(&self, expected: &str) -> bool {
        match self {
            Audience::One(aud) => aud == expected,
            Audience::Many(auds) => auds.iter().any(|a| a == expected),
        }
    }
}

/// A jti longer than this is not an identifier but an attempt to fill our
/// replay cache.
const MAX_JTI_LEN: usize = 256;

/// Checks signature, then claims. The JWT library only checks the signature
/// and alg: every time-based rule uses our clock (`rules.now`).
pub(crate) fn verify(
    assertion: &str,
    alg: AssertionAlg,
    key: &DecodingKey,
    client_id: &str,
    rules: &AssertionRules<'_>,
) -> Result<VerifiedAssertion, ClientRejection> {
    let mut validation = Validation::new(alg.jwt());
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    let claims = jsonwebtoken::decode::<ReceivedClaims>(assertion, key, &validation)
        .map_err(|e| match e.kind() {
            ErrorKind::Json(_) | ErrorKind::Utf8(_) => ClientRejection::BadClaims,
            _ => ClientRejection::BadSignature,
        })?
        .claims;

    if claims.iss.as_deref() != Some(client_id) {
        return Err(ClientRejection::UnknownClient);
    }
    if claims.sub.as_deref() != Some(client_id) {
        return Err(ClientRejection::SubjectNotIssuer);
    }
    if !claims
        .aud
        .as_ref()
        .is_some_and(|aud| aud.contains(rules.audience))
    {
        return Err(ClientRejection::WrongAudience {
            expected: rules.audience.to_owned(),
        });
    }
    let exp = seconds(claims.exp).ok_or(ClientRejection::MissingExpiry)?;
    if exp <= rules.now - rules.clock_skew_secs {
        return Err(ClientRejection::Expired);
    }
    if exp - rules.now > rules.max_lifetime_secs + rules.clock_skew_secs {
        return Err(ClientRejection::LifetimeTooLong {
            max_seconds: u64::try_from(rules.max_lifetime_secs).unwrap_or(0),
        });
    }
    let future = |t: Option<f64>| seconds(t).is_some_and(|t| t > rules.now + rules.clock_skew_secs);
    if future(claims.nbf) || future(claims.iat) {
        return Err(ClientRejection::NotYetValid);
    }
    let jti = claims
        .jti
        .filter(|j| !j.is_empty())
        .ok_or(ClientRejection::MissingJti)?;
    if jti.len() > MAX_JTI_LEN {
        return Err(ClientRejection::BadClaims);
    }
    Ok(VerifiedAssertion {
        jti,
        expires_at: exp,
    })
}

fn seconds(value: Option<f64>) -> Option<i64> {
    // `as` saturates for out-of-range floats; NaN is refused.
    value.filter(|v| v.is_finite()).map(|v| v.floor() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jws::decode_segment;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    fn rsa_key() -> SigningKeyPem {
        SigningKeyPem::new(
            include_str!("testdata/rsa-test-key.pem"),
            AssertionAlg::Rs384,
            "rsa-test-1",
        )
    }

    #[test]
    fn minted_assertion_carries_the_required_claims() {
        let key = crate::demo::signing_key("app").unwrap();
        let jwt =
            mint_client_assertion_at("app", "http://t/token", &key, Duration::from_secs(60), 1000)
                .unwrap();
        let peeked = peek(&jwt).unwrap();
        assert_eq!(
            (peeked.alg, peeked.kid.as_str(), peeked.issuer.as_str()),
            (AssertionAlg::Es384, "demo-1", "app")
        );
        let parts: Vec<&str> = jwt.split('.').collect();
        let claims: serde_json::Value = decode_segment(parts[1]).unwrap();
        assert_eq!(claims["sub"], "app");
        assert_eq!(claims["aud"], "http://t/token");
        assert_eq!(claims["exp"], 1060);
        assert!(claims["jti"].as_str().is_some_and(|j| j.len() == 36));
    }

    #[test]
    fn rsa_keys_sign_rs384_and_ps384() {
        for alg in [AssertionAlg::Rs384, AssertionAlg::Ps384] {
            let key = SigningKeyPem { alg, ..rsa_key() };
            let jwt = mint_client_assertion("app", "aud", &key, Duration::from_secs(60)).unwrap();
            assert_eq!(peek(&jwt).unwrap().alg, alg);
        }
    }

    #[test]
    fn a_key_of_the_wrong_kind_is_reported_without_its_pem() {
        let key = SigningKeyPem {
            alg: AssertionAlg::Es384,
            ..rsa_key()
        };
        let err = mint_client_assertion("app", "aud", &key, Duration::from_secs(60)).unwrap_err();
        assert_eq!(err, AssertionError::InvalidKey { alg: "ES384" });
        assert!(!format!("{key:?}").contains("PRIVATE"));
    }

    #[test]
    fn peek_sorts_malformed_from_unsupported() {
        let seg = |v: serde_json::Value| URL_SAFE_NO_PAD.encode(v.to_string());
        let claims = seg(serde_json::json!({ "iss": "app" }));
        let none = format!("{}.{claims}.", seg(serde_json::json!({ "alg": "none" })));
        assert_eq!(peek(&none).unwrap_err().oauth_code(), "invalid_client");
        let hs = format!(
            "{}.{claims}.sig",
            seg(serde_json::json!({ "alg": "HS256", "kid": "k" }))
        );
        assert_eq!(
            peek(&hs).unwrap_err(),
            TokenError::InvalidClient(ClientRejection::UnsupportedAlgorithm)
        );
        let no_kid = format!(
            "{}.{claims}.sig",
            seg(serde_json::json!({ "alg": "ES384" }))
        );
        assert_eq!(
            peek(&no_kid).unwrap_err(),
            TokenError::InvalidRequest(RequestProblem::MissingKid)
        );
        for bad in ["", "a.b", "a.b.c.d", "!!.!!.!!", "e30.e30.x"] {
            assert_eq!(
                peek(bad).unwrap_err().oauth_code(),
                "invalid_request",
                "{bad}"
            );
        }
    }

    #[test]
    fn alg_names_round_trip() {
        for alg in [
            AssertionAlg::Es384,
            AssertionAlg::Rs384,
            AssertionAlg::Ps384,
        ] {
            assert_eq!(alg.name().parse::<AssertionAlg>(), Ok(alg));
        }
        assert!("RS256".parse::<AssertionAlg>().is_err());
    }
}
