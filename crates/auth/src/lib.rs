//! nrls authentication.
//!
//! Apps are onboarded in configuration ([`config::AppConfig`]) and validated
//! into an [`AppRegistry`]. An app proves who it is at the token endpoint with
//! a client assertion signed by its private key (RFC 7523 `private_key_jwt`,
//! as in SMART Backend Services and NHS signed-JWT auth) and receives a
//! short-lived HS256 access token ([`Authenticator::issue_token`]). Every
//! other request presents that token ([`Authenticator::authenticate`]).
//!
//! Pure library: the HTTP layer decodes forms and headers and calls in.

pub mod access_token;
pub mod assertion;
mod authenticator;
pub mod clock;
pub mod config;
pub mod demo;
pub mod error;
mod expiring_map;
mod jws;
mod keys;
pub mod outbound;
pub mod registry;
mod remote_keys;
mod token_request;
pub mod user_identity;

use sha2::{Digest, Sha256};

pub use access_token::bearer_token;
pub use assertion::{AssertionAlg, SigningKeyPem, mint_client_assertion};
pub use authenticator::{Authenticator, PatientPrincipal, Principal, TokenResponse, TokenSettings};
pub use clock::Clock;
pub use config::{AppConfig, OrganisationConfig};
pub use error::{AssertionError, AuthError, ConfigError, KeyError, TokenError};
pub use outbound::{OutboundTls, OutboundTlsError};
pub use registry::{App, AppRegistry, OrganisationGrant, RegistryOptions};
pub use user_identity::{
    NrbacRole, TrustedIssuerConfig, UserIdentity, UserIdentityError, UserIdentityOptions,
    UserIdentityVerifier,
};

/// A short, stable fingerprint of a token for logs: the first 12 hex digits
/// of its SHA-256. Enough to correlate log lines, useless to replay.
pub fn hash_for_log(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    digest.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn log_hash_is_short_and_stable() {
        let hash = super::hash_for_log("secret-token");
        assert_eq!(hash.len(), 12);
        assert_eq!(hash, super::hash_for_log("secret-token"));
        assert_ne!(hash, super::hash_for_log("secret-tokem"));
        assert!(!hash.contains("secret"));
    }
}
