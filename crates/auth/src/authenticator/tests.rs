//! The token endpoint and bearer authentication, end to end through the
//! public API, with a clock the tests move.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use domain::{OdsCode, Role};
use jsonwebtoken::{EncodingKey, Header};
use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::assertion::{AssertionAlg, SigningKeyPem, mint_client_assertion_at};
use crate::config::{AppConfig, OrganisationConfig};
use crate::error::{KeyError, RequestProblem};
use crate::token_request::{ASSERTION_TYPE, GRANT_TYPE};

const ISSUER: &str = "http://127.0.0.1:8080";
const ENDPOINT: &str = "http://127.0.0.1:8080/oauth2/token";
const SECRET: &[u8] = b"test-secret-test-secret-test-secret!";
const NOW: i64 = 1_800_000_000;
const CRISIS_PLAN: &str = "http://snomed.info/sct|736253002";

fn organisation(ods: &str, roles: &[&str]) -> OrganisationConfig {
    OrganisationConfig {
        ods: ods.to_owned(),
        roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        pointer_types: vec![CRISIS_PLAN.to_owned()],
    }
}

fn apps() -> Vec<AppConfig> {
    let rsa_jwks = serde_json::from_str(include_str!("../testdata/rsa-test-jwks.json")).unwrap();
    vec![
        crate::demo::app_config("ec-app", "EC app", vec![organisation("x26", &["consumer"])]),
        AppConfig {
            client_id: "rsa-app".into(),
            name: "RSA app".into(),
            jwks: Some(rsa_jwks),
            jwks_url: None,
            organisations: vec![organisation("RX1", &["producer", "consumer"])],
            rate_limit_per_second: Some(10),
            requires_user_identity: true,
        },
    ]
}

struct Fixture {
    auth: Authenticator,
    now: Arc<AtomicI64>,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture::with(apps(), SECRET)
    }

    fn with(apps: Vec<AppConfig>, secret: &[u8]) -> Fixture {
        let registry = Arc::new(AppRegistry::from_configs(&apps).unwrap());
        let now = Arc::new(AtomicI64::new(NOW));
        let clock_now = Arc::clone(&now);
        let auth = Authenticator::new(
            registry,
            TokenSettings::new(ISSUER, ENDPOINT, secret.to_vec()),
        )
        .unwrap()
        .with_clock(Clock::from_fn(move || clock_now.load(Ordering::SeqCst)));
        Fixture { auth, now }
    }

    fn advance(&self, seconds: i64) {
        self.now.fetch_add(seconds, Ordering::SeqCst);
    }

    async fn issue(&self, assertion: &str) -> Result<TokenResponse, TokenError> {
        self.auth.issue_token(&form(assertion)).await
    }

    async fn token(&self) -> String {
        self.issue(&assertion("ec-app", &ec_key()))
            .await
            .unwrap()
            .access_token
    }
}

fn form(assertion: &str) -> Vec<(String, String)> {
    vec![
        ("grant_type".into(), GRANT_TYPE.into()),
        ("client_assertion_type".into(), ASSERTION_TYPE.into()),
        ("client_assertion".into(), assertion.into()),
    ]
}

fn ec_key() -> SigningKeyPem {
    crate::demo::signing_key("ec-app").unwrap()
}

fn rsa_key() -> SigningKeyPem {
    SigningKeyPem::new(
        include_str!("../testdata/rsa-test-key.pem"),
        AssertionAlg::Rs384,
        "rsa-test-1",
    )
}

fn assertion(client_id: &str, key: &SigningKeyPem) -> String {
    mint_client_assertion_at(client_id, ENDPOINT, key, Duration::from_secs(60), NOW).unwrap()
}

/// An assertion with hand-written claims, for the rules minting never breaks.
fn custom(key: &SigningKeyPem, claims: serde_json::Value) -> String {
    let mut header = Header::new(key.alg.jwt());
    header.kid = Some(key.kid.clone());
    let encoding = match key.alg {
        AssertionAlg::Es384 => EncodingKey::from_ec_pem(key.pem.as_bytes()),
        _ => EncodingKey::from_rsa_pem(key.pem.as_bytes()),
    };
    jsonwebtoken::encode(&header, &claims, &encoding.unwrap()).unwrap()
}

