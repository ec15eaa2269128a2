//! ID tokens minted here with the demo keys (deterministic, public) and the
//! RSA test key, checked through the public API with a clock the tests move.

use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;
use crate::demo;

const ISSUER: &str = "https://cis2.test/realms/Healthcare";
const AUDIENCE: &str = "nrls-at-cis2";
const NOW: i64 = 1_800_000_000;
const IDP: &str = "cis2-test-idp";

fn config() -> TrustedIssuerConfig {
    TrustedIssuerConfig {
        issuer: ISSUER.into(),
        audience: AUDIENCE.into(),
        jwks: Some(demo::jwks(IDP)),
        jwks_url: None,
    }
}

fn verifier_with(configs: &[TrustedIssuerConfig]) -> (UserIdentityVerifier, Arc<AtomicI64>) {
    let now = Arc::new(AtomicI64::new(NOW));
    let clock_now = Arc::clone(&now);
    let verifier = UserIdentityVerifier::new(configs, &UserIdentityOptions::default())
        .unwrap()
        .with_clock(Clock::from_fn(move || clock_now.load(Ordering::SeqCst)));
    (verifier, now)
}

fn verifier() -> UserIdentityVerifier {
    verifier_with(&[config()]).0
}

fn role(id: &str, org: &str, codes: &[&str]) -> Value {
    json!({
        "person_roleid": id, "org_code": org, "role_code": "S0030:G0100:R0570",
        "role_name": "\"Clinical\":\"Clinical Provision\":\"Nurse Access Role\"",
        "activity_codes": codes
    })
}

fn claims() -> Value {
    json!({
        "iss": ISSUER, "sub": "555000111222", "aud": AUDIENCE,
        "iat": NOW - 10, "exp": NOW + 600,
        "nhsid_nrbac_roles": [role("R1", "rx1", &["B0001", "B0264"])],
        "purpose_of_use": "TREAT"
    })
}

fn es384(claims: &Value) -> String {
    sign_with(
        &demo::signing_key(IDP).unwrap().pem,
        Algorithm::ES384,
        "demo-1",
        claims,
    )
}

fn sign_with(pem: &str, alg: Algorithm, kid: &str, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = Some(kid.to_owned());
    let key = match alg {
        Algorithm::ES384 => EncodingKey::from_ec_pem(pem.as_bytes()),
        _ => EncodingKey::from_rsa_pem(pem.as_bytes()),
    };
    jsonwebtoken::encode(&header, claims, &key.unwrap()).unwrap()
}

fn with(mut base: Value, key: &str, value: Value) -> Value {
    base[key] = value;
    base
}

#[tokio::test]
async fn a_valid_token_yields_the_users_role_profile() {
    let identity = verifier().verify(&es384(&claims()), None).await.unwrap();
    assert_eq!(identity.person_id(), "555000111222");
    assert_eq!(identity.issuer(), ISSUER);
    assert_eq!(identity.role().org.as_str(), "RX1");
    assert_eq!(identity.expires_at(), NOW + 600);
    let user = identity.end_user();
    assert_eq!(user.role_code, Some("S0030:G0100:R0570"));
    assert_eq!(
        user.activity_codes,
        ["B0001".to_owned(), "B0264".to_owned()]
    );
    assert_eq!(identity.purpose_of_use(None), Ok(Some("TREAT")));
    assert_eq!(identity.purpose_of_use(Some("treat")), Ok(Some("TREAT")));
    assert_eq!(
        identity.purpose_of_use(Some("HRESCH")),
        Err(UserIdentityError::PurposeConflict)
    );
    assert!(!format!("{identity:?}").contains("eyJ"));
}

