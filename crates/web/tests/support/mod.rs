//! Test support for the web front ends: a real OpenID provider (npm
//! `oidc-provider`, run by node from `testing/oidc/`), RSA keys for it and for
//! the relying party, a driver for its sign-in forms, a hostile-network proxy
//! for the tokens an honest provider never issues (all in `testkit::oidc`),
//! an in-process browser, and a minimal relying party that the harness tests
//! itself with.
//!
//! A test file uses it with `mod support;`. Node and `testing/node_modules`
//! must be present: `scripts/test-deps` installs them.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod browser;
pub mod relying_party;

// The provider harness lives in testkit, shared with nrls's black-box tests.
pub use testkit::oidc;
pub use testkit::oidc::{hostile, keys};

pub use hostile::Tamper;
pub use keys::RsaKey;
pub use oidc::{OpConfig, OpenIdProvider, Profile, RelyingPartyClient, complete_login};
pub use relying_party::TestRelyingParty;
