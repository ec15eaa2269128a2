//! Public keys (an app's, or a trusted identity provider's), parsed once
//! from JWK form into verifying keys. Client assertions accept RS384, PS384
//! and ES384 keys ([`ASSERTION_ALGS`]); ID tokens also RS256/RS512 and the
//! matching PS variants ([`ID_TOKEN_ALGS`]), as identity providers such as
//! NHS CIS2 sign with those.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;

use crate::assertion::AssertionAlg;
use crate::error::KeyProblem;

/// The smallest RSA modulus we accept, as NHS and SMART both require.
const MIN_RSA_BITS: usize = 2048;
/// The largest the RSA verifier (the `rsa` crate's default limit) accepts.
const MAX_RSA_BITS: usize = 4096;
/// A P-384 coordinate is 48 bytes.
const P384_COORDINATE_LEN: usize = 48;

/// The JWS algorithms one kind of token may be signed with.
#[derive(Debug)]
pub(crate) struct KeyAlgs {
    names: &'static [(&'static str, Algorithm)],
    /// The problem reported for a JWK pinning any other `alg`.
    refusal: &'static str,
}

impl KeyAlgs {
    /// The algorithm called `name`, if this kind of token accepts it.
    pub(crate) fn find(&self, name: &str) -> Option<Algorithm> {
        self.names.iter().find(|(n, _)| *n == name).map(|(_, a)| *a)
    }
}

/// Client assertions: NHS signed-JWT auth and SMART Backend Services.
pub(crate) const ASSERTION_ALGS: KeyAlgs = KeyAlgs {
    names: &[
        ("ES384", Algorithm::ES384),
        ("RS384", Algorithm::RS384),
        ("PS384", Algorithm::PS384),
    ],
    refusal: "alg must be ES384, RS384 or PS384 (or absent)",
};

/// End-user ID tokens from trusted identity providers. Never `none`/HMAC.
pub(crate) const ID_TOKEN_ALGS: KeyAlgs = KeyAlgs {
    names: &[
        ("ES384", Algorithm::ES384),
        ("RS256", Algorithm::RS256),
        ("RS384", Algorithm::RS384),
        ("RS512", Algorithm::RS512),
        ("PS256", Algorithm::PS256),
        ("PS384", Algorithm::PS384),
        ("PS512", Algorithm::PS512),
    ],
    refusal: "alg must be ES384, RS256/384/512 or PS256/384/512 (or absent)",
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyFamily {
    EcP384,
    Rsa,
}

/// One verifying key of an app.
#[derive(Clone)]
pub(crate) struct ClientKey {
    kid: String,
    family: KeyFamily,
    /// The JWK's own `alg`, when it pins one.
    alg: Option<Algorithm>,
    key: DecodingKey,
}

impl ClientKey {
    pub(crate) fn accepts(&self, alg: AssertionAlg) -> bool {
        self.accepts_jwt(alg.jwt())
    }

    /// Whether this key can check a signature made with `alg`.
    pub(crate) fn accepts_jwt(&self, alg: Algorithm) -> bool {
        use Algorithm::*;
        let family_fits = match alg {
            ES384 => self.family == KeyFamily::EcP384,
            RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => self.family == KeyFamily::Rsa,
            _ => false,
        };
        family_fits && self.alg.is_none_or(|pinned| pinned == alg)
    }

    pub(crate) fn decoding_key(&self) -> &DecodingKey {
        &self.key
    }
}

/// The usable keys of one JWK set.
#[derive(Clone, Default)]
pub(crate) struct KeySet {
    keys: Vec<ClientKey>,
}

impl KeySet {
    pub(crate) fn find(&self, kid: &str) -> Option<&ClientKey> {
        self.keys.iter().find(|k| k.kid == kid)
    }

    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    /// Parses an operator-written set: any unusable key is an error, so a
    /// typo is found at start-up rather than at a client's first request.
    pub(crate) fn parse_strict(value: &serde_json::Value) -> Result<KeySet, KeyProblem> {
        KeySet::parse_strict_for(value, &ASSERTION_ALGS)
    }

    /// As [`KeySet::parse_strict`], for tokens signed with one of `algs`.
    pub(crate) fn parse_strict_for(
        value: &serde_json::Value,
        algs: &KeyAlgs,
    ) -> Result<KeySet, KeyProblem> {
        let entries = key_entries(value)?;
        let mut set = KeySet::default();
        for (index, entry) in entries.iter().enumerate() {
            set.push(parse_key(entry, index, algs)?)?;
        }
        if set.keys.is_empty() {
            return Err(KeyProblem::Empty);
        }
        Ok(set)
    }

    /// Parses a set fetched from an app's `jwks_url`. Apps often publish keys
    /// for other services too, so unusable keys are skipped (and reported);
    /// a set with no usable key at all is an error.
    #[cfg(test)]
    pub(crate) fn parse_published(bytes: &[u8]) -> Result<(KeySet, Vec<KeyProblem>), KeyProblem> {
        KeySet::parse_published_for(bytes, &ASSERTION_ALGS)
    }

    /// Parses a published set (see `parse_published`) for tokens signed
    /// with one of `algs`.
    pub(crate) fn parse_published_for(
        bytes: &[u8],
        algs: &KeyAlgs,
    ) -> Result<(KeySet, Vec<KeyProblem>), KeyProblem> {
        let value: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|e| KeyProblem::NotAKeySet(format!("invalid JSON: {e}")))?;
        let entries = key_entries(&value)?;
        let mut set = KeySet::default();
        let mut skipped = Vec::new();
        for (index, entry) in entries.iter().enumerate() {
            match parse_key(entry, index, algs) {
                Ok(key) => set.push(key)?,
                Err(problem) => skipped.push(problem),
            }
        }
        if set.keys.is_empty() {
            return Err(KeyProblem::Empty);
        }
        Ok((set, skipped))
    }

    fn push(&mut self, key: ClientKey) -> Result<(), KeyProblem> {
        if self.find(&key.kid).is_some() {
            return Err(KeyProblem::DuplicateKid(key.kid));
        }
        self.keys.push(key);
        Ok(())
    }
}

