//! Every JWT nrls reads from a client: bearer access tokens
//! (`Authenticator::authenticate`), client assertions at the token endpoint
//! (the unverified peek, then verification), and end-user ID tokens
//! (`UserIdentityVerifier::verify`). Keys are the public demo keys.
#![no_main]

use std::sync::{Arc, OnceLock};

use auth::config::OrganisationConfig;
use auth::{
    AppRegistry, Authenticator, TokenSettings, TrustedIssuerConfig, UserIdentityOptions,
    UserIdentityVerifier,
};
use libfuzzer_sys::fuzz_target;

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
        .expect("demo registry");
        let settings = TokenSettings::new(
            "http://nrls.fuzz",
            "http://nrls.fuzz/oauth2/token",
            b"fuzz-secret-fuzz-secret-fuzz-secret!".to_vec(),
        );
        let users = UserIdentityVerifier::new(
            &[TrustedIssuerConfig {
                issuer: "https://idp.fuzz".into(),
                audience: "nrls".into(),
                jwks: Some(auth::demo::jwks("fuzz-idp")),
                jwks_url: None,
            }],
            &UserIdentityOptions::default(),
        )
        .expect("issuer config");
        Harness {
            runtime: tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("runtime"),
            auth: Authenticator::new(Arc::new(registry), settings).expect("authenticator"),
            users,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let h = harness();
    let _ = h.auth.authenticate(text);
    let _ = h.auth.authenticate_header(Some(text));
    let form = vec![
        ("grant_type".to_owned(), "client_credentials".to_owned()),
        (
            "client_assertion_type".to_owned(),
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".to_owned(),
        ),
        ("client_assertion".to_owned(), text.to_owned()),
    ];
    h.runtime.block_on(async {
        let _ = h.auth.issue_token(&form).await;
        let _ = h.users.verify(text, None).await;
    });
});