#[tokio::test]
async fn the_header_form_and_purpose_from_header() {
    let v = verifier();
    assert!(v.verify_header(None, None).await.unwrap().is_none());
    assert!(v.verify_header(Some("  "), None).await.unwrap().is_none());
    let mut c = claims();
    c.as_object_mut().unwrap().remove("purpose_of_use");
    let identity = v
        .verify_header(Some(&es384(&c)), None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(identity.purpose_of_use(Some("ETREAT")), Ok(Some("ETREAT")));
    assert_eq!(identity.purpose_of_use(None), Ok(None));
}

#[tokio::test]
async fn rs512_tokens_verify_against_an_unpinned_rsa_key() {
    let mut jwks: Value =
        serde_json::from_str(include_str!("../testdata/rsa-test-jwks.json")).unwrap();
    jwks["keys"][0].as_object_mut().unwrap().remove("alg");
    let (v, _) = verifier_with(&[TrustedIssuerConfig {
        jwks: Some(jwks),
        ..config()
    }]);
    let pem = include_str!("../testdata/rsa-test-key.pem");
    for alg in [Algorithm::RS512, Algorithm::RS256, Algorithm::PS512] {
        let token = sign_with(pem, alg, "rsa-test-1", &claims());
        assert!(v.verify(&token, None).await.is_ok(), "{alg:?}");
    }
}

#[tokio::test]
async fn every_bad_token_is_refused_with_its_reason() {
    use UserIdentityError::*;
    let v = verifier();
    let other_key = demo::signing_key("someone-else").unwrap().pem;
    let cases: Vec<(&str, String, UserIdentityError)> = vec![
        (
            "expired",
            es384(&with(claims(), "exp", json!(NOW - 31))),
            Expired,
        ),
        (
            "no exp",
            es384(&with(claims(), "exp", Value::Null)),
            MissingExpiry,
        ),
        (
            "not before",
            es384(&with(claims(), "nbf", json!(NOW + 31))),
            NotYetValid,
        ),
        (
            "issued in the future",
            es384(&with(claims(), "iat", json!(NOW + 31))),
            NotYetValid,
        ),
        (
            "valid for a century",
            es384(&with(claims(), "exp", json!(NOW + 100 * 365 * 86_400))),
            LifetimeTooLong {
                max_seconds: 12 * 3600,
            },
        ),
        (
            "minted for longer than a shift",
            es384(&with(
                with(claims(), "iat", json!(NOW - 2 * 3600)),
                "exp",
                json!(NOW + 11 * 3600),
            )),
            LifetimeTooLong {
                max_seconds: 12 * 3600,
            },
        ),
        (
            "issued ten years ago",
            es384(&with(claims(), "iat", json!(NOW - 10 * 365 * 86_400))),
            // Its exp - iat is ten years, so the lifetime bound names it first.
            LifetimeTooLong {
                max_seconds: 12 * 3600,
            },
        ),
        (
            "wrong audience",
            es384(&with(claims(), "aud", json!("someone-else"))),
            WrongAudience,
        ),
        (
            "audience list",
            es384(&with(claims(), "aud", json!(["x", "y"]))),
            WrongAudience,
        ),
        (
            "unknown issuer",
            es384(&with(claims(), "iss", json!("https://evil.test"))),
            UnknownIssuer,
        ),
        (
            "no subject",
            es384(&with(claims(), "sub", json!(""))),
            MissingSubject,
        ),
        (
            "wrong signature",
            sign_with(&other_key, Algorithm::ES384, "demo-1", &claims()),
            BadSignature,
        ),
        (
            "unknown kid",
            sign_with(&other_key, Algorithm::ES384, "k9", &claims()),
            Key(KeyError::UnknownKid),
        ),
        (
            "no roles",
            es384(&with(claims(), "nhsid_nrbac_roles", json!([]))),
            NoRole,
        ),
        (
            "role without org",
            es384(&with(
                claims(),
                "nhsid_nrbac_roles",
                json!([{ "person_roleid": "R1" }]),
            )),
            NoRole,
        ),
        (
            "bad claim types",
            es384(&with(claims(), "nhsid_nrbac_roles", json!("R1"))),
            BadClaims,
        ),
    ];
    for (name, token, expected) in cases {
        assert_eq!(
            v.verify(&token, None).await.unwrap_err(),
            expected,
            "{name}"
        );
    }
    // Within the skew an expired token still passes.
    assert!(
        v.verify(&es384(&with(claims(), "exp", json!(NOW - 29))), None)
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn malformed_and_unsafe_algorithms_are_refused_before_any_key_is_used() {
    let v = verifier();
    let seg = |v: Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let body = seg(claims());
    let none = format!("{}.{body}.", seg(json!({ "alg": "none", "kid": "demo-1" })));
    let hs = format!(
        "{}.{body}.c2ln",
        seg(json!({ "alg": "HS256", "kid": "demo-1" }))
    );
    assert_eq!(
        v.verify(&none, None).await.unwrap_err(),
        UserIdentityError::UnsupportedAlgorithm
    );
    assert_eq!(
        v.verify(&hs, None).await.unwrap_err(),
        UserIdentityError::UnsupportedAlgorithm
    );
    for bad in ["", "a.b", "a.b.c.d", "!!.!!.!!", "e30.e30.x"] {
        assert_eq!(
            v.verify(bad, None).await.unwrap_err(),
            UserIdentityError::Malformed,
            "{bad}"
        );
    }
    let long = "a".repeat(MAX_TOKEN_LEN + 1);
    assert_eq!(
        v.verify(&long, None).await.unwrap_err(),
        UserIdentityError::TooLong
    );
}

#[tokio::test]
async fn role_selection() {
    let v = verifier();
    let two = with(
        claims(),
        "nhsid_nrbac_roles",
        json!([role("R1", "RX1", &["B0001"]), role("R2", "Y05", &["B0264"])]),
    );
    let token = es384(&two);
    assert_eq!(
        v.verify(&token, None).await.unwrap_err(),
        UserIdentityError::AmbiguousRole
    );
    assert_eq!(
        v.verify(&token, Some("R2"))
            .await
            .unwrap()
            .role()
            .org
            .as_str(),
        "Y05"
    );
    assert_eq!(
        v.verify(&token, Some("R9")).await.unwrap_err(),
        UserIdentityError::RoleNotFound
    );
    let selected = es384(&with(two, "selected_roleid", json!("R1")));
    assert_eq!(
        v.verify(&selected, None).await.unwrap().role().org.as_str(),
        "RX1"
    );
    // The header wins over the token's selection.
    assert_eq!(
        v.verify(&selected, Some("R2"))
            .await
            .unwrap()
            .role()
            .person_role_id,
        "R2"
    );
}

#[tokio::test]
async fn verified_tokens_are_cached_until_they_expire() {
    let (v, now) = verifier_with(&[config()]);
    let token = es384(&claims());
    v.verify(&token, None).await.unwrap();
    // Cached: the same string is not parsed again, yet expiry still applies.
    assert!(v.verify(&token, None).await.is_ok());
    now.store(NOW + 600 + 31, Ordering::SeqCst);
    assert_eq!(
        v.verify(&token, None).await.unwrap_err(),
        UserIdentityError::Expired
    );
}

#[tokio::test]
async fn token_age_and_lifetime_are_bounded_by_the_options() {
    let options = UserIdentityOptions {
        max_token_lifetime: Duration::from_secs(3600),
        max_token_age: Duration::from_secs(1800),
        ..UserIdentityOptions::default()
    };
    let now = Arc::new(AtomicI64::new(NOW));
    let clock_now = Arc::clone(&now);
    let v = UserIdentityVerifier::new(&[config()], &options)
        .unwrap()
        .with_clock(Clock::from_fn(move || clock_now.load(Ordering::SeqCst)));
    // Issued 40 minutes ago, still 10 minutes to run: too old for 30 minutes.
    let old = es384(&with(
        with(claims(), "iat", json!(NOW - 2400)),
        "exp",
        json!(NOW + 600),
    ));
    assert_eq!(
        v.verify(&old, None).await.unwrap_err(),
        UserIdentityError::TooOld { max_seconds: 1800 }
    );
    // Valid for 50 minutes from now, without iat: within the hour.
    let no_iat = es384(&with(
        with(claims(), "iat", Value::Null),
        "exp",
        json!(NOW + 3000),
    ));
    assert!(v.verify(&no_iat, None).await.is_ok());
    // Two hours from now, without iat: refused.
    let long = es384(&with(
        with(claims(), "iat", Value::Null),
        "exp",
        json!(NOW + 7200),
    ));
    assert_eq!(
        v.verify(&long, None).await.unwrap_err(),
        UserIdentityError::LifetimeTooLong { max_seconds: 3600 }
    );
    // A fresh token is cached only until it ages out, not until its exp.
    let fresh = es384(&with(claims(), "exp", json!(NOW + 3500)));
    assert!(v.verify(&fresh, None).await.is_ok());
    now.store(NOW - 10 + 1800 + 31, Ordering::SeqCst);
    assert_eq!(
        v.verify(&fresh, None).await.unwrap_err(),
        UserIdentityError::Expired,
        "the cache entry ends when the token ages out"
    );
}

#[test]
fn configuration_is_checked() {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        trusted_issuers: Vec<TrustedIssuerConfig>,
    }
    let text = r#"
        [[trusted_issuers]]
        issuer = "https://cis2.test"
        audience = "nrls"
        jwks_url = "http://127.0.0.1:9/jwks.json"
    "#;
    let file: File = toml::from_str(text).unwrap();
    assert!(
        UserIdentityVerifier::new(&file.trusted_issuers, &UserIdentityOptions::default()).is_ok()
    );
    let typo = "[[trusted_issuers]]\nissuer = \"a\"\naudience = \"b\"\njwks_uri = \"x\"\n";
    assert!(
        toml::from_str::<File>(typo)
            .err()
            .unwrap()
            .to_string()
            .contains("jwks_uri")
    );

    let build = |c: TrustedIssuerConfig| {
        UserIdentityVerifier::new(&[c], &UserIdentityOptions::default()).err()
    };
    assert!(matches!(
        build(TrustedIssuerConfig {
            jwks: None,
            ..config()
        }),
        Some(IssuerConfigError::NoKeySource(_))
    ));
    assert!(matches!(
        build(TrustedIssuerConfig {
            audience: " ".into(),
            ..config()
        }),
        Some(IssuerConfigError::Empty {
            field: "audience",
            ..
        })
    ));
    assert!(matches!(
        build(TrustedIssuerConfig {
            // https is fine; credentials in the URL are not.
            jwks_url: Some("https://u:p@x/jwks".into()),
            ..config()
        }),
        Some(IssuerConfigError::JwksUrl { .. })
    ));
    let mut hmac = config();
    hmac.jwks = Some(json!({ "keys": [{ "kty": "oct", "kid": "h", "k": "AA" }] }));
    assert!(matches!(build(hmac), Some(IssuerConfigError::Jwks { .. })));
    assert!(matches!(
        UserIdentityVerifier::new(&[config(), config()], &UserIdentityOptions::default()),
        Err(IssuerConfigError::Duplicate(_))
    ));
}

/// A loopback JWKS endpoint whose body the test changes.
struct JwksServer {
    url: String,
    body: Arc<Mutex<String>>,
    hits: Arc<AtomicUsize>,
}

impl JwksServer {
    async fn start(body: &str) -> JwksServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
        let body = Arc::new(Mutex::new(body.to_owned()));
        let hits = Arc::new(AtomicUsize::new(0));
        let (served, counted) = (Arc::clone(&body), Arc::clone(&hits));
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                counted.fetch_add(1, Ordering::SeqCst);
                let body = served.lock().unwrap().clone();
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
            }
        });
        JwksServer { url, body, hits }
    }

    fn serve(&self, body: &str) {
        *self.body.lock().unwrap() = body.to_owned();
    }
}

