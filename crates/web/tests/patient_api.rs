//! The patient API (`/patient/FHIR/R4`) black-box: the whole service (API
//! and pages routers, as `nrls serve` merges them) on a real TCP port,
//! patients signed in through a real OpenID provider (npm `oidc-provider`
//! with its NHS login profile), apps through the real token endpoint. Needs
//! node and `testing/node_modules` (`scripts/test-deps`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[allow(unused_imports)]
mod support;

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
    let app = api::router(api).merge(web::router(web));
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

#[tokio::test]
async fn a_p9_patient_sees_through_the_api_only_what_patients_are_shown() {
    let (config, rp_key) = provider();
    let op = OpenIdProvider::start(config).await;
    let s = start(op.issuer(), &rp_key).await;
    let producer = As::App(s.app_token("producer").await, "RR8");
    let admin = As::App(s.app_token("admin").await, "RX9");
    let seen = s.pointer(&producer, ADA, "seen", RESPECT, &[]).await;
    let restricted = s.pointer(&producer, ADA, "r", RESPECT, &["R"]).await;
    s.pointer(&producer, ADA, "nopat", RESPECT, &["NOPAT"])
        .await;
    s.pointer(&producer, ADA, "lg", LLOYD_GEORGE, &[]).await;
    let bens = s.pointer(&producer, BEN, "ben", RESPECT, &[]).await;

    // After a real NHS login at P9: by the session cookie, then by a token
    // the session obtains. 1 visible + 3 hidden: total 1.
    let (cookie, token) = s.signed_in("ada").await;
    for who in [&cookie, &token] {
        let found = s.send("GET", DR, who, None).await;
        assert_eq!(total(&found), 1, "{}", found.text);
        assert_eq!(found.json()["entry"].as_array().unwrap().len(), 1);
        assert!(found.text.contains(&seen), "{}", found.text);
        for detail in ["ssp://", ASID, "nhsSpineASID"] {
            assert!(
                !found.text.contains(detail),
                "{detail} shown: {}",
                found.text
            );
        }
    }
    assert_eq!(
        s.send("GET", &format!("{DR}/{seen}"), &token, None)
            .await
            .status,
        200
    );
    for hidden in [&restricted, &bens] {
        assert_eq!(
            s.send("GET", &format!("{DR}/{hidden}"), &token, None)
                .await
                .status,
            404
        );
    }

    // Every patient call is one AuditEvent, PATRQT.
    let before = stored_events(&s, &admin, ADA).await.len();
    let own = format!("{DR}?subject:identifier={NHS}|{ADA}");
    assert_eq!(total(&s.send("GET", &own, &token, None).await), 1);
    let events = stored_events(&s, &admin, ADA).await;
    assert_eq!(events.len(), before + 1);
    assert!(events.iter().any(|e| e.to_string().contains("PATRQT")));

    // Another patient's NHS number: 404, audited as a failure.
    let other = s
        .send(
            "GET",
            &format!("{DR}?subject:identifier={NHS}|{BEN}"),
            &token,
            None,
        )
        .await;
    assert_eq!(other.status, 404, "{}", other.text);
    assert!(!other.text.contains(&bens));
    let events = stored_events(&s, &admin, ADA).await;
    assert_eq!(events.len(), before + 2);
    assert!(
        events
            .iter()
            .any(|e| e["outcome"] == "4" && e.to_string().contains(PATIENT_CLIENT)),
        "the refusal is in the audit trail"
    );
    // A malformed one is 400 naming the parameter; unknown parameters too.
    let bad = s
        .send(
            "GET",
            &format!("{DR}?subject:identifier={NHS}|123"),
            &token,
            None,
        )
        .await;
    assert_eq!(
        (bad.status, bad.expression().as_str()),
        (400, "subject:identifier")
    );
    let odd = s
        .send("GET", &format!("{DR}?colour=red"), &token, None)
        .await;
    assert_eq!((odd.status, odd.expression().as_str()), (400, "colour"));
}

/// A clinician's view as the audit trail stores it: name-free but with a
/// user id, a role code, a client id and a request id, none of which may
/// reach the patient.
async fn clinician_looked(s: &Service, nhs: &str) -> Vec<&'static str> {
    let facts = audit::AuditFacts {
        interaction: audit::Interaction::Search,
        outcome: audit::AuditOutcome::Success,
        outcome_desc: None,
        recorded: audit::now_rfc3339(),
        request_id: Some("req-secret-4242".into()),
        client_id: "acme-viewer-app".into(),
        organisation: Some("RX9".into()),
        user: Some(audit::AuditUser {
            person_id: "555000777123".into(),
            role_code: Some("S0030:G0100:R8001".into()),
        }),
        purpose_of_use: Some("TREAT".into()),
        patient: Some(domain::NhsNumber::parse(nhs).unwrap()),
        resources: vec!["RR8-planted".into()],
        query: Some(format!("subject:identifier={NHS}|{nhs}")),
        access: None,
    };
    let access = s.state.access();
    access
        .audit
        .append(vec![facts.to_event(&access.node)])
        .await
        .unwrap();
    vec![
        "555000777123",
        "R8001",
        "S0030",
        "acme-viewer-app",
        "req-secret-4242",
        "sds-user-id",
        "urn:nrls:client-id",
        CONSUMER,
    ]
}

