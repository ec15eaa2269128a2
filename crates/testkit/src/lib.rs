//! Test support for nrls, used only as a dev-dependency so nothing here is
//! compiled into the service: PostgreSQL scratch databases ([`postgres`]),
//! and a real OpenID provider with its keys and a hostile-network proxy
//! ([`oidc`]), shared by the web crate's sign-in tests and nrls's black-box
//! patient tests.

pub mod oidc;
pub mod postgres;

/// The repository's root, where `testing/` (the OpenID provider) lives.
pub fn repository_root() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}
