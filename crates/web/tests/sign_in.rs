//! The viewer's NHS CIS2 sign-in against a real OpenID provider (npm
//! `oidc-provider`, started by `tests/support`): the whole browser flow
//! through nrls's own routes, and every bad ID token refused. Needs node and
//! `testing/node_modules` (`scripts/test-deps`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

// The harness exports more than this file uses.
#[allow(unused_imports)]
mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use api::AppState;
use axum::http::StatusCode;
use jsonwebtoken::Algorithm;
use serde_json::json;
use support::browser::{Reply, browser};
use support::oidc::{cis2_claims, cis2_role};
use support::{OpConfig, OpenIdProvider, RelyingPartyClient, RsaKey, Tamper};
use web::oidc::{ClientKey, RelyingParty, RpConfig};
use web::session::store::memory::MemorySessionStore;
use web::session::{SessionSettings, Sessions};
use web::{WebInner, WebState};

/// The redirect URI registered at the provider; the tests hand the callback
/// to nrls's router themselves, so nothing listens there.
const REDIRECT: &str = "http://127.0.0.1:9/viewer/callback";
const SIGNED_OUT: &str = "http://127.0.0.1:9/viewer/signed-out";
const CLIENT_ID: &str = "nrls-viewer";

/// Two users: one with two roles (RX9 and RR8), one with one.
fn provider_config() -> (OpConfig, RsaKey) {
    let mut keys = RsaKey::generate(&["op-1", "rp-1"]);
    let rp_key = keys.remove(1);
    let client = RelyingPartyClient::new(CLIENT_ID, rp_key.clone(), REDIRECT)
        .post_logout_redirect_uri(SIGNED_OUT);
    let two_roles = [
        cis2_role("555000000011", "RX9", "S0010:G0020:R8000", &["B0380"]),
        cis2_role("555000000012", "RR8", "S8000:G8000:R8001", &["B0380"]),
    ];
    let one_role = [cis2_role(
        "555000000021",
        "RR8",
        "S8000:G8000:R8001",
        &["B0380"],
    )];
    let config = OpConfig::cis2(keys.remove(0))
        .client(client)
        .account(
            "555000000001",
            cis2_claims("555000000001", "Alex Carter", &two_roles),
        )
        .account(
            "555000000002",
            cis2_claims("555000000002", "Sam Jones", &one_role),
        );
    (config, rp_key)
}

fn viewer(issuer: &str, rp_key: &RsaKey) -> axum::Router {
    let rp = RelyingParty::new(RpConfig {
        issuer: issuer.to_owned(),
        client_id: CLIENT_ID.to_owned(),
        redirect_url: REDIRECT.to_owned(),
        post_logout_redirect_url: Some(SIGNED_OUT.to_owned()),
        key: ClientKey {
            key: rp_key.encoding_key(),
            alg: Algorithm::RS512,
            kid: rp_key.kid.clone(),
        },
        scopes: web::oidc::cis2::SCOPES
            .iter()
            .map(|s| (*s).to_owned())
            .collect(),
        extra_params: Vec::new(),
        clock_skew: Duration::from_secs(30),
        id_token_algs: vec![Algorithm::RS256, Algorithm::RS512],
        http_timeout: Duration::from_secs(10),
    })
    .unwrap();
    let auth = auth::Authenticator::new(
        Arc::new(auth::AppRegistry::from_configs(&[]).unwrap()),
        auth::TokenSettings::new("http://nrls", "http://nrls/oauth2/token", vec![7; 32]),
    )
    .unwrap();
    let api = AppState::new(
        Arc::new(store::memory::MemoryStore::new()),
        Arc::new(auth),
        api::ApiSettings::default(),
    );
    web::router(WebState(Arc::new(WebInner {
        api,
        sessions: Sessions::new(
            Arc::new(MemorySessionStore::new()),
            SessionSettings::default(),
        ),
        cis2: Some(rp),
        nhs_login: None,
        patient_types: web::PatientAccessConfig::default().visible_types,
        demo: false,
        organisations: HashMap::new(),
        https: false,
    })))
}

