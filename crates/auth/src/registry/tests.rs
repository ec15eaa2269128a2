//! Onboarding validation, and keys fetched from a `jwks_url` served by a
//! one-file HTTP server on the loopback interface.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use domain::{Catalogue, OdsCode, Role};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;
use crate::demo;

const CRISIS_PLAN: &str = "http://snomed.info/sct|736253002";

fn organisation(ods: &str, roles: &[&str], types: &[&str]) -> OrganisationConfig {
    OrganisationConfig {
        ods: ods.to_owned(),
        roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        pointer_types: types.iter().map(|t| (*t).to_owned()).collect(),
    }
}

fn app(client_id: &str) -> AppConfig {
    demo::app_config(
        client_id,
        "An app",
        vec![organisation("X26", &["consumer"], &[CRISIS_PLAN])],
    )
}

fn error(configs: &[AppConfig]) -> String {
    let err = AppRegistry::from_configs(configs).unwrap_err();
    err.to_string()
}

#[test]
fn a_valid_app_is_registered_with_its_grants() {
    let mut config = app("a");
    config.organisations.push(organisation(
        "rx1",
        &["producer", "consumer"],
        &[CRISIS_PLAN],
    ));
    config.rate_limit_per_second = Some(25);
    let registry = AppRegistry::from_configs(&[config, app("b")]).unwrap();
    assert_eq!(registry.len(), 2);
    let a = registry.app("a").unwrap();
    assert_eq!(a.rate_limit_per_second, Some(25));
    assert!(registry.app("c").is_none());

    let crisis = Catalogue::nrl_v3().find_key(CRISIS_PLAN).unwrap().index;
    let consumer_only = a.grant(&OdsCode::parse("x26").unwrap()).unwrap();
    assert!(consumer_only.has_role(Role::Consumer) && !consumer_only.has_role(Role::Producer));
    assert!(consumer_only.types(Role::Consumer).contains(crisis));
    assert!(consumer_only.types(Role::Producer).is_empty());
    let both = a.grant(&OdsCode::parse("RX1").unwrap()).unwrap();
    assert!(both.has_role(Role::Producer) && both.types(Role::Producer).contains(crisis));
    assert!(a.grant(&OdsCode::parse("Y05868").unwrap()).is_none());
}

#[test]
fn errors_name_the_app_and_the_field() {
    assert_eq!(
        AppRegistry::from_configs(&[app("a"), app("a")]).unwrap_err(),
        ConfigError::DuplicateClientId {
            client_id: "a".into()
        }
    );

    let mut bad_ods = app("a");
    bad_ods.organisations[0].ods = "X-26".into();
    assert_eq!(
        error(&[bad_ods]),
        "app 'a': organisations: ods \"X-26\" is not an ODS code"
    );

    // From the NRL example permissions: retired, so not in the catalogue.
    let mut unknown_type = app("a");
    unknown_type.organisations[0]
        .pointer_types
        .push("http://snomed.info/sct|736253001".into());
    let message = error(&[unknown_type]);
    assert!(
        message.starts_with("app 'a': organisation 'X26': pointer_types:"),
        "{message}"
    );
    assert!(message.contains("736253001"), "{message}");

    let mut no_keys = app("a");
    no_keys.jwks = None;
    assert_eq!(
        AppRegistry::from_configs(&[no_keys]).unwrap_err(),
        ConfigError::NoKeySource {
            client_id: "a".into()
        }
    );

    let mut bad_role = app("a");
    bad_role.organisations[0].roles = vec!["admin".into()];
    assert!(error(&[bad_role]).contains("roles: \"admin\""));

    let mut no_roles = app("a");
    no_roles.organisations[0].roles.clear();
    assert!(error(&[no_roles]).contains("'X26': roles must name"));

    let mut no_types = app("a");
    no_types.organisations[0].pointer_types.clear();
    assert!(error(&[no_types]).contains("pointer_types must not be empty"));

    let mut twice = app("a");
    twice
        .organisations
        .push(organisation("x26", &["producer"], &[CRISIS_PLAN]));
    assert!(error(&[twice]).contains("ods 'X26' is listed more than once"));

    let mut no_orgs = app("a");
    no_orgs.organisations.clear();
    assert!(error(&[no_orgs]).contains("at least one organisation"));

    let mut bad_key = app("a");
    bad_key.jwks = Some(
        json!({ "keys": [ { "kty": "EC", "crv": "P-256", "kid": "k", "x": "AA", "y": "AA" } ] }),
    );
    assert_eq!(
        error(&[bad_key]),
        "app 'a': jwks: key 'k': crv must be P-384"
    );

    let mut nameless = app("a");
    nameless.name = " ".into();
    assert!(error(&[nameless]).contains("app 'a': name must not be empty"));

    assert!(error(&[app("has space")]).contains("apps[0]: client_id"));
}

#[test]
fn jwks_url_is_https_or_http_without_credentials() {
    let mut tls = app("a");
    tls.jwks = None;
    tls.jwks_url = Some("https://app.example/jwks.json".into());
    assert!(AppRegistry::from_configs(&[tls.clone()]).is_ok());
    tls.jwks_url = Some("https://user:secret@app.example/jwks.json".into());
    assert!(error(&[tls.clone()]).contains("must not carry credentials"));
    tls.jwks_url = Some("file:///etc/passwd".into());
    assert!(error(&[tls.clone()]).contains("must be an https (or http) URL"));
    tls.jwks_url = Some("not a url".into());
    assert!(error(&[tls]).starts_with("app 'a': jwks_url"));
}

