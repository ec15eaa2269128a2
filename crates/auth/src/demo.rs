//! DEMO KEYS — PUBLIC KNOWLEDGE, NEVER FOR REAL USE.
//!
//! `nrls serve --demo` registers demo apps whose P-384 keys are derived from
//! nothing but their client id, so `nrls token --demo` and the server agree
//! without key files. Anyone who reads this source can derive the same
//! private key and act as any demo app: a server started with `--demo`
//! must hold only synthetic data.
//!
//! Derivation: the secret scalar is SHA-384(`"nrls-demo-key:" + client_id`);
//! in the (~2^-190) case that this is not a valid scalar, SHA-384 of the same
//! text followed by `":" + n` for n = 1, 2, ... until one is.

use p384::elliptic_curve::sec1::ToEncodedPoint;
use p384::pkcs8::{EncodePrivateKey, LineEnding};
use sha2::{Digest, Sha384};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::assertion::{AssertionAlg, SigningKeyPem};
use crate::config::{AppConfig, OrganisationConfig};
use crate::error::AssertionError;

/// The `kid` of every demo key.
pub const DEMO_KID: &str = "demo-1";

const DERIVATION_PREFIX: &str = "nrls-demo-key:";

fn secret_key(client_id: &str) -> p384::SecretKey {
    let mut attempt: u64 = 0;
    loop {
        let mut hasher = Sha384::new();
        hasher.update(DERIVATION_PREFIX.as_bytes());
        hasher.update(client_id.as_bytes());
        if attempt > 0 {
            hasher.update(format!(":{attempt}").as_bytes());
        }
        // Zero and values >= the group order are refused; the next attempt
        // is as good as the first.
        if let Ok(key) = p384::SecretKey::from_slice(&hasher.finalize()) {
            return key;
        }
        attempt += 1;
    }
}

/// The demo app's private key (ES384, kid `demo-1`). PUBLIC KNOWLEDGE.
pub fn signing_key(client_id: &str) -> Result<SigningKeyPem, AssertionError> {
    let pem = secret_key(client_id)
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|_| AssertionError::InvalidKey { alg: "ES384" })?;
    Ok(SigningKeyPem::new(
        pem.as_str(),
        AssertionAlg::Es384,
        DEMO_KID,
    ))
}

/// The demo app's public JWK set, as an app would publish it.
pub fn jwks(client_id: &str) -> serde_json::Value {
    let point = secret_key(client_id).public_key().to_encoded_point(false);
    let coordinate =
        |c: Option<&p384::FieldBytes>| c.map(|c| URL_SAFE_NO_PAD.encode(c)).unwrap_or_default();
    serde_json::json!({
        "keys": [{
            "kty": "EC",
            "crv": "P-384",
            "kid": DEMO_KID,
            "alg": "ES384",
            "use": "sig",
            "x": coordinate(point.x()),
            "y": coordinate(point.y()),
        }]
    })
}

/// A demo app's onboarding record, keyed with its demo JWKS.
pub fn app_config(
    client_id: &str,
    name: &str,
    organisations: Vec<OrganisationConfig>,
) -> AppConfig {
    AppConfig {
        client_id: client_id.to_owned(),
        name: name.to_owned(),
        jwks: Some(jwks(client_id)),
        jwks_url: None,
        organisations,
        rate_limit_per_second: None,
        requires_user_identity: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_deterministic_and_per_client() {
        assert_eq!(jwks("a"), jwks("a"));
        assert_ne!(jwks("a")["keys"][0]["x"], jwks("b")["keys"][0]["x"]);
        assert_eq!(signing_key("a").unwrap().pem, signing_key("a").unwrap().pem);
        let x = jwks("a")["keys"][0]["x"].as_str().unwrap().to_owned();
        assert_eq!(URL_SAFE_NO_PAD.decode(x).unwrap().len(), 48);
    }

    #[test]
    fn the_first_attempt_is_the_documented_hash() {
        let digest = Sha384::digest(b"nrls-demo-key:demo-consumer");
        let expected = p384::SecretKey::from_slice(&digest).unwrap();
        assert_eq!(secret_key("demo-consumer").to_bytes(), expected.to_bytes());
    }
}
