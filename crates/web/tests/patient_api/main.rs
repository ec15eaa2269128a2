//! The patient API (`/patient/FHIR/R4`) black-box: the whole service (API
//! and pages routers, as `nrls serve` merges them) on a real TCP port,
//! patients signed in through a real OpenID provider (npm `oidc-provider`
//! with its NHS login profile), apps through the real token endpoint. Needs
//! node and `testing/node_modules` (`scripts/test-deps`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[allow(unused_imports)]
#[path = "../support/mod.rs"]
mod support;

mod consent;
mod tokens;
mod visibility;
mod who_looked;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use api::access::AccessServices;
use api::patient_access::PatientAccess;
use api::{ApiSettings, AppState};
use serde_json::{Value, json};
use support::browser::{Browser, browser};
use support::oidc::nhs_login_claims;
use support::{OpConfig, OpenIdProvider, RelyingPartyClient, RsaKey};
use web::patient::PatientSessionReader;
use web::session::store::memory::MemorySessionStore;
use web::session::{SessionSettings, Sessions};
use web::{PatientAccessConfig, WebInner, WebState};

const REDIRECT: &str = "http://127.0.0.1:9/my-record/callback";
const PATIENT_CLIENT: &str = "nrls-patient";
const TOKEN_ENDPOINT: &str = "http://nrls/oauth2/token";
const ADA: &str = "9990000018";
const BEN: &str = "9990000026";
const NHS: &str = "https://fhir.nhs.uk/Id/nhs-number";
const RESPECT: (&str, &str) = ("1382601000000107", "ReSPECT form");
const LLOYD_GEORGE: (&str, &str) = ("16521000000101", "Lloyd George record folder");
/// A consumer whose client id must never reach a patient.
const CONSUMER: &str = "acme-consumer-app-7";
const ASID: &str = "200000000610";

struct Service {
    url: String,
    http: reqwest::Client,
    /// The same router, for the sign-in walk through the provider.
    app: axum::Router,
    /// The service's state: its audit trail, for planting a clinician's view.
    state: AppState,
}

fn provider() -> (OpConfig, RsaKey) {
    let mut keys = RsaKey::generate(&["op-1", "rp-1"]);
    let rp_key = keys.remove(1);
    let client = RelyingPartyClient::new(PATIENT_CLIENT, rp_key.clone(), REDIRECT);
    let config = OpConfig::nhs_login(keys.remove(0))
        .client(client)
        .account("ada", nhs_login_claims(ADA, "P9"))
        .account("cara", nhs_login_claims("9990000034", "P5"));
    (config, rp_key)
}

fn apps() -> Vec<auth::AppConfig> {
    let all: Vec<String> = domain::Catalogue::nrl_v3()
        .types()
        .iter()
        .map(|t| t.key())
        .collect();
    let org = |ods: &str, role: &str| auth::OrganisationConfig {
        ods: ods.into(),
        roles: vec![role.into()],
        pointer_types: all.clone(),
    };
    vec![
        auth::demo::app_config("producer", "Producer", vec![org("RR8", "producer")]),
        auth::demo::app_config(CONSUMER, "Consumer", vec![org("RX9", "consumer")]),
        auth::demo::app_config("admin", "Admin", vec![org("RX9", "consumer")]),
    ]
}

