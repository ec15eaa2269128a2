//! The patient pages' NHS login sign-in against a real OpenID provider (npm
//! `oidc-provider` with its NHS login profile: RS512 ID tokens carrying
//! `vot`, `identity_proofing_level` and, at P9, `nhs_number`), through
//! nrls's own routes and its real `[patient_access]` configuration. Only a
//! valid P9 identity sees record data; P0 and P5 are signed in to an
//! explanation; every bad ID token is refused. Needs node and
//! `testing/node_modules` (`scripts/test-deps`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[allow(unused_imports)]
mod support;

use std::collections::HashMap;
use std::sync::Arc;

use api::AppState;
use axum::http::StatusCode;
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};
use support::browser::{Browser, Reply, browser};
use support::oidc::nhs_login_claims;
use support::{OpConfig, OpenIdProvider, RelyingPartyClient, RsaKey, Tamper};
use web::session::store::memory::MemorySessionStore;
use web::session::{SessionSettings, Sessions};
use web::{PatientAccessConfig, WebInner, WebState};

const REDIRECT: &str = "http://127.0.0.1:9/my-record/callback";
const SIGNED_OUT: &str = "http://127.0.0.1:9/my-record/signed-out";
const CLIENT_ID: &str = "nrls-patient";

fn provider_config() -> (OpConfig, RsaKey) {
    let mut keys = RsaKey::generate(&["op-1", "rp-1"]);
    let rp_key = keys.remove(1);
    let client = RelyingPartyClient::new(CLIENT_ID, rp_key.clone(), REDIRECT)
        .post_logout_redirect_uri(SIGNED_OUT);
    let config = OpConfig::nhs_login(keys.remove(0))
        .client(client)
        .account("p9", nhs_login_claims("9990000018", "P9"))
        .account("p5", nhs_login_claims("9990000026", "P5"))
        .account("p0", nhs_login_claims("9990000034", "P0"));
    (config, rp_key)
}

/// The web router with NHS login built from a real `[patient_access]`
/// section (its key written to a file, as in production).
fn pages(issuer: &str, rp_key: &RsaKey) -> axum::Router {
    pages_and_api(issuer, rp_key).0
}

/// The pages and the API state behind them (to read the audit trail).
fn pages_and_api(issuer: &str, rp_key: &RsaKey) -> (axum::Router, AppState) {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("nhs-login.pem");
    std::fs::write(&key_file, &rp_key.private_pem).unwrap();
    let config = PatientAccessConfig {
        issuer: Some(issuer.to_owned()),
        client_id: Some(CLIENT_ID.to_owned()),
        key_file: Some(key_file),
        key_id: rp_key.kid.clone(),
        redirect_url: Some(REDIRECT.to_owned()),
        post_logout_redirect_url: Some(SIGNED_OUT.to_owned()),
        clock_skew_seconds: 30,
        ..PatientAccessConfig::default()
    };
    let nhs_login = config.relying_party("http://127.0.0.1:9").unwrap();
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
    let router = web::router(WebState(Arc::new(WebInner {
        api: api.clone(),
        sessions: Sessions::new(
            Arc::new(MemorySessionStore::new()),
            SessionSettings::default(),
        ),
        cis2: None,
        nhs_login,
        patient_types: config.visible_types,
        demo: false,
        organisations: HashMap::new(),
        https: false,
    })));
    (router, api)
}

async fn signed_in(browser: &mut Browser, account: &str) -> Reply {
    browser.sign_in_at("/my-record/sign-in", account).await
}