fn claims(client_id: &str) -> serde_json::Value {
    json!({ "iss": client_id, "sub": client_id, "aud": ENDPOINT, "exp": NOW + 60, "jti": uuid::Uuid::new_v4().to_string() })
}

fn rejected(result: Result<TokenResponse, TokenError>) -> ClientRejection {
    match result {
        Err(TokenError::InvalidClient(reason)) => reason,
        other => panic!("expected invalid_client, got {other:?}"),
    }
}

#[tokio::test]
async fn es384_assertion_gets_a_token_that_authenticates() {
    let f = Fixture::new();
    let response = f.issue(&assertion("ec-app", &ec_key())).await.unwrap();
    assert_eq!(
        (response.token_type.as_str(), response.expires_in),
        ("bearer", 900)
    );
    let body = serde_json::to_value(&response).unwrap();
    assert_eq!(body["token_type"], "bearer");

    let principal = f.auth.authenticate(&response.access_token).unwrap();
    assert_eq!(principal.client_id(), "ec-app");
    assert_eq!(principal.token_expires_at, NOW + 900);
    let grant = principal
        .app
        .grant(&OdsCode::parse("X26").unwrap())
        .unwrap();
    assert!(grant.has_role(Role::Consumer) && !grant.has_role(Role::Producer));
    // Second call is served from the cache and agrees.
    let again = f
        .auth
        .authenticate_header(Some(&format!("Bearer {}", response.access_token)))
        .unwrap();
    assert!(Arc::ptr_eq(&again.app, &principal.app));
}

#[tokio::test]
async fn rs384_assertion_gets_a_token() {
    let f = Fixture::new();
    let response = f.issue(&assertion("rsa-app", &rsa_key())).await.unwrap();
    let principal = f.auth.authenticate(&response.access_token).unwrap();
    assert_eq!(principal.client_id(), "rsa-app");
    assert!(principal.app.requires_user_identity);
    assert_eq!(principal.app.rate_limit_per_second, Some(10));
}

#[tokio::test]
async fn alg_must_fit_the_registered_key() {
    let f = Fixture::new();
    // The RSA JWK pins RS384, so PS384 with the very same key is refused.
    let ps384 = SigningKeyPem {
        alg: AssertionAlg::Ps384,
        ..rsa_key()
    };
    let reason = rejected(f.issue(&assertion("rsa-app", &ps384)).await);
    assert_eq!(reason, ClientRejection::Key(KeyError::AlgorithmMismatch));
}

#[tokio::test]
async fn expired_assertion_is_refused_beyond_the_skew() {
    let f = Fixture::new();
    let old = mint_client_assertion_at(
        "ec-app",
        ENDPOINT,
        &ec_key(),
        Duration::from_secs(60),
        NOW - 600,
    );
    assert_eq!(
        rejected(f.issue(&old.unwrap()).await),
        ClientRejection::Expired
    );
    let just = mint_client_assertion_at(
        "ec-app",
        ENDPOINT,
        &ec_key(),
        Duration::from_secs(60),
        NOW - 70,
    );
    assert!(
        f.issue(&just.unwrap()).await.is_ok(),
        "10 s past exp is within the 30 s skew"
    );
}

#[tokio::test]
async fn assertion_lifetime_is_capped() {
    let f = Fixture::new();
    let long =
        mint_client_assertion_at("ec-app", ENDPOINT, &ec_key(), Duration::from_secs(600), NOW);
    let reason = rejected(f.issue(&long.unwrap()).await);
    assert_eq!(
        reason,
        ClientRejection::LifetimeTooLong { max_seconds: 300 }
    );
    assert!(
        TokenError::InvalidClient(reason)
            .description()
            .contains("300 seconds")
    );
}

#[tokio::test]
async fn audience_must_be_the_token_endpoint() {
    let f = Fixture::new();
    let elsewhere = mint_client_assertion_at(
        "ec-app",
        "http://other/token",
        &ec_key(),
        Duration::from_secs(60),
        NOW,
    );
    let reason = rejected(f.issue(&elsewhere.unwrap()).await);
    assert_eq!(
        reason,
        ClientRejection::WrongAudience {
            expected: ENDPOINT.into()
        }
    );
    // An array naming the endpoint is fine (RFC 7523 §3: "contains").
    let mut many = claims("ec-app");
    many["aud"] = json!(["http://other", ENDPOINT]);
    assert!(f.issue(&custom(&ec_key(), many)).await.is_ok());
}

