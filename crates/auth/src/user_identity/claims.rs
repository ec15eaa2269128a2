//! The parts of an ID token read before and after its signature is
//! checked: the unverified header and issuer (to find the key), and the
//! claims nrls understands.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use domain::OdsCode;
use jsonwebtoken::Algorithm;
use serde::Deserialize;

use super::{NrbacRole, UserIdentityError};
use crate::keys::ID_TOKEN_ALGS;

pub(super) struct Peeked {
    pub alg: Algorithm,
    pub kid: String,
    pub issuer: String,
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

/// Header and issuer, read without trusting them, to find the key.
pub(super) fn peek(token: &str) -> Result<Peeked, UserIdentityError> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(UserIdentityError::Malformed);
    };
    let header: PeekHeader = decode_segment(header).ok_or(UserIdentityError::Malformed)?;
    let claims: PeekClaims = decode_segment(payload).ok_or(UserIdentityError::Malformed)?;
    if header.crit.is_some() {
        return Err(UserIdentityError::Malformed);
    }
    let alg = header.alg.ok_or(UserIdentityError::Malformed)?;
    let alg = ID_TOKEN_ALGS
        .find(&alg)
        .ok_or(UserIdentityError::UnsupportedAlgorithm)?;
    let kid = header
        .kid
        .filter(|k| !k.is_empty())
        .ok_or(UserIdentityError::Malformed)?;
    match claims.iss {
        Some(serde_json::Value::String(issuer)) if !issuer.is_empty() => {
            Ok(Peeked { alg, kid, issuer })
        }
        _ => Err(UserIdentityError::UnknownIssuer),
    }
}

fn decode_segment<T: serde::de::DeserializeOwned>(segment: &str) -> Option<T> {
    let bytes = URL_SAFE_NO_PAD.decode(segment).ok()?;
    serde_json::from_slice(&bytes).ok()
}

#[derive(Deserialize)]
pub(super) struct IdClaims {
    pub iss: Option<String>,
    pub sub: Option<String>,
    pub aud: Option<Audience>,
    pub exp: Option<f64>,
    pub nbf: Option<f64>,
    pub iat: Option<f64>,
    pub selected_roleid: Option<String>,
    pub nhsid_nrbac_roles: Option<Vec<RoleClaim>>,
    pub purpose_of_use: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    pub(super) fn contains(&self, expected: &str) -> bool {
        match self {
            Audience::One(aud) => aud == expected,
            Audience::Many(auds) => auds.iter().any(|a| a == expected),
        }
    }
}

/// One `nhsid_nrbac_roles` entry; other members (`role_name`,
/// `activities`, `org_name`...) are ignored.
#[derive(Deserialize)]
pub(super) struct RoleClaim {
    person_roleid: Option<String>,
    org_code: Option<String>,
    role_code: Option<String>,
    #[serde(default)]
    activity_codes: Vec<String>,
}

impl RoleClaim {
    /// Entries without a role id or a valid ODS code cannot be acted in.
    pub(super) fn into_role(self) -> Option<NrbacRole> {
        Some(NrbacRole {
            person_role_id: self.person_roleid.filter(|r| !r.is_empty())?,
            org: OdsCode::parse(self.org_code.as_deref()?)?,
            role_code: self.role_code.filter(|r| !r.is_empty()),
            activity_codes: self.activity_codes,
        })
    }
}

pub(super) fn seconds(value: Option<f64>) -> Option<i64> {
    value.filter(|v| v.is_finite()).map(|v| v.floor() as i64)
}