#[tokio::test]
async fn a_p9_patient_signs_in_with_the_p9_vectors_requested_and_sees_where_their_records_are() {
    let (config, rp_key) = provider_config();
    let op = OpenIdProvider::start(config).await;
    let mut browser = browser(pages(op.issuer(), &rp_key));

    // The authorization request: code flow with PKCE, state, nonce and the
    // P9 vectors of trust.
    browser.send("GET", "/my-record/sign-in", None).await;
    let form = format!("csrf={}", browser.csrf);
    let started = browser.send("POST", "/my-record/sign-in", Some(form)).await;
    let url = reqwest::Url::parse(&started.location).unwrap();
    let param = |name: &str| {
        url.query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    assert_eq!(
        param("vtr").as_deref(),
        Some(r#"["P9.Cp.Cd","P9.Cp.Ck","P9.Cm"]"#)
    );
    assert_eq!(param("code_challenge_method").as_deref(), Some("S256"));
    assert!(param("state").is_some() && param("nonce").is_some());
    assert_eq!(param("scope").as_deref(), Some("openid profile"));

    let before = browser.cookie.clone();
    let done = signed_in(&mut browser, "p9").await;
    assert_eq!(
        done.location, "/my-record/where-my-records-are",
        "{}",
        done.body
    );
    assert_ne!(browser.cookie, before, "the session id is rotated");
    let records = browser
        .send("GET", "/my-record/where-my-records-are", None)
        .await;
    assert_eq!(records.status, StatusCode::OK, "{}", records.body);
    assert!(records.body.contains("Where your records are"));

    // Sign-out ends the session here and at NHS login.
    let form = format!("csrf={}", browser.csrf);
    let out = browser
        .send("POST", "/my-record/sign-out", Some(form))
        .await;
    assert!(out.location.starts_with(op.issuer()), "{}", out.location);
    assert!(out.location.contains("id_token_hint="));
    let after = browser
        .send("GET", "/my-record/where-my-records-are", None)
        .await;
    assert_eq!(after.location, "/my-record/sign-in");
}

#[tokio::test]
async fn p5_and_p0_patients_are_signed_in_to_an_explanation_and_see_no_data() {
    let (config, rp_key) = provider_config();
    let op = OpenIdProvider::start(config).await;
    for account in ["p5", "p0"] {
        let mut browser = browser(pages(op.issuer(), &rp_key));
        let done = signed_in(&mut browser, account).await;
        assert_eq!(done.location, "/my-record/prove-who-you-are", "{account}");
        let prove = browser
            .send("GET", "/my-record/prove-who-you-are", None)
            .await;
        assert_eq!(prove.status, StatusCode::OK);
        assert!(prove.body.contains("You need to prove who you are"));
        let records = browser
            .send("GET", "/my-record/where-my-records-are", None)
            .await;
        assert_eq!(
            records.location, "/my-record/prove-who-you-are",
            "{account} sees no data"
        );
    }
}

#[tokio::test]
async fn the_nhs_app_single_sign_on_hint_is_forwarded_to_nhs_login() {
    let (config, rp_key) = provider_config();
    let op = OpenIdProvider::start(config).await;
    let mut browser = browser(pages(op.issuer(), &rp_key));
    browser.user_agent = Some("Mozilla/5.0 nhsapp-ios/2.9.0".into());
    let started = browser
        .send(
            "GET",
            "/my-record/sign-in?assertedLoginIdentity=eyJhbGciOiJSUzUxMiJ9.eyJjb2RlIjoiYSJ9.c2ln",
            None,
        )
        .await;
    assert_eq!(started.status, StatusCode::SEE_OTHER);
    assert!(started.location.starts_with(op.issuer()));
    assert!(
        started
            .location
            .contains("assertedLoginIdentity=eyJhbGciOiJSUzUxMiJ9.eyJjb2RlIjoiYSJ9.c2ln"),
        "{}",
        started.location
    );
    // Not a JWT: not forwarded, the ordinary page instead.
    let odd = browser
        .send(
            "GET",
            "/my-record/sign-in?assertedLoginIdentity=%3Cscript%3E",
            None,
        )
        .await;
    assert_eq!(odd.status, StatusCode::OK);
}

/// Signs in as the P9 patient through the hostile proxy with `tamper`.
async fn p9_through(op: &OpenIdProvider, rp_key: &RsaKey, tamper: Tamper) -> Reply {
    op.set_tamper(tamper);
    let mut browser = browser(pages(op.issuer(), rp_key));
    let reply = signed_in(&mut browser, "p9").await;
    if reply.status != StatusCode::SEE_OTHER {
        let after = browser
            .send("GET", "/my-record/where-my-records-are", None)
            .await;
        assert_eq!(after.location, "/my-record/sign-in", "nobody signed in");
    }
    reply
}

#[tokio::test]
async fn tampered_wrong_audience_wrong_nonce_and_non_rs512_id_tokens_are_refused() {
    let (config, rp_key) = provider_config();
    let op = OpenIdProvider::start_hostile(config).await;
    let ok = p9_through(&op, &rp_key, Tamper::None).await;
    assert_eq!(
        ok.location,
        "/my-record/where-my-records-are",
        "{}",
        op.log_text()
    );
    for tamper in [
        Tamper::FlipSignature,
        Tamper::EditPayloadUnsigned {
            claim: "nhs_number".into(),
            value: json!("9990000026"),
        },
        Tamper::Audience(json!("another-client")),
        Tamper::Nonce("not-this-sign-in".into()),
        Tamper::Alg(Algorithm::RS256),
        Tamper::Alg(Algorithm::PS512),
    ] {
        let reply = p9_through(&op, &rp_key, tamper.clone()).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{tamper:?}");
        assert!(reply.body.contains("NHS login"), "{tamper:?}");
        assert!(!reply.body.contains("eyJ"), "no token in the page");
    }
    // A re-signed token claiming P9 with an NHS number failing Mod 11.
    let bad_number = p9_through(
        &op,
        &rp_key,
        Tamper::Claim {
            claim: "nhs_number".into(),
            value: json!("9990000019"),
        },
    )
    .await;
    assert_eq!(bad_number.status, StatusCode::UNAUTHORIZED);
    assert!(bad_number.body.contains("NHS login"));
}

#[tokio::test]
async fn an_expired_id_token_from_the_real_provider_is_refused() {
    let (config, rp_key) = provider_config();
    let op = OpenIdProvider::start(config.clock_offset_seconds(-7200)).await;
    let mut browser = browser(pages(op.issuer(), &rp_key));
    let reply = signed_in(&mut browser, "p9").await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert!(reply.body.contains("Sign-in failed"));
}

/// Every stored event, newest first.
async fn all_events(api: &AppState) -> Vec<Value> {
    let query = audit::AuditQuery {
        count: 100,
        ..Default::default()
    };
    api.access()
        .audit
        .search(&query)
        .await
        .unwrap()
        .records
        .iter()
        .map(|r| serde_json::from_str(&r.event_json).unwrap())
        .collect()
}

#[tokio::test]
async fn each_sign_in_is_one_login_audit_event_and_a_refused_one_names_no_one() {
    let (config, rp_key) = provider_config();
    let op = OpenIdProvider::start_hostile(config).await;
    for (tamper, outcome) in [
        (Tamper::None, "0"),
        (Tamper::Nonce("not-this-sign-in".into()), "4"),
        (
            Tamper::Claim {
                claim: "nhs_number".into(),
                value: json!("9990000019"),
            },
            "4",
        ),
    ] {
        op.set_tamper(tamper.clone());
        let (app, api) = pages_and_api(op.issuer(), &rp_key);
        let mut browser = browser(app);
        signed_in(&mut browser, "p9").await;
        let events = all_events(&api).await;
        assert_eq!(events.len(), 1, "{tamper:?}: {events:?}");
        let event = &events[0];
        let text = event.to_string();
        // BALP / DICOM: User Authentication, Login.
        assert_eq!(event["type"]["code"], "110114", "{text}");
        assert_eq!(event["subtype"][0]["code"], "110122", "{text}");
        assert_eq!(event["outcome"], outcome, "{tamper:?}: {text}");
        assert!(
            text.contains("PATRQT") && text.contains("nrls-patient"),
            "{text}"
        );
        if outcome == "0" {
            // Who signed in: the NHS login account and the proved patient.
            assert!(text.contains("https://login.nhs.uk/sub"), "{text}");
            assert!(text.contains("https://fhir.nhs.uk/Id/nhs-number"), "{text}");
        } else {
            // A refused sign-in knows nobody: no account, no NHS number,
            // no token, only why it failed.
            for absent in [
                "https://login.nhs.uk/sub",
                "nhs-number",
                "9990000019",
                "eyJ",
            ] {
                assert!(!text.contains(absent), "{absent} in {text}");
            }
            assert!(
                event["outcomeDesc"]
                    .as_str()
                    .unwrap()
                    .contains("sign-in failed")
            );
        }
    }
}