#[tokio::test]
async fn a_cis2_user_with_two_roles_signs_in_chooses_a_role_and_signs_out_at_the_provider_too() {
    let (config, rp_key) = provider_config();
    let op = OpenIdProvider::start(config).await;
    let mut browser = browser(viewer(op.issuer(), &rp_key));

    browser.send("GET", "/viewer/sign-in", None).await;
    let before = browser.cookie.clone();
    let done = browser.sign_in_at("/viewer/sign-in", "555000000001").await;
    assert_eq!(done.location, "/viewer/choose-role", "{}", done.body);
    assert_ne!(
        browser.cookie, before,
        "the session id is rotated at sign-in"
    );

    let choose = browser.send("GET", "/viewer/choose-role", None).await;
    assert!(choose.body.contains("RX9") && choose.body.contains("RR8"));
    let form = format!("csrf={}&role=555000000012", browser.csrf);
    let chosen = browser
        .send("POST", "/viewer/choose-role", Some(form))
        .await;
    assert_eq!(chosen.location, "/viewer/patient");
    let find = browser.send("GET", "/viewer/patient", None).await;
    assert_eq!(find.status, StatusCode::OK);
    assert!(find.body.contains("Alex Carter"), "{}", find.body);

    // Sign-out ends the session here and sends the browser to the
    // provider's end_session_endpoint with the ID token as a hint.
    let form = format!("csrf={}", browser.csrf);
    let out = browser.send("POST", "/viewer/sign-out", Some(form)).await;
    assert!(out.location.starts_with(op.issuer()), "{}", out.location);
    assert!(out.location.contains("id_token_hint="));
    assert!(out.location.contains("post_logout_redirect_uri="));
    let after = browser.send("GET", "/viewer/patient", None).await;
    assert_eq!(after.location, "/viewer/sign-in");
}

#[tokio::test]
async fn a_user_with_one_role_goes_straight_to_find_a_patient_and_a_callback_is_used_once() {
    let (config, rp_key) = provider_config();
    let op = OpenIdProvider::start(config).await;
    let mut browser = browser(viewer(op.issuer(), &rp_key));
    let done = browser.sign_in_at("/viewer/sign-in", "555000000002").await;
    assert_eq!(done.location, "/viewer/patient", "{}", done.body);

    // A forged callback (state from nowhere) is refused.
    let mut other = self::browser(viewer(op.issuer(), &rp_key));
    let forged = other
        .send("GET", "/viewer/callback?code=abc&state=made-up", None)
        .await;
    assert_eq!(forged.status, StatusCode::UNAUTHORIZED);
    assert!(forged.body.contains("Sign-in failed"));
}

/// Signs in through the hostile proxy with `tamper` applied to the ID token.
async fn signed_in_with(op: &OpenIdProvider, rp_key: &RsaKey, tamper: Tamper) -> Reply {
    op.set_tamper(tamper);
    let mut browser = browser(viewer(op.issuer(), rp_key));
    let reply = browser.sign_in_at("/viewer/sign-in", "555000000002").await;
    // Whatever the answer, a refused sign-in leaves nobody signed in.
    if reply.status != StatusCode::SEE_OTHER {
        let after = browser.send("GET", "/viewer/patient", None).await;
        assert_eq!(after.location, "/viewer/sign-in");
    }
    reply
}

#[tokio::test]
async fn tampered_wrong_audience_wrong_nonce_and_wrong_alg_id_tokens_are_refused() {
    let (config, rp_key) = provider_config();
    let op = OpenIdProvider::start_hostile(config).await;
    let ok = signed_in_with(&op, &rp_key, Tamper::None).await;
    assert_eq!(ok.location, "/viewer/patient", "{}", op.log_text());
    for tamper in [
        Tamper::FlipSignature,
        Tamper::EditPayloadUnsigned {
            claim: "sub".into(),
            value: json!("someone-else"),
        },
        Tamper::Audience(json!("another-client")),
        Tamper::Nonce("not-this-sign-in".into()),
        Tamper::Claim {
            claim: "iss".into(),
            value: json!("https://evil.example"),
        },
        Tamper::Alg(Algorithm::PS512),
    ] {
        let reply = signed_in_with(&op, &rp_key, tamper.clone()).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{tamper:?}");
        assert!(reply.body.contains("Sign-in failed"), "{tamper:?}");
        assert!(!reply.body.contains("eyJ"), "no token in the page");
    }
}

#[tokio::test]
async fn an_expired_id_token_from_the_real_provider_is_refused() {
    let (config, rp_key) = provider_config();
    let op = OpenIdProvider::start(config.clock_offset_seconds(-7200)).await;
    let mut browser = browser(viewer(op.issuer(), &rp_key));
    let reply = browser.sign_in_at("/viewer/sign-in", "555000000002").await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert!(reply.body.contains("Sign-in failed"));
}
