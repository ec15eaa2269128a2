//! Access tokens: compact JWTs, HS256 under a secret every nrls node shares,
//! so any node can verify a token another issued. Only nrls mints them, so
//! the header is always the same and anything else is refused before the
//! HMAC is computed.

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::error::AuthError;

/// RFC 9068's media type for JWT access tokens; keeps any other HS256 JWT
/// that might one day share the secret from passing as an access token.
const TOKEN_TYP: &str = "at+jwt";
/// Ours are ~300 bytes; anything this long is not one of ours.
pub(crate) const MAX_TOKEN_LEN: usize = 2048;

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct AccessClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
    /// Patient tokens only: the NHS number NHS login verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nhs_number: Option<String>,
    /// Patient tokens only: NHS login's `identity_proofing_level` (`P9`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proofing_level: Option<String>,
    /// Patient tokens only: the web session the token was issued from; the
    /// token is refused once that session has ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
}

/// The `aud` of patient tokens: the patient API, not nrls as a whole, so a
/// patient token fails an app token's audience check and the other way round.
pub(crate) fn patient_audience(issuer: &str) -> String {
    format!("{}/patient/FHIR/R4", issuer.trim_end_matches('/'))
}

/// Mints and verifies access tokens under one secret and issuer.
pub(crate) struct AccessTokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    issuer: String,
    /// The base64url header every token we mint starts with.
    header_segment: String,
    patient_audience: String,
}

impl AccessTokenKeys {
    pub(crate) fn new(secret: &[u8], issuer: &str) -> Result<Self, jsonwebtoken::errors::Error> {
        let encoding = EncodingKey::from_secret(secret);
        let header_segment = jsonwebtoken::encode(&header(), &serde_json::json!({}), &encoding)?
            .split('.')
            .next()
            .unwrap_or_default()
            .to_owned();
        // Time, issuer and audience are checked below with our own clock and
        // errors; the library checks only the signature.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_aud = false;
        Ok(AccessTokenKeys {
            encoding,
            decoding: DecodingKey::from_secret(secret),
            validation,
            issuer: issuer.to_owned(),
            header_segment,
            patient_audience: patient_audience(issuer),
        })
    }

    pub(crate) fn mint(
        &self,
        client_id: &str,
        issued_at: i64,
        expires_at: i64,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let claims = AccessClaims {
            iss: self.issuer.clone(),
            sub: client_id.to_owned(),
            aud: self.issuer.clone(),
            iat: issued_at,
            exp: expires_at,
            jti: uuid::Uuid::new_v4().to_string(),
            nhs_number: None,
            proofing_level: None,
            sid: None,
        };
        jsonwebtoken::encode(&header(), &claims, &self.encoding)
    }

    /// A patient token: bound to the NHS number and proofing level NHS login
    /// verified, for the patient API's audience only.
    pub(crate) fn mint_patient(
        &self,
        nhs_number: &str,
        proofing_level: &str,
        sid: &str,
        issued_at: i64,
        expires_at: i64,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let claims = AccessClaims {
            iss: self.issuer.clone(),
            sub: nhs_number.to_owned(),
            aud: self.patient_audience.clone(),
            iat: issued_at,
            exp: expires_at,
            jti: uuid::Uuid::new_v4().to_string(),
            nhs_number: Some(nhs_number.to_owned()),
            proofing_level: Some(proofing_level.to_owned()),
            sid: Some(sid.to_owned()),
        };
        jsonwebtoken::encode(&header(), &claims, &self.encoding)
    }

    /// Checks an app token: signature, issuer and audience. Expiry is the
    /// caller's, since it must also be checked on every cache hit.
    pub(crate) fn verify(&self, token: &str) -> Result<AccessClaims, AuthError> {
        let claims = self.verify_signed(token)?;
        if claims.aud == self.patient_audience || claims.nhs_number.is_some() {
            return Err(AuthError::WrongKind);
        }
        if claims.aud != self.issuer {
            return Err(AuthError::WrongAudience);
        }
        Ok(claims)
    }

    /// Checks a patient token: as [`AccessTokenKeys::verify`], for the
    /// patient API's audience, with an NHS number and a proofing level.
    pub(crate) fn verify_patient(&self, token: &str) -> Result<AccessClaims, AuthError> {
        let claims = self.verify_signed(token)?;
        if claims.aud == self.issuer {
            return Err(AuthError::WrongKind);
        }
        if claims.aud != self.patient_audience {
            return Err(AuthError::WrongAudience);
        }
        if claims.nhs_number.is_none() || claims.proofing_level.is_none() || claims.sid.is_none() {
            return Err(AuthError::Malformed);
        }
        Ok(claims)
    }