#[tokio::test]
async fn issuer_and_subject_must_name_the_client() {
    let f = Fixture::new();
    let mut other_sub = claims("ec-app");
    other_sub["sub"] = json!("rsa-app");
    assert_eq!(
        rejected(f.issue(&custom(&ec_key(), other_sub)).await),
        ClientRejection::SubjectNotIssuer
    );

    let stranger = crate::demo::signing_key("nobody").unwrap();
    assert_eq!(
        rejected(f.issue(&assertion("nobody", &stranger)).await),
        ClientRejection::UnknownClient
    );

    let mut with_id = form(&assertion("ec-app", &ec_key()));
    with_id.push(("client_id".into(), "rsa-app".into()));
    assert_eq!(
        rejected(f.auth.issue_token(&with_id).await),
        ClientRejection::ClientIdMismatch
    );
}

#[tokio::test]
async fn unknown_kid_is_refused() {
    let f = Fixture::new();
    let key = SigningKeyPem {
        kid: "rotated-away".into(),
        ..ec_key()
    };
    let reason = rejected(f.issue(&assertion("ec-app", &key)).await);
    assert_eq!(reason, ClientRejection::Key(KeyError::UnknownKid));
}

#[tokio::test]
async fn signature_by_another_key_is_refused() {
    let f = Fixture::new();
    let impostor = SigningKeyPem {
        kid: "rsa-test-1".into(),
        ..rsa_key()
    };
    let impostor = SigningKeyPem {
        pem: include_str!("../testdata/rsa-other-key.pem").into(),
        ..impostor
    };
    assert_eq!(
        rejected(f.issue(&assertion("rsa-app", &impostor)).await),
        ClientRejection::BadSignature
    );

    // Another app's (valid, registered) EC key, claiming to be ec-app.
    let other_ec = crate::demo::signing_key("rsa-app").unwrap();
    let reason = rejected(f.issue(&assertion("ec-app", &other_ec)).await);
    assert_eq!(reason, ClientRejection::BadSignature);
    let error = TokenError::InvalidClient(reason);
    assert_eq!(
        (error.oauth_code(), error.http_status()),
        ("invalid_client", 401)
    );
    assert!(!error.to_json().to_string().contains("PRIVATE"));
}

#[tokio::test]
async fn a_jti_is_accepted_once() {
    let f = Fixture::new();
    let once = assertion("ec-app", &ec_key());
    f.issue(&once).await.unwrap();
    assert_eq!(rejected(f.issue(&once).await), ClientRejection::Replayed);
    // Another client may use the same jti: replay is per issuer.
    let mut shared = claims("rsa-app");
    shared["jti"] = json!("fixed-jti");
    f.issue(&custom(&rsa_key(), shared)).await.unwrap();
    let mut same = claims("ec-app");
    same["jti"] = json!("fixed-jti");
    f.issue(&custom(&ec_key(), same)).await.unwrap();
    // Once expired, the assertion is refused as expired, not remembered forever.
    f.advance(3600);
    assert_eq!(rejected(f.issue(&once).await), ClientRejection::Expired);
}

#[tokio::test]
async fn required_claims_are_required() {
    let f = Fixture::new();
    let without = |claim: &str| {
        let mut c = claims("ec-app");
        c.as_object_mut().unwrap().remove(claim);
        custom(&ec_key(), c)
    };
    assert_eq!(
        rejected(f.issue(&without("exp")).await),
        ClientRejection::MissingExpiry
    );
    assert_eq!(
        rejected(f.issue(&without("jti")).await),
        ClientRejection::MissingJti
    );
    assert!(matches!(
        rejected(f.issue(&without("aud")).await),
        ClientRejection::WrongAudience { .. }
    ));
    assert_eq!(
        rejected(f.issue(&without("sub")).await),
        ClientRejection::SubjectNotIssuer
    );
    assert_eq!(
        f.issue(&without("iss")).await.unwrap_err(),
        TokenError::InvalidRequest(RequestProblem::MissingIssuer)
    );
    let mut early = claims("ec-app");
    early["nbf"] = json!(NOW + 120);
    assert_eq!(
        rejected(f.issue(&custom(&ec_key(), early)).await),
        ClientRejection::NotYetValid
    );
    let mut text_exp = claims("ec-app");
    text_exp["exp"] = json!("soon");
    assert_eq!(
        rejected(f.issue(&custom(&ec_key(), text_exp)).await),
        ClientRejection::BadClaims
    );
}