/// Serves whatever body is current, counting requests.
struct JwksServer {
    url: String,
    body: Arc<Mutex<String>>,
    hits: Arc<AtomicUsize>,
}

impl JwksServer {
    async fn start(body: serde_json::Value) -> JwksServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
        let body = Arc::new(Mutex::new(body.to_string()));
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

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

fn remote_app(client_id: &str, url: &str) -> AppConfig {
    AppConfig {
        jwks: None,
        jwks_url: Some(url.to_owned()),
        ..app(client_id)
    }
}

fn registry(configs: &[AppConfig], refresh: Duration) -> AppRegistry {
    let options = RegistryOptions {
        jwks_refresh_interval: refresh,
        jwks_fetch_timeout: Duration::from_secs(5),
        tls: crate::OutboundTls::default(),
    };
    AppRegistry::from_configs_with(configs, &options).unwrap()
}

/// A second published key, under kid `k2`.
fn rotated_jwks() -> serde_json::Value {
    let mut set = demo::jwks("rotated");
    set["keys"][0]["kid"] = json!("k2");
    set
}

#[tokio::test]
async fn remote_keys_are_fetched_once_and_cached() {
    let server = JwksServer::start(demo::jwks("a")).await;
    let registry = registry(&[remote_app("a", &server.url)], Duration::from_secs(60));
    let app = registry.app("a").unwrap();
    assert!(
        registry
            .resolve_key(&app, "demo-1", AssertionAlg::Es384)
            .await
            .is_ok()
    );
    assert!(
        registry
            .resolve_key(&app, "demo-1", AssertionAlg::Es384)
            .await
            .is_ok()
    );
    assert_eq!(server.hits(), 1);
    assert_eq!(
        registry
            .resolve_key(&app, "demo-1", AssertionAlg::Rs384)
            .await
            .unwrap_err(),
        KeyError::AlgorithmMismatch
    );
}

#[tokio::test]
async fn unknown_kid_refreshes_at_most_once_per_interval() {
    let server = JwksServer::start(demo::jwks("a")).await;
    let registry = registry(&[remote_app("a", &server.url)], Duration::from_secs(60));
    let app = registry.app("a").unwrap();
    registry
        .resolve_key(&app, "demo-1", AssertionAlg::Es384)
        .await
        .unwrap();
    server.serve(&rotated_jwks().to_string());
    // Rotated, but we fetched less than 60 s ago: no fetch, so unknown.
    for _ in 0..5 {
        let err = registry
            .resolve_key(&app, "k2", AssertionAlg::Es384)
            .await
            .unwrap_err();
        assert_eq!(err, KeyError::UnknownKid);
    }
    assert_eq!(server.hits(), 1);
}

#[tokio::test]
async fn rotation_is_picked_up_and_bad_sets_never_replace_good_ones() {
    let server = JwksServer::start(demo::jwks("a")).await;
    let registry = registry(&[remote_app("a", &server.url)], Duration::ZERO);
    let app = registry.app("a").unwrap();
    registry
        .resolve_key(&app, "demo-1", AssertionAlg::Es384)
        .await
        .unwrap();

    server.serve("<html>maintenance</html>");
    assert_eq!(
        registry
            .resolve_key(&app, "k9", AssertionAlg::Es384)
            .await
            .unwrap_err(),
        KeyError::UnknownKid
    );
    server.serve(r#"{"keys":[{"kty":"EC","crv":"P-256","kid":"p256","x":"AA","y":"AA"}]}"#);
    assert_eq!(
        registry
            .resolve_key(&app, "k9", AssertionAlg::Es384)
            .await
            .unwrap_err(),
        KeyError::UnknownKid
    );
    assert_eq!(server.hits(), 3);
    // The good set survived both bad fetches.
    assert!(
        registry
            .resolve_key(&app, "demo-1", AssertionAlg::Es384)
            .await
            .is_ok()
    );

    server.serve(&rotated_jwks().to_string());
    assert!(
        registry
            .resolve_key(&app, "k2", AssertionAlg::Es384)
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn an_unreachable_jwks_url_means_no_key() {
    // Bind then drop, so the port is (almost certainly) closed.
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/jwks.json");
    let registry = registry(&[remote_app("a", &url)], Duration::from_secs(60));
    let app = registry.app("a").unwrap();
    let err = registry
        .resolve_key(&app, "demo-1", AssertionAlg::Es384)
        .await
        .unwrap_err();
    assert_eq!(err, KeyError::KeySetUnavailable);
}

#[tokio::test]
async fn a_remote_keyed_app_gets_a_token() {
    let server = JwksServer::start(demo::jwks("remote")).await;
    let registry = Arc::new(registry(
        &[remote_app("remote", &server.url)],
        Duration::from_secs(60),
    ));
    let endpoint = "http://127.0.0.1:8080/oauth2/token";
    let settings = crate::TokenSettings::new("http://127.0.0.1:8080", endpoint, vec![7; 32]);
    let auth = crate::Authenticator::new(registry, settings).unwrap();
    let key = demo::signing_key("remote").unwrap();
    let assertion =
        crate::mint_client_assertion("remote", endpoint, &key, Duration::from_secs(60)).unwrap();
    let form = vec![
        ("grant_type".to_owned(), "client_credentials".to_owned()),
        (
            "client_assertion_type".to_owned(),
            crate::token_request::ASSERTION_TYPE.to_owned(),
        ),
        ("client_assertion".to_owned(), assertion),
    ];
    let token = auth.issue_token(&form).await.unwrap();
    assert_eq!(
        auth.authenticate(&token.access_token).unwrap().client_id(),
        "remote"
    );
}