fn key_entries(value: &serde_json::Value) -> Result<&Vec<serde_json::Value>, KeyProblem> {
    value
        .get("keys")
        .and_then(serde_json::Value::as_array)
        .ok_or_else(|| KeyProblem::NotAKeySet("expected an object with a `keys` array".into()))
}

/// The JWK members we read; others (`key_ops`, `x5c`, ...) are ignored.
#[derive(Deserialize)]
struct JwkFields {
    kty: Option<String>,
    kid: Option<String>,
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
    n: Option<String>,
    e: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    key_use: Option<String>,
    d: Option<serde::de::IgnoredAny>,
}

fn parse_key(
    entry: &serde_json::Value,
    index: usize,
    algs: &KeyAlgs,
) -> Result<ClientKey, KeyProblem> {
    let label = entry
        .get("kid")
        .and_then(serde_json::Value::as_str)
        .map_or_else(|| format!("#{index}"), |kid| format!("'{kid}'"));
    let fail = |problem: &'static str| KeyProblem::Key {
        key: label.clone(),
        problem,
    };
    let jwk = JwkFields::deserialize(entry).map_err(|_| fail("is not a JWK object"))?;

    if jwk.d.is_some() {
        return Err(fail(
            "contains private key material (d); publish only the public key",
        ));
    }
    let kid = jwk
        .kid
        .filter(|k| !k.is_empty())
        .ok_or_else(|| fail("kid is required"))?;
    if jwk.key_use.as_deref().is_some_and(|u| u != "sig") {
        return Err(fail("use must be sig"));
    }
    let alg = match jwk.alg.as_deref() {
        None => None,
        Some(name) => Some(algs.find(name).ok_or_else(|| fail(algs.refusal))?),
    };
    let (family, key) = match jwk.kty.as_deref() {
        Some("EC") => {
            if jwk.crv.as_deref() != Some("P-384") {
                return Err(fail("crv must be P-384"));
            }
            let x = jwk.x.as_deref().ok_or_else(|| fail("x is required"))?;
            let y = jwk.y.as_deref().ok_or_else(|| fail("y is required"))?;
            (KeyFamily::EcP384, p384_key(x, y).map_err(fail)?)
        }
        Some("RSA") => {
            let n = jwk.n.as_deref().ok_or_else(|| fail("n is required"))?;
            let e = jwk.e.as_deref().ok_or_else(|| fail("e is required"))?;
            (KeyFamily::Rsa, rsa_key(n, e).map_err(fail)?)
        }
        _ => return Err(fail("kty must be EC (P-384) or RSA")),
    };
    let key = ClientKey {
        kid,
        family,
        alg,
        key,
    };
    if let Some(pinned) = alg
        && !key.accepts_jwt(pinned)
    {
        return Err(fail(
            "alg does not fit the key type (ES384 for EC, RS384/PS384 for RSA)",
        ));
    }
    Ok(key)
}