#[tokio::test]
async fn malformed_requests_are_invalid_request() {
    let f = Fixture::new();
    let mut wrong_grant = form(&assertion("ec-app", &ec_key()));
    wrong_grant[0].1 = "password".into();
    assert_eq!(
        f.auth.issue_token(&wrong_grant).await.unwrap_err(),
        TokenError::UnsupportedGrantType
    );

    let missing = f.auth.issue_token(&form("")).await.unwrap_err();
    assert_eq!(
        missing,
        TokenError::InvalidRequest(RequestProblem::MissingParameter("client_assertion"))
    );
    assert_eq!(missing.to_json()["error"], "invalid_request");

    let garbage = f.issue("not-a-jwt").await.unwrap_err();
    assert_eq!(
        garbage,
        TokenError::InvalidRequest(RequestProblem::MalformedAssertion)
    );
    assert_eq!(garbage.http_status(), 400);
}

#[tokio::test]
async fn tampered_access_token_is_refused() {
    let f = Fixture::new();
    let token = f.token().await;
    f.auth.authenticate(&token).unwrap();
    let flip = |at: usize| {
        let mut bytes = token.clone().into_bytes();
        bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
        String::from_utf8(bytes).unwrap()
    };
    let signature_start = token.rfind('.').unwrap() + 1;
    let payload_middle = (token.find('.').unwrap() + signature_start) / 2;
    assert_eq!(
        f.auth
            .authenticate(&flip(signature_start + 10))
            .unwrap_err(),
        AuthError::BadSignature
    );
    assert_eq!(
        f.auth.authenticate(&flip(payload_middle)).unwrap_err(),
        AuthError::BadSignature
    );
    assert_eq!(
        f.auth.authenticate(&flip(2)).unwrap_err(),
        AuthError::Malformed
    );
}

#[tokio::test]
async fn expired_access_token_is_refused_cached_or_not() {
    let f = Fixture::new();
    let cached = f.token().await;
    let fresh = f.token().await;
    f.auth.authenticate(&cached).unwrap();
    f.advance(899);
    assert!(f.auth.authenticate(&cached).is_ok());
    f.advance(1);
    assert_eq!(
        f.auth.authenticate(&cached).unwrap_err(),
        AuthError::Expired
    );
    assert_eq!(f.auth.authenticate(&fresh).unwrap_err(), AuthError::Expired);
    assert_eq!(AuthError::Expired.bearer_error(), Some("invalid_token"));
}

#[tokio::test]
async fn patient_tokens_open_only_the_patient_api_and_expire() {
    let f = Fixture::new();
    let patient = f
        .auth
        .issue_patient_token("9990000018", "P9", "session-key")
        .unwrap()
        .access_token;
    let app = f.token().await;
    let principal = f.auth.authenticate_patient(&patient).unwrap();
    assert_eq!(
        (
            principal.nhs_number.as_str(),
            principal.proofing_level.as_str(),
            principal.session.as_str()
        ),
        ("9990000018", "P9", "session-key")
    );
    assert_eq!(principal.token_expires_at, NOW + 900);
    // Cached or not, neither kind opens the other's routes.
    assert_eq!(
        f.auth.authenticate(&patient).unwrap_err(),
        AuthError::WrongKind
    );
    f.auth.authenticate(&app).unwrap();
    assert_eq!(
        f.auth.authenticate_patient(&app).unwrap_err(),
        AuthError::WrongKind
    );
    f.advance(900);
    assert_eq!(
        f.auth.authenticate_patient(&patient).unwrap_err(),
        AuthError::Expired
    );
}

#[tokio::test]
async fn tokens_from_another_secret_or_registry_are_refused() {
    let ours = Fixture::new();
    let theirs = Fixture::with(apps(), b"another-secret-another-secret-another");
    let foreign = theirs.token().await;
    assert_eq!(
        ours.auth.authenticate(&foreign).unwrap_err(),
        AuthError::BadSignature
    );

    // Same secret, but this node no longer knows the app.
    let shrunk = Fixture::with(apps().split_off(1), SECRET);
    assert_eq!(
        shrunk.auth.authenticate(&ours.token().await).unwrap_err(),
        AuthError::UnknownClient
    );
}