async fn start(issuer: &str, rp_key: &RsaKey) -> Service {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("nhs-login.pem");
    std::fs::write(&key_file, &rp_key.private_pem).unwrap();
    let config = PatientAccessConfig {
        issuer: Some(issuer.to_owned()),
        client_id: Some(PATIENT_CLIENT.to_owned()),
        key_file: Some(key_file),
        key_id: rp_key.kid.clone(),
        redirect_url: Some(REDIRECT.to_owned()),
        clock_skew_seconds: 30,
        ..PatientAccessConfig::default()
    };
    let nhs_login = config.relying_party("http://127.0.0.1:9").unwrap();
    let auth = auth::Authenticator::new(
        Arc::new(auth::AppRegistry::from_configs(&apps()).unwrap()),
        auth::TokenSettings::new("http://nrls", TOKEN_ENDPOINT, vec![7; 32]),
    )
    .unwrap();
    let access = AccessServices::in_memory();
    let sessions = Sessions::new(
        Arc::new(MemorySessionStore::new()),
        SessionSettings::default(),
    );
    let settings = ApiSettings {
        admin_clients: vec!["admin".into()],
        ..ApiSettings::default()
    };
    let api = AppState::with_ops(
        Arc::new(store::memory::MemoryStore::new()),
        Arc::new(auth),
        settings,
        api::ops::Ops::default(),
        access,
    )
    .with_patient_access(PatientAccess {
        visible_types: config.visible_types.clone(),
        organisations: HashMap::from([(
            "RX9".to_owned(),
            "Yorkshire Ambulance Service".to_owned(),
        )]),
        sessions: Some(Arc::new(PatientSessionReader(sessions.clone()))),
    })
    .ok()
    .unwrap();
    let web = WebState(Arc::new(WebInner {
        api: api.clone(),
        sessions,
        cis2: None,
        nhs_login,
        patient_types: config.visible_types,
        demo: false,
        organisations: HashMap::new(),
        https: false,
    }));
    let state = api.clone();
    let app = api::router_with_pages(api, web::router(web));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let serving = app.clone();
    tokio::spawn(async move { axum::serve(listener, serving).await.unwrap() });
    Service {
        url,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap(),
        app,
        state,
    }
}

