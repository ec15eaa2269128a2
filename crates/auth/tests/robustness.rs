//! Bounded, always-on version of the `jwt` fuzz target: arbitrary and
//! JWT-shaped strings through every token entry point never panic and are
//! never accepted (they are not signed by a key we trust).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, OnceLock};

use auth::config::OrganisationConfig;
use auth::{
    AppRegistry, Authenticator, TokenSettings, TrustedIssuerConfig, UserIdentityOptions,
    UserIdentityVerifier,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use proptest::prelude::*;

const CASES: u32 = 2_000;

struct Harness {
    runtime: tokio::runtime::Runtime,
    auth: Authenticator,
    users: UserIdentityVerifier,
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let organisation = OrganisationConfig {
            ods: "X26".into(),
            roles: vec!["consumer".into()],
            pointer_types: vec!["http://snomed.info/sct|736253002".into()],
        };
        let registry = AppRegistry::from_configs(&[auth::demo::app_config(
            "fuzz-app",
            "Fuzz",
            vec![organisation],
        )])
        .unwrap();
        let settings = TokenSettings::new(
            "http://nrls.fuzz",
            "http://nrls.fuzz/oauth2/token",
            b"fuzz-secret-fuzz-secret-fuzz-secret!".to_vec(),
        );
        let issuer = TrustedIssuerConfig {
            issuer: "https://idp.fuzz".into(),
            audience: "nrls".into(),
            jwks: Some(auth::demo::jwks("fuzz-idp")),
            jwks_url: None,
        };
        Harness {
            runtime: tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap(),
            auth: Authenticator::new(Arc::new(registry), settings).unwrap(),
            users: UserIdentityVerifier::new(&[issuer], &UserIdentityOptions::default()).unwrap(),
        }
    })
}

/// The jwt target's body; nothing it is given may authenticate.
fn every_entry_point(text: &str) {
    let h = harness();
    assert!(h.auth.authenticate(text).is_err());
    assert!(h.auth.authenticate_header(Some(text)).is_err());
    let form = vec![
        ("grant_type".to_owned(), "client_credentials".to_owned()),
        (
            "client_assertion_type".to_owned(),
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".to_owned(),
        ),
        ("client_assertion".to_owned(), text.to_owned()),
    ];
    h.runtime.block_on(async {
        assert!(h.auth.issue_token(&form).await.is_err());
        assert!(h.users.verify(text, None).await.is_err());
    });
}

fn segment() -> impl Strategy<Value = String> {
    let header = prop_oneof![
        Just(r#"{"alg":"ES384","kid":"demo-1"}"#.to_owned()),
        Just(r#"{"alg":"HS256","typ":"at+jwt"}"#.to_owned()),
        Just(r#"{"alg":"none"}"#.to_owned()),
        Just(r#"{"iss":"fuzz-app","sub":"fuzz-app","aud":"http://nrls.fuzz/oauth2/token","exp":9999999999}"#.to_owned()),
        Just(r#"{"iss":"https://idp.fuzz","aud":"nrls","sub":"u","exp":9999999999,"nhsid_nrbac_roles":[]}"#.to_owned()),
        ".{0,40}",
    ];
    header.prop_map(|text| URL_SAFE_NO_PAD.encode(text))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn arbitrary_strings(text in ".{0,200}") {
        every_entry_point(&text);
    }

    #[test]
    fn jwt_shaped_strings(header in segment(), payload in segment(), signature in "[A-Za-z0-9_-]{0,96}") {
        every_entry_point(&format!("{header}.{payload}.{signature}"));
    }
}