    fn verify_signed(&self, token: &str) -> Result<AccessClaims, AuthError> {
        let mut parts = token.split('.');
        let (Some(header), Some(_), Some(_), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(AuthError::Malformed);
        };
        if header != self.header_segment {
            return Err(AuthError::Malformed);
        }
        let claims = jsonwebtoken::decode::<AccessClaims>(token, &self.decoding, &self.validation)
            .map_err(|e| match e.kind() {
                // The header is ours, so a bad signature segment is tampering.
                ErrorKind::InvalidSignature | ErrorKind::Base64(_) => AuthError::BadSignature,
                _ => AuthError::Malformed,
            })?
            .claims;
        if claims.iss != self.issuer {
            return Err(AuthError::WrongIssuer);
        }
        Ok(claims)
    }
}

fn header() -> Header {
    let mut header = Header::new(Algorithm::HS256);
    header.typ = Some(TOKEN_TYP.to_owned());
    header
}

/// The token in an `Authorization: Bearer <token>` header value.
pub fn bearer_token(authorization: Option<&str>) -> Result<&str, AuthError> {
    let value = authorization
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or(AuthError::Missing)?;
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::Malformed);
    }
    match token.trim_start() {
        "" => Err(AuthError::Missing),
        token => Ok(token),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn verifies_what_it_mints() {
        let keys = AccessTokenKeys::new(SECRET, "http://nrls").unwrap();
        let token = keys.mint("app", 100, 200).unwrap();
        let claims = keys.verify(&token).unwrap();
        assert_eq!(
            (claims.sub.as_str(), claims.iat, claims.exp),
            ("app", 100, 200)
        );
        assert_eq!(claims.aud, "http://nrls");
    }

    #[test]
    fn another_issuer_is_refused() {
        let ours = AccessTokenKeys::new(SECRET, "http://nrls").unwrap();
        let theirs = AccessTokenKeys::new(SECRET, "http://elsewhere").unwrap();
        let token = theirs.mint("app", 100, 200).unwrap();
        assert_eq!(ours.verify(&token).unwrap_err(), AuthError::WrongIssuer);
    }

    #[test]
    fn patient_and_app_tokens_are_not_interchangeable() {
        let keys = AccessTokenKeys::new(SECRET, "http://nrls").unwrap();
        let patient = keys
            .mint_patient("9990000018", "P9", "session-1", 100, 200)
            .unwrap();
        let app = keys.mint("app", 100, 200).unwrap();
        let claims = keys.verify_patient(&patient).unwrap();
        assert_eq!(claims.nhs_number.as_deref(), Some("9990000018"));
        assert_eq!(claims.proofing_level.as_deref(), Some("P9"));
        assert_eq!(claims.aud, "http://nrls/patient/FHIR/R4");
        assert_eq!(claims.sid.as_deref(), Some("session-1"));
        assert_eq!(keys.verify(&patient).unwrap_err(), AuthError::WrongKind);
        assert_eq!(keys.verify_patient(&app).unwrap_err(), AuthError::WrongKind);
    }

    #[test]
    fn a_patient_token_without_a_session_is_refused() {
        // Tokens minted before tokens were bound to a session carry no
        // `sid`; they cannot be ended by signing out, so they are refused.
        let keys = AccessTokenKeys::new(SECRET, "http://nrls").unwrap();
        let claims = AccessClaims {
            iss: "http://nrls".into(),
            sub: "9990000018".into(),
            aud: patient_audience("http://nrls"),
            iat: 100,
            exp: 200,
            jti: "unbound".into(),
            nhs_number: Some("9990000018".into()),
            proofing_level: Some("P9".into()),
            sid: None,
        };
        let token = jsonwebtoken::encode(&header(), &claims, &keys.encoding).unwrap();
        assert_eq!(
            keys.verify_patient(&token).unwrap_err(),
            AuthError::Malformed
        );
    }

    #[test]
    fn a_foreign_header_is_malformed() {
        let keys = AccessTokenKeys::new(SECRET, "http://nrls").unwrap();
        let token = keys.mint("app", 100, 200).unwrap();
        let (_, rest) = token.split_once('.').unwrap();
        // The same signature under an `alg: none` header.
        let none = format!("eyJhbGciOiJub25lIn0.{rest}");
        assert_eq!(keys.verify(&none).unwrap_err(), AuthError::Malformed);
    }

    #[test]
    fn bearer_header_parsing() {
        assert_eq!(bearer_token(Some("Bearer abc")), Ok("abc"));
        assert_eq!(bearer_token(Some("bearer   abc ")), Ok("abc"));
        assert_eq!(bearer_token(None), Err(AuthError::Missing));
        assert_eq!(bearer_token(Some("  ")), Err(AuthError::Missing));
        assert_eq!(bearer_token(Some("Bearer ")), Err(AuthError::Missing));
        assert_eq!(bearer_token(Some("Basic abc")), Err(AuthError::Malformed));
        assert_eq!(bearer_token(Some("abc")), Err(AuthError::Malformed));
    }
}
