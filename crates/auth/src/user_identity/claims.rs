//! The parts of an ID token read before and after its signature is
//! checked: the unverified header and issuer (to find the key), and the
//! claims nrls understands.

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

/// Header and issuer, read without trusting them (`jws::peek`), to find the key.
pub(super) fn peek(token: &str) -> Result<Peeked, UserIdentityError> {
    let peeked = crate::jws::peek(token).ok_or(UserIdentityError::Malformed)?;
    let alg = peeked.alg.ok_or(UserIdentityError::Malformed)?;
    let alg = ID_TOKEN_ALGS
        .find(&alg)
        .ok_or(UserIdentityError::UnsupportedAlgorithm)?;
    let kid = peeked.kid.ok_or(UserIdentityError::Malformed)?;
    let issuer = peeked.issuer.ok_or(UserIdentityError::UnknownIssuer)?;
    Ok(Peeked { alg, kid, issuer })
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