struct Reply {
    status: u16,
    location: String,
    text: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|_| panic!("not JSON: {}", self.text))
    }

    /// The first issue's `expression`.
    fn expression(&self) -> String {
        self.json()["issue"][0]["expression"][0]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

/// How a request proves who it is.
#[derive(Clone)]
enum As {
    Cookie(String),
    Patient(String),
    App(String, &'static str),
}

impl Service {
    async fn send(&self, method: &str, path: &str, who: &As, body: Option<Value>) -> Reply {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self.http.request(method, format!("{}{path}", self.url));
        request = match who {
            As::Cookie(cookie) => request.header("cookie", cookie),
            As::Patient(token) => request.bearer_auth(token),
            As::App(token, ods) => request
                .bearer_auth(token)
                .header("nhsd-end-user-organisation-ods", *ods)
                .header("x-request-id", uuid::Uuid::new_v4().to_string()),
        };
        if let Some(body) = body {
            request = request
                .header("content-type", "application/fhir+json")
                .body(body.to_string());
        }
        let response = request.send().await.unwrap();
        let location = response
            .headers()
            .get("location")
            .map(|l| l.to_str().unwrap().to_owned())
            .unwrap_or_default();
        Reply {
            status: response.status().as_u16(),
            location,
            text: response.text().await.unwrap(),
        }
    }

    async fn app_token(&self, client_id: &str) -> String {
        let key = auth::demo::signing_key(client_id).unwrap();
        let assertion =
            auth::mint_client_assertion(client_id, TOKEN_ENDPOINT, &key, Duration::from_secs(120))
                .unwrap();
        let response = self
            .http
            .post(format!("{}/oauth2/token", self.url))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!(
                "grant_type=client_credentials&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion={assertion}"
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "token for {client_id}");
        let body: Value = response.json().await.unwrap();
        body["access_token"].as_str().unwrap().to_owned()
    }

    /// Signs `account` in at `/my-record/` through the provider; the session cookie.
    async fn sign_in(&self, account: &str) -> String {
        let mut browser: Browser = browser(self.app.clone());
        browser.sign_in_at("/my-record/sign-in", account).await;
        browser.cookie.clone().expect("a session cookie")
    }

    /// `account` signed in: its session cookie and a patient token from it.
    async fn signed_in(&self, account: &str) -> (As, As) {
        let cookie = self.sign_in(account).await;
        let token = self.patient_token(&cookie).await;
        (As::Cookie(cookie), As::Patient(token))
    }

    /// A patient token from the signed-in session.
    async fn patient_token(&self, cookie: &str) -> String {
        let issued = self
            .send("POST", "/patient/token", &As::Cookie(cookie.into()), None)
            .await;
        assert_eq!(issued.status, 200, "{}", issued.text);
        assert_eq!(issued.json()["token_type"], "bearer");
        issued.json()["access_token"].as_str().unwrap().to_owned()
    }

    /// Creates a pointer for `nhs` through the producer API; its id.
    async fn pointer(
        &self,
        producer: &As,
        nhs: &str,
        local: &str,
        kind: (&str, &str),
        labels: &[&str],
    ) -> String {
        let mut doc = json!({
            "resourceType": "DocumentReference",
            "masterIdentifier": {"system": "urn:ietf:rfc:3986", "value": format!("urn:test:{local}")},
            "status": "current",
            "docStatus": "final",
            "type": {"coding": [{"system": "http://snomed.info/sct", "code": kind.0, "display": kind.1}]},
            "category": [{"coding": [{"system": "http://snomed.info/sct", "code": "734163000", "display": "Care plan"}]}],
            "subject": {"identifier": {"system": NHS, "value": nhs}},
            "date": "2026-01-01T01:00:00Z",
            "author": [{"identifier": {"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "RR8"}}],
            "custodian": {"identifier": {"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "RR8"}},
            "content": [{
                "attachment": {"contentType": "application/pdf", "url": "ssp://rr8.example.nhs.uk/doc.pdf", "creation": "2026-01-01T01:00:00Z"},
                "format": {"system": "https://fhir.nhs.uk/England/CodeSystem/England-NRLFormatCode", "code": "urn:nhs-ic:unstructured", "display": "Unstructured Document"},
                "extension": [
                    {"url": "https://fhir.nhs.uk/England/StructureDefinition/Extension-England-ContentStability",
                     "valueCodeableConcept": {"coding": [{"system": "https://fhir.nhs.uk/England/CodeSystem/England-NRLContentStability", "code": "static"}]}},
                    {"url": "https://fhir.nhs.uk/England/StructureDefinition/Extension-England-NRLRetrievalMechanism",
                     "valueCodeableConcept": {"coding": [{"system": "https://fhir.nhs.uk/England/CodeSystem/England-NRLRetrievalMechanism", "code": "SSP"}]}}
                ]
            }],
            "context": {
                "practiceSetting": {"coding": [{"system": "http://snomed.info/sct", "code": "788002001", "display": "Adult mental health service"}]},
                "related": [{"identifier": {"system": "https://fhir.nhs.uk/Id/nhsSpineASID", "value": ASID}}]
            }
        });
        if !labels.is_empty() {
            let security: Vec<Value> = labels
                .iter()
                .map(|code| {
                    let system = if *code == "NOPAT" {
                        "http://terminology.hl7.org/CodeSystem/v3-ActCode"
                    } else {
                        "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
                    };
                    json!({"system": system, "code": code})
                })
                .collect();
            doc["meta"] = json!({"security": security});
        }
        let created = self
            .send(
                "POST",
                "/producer/FHIR/R4/DocumentReference",
                producer,
                Some(doc),
            )
            .await;
        assert_eq!(created.status, 201, "{}", created.text);
        created.location.rsplit('/').next().unwrap().to_owned()
    }
}

const DR: &str = "/patient/FHIR/R4/DocumentReference";
const AUDIT: &str = "/patient/FHIR/R4/AuditEvent";
const CONSENT: &str = "/patient/FHIR/R4/Consent";

fn consent(status: &str) -> Value {
    json!({
        "resourceType": "Consent",
        "status": status,
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
        "provision": {"type": "deny"},
        "patient": {"identifier": {"system": NHS, "value": ADA}},
    })
}

/// The admin API's audit search for `nhs`: the stored events of patient
/// calls (the admin search records its own, which are left out).
async fn stored_events(s: &Service, admin: &As, nhs: &str) -> Vec<Value> {
    let found = s
        .send(
            "GET",
            &format!("/admin/FHIR/R4/AuditEvent?patient={nhs}&_count=100"),
            admin,
            None,
        )
        .await;
    assert_eq!(found.status, 200, "{}", found.text);
    found.json()["entry"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|e| e["resource"].clone())
        .filter(|e| e.to_string().contains(PATIENT_CLIENT))
        .collect()
}

fn total(reply: &Reply) -> u64 {
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.json()["total"].as_u64().unwrap()
}