fn entries(reply: &Reply) -> Vec<Value> {
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.json()["entry"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test]
async fn who_looked_through_the_api_names_role_categories_and_no_staff_identity() {
    let (config, rp_key) = provider();
    let op = OpenIdProvider::start(config).await;
    let s = start(op.issuer(), &rp_key).await;
    let producer = As::App(s.app_token("producer").await, "RR8");
    s.pointer(&producer, ADA, "seen", RESPECT, &[]).await;
    // An app alone (no user) searches through the consumer API, then a
    // nurse's view is in the trail.
    let consumer = As::App(s.app_token(CONSUMER).await, "RX9");
    let search = format!("/consumer/FHIR/R4/DocumentReference?subject:identifier={NHS}|{ADA}");
    assert_eq!(total(&s.send("GET", &search, &consumer, None).await), 1);
    let secrets = clinician_looked(&s, ADA).await;
    let (cookie, token) = s.signed_in("ada").await;

    let history = s.send("GET", AUDIT, &token, None).await;
    let found = entries(&history);
    // The nurse's view, the consumer app's search, the producer's create.
    assert_eq!(found.len(), 3, "{}", history.text);
    assert!(
        history
            .text
            .contains("Added, changed or removed a record about you")
    );
    // The raw body: categories and the organisation, no identities.
    for secret in &secrets {
        assert!(
            !history.text.contains(secret),
            "{secret} in {}",
            history.text
        );
    }
    assert_eq!(found[0]["resource"]["resourceType"], "AuditEvent");
    let newest = &found[0]["resource"]["agent"][0];
    assert_eq!(newest["type"]["coding"][0]["code"], "nurse");
    assert_eq!(newest["type"]["coding"][0]["display"], "A nurse");
    assert_eq!(newest["who"]["identifier"]["value"], "RX9");
    assert_eq!(newest["who"]["display"], "Yorkshire Ambulance Service");
    assert_eq!(
        found[1]["resource"]["agent"][0]["type"]["coding"][0]["code"],
        "system"
    );
    let when = |i: usize| {
        found[i]["resource"]["recorded"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert!(when(0) >= when(1), "newest first");

    // Paged with next links; own views only when asked; dated.
    let first = s
        .send("GET", &format!("{AUDIT}?_count=1"), &token, None)
        .await;
    assert_eq!(entries(&first).len(), 1);
    let next = first.json()["link"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["relation"] == "next")
        .map(|l| l["url"].as_str().unwrap().to_owned())
        .expect("a next link");
    let path = &next[next.find("/patient/").unwrap()..];
    let second = s.send("GET", path, &token, None).await;
    assert_eq!(
        entries(&second)[0]["resource"]["agent"][0]["type"]["coding"][0]["code"],
        "system"
    );
    let own = s
        .send("GET", &format!("{AUDIT}?_include-own=true"), &cookie, None)
        .await;
    assert!(entries(&own).len() > 2, "{}", own.text);
    assert!(own.text.contains("\"you\"") && own.text.contains("PATRQT"));
    let old = s
        .send("GET", &format!("{AUDIT}?date=le2001-01-01"), &token, None)
        .await;
    assert!(entries(&old).is_empty(), "{}", old.text);
    let bad = s
        .send("GET", &format!("{AUDIT}?_count=1000"), &token, None)
        .await;
    assert_eq!((bad.status, bad.expression().as_str()), (400, "_count"));
    let other = s
        .send(
            "GET",
            &format!("{AUDIT}?patient.identifier={NHS}|{BEN}"),
            &token,
            None,
        )
        .await;
    assert_eq!(other.status, 404);
}

#[tokio::test]
async fn the_consent_round_trip_is_the_admin_fact_and_consumers_see_it_at_once() {
    let (config, rp_key) = provider();
    let op = OpenIdProvider::start(config).await;
    let s = start(op.issuer(), &rp_key).await;
    let producer = As::App(s.app_token("producer").await, "RR8");
    let consumer = As::App(s.app_token(CONSUMER).await, "RX9");
    let admin = As::App(s.app_token("admin").await, "RX9");
    s.pointer(&producer, ADA, "seen", RESPECT, &[]).await;
    let search = format!("/consumer/FHIR/R4/DocumentReference?subject:identifier={NHS}|{ADA}");
    let admin_objection = format!("/admin/patients/{ADA}/objection");
    let (cookie, token) = s.signed_in("ada").await;
    assert_eq!(total(&s.send("GET", CONSENT, &token, None).await), 0);
    assert_eq!(total(&s.send("GET", &search, &consumer, None).await), 1);

    // Object: an active PCF Consent; consumers see nothing at once, and the
    // admin API reads the same fact.
    let made = s
        .send("POST", CONSENT, &token, Some(consent("active")))
        .await;
    assert_eq!(made.status, 201, "{}", made.text);
    assert!(
        made.location
            .ends_with("/patient/FHIR/R4/Consent/objection")
    );
    assert_eq!(made.json()["status"], "active");
    assert_eq!(made.json()["provision"]["type"], "deny");
    assert_eq!(total(&s.send("GET", &search, &consumer, None).await), 0);
    assert_eq!(
        s.send("GET", &admin_objection, &admin, None).await.status,
        200
    );
    let listed = s.send("GET", CONSENT, &cookie, None).await;
    assert_eq!(total(&listed), 1);
    assert_eq!(
        listed.json()["entry"][0]["resource"]["scope"]["coding"][0]["code"],
        "patient-privacy"
    );

    // Withdraw: the same Consent, inactive; consumers see the pointer again.
    let withdrawn = s
        .send(
            "PUT",
            &format!("{CONSENT}/objection"),
            &token,
            Some(consent("inactive")),
        )
        .await;
    assert_eq!(withdrawn.status, 200, "{}", withdrawn.text);
    assert_eq!(withdrawn.json()["status"], "inactive");
    assert_eq!(total(&s.send("GET", &search, &consumer, None).await), 1);
    assert_eq!(
        s.send("GET", &admin_objection, &admin, None).await.status,
        404
    );
    let read = s
        .send("GET", &format!("{CONSENT}/objection"), &token, None)
        .await;
    assert_eq!(read.json()["status"], "inactive");

    // An objection the admin API records is the patient's Consent too.
    let recorded = s
        .send(
            "PUT",
            &admin_objection,
            &admin,
            Some(json!({"note": "by phone"})),
        )
        .await;
    assert_eq!(recorded.status, 200, "{}", recorded.text);
    assert_eq!(total(&s.send("GET", CONSENT, &token, None).await), 1);

    // Both changes are in "who looked", as changes of sharing choice.
    let history = s.send("GET", AUDIT, &token, None).await;
    assert!(history.text.contains("stopped sharing"), "{}", history.text);
    assert!(
        history.text.contains("started sharing again"),
        "{}",
        history.text
    );
}

#[tokio::test]
async fn bad_consent_bodies_are_400_naming_the_element_and_another_patient_is_404() {
    let (config, rp_key) = provider();
    let op = OpenIdProvider::start(config).await;
    let s = start(op.issuer(), &rp_key).await;
    let admin = As::App(s.app_token("admin").await, "RX9");
    let cookie = s.sign_in("ada").await;
    let token = As::Patient(s.patient_token(&cookie).await);
    let with = |path: &str, value: Value| {
        let mut body = consent("active");
        body[path] = value;
        body
    };
    let cases = [
        (
            with("resourceType", json!("Patient")),
            "Consent.resourceType",
        ),
        (with("status", json!("proposed")), "Consent.status"),
        (with("status", json!("inactive")), "Consent.status"),
        (
            with("provision", json!({"type": "permit"})),
            "Consent.provision.type",
        ),
        (
            with("scope", json!({"coding": [{"code": "research"}]})),
            "Consent.scope",
        ),
        (
            with(
                "patient",
                json!({"identifier": {"system": "urn:other", "value": ADA}}),
            ),
            "Consent.patient.identifier.system",
        ),
    ];
    for (body, expression) in cases {
        let refused = s.send("POST", CONSENT, &token, Some(body)).await;
        assert_eq!(refused.status, 400, "{expression}: {}", refused.text);
        assert_eq!(refused.expression(), expression, "{}", refused.text);
        assert!(refused.text.contains("OperationOutcome"));
    }
    let mut not_json = s.http.post(format!("{}{CONSENT}", s.url));
    if let As::Patient(t) = &token {
        not_json = not_json.bearer_auth(t);
    }
    let broken = not_json
        .header("content-type", "application/fhir+json")
        .body("{\"resourceType\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(broken.status(), 400);
    let wrong_id = s
        .send(
            "PUT",
            &format!("{CONSENT}/objection"),
            &token,
            Some(with("id", json!("x"))),
        )
        .await;
    assert_eq!(
        (wrong_id.status, wrong_id.expression().as_str()),
        (400, "Consent.id")
    );
    assert_eq!(
        s.send(
            "PUT",
            &format!("{CONSENT}/other"),
            &token,
            Some(consent("active"))
        )
        .await
        .status,
        404
    );
    // Naming another patient: 404, nothing recorded for anyone, audited.
    let ben = with(
        "patient",
        json!({"identifier": {"system": NHS, "value": BEN}}),
    );
    let other = s.send("POST", CONSENT, &token, Some(ben)).await;
    assert_eq!(other.status, 404, "{}", other.text);
    assert_eq!(
        s.send(
            "GET",
            &format!("/admin/patients/{BEN}/objection"),
            &admin,
            None
        )
        .await
        .status,
        404
    );
    assert_eq!(
        s.send(
            "GET",
            &format!("/admin/patients/{ADA}/objection"),
            &admin,
            None
        )
        .await
        .status,
        404
    );
    let events = stored_events(&s, &admin, ADA).await;
    assert!(
        events.iter().any(|e| e["outcome"] == "4"),
        "audited as a failure"
    );
}

#[tokio::test]
async fn app_tokens_do_not_open_patient_routes_nor_patient_tokens_app_routes() {
    let (config, rp_key) = provider();
    let op = OpenIdProvider::start(config).await;
    let s = start(op.issuer(), &rp_key).await;
    let consumer = s.app_token(CONSUMER).await;
    let admin = s.app_token("admin").await;
    let patient = s.patient_token(&s.sign_in("ada").await).await;
    for path in [DR, AUDIT, CONSENT] {
        for app in [&consumer, &admin] {
            let refused = s.send("GET", path, &As::Patient(app.clone()), None).await;
            assert_eq!(refused.status, 401, "{path}: {}", refused.text);
            assert!(refused.text.contains("another API"), "{}", refused.text);
        }
        assert_eq!(
            s.send("GET", path, &As::Cookie(String::new()), None)
                .await
                .status,
            401
        );
    }
    let search = format!("/consumer/FHIR/R4/DocumentReference?subject:identifier={NHS}|{ADA}");
    for (path, ods) in [
        (search.as_str(), "RX9"),
        ("/admin/patients/9990000018/objection", "RX9"),
        ("/producer/FHIR/R4/DocumentReference", "RR8"),
    ] {
        let refused = s
            .send("GET", path, &As::App(patient.clone(), ods), None)
            .await;
        assert_eq!(refused.status, 401, "{path}: {}", refused.text);
    }
    // A token names no session: it cannot mint another.
    let again = s
        .send("POST", "/patient/token", &As::Patient(patient), None)
        .await;
    assert_eq!(again.status, 401);
}

#[tokio::test]
async fn a_p5_patient_gets_no_token_and_no_data() {
    let (config, rp_key) = provider();
    let op = OpenIdProvider::start(config).await;
    let s = start(op.issuer(), &rp_key).await;
    let cookie = s.sign_in("cara").await;
    let token = s
        .send("POST", "/patient/token", &As::Cookie(cookie.clone()), None)
        .await;
    assert_eq!(token.status, 403, "{}", token.text);
    assert!(
        token.text.contains("ACCESS_DENIED_LEVEL") && token.text.contains("P5"),
        "{}",
        token.text
    );
    assert!(!token.text.contains("access_token"));
    for path in [DR, AUDIT, CONSENT] {
        let refused = s.send("GET", path, &As::Cookie(cookie.clone()), None).await;
        assert_eq!(refused.status, 403, "{path}: {}", refused.text);
        assert!(refused.text.contains("P9"), "{}", refused.text);
    }
}

#[tokio::test]
async fn the_patient_api_states_its_capabilities_and_is_in_the_openapi_document() {
    let (config, rp_key) = provider();
    let op = OpenIdProvider::start(config).await;
    let s = start(op.issuer(), &rp_key).await;
    let anyone = As::Cookie(String::new());
    let statement = s
        .send("GET", "/patient/FHIR/R4/metadata", &anyone, None)
        .await;
    assert_eq!(statement.status, 200, "{}", statement.text);
    let resources: Vec<String> = statement.json()["rest"][0]["resource"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(resources, ["DocumentReference", "AuditEvent", "Consent"]);
    let openapi = s.send("GET", "/openapi.json", &anyone, None).await;
    let paths = &openapi.json()["paths"];
    for path in [
        "/patient/FHIR/R4/DocumentReference",
        "/patient/FHIR/R4/AuditEvent",
        "/patient/FHIR/R4/Consent/{id}",
        "/patient/token",
    ] {
        assert!(
            paths.get(path).is_some(),
            "{path} not in the OpenAPI document"
        );
    }
    let search = &paths["/patient/FHIR/R4/DocumentReference"]["get"];
    assert_eq!(search["security"][0], json!({"patientBearer": []}));
    assert!(
        search["parameters"]
            .to_string()
            .contains("\"required\":false")
    );
}