#[tokio::test]
async fn remote_keys_are_fetched_rotated_and_never_replaced_by_a_bad_set() {
    let server = JwksServer::start(&demo::jwks(IDP).to_string()).await;
    let options = UserIdentityOptions {
        jwks_refresh_interval: Duration::ZERO,
        ..UserIdentityOptions::default()
    };
    let remote = TrustedIssuerConfig {
        jwks: None,
        jwks_url: Some(server.url.clone()),
        ..config()
    };
    let v = UserIdentityVerifier::new(&[remote], &options)
        .unwrap()
        .with_clock(Clock::from_fn(|| NOW));
    v.verify(&es384(&claims()), None).await.unwrap();
    assert_eq!(server.hits.load(Ordering::SeqCst), 1);
    // Another token, same kid: the cached set serves it.
    v.verify(&es384(&with(claims(), "sub", json!("other"))), None)
        .await
        .unwrap();
    assert_eq!(server.hits.load(Ordering::SeqCst), 1);

    // The provider publishes garbage, then a token with a new kid arrives:
    // the fetch fails and the good set stays.
    server.serve("<html>maintenance</html>");
    let rotated_key = demo::signing_key("rotated").unwrap().pem;
    let rotated = sign_with(&rotated_key, Algorithm::ES384, "k2", &claims());
    assert_eq!(
        v.verify(&rotated, None).await.unwrap_err(),
        UserIdentityError::Key(KeyError::UnknownKid)
    );
    assert_eq!(server.hits.load(Ordering::SeqCst), 2);
    v.verify(&es384(&with(claims(), "sub", json!("third"))), None)
        .await
        .unwrap();

    // The provider rotates properly: the new kid is fetched and accepted.
    let mut jwks = demo::jwks("rotated");
    jwks["keys"][0]["kid"] = json!("k2");
    server.serve(&jwks.to_string());
    v.verify(&rotated, None).await.unwrap();
}