#[tokio::test]
async fn reload_swaps_the_registry_and_forgets_verified_tokens() {
    let f = Fixture::new();
    let token = f.token().await;
    assert!(f.auth.authenticate(&token).is_ok()); // now cached
    assert_eq!(
        f.auth
            .reload(AppRegistry::from_configs(&apps()[1..]).unwrap()),
        1
    );
    assert_eq!(f.auth.registry().len(), 1);
    assert_eq!(
        f.auth.authenticate(&token).unwrap_err(),
        AuthError::UnknownClient
    );
    assert_eq!(
        f.auth.reload(AppRegistry::from_configs(&apps()).unwrap()),
        2
    );
    assert_eq!(f.auth.authenticate(&token).unwrap().client_id(), "ec-app");
}

#[test]
fn odd_bearers_are_refused() {
    let f = Fixture::new();
    assert_eq!(f.auth.authenticate("").unwrap_err(), AuthError::Missing);
    assert_eq!(
        f.auth.authenticate_header(None).unwrap_err(),
        AuthError::Missing
    );
    assert_eq!(AuthError::Missing.bearer_error(), None);
    assert_eq!(
        f.auth.authenticate("a.b.c").unwrap_err(),
        AuthError::Malformed
    );
    assert_eq!(
        f.auth.authenticate(&"x".repeat(10_000)).unwrap_err(),
        AuthError::Malformed
    );
}

#[test]
fn settings_are_checked() {
    let registry = Arc::new(AppRegistry::default());
    let weak = TokenSettings::new(ISSUER, ENDPOINT, b"short".to_vec());
    let err = Authenticator::new(Arc::clone(&registry), weak).unwrap_err();
    assert_eq!(
        err,
        ConfigError::Settings {
            field: "signing_secret",
            problem: "must be at least 32 bytes"
        }
    );
    let settings = TokenSettings::new("", ENDPOINT, SECRET.to_vec());
    assert!(Authenticator::new(registry, settings.clone()).is_err());
    assert!(!format!("{settings:?}").contains("test-secret"));
}

#[tokio::test]
async fn cached_authentication_is_cheap() {
    // A sanity bound, not a benchmark: catches a hot path that re-verifies.
    let f = Fixture::new();
    let token = f.token().await;
    f.auth.authenticate(&token).unwrap();
    let rounds = 20_000u32;
    let started = std::time::Instant::now();
    for _ in 0..rounds {
        f.auth.authenticate(&token).unwrap();
    }
    let per_call = started.elapsed() / rounds;
    eprintln!("cached authenticate: {per_call:?} per call (debug build)");
    assert!(per_call < Duration::from_micros(50), "{per_call:?}");
}

/// Built once: the property tests run hundreds of cases.
static SHARED: std::sync::LazyLock<Fixture> = std::sync::LazyLock::new(Fixture::new);

proptest! {
    #[test]
    fn authenticate_never_panics(bearer in any::<String>()) {
        prop_assert!(SHARED.auth.authenticate(&bearer).is_err());
    }

    #[test]
    fn authenticate_never_panics_on_token_shapes(
        a in "[A-Za-z0-9_-]{0,40}", b in "[A-Za-z0-9_-]{0,80}", c in "[A-Za-z0-9_.-]{0,60}"
    ) {
        let token = [a, b, c].join(".");
        prop_assert!(SHARED.auth.authenticate(&token).is_err());
    }

    #[test]
    fn authenticate_never_panics_behind_our_header(b in "[A-Za-z0-9_-]{0,120}", c in "[A-Za-z0-9_-]{0,60}") {
        let ours = SHARED.auth.access_tokens.mint("ec-app", NOW, NOW + 60).unwrap();
        let header = ours.split('.').next().unwrap();
        let token = [header, &b, &c].join(".");
        prop_assert!(SHARED.auth.authenticate(&token).is_err());
    }

    #[test]
    fn token_endpoint_never_panics(assertion in "[A-Za-z0-9_.=-]{0,200}") {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        prop_assert!(runtime.block_on(SHARED.issue(&assertion)).is_err());
    }
}
