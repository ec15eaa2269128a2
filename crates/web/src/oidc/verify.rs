//! ID token verification.

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Validation, decode, decode_header};
use serde_json::{Map, Value};

use super::keys::Jwks;
use super::{Discovery, RpConfig};
use crate::session::now;

/// Why an ID token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdTokenProblem {
    #[error("not a well-formed signed JWT")]
    Malformed,
    #[error("its alg is not accepted")]
    UnsupportedAlgorithm,
    #[error("its key id is not in the issuer's JWKS")]
    UnknownKey,
    #[error("the issuer's keys could not be fetched: {0}")]
    Keys(String),
    #[error("the signature is invalid")]
    BadSignature,
    #[error("it was issued by another issuer")]
    WrongIssuer,
    #[error("it is meant for another client")]
    WrongAudience,
    #[error("it has expired")]
    Expired,
    #[error("it was issued in the future")]
    IssuedInFuture,
    #[error("a required claim is missing or malformed")]
    BadClaims,
    #[error("its nonce is not this sign-in's")]
    WrongNonce,
}

/// Verifies `token` and returns its claims.
pub(super) async fn id_token(
    token: &str,
    config: &RpConfig,
    jwks: &Jwks,
    discovery: &Discovery,
    nonce: &str,
) -> Result<Map<String, Value>, IdTokenProblem> {
    let header = decode_header(token).map_err(|_| IdTokenProblem::Malformed)?;
    if !config.id_token_algs.contains(&header.alg) {
        return Err(IdTokenProblem::UnsupportedAlgorithm);
    }
    let kid = header.kid.ok_or(IdTokenProblem::Malformed)?;
    let key = jwks
        .key(&discovery.jwks_uri, &kid)
        .await
        .map_err(IdTokenProblem::Keys)?
        .ok_or(IdTokenProblem::UnknownKey)?;
    let mut validation = Validation::new(header.alg);
    validation.set_issuer(&[&config.issuer]);
    validation.set_audience(&[&config.client_id]);
    validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
    validation.leeway = config.clock_skew.as_secs();
    let claims = decode::<Map<String, Value>>(token, &key, &validation)
        .map_err(|e| match e.kind() {
            ErrorKind::InvalidSignature => IdTokenProblem::BadSignature,
            ErrorKind::InvalidIssuer => IdTokenProblem::WrongIssuer,
            ErrorKind::InvalidAudience => IdTokenProblem::WrongAudience,
            ErrorKind::ExpiredSignature => IdTokenProblem::Expired,
            ErrorKind::MissingRequiredClaim(_) | ErrorKind::Json(_) => IdTokenProblem::BadClaims,
            _ => IdTokenProblem::Malformed,
        })?
        .claims;
    let skew = i64::try_from(config.clock_skew.as_secs()).unwrap_or(0);
    let iat = claims
        .get("iat")
        .and_then(Value::as_i64)
        .ok_or(IdTokenProblem::BadClaims)?;
    if iat > now() + skew {
        return Err(IdTokenProblem::IssuedInFuture);
    }
    // With several audiences, the authorised party must be us (OIDC core 3.1.3.7).
    if let Some(Value::Array(auds)) = claims.get("aud")
        && auds.len() > 1
        && claims.get("azp").and_then(Value::as_str) != Some(config.client_id.as_str())
    {
        return Err(IdTokenProblem::WrongAudience);
    }
    let sent = claims.get("nonce").and_then(Value::as_str);
    if !crate::session::csrf::verify(nonce, sent) {
        return Err(IdTokenProblem::WrongNonce);
    }
    Ok(claims)
}