fn p384_key(x: &str, y: &str) -> Result<DecodingKey, &'static str> {
    let bad = "x and y must be base64url P-384 coordinates";
    let x = URL_SAFE_NO_PAD.decode(x).map_err(|_| bad)?;
    let y = URL_SAFE_NO_PAD.decode(y).map_err(|_| bad)?;
    if x.len() != P384_COORDINATE_LEN || y.len() != P384_COORDINATE_LEN {
        return Err(bad);
    }
    let mut sec1 = Vec::with_capacity(1 + 2 * P384_COORDINATE_LEN);
    sec1.push(0x04);
    sec1.extend_from_slice(&x);
    sec1.extend_from_slice(&y);
    // Checked here so an off-curve point fails at start-up, not as a
    // mysterious bad signature later.
    p384::PublicKey::from_sec1_bytes(&sec1).map_err(|_| "x, y is not a point on P-384")?;
    Ok(DecodingKey::from_ec_der(&sec1))
}

fn rsa_key(n: &str, e: &str) -> Result<DecodingKey, &'static str> {
    let bad = "n and e must be base64url big-endian integers";
    let n = URL_SAFE_NO_PAD.decode(n).map_err(|_| bad)?;
    let e = URL_SAFE_NO_PAD.decode(e).map_err(|_| bad)?;
    let n = strip_leading_zeros(&n);
    let e = strip_leading_zeros(&e);
    let bits = n.first().map_or(0, |top| {
        (n.len() - 1) * 8 + (8 - top.leading_zeros() as usize)
    });
    if bits < MIN_RSA_BITS {
        return Err("RSA modulus must be at least 2048 bits");
    }
    if bits > MAX_RSA_BITS {
        return Err("RSA modulus must be at most 4096 bits");
    }
    let odd = |v: &[u8]| v.last().is_some_and(|b| b & 1 == 1);
    if !odd(n) || !odd(e) || e.len() > 8 || e == [1] {
        return Err("n or e is not a plausible RSA public key");
    }
    Ok(DecodingKey::from_rsa_raw_components(n, e))
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rsa_jwks() -> serde_json::Value {
        serde_json::from_str(include_str!("testdata/rsa-test-jwks.json")).unwrap()
    }

    fn problem(value: serde_json::Value) -> String {
        KeySet::parse_strict(&value).err().unwrap().to_string()
    }

    #[test]
    fn parses_ec_and_rsa_keys() {
        let ec = crate::demo::jwks("app");
        let set = KeySet::parse_strict(&ec).unwrap();
        let key = set.find("demo-1").unwrap();
        assert!(key.accepts(AssertionAlg::Es384));
        assert!(!key.accepts(AssertionAlg::Rs384));

        let set = KeySet::parse_strict(&rsa_jwks()).unwrap();
        let key = set.find("rsa-test-1").unwrap();
        // The JWK pins RS384, so PS384 with the same key is refused.
        assert!(key.accepts(AssertionAlg::Rs384));
        assert!(!key.accepts(AssertionAlg::Ps384));
        assert!(!key.accepts(AssertionAlg::Es384));
    }

    #[test]
    fn refuses_unusable_keys() {
        let mut ec = crate::demo::jwks("app");
        ec["keys"][0]["crv"] = json!("P-256");
        assert!(problem(ec).contains("crv must be P-384"));

        let mut ec = crate::demo::jwks("app");
        ec["keys"][0]["d"] = json!("c2VjcmV0");
        assert!(problem(ec).contains("private key material"));

        let mut ec = crate::demo::jwks("app");
        ec["keys"][0]["y"] = ec["keys"][0]["x"].clone();
        assert!(problem(ec).contains("not a point on P-384"));

        let mut rsa = rsa_jwks();
        rsa["keys"][0]["n"] = json!(URL_SAFE_NO_PAD.encode([0xC5u8; 128]));
        assert!(problem(rsa).contains("at least 2048 bits"));

        let mut rsa = rsa_jwks();
        rsa["keys"][0]["alg"] = json!("ES384");
        assert!(problem(rsa).contains("alg does not fit"));

        assert!(
            problem(json!({ "keys": [ { "kty": "oct", "kid": "h", "k": "AA" } ] })).contains("kty")
        );
        assert!(problem(json!({ "keys": [] })).contains("no keys"));
        assert!(problem(json!([1, 2])).contains("keys"));

        let mut twice = crate::demo::jwks("app");
        let key = twice["keys"][0].clone();
        twice["keys"].as_array_mut().unwrap().push(key);
        assert!(problem(twice).contains("more than one key"));
    }

    #[test]
    fn published_sets_skip_foreign_keys() {
        let mut set = crate::demo::jwks("app");
        set["keys"]
            .as_array_mut()
            .unwrap()
            .push(json!({ "kty": "OKP", "crv": "Ed25519", "kid": "ed", "x": "AA" }));
        let bytes = serde_json::to_vec(&set).unwrap();
        let (keys, skipped) = KeySet::parse_published(&bytes).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(skipped.len(), 1);
        assert!(KeySet::parse_published(b"<html>").is_err());
        assert!(KeySet::parse_published(br#"{"keys":[{"kty":"oct","kid":"x"}]}"#).is_err());
    }
}
