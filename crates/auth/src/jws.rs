//! The one peek into a compact JWS (client assertions, ID tokens) before
//! its signature is checked: the header's `alg` and `kid` and the payload's
//! issuer, enough to find the key that must have signed it. Decoded by hand
//! rather than by the JWT library so that `alg: none` or an algorithm we do
//! not accept is reported as such, not as a malformed token. Each caller
//! maps what is missing to its own error.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;

/// What a token says about itself, untrusted. Empty strings are absent.
pub(crate) struct Peeked {
    pub alg: Option<String>,
    pub kid: Option<String>,
    /// `iss`, when it is a non-empty string.
    pub issuer: Option<String>,
}

#[derive(Deserialize)]
struct PeekHeader {
    alg: Option<String>,
    kid: Option<String>,
    crit: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct PeekClaims {
    iss: Option<serde_json::Value>,
}

/// `None` when `token` is not three base64url JSON segments, or asks for a
/// JWS extension (`crit`): we understand none, and RFC 7515 §4.1.11 says
/// to refuse.
pub(crate) fn peek(token: &str) -> Option<Peeked> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let header: PeekHeader = decode_segment(header)?;
    let claims: PeekClaims = decode_segment(payload)?;
    if header.crit.is_some() {
        return None;
    }
    let issuer = match claims.iss {
        Some(serde_json::Value::String(iss)) if !iss.is_empty() => Some(iss),
        _ => None,
    };
    Some(Peeked {
        alg: header.alg,
        kid: header.kid.filter(|k| !k.is_empty()),
        issuer,
    })
}

pub(crate) fn decode_segment<T: serde::de::DeserializeOwned>(segment: &str) -> Option<T> {
    let bytes = URL_SAFE_NO_PAD.decode(segment).ok()?;
    serde_json::from_slice(&bytes).ok()
}
