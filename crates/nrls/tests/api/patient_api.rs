//! The patient API and pages through the real `nrls serve` binary, on the
//! embedded SQLite store and on PostgreSQL: `[patient_access]` points at a
//! real OpenID provider (npm `oidc-provider` with NHS login's profile,
//! `testkit::oidc`); a P9 patient signs in at `/my-record/` over HTTP, gets
//! a patient token, and the core checks run against what the binary serves
//! and stores: `total` counts only what a patient is shown, the Consent
//! round trip is seen by a consumer at once, another patient's NHS number
//! is 404 and audited, the sign-in and the token are audited, signing out
//! ends the token. The pages share the API's observe layer: a `/my-record/`
//! and a `/viewer/` request are in `/metrics` under their route templates
//! and in the access log.
//!
//! Needs node and `testing/node_modules` (`scripts/test-deps`); the
//! PostgreSQL run needs the local server (`scripts/postgres`).

use std::time::Duration;

use serde_json::{Value, json};
use testkit::oidc::{
    OpConfig, OpenIdProvider, RelyingPartyClient, RsaKey, complete_login, nhs_login_claims,
};
use testkit::postgres::TestDatabase;

use crate::support::node::{Deployment, Node, PUBLIC_URL, Storage};
use crate::support::ops::series;
use crate::support::{Client, NHS, RESPECT, SUMMARY, patient, pointer, subject};

const PATIENT_CLIENT: &str = "nrls-patient";
const DR: &str = "/patient/FHIR/R4/DocumentReference";
const CONSENT: &str = "/patient/FHIR/R4/Consent";
/// The Lloyd George folder: a type patients are not shown by default.
const LLOYD_GEORGE: &str = "http://snomed.info/sct|16521000000101";

/// The OpenID provider, and the configuration section that points at it
/// (with the relying party's key written to `dir`).
async fn nhs_login(dir: &std::path::Path) -> (OpenIdProvider, String) {
    let mut keys = RsaKey::generate(&["op-1", "rp-1"]);
    let rp_key = keys.remove(1);
    let redirect = format!("{PUBLIC_URL}/my-record/callback");
    let client = RelyingPartyClient::new(PATIENT_CLIENT, rp_key.clone(), &redirect)
        .post_logout_redirect_uri(&format!("{PUBLIC_URL}/my-record/signed-out"));
    let op = OpenIdProvider::start(
        OpConfig::nhs_login(keys.remove(0))
            .client(client)
            .account("ada", nhs_login_claims(&patient(1), "P9")),
    )
    .await;
    let key_file = dir.join("nhs-login.pem");
    std::fs::write(&key_file, &rp_key.private_pem).unwrap();
    let section = format!(
        "[patient_access]\nissuer = \"{}\"\nclient_id = \"{PATIENT_CLIENT}\"\n\
         key_file = \"{}\"\nkey_id = \"{}\"\nredirect_url = \"{redirect}\"\n",
        op.issuer(),
        key_file.display(),
        rp_key.kid,
    );
    (op, section)
}

/// A browser over HTTP: keeps the session cookie and the last CSRF token,
/// follows no redirects.
struct Browser {
    http: reqwest::Client,
    url: String,
    cookie: Option<String>,
    csrf: String,
}

struct Page {
    status: u16,
    location: String,
    body: String,
}

impl Browser {
    fn new(url: &str) -> Browser {
        Browser {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(20))
                .build()
                .unwrap(),
            url: url.to_owned(),
            cookie: None,
            csrf: String::new(),
        }
    }

    async fn send(&mut self, method: reqwest::Method, path: &str, form: Option<String>) -> Page {
        let mut request = self.http.request(method, format!("{}{path}", self.url));
        if let Some(cookie) = &self.cookie {
            request = request.header("cookie", cookie);
        }
        if let Some(form) = form {
            request = request
                .header("content-type", "application/x-www-form-urlencoded")
                .body(form);
        }
        let response = request.send().await.unwrap();
        if let Some(set) = response.headers().get("set-cookie") {
            let pair = set.to_str().unwrap().split(';').next().unwrap();
            self.cookie = Some(pair.to_owned());
        }
        let status = response.status().as_u16();
        let location = response
            .headers()
            .get("location")
            .map(|l| l.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let body = response.text().await.unwrap();
        if let Some(start) = body.find("name=\"csrf\" value=\"") {
            let rest = &body[start + 19..];
            self.csrf = rest[..rest.find('"').unwrap()].to_owned();
        }
        Page {
            status,
            location,
            body,
        }
    }

    async fn get(&mut self, path: &str) -> Page {
        self.send(reqwest::Method::GET, path, None).await
    }

    async fn post_form(&mut self, path: &str) -> Page {
        let form = format!("csrf={}", self.csrf);
        self.send(reqwest::Method::POST, path, Some(form)).await
    }

    /// The sign-in page, Continue, the provider's own forms, and the
    /// callback (the provider redirects to the public URL; the node is
    /// asked directly, as a load balancer would pass it on).
    async fn sign_in(&mut self, account: &str) -> Page {
        self.get("/my-record/sign-in").await;
        let started = self.post_form("/my-record/sign-in").await;
        assert_eq!(started.status, 303, "{}", started.body);
        let callback = complete_login(&started.location, account).await;
        let path = callback
            .strip_prefix(PUBLIC_URL)
            .unwrap_or_else(|| panic!("not our redirect URI: {callback}"))
            .to_owned();
        self.get(&path).await
    }

    /// A patient token from the signed-in session.
    async fn patient_token(&mut self) -> String {
        let issued = self
            .send(reqwest::Method::POST, "/patient/token", None)
            .await;
        assert_eq!(issued.status, 200, "{}", issued.body);
        let body: Value = serde_json::from_str(&issued.body).unwrap();
        body["access_token"].as_str().unwrap().to_owned()
    }
}

fn consent(status: &str) -> Value {
    json!({
        "resourceType": "Consent",
        "status": status,
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
        "provision": {"type": "deny"},
    })
}

fn labelled(mut doc: Value, system: &str, code: &str) -> Value {
    doc["meta"] = json!({"security": [{"system": system, "code": code}]});
    doc
}

fn total(reply: &crate::support::Reply) -> u64 {
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.json()["total"].as_u64().unwrap()
}

/// The patient's stored events written by patient calls, newest first.
async fn patient_events(admin: &Client, nhs: &str) -> Vec<Value> {
    let found = admin
        .get(&format!(
            "/admin/FHIR/R4/AuditEvent?patient={nhs}&_count=100"
        ))
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

/// Requests counted under `route`, whatever their method and status.
fn requests_on(scrape: &str, route: &str) -> f64 {
    let label = format!("route=\"{route}\"");
    scrape
        .lines()
        .filter(|l| l.starts_with("nrls_http_requests_total{") && l.contains(&label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The access log lines of `route`.
fn access_lines(node: &Node, route: &str) -> Vec<Value> {
    node.log_text()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["target"] == "nrls::access" && v["fields"]["route"] == route)
        .collect()
}

async fn core_checks(storage: Storage<'_>) {
    let dir = tempfile::tempdir().unwrap();
    let (_op, section) = nhs_login(dir.path()).await;
    let mut deployment = Deployment::with_sections(storage, &section);
    deployment.log_filter("warn,nrls::access=info");
    let node = deployment.start_node().await;
    let producer = deployment.producer(&node, &node).await;
    let consumer = deployment.consumer(&node, &node).await;
    let admin = deployment.admin(&node, &node).await;
    let ada = patient(1);

    // One pointer Ada is shown, three she is not (restricted, not for
    // patient view, a type not on the list), and another patient's.
    let shown = producer.create(&pointer("RR8", 1, RESPECT)).await;
    let v3 = "http://terminology.hl7.org/CodeSystem/v3-";
    for hidden in [
        labelled(
            pointer("RR8", 1, RESPECT),
            &format!("{v3}Confidentiality"),
            "R",
        ),
        labelled(pointer("RR8", 1, SUMMARY), &format!("{v3}ActCode"), "NOPAT"),
        pointer("RR8", 1, LLOYD_GEORGE),
    ] {
        producer.create(&hidden).await;
    }
    producer.create(&pointer("RR8", 2, RESPECT)).await;

    let mut browser = Browser::new(&node.url);
    let signed_in = browser.sign_in("ada").await;
    assert_eq!(
        (signed_in.status, signed_in.location.as_str()),
        (303, "/my-record/where-my-records-are"),
        "{}",
        signed_in.body
    );
    let page = browser.get("/my-record/where-my-records-are").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains("We found 1 record about you"),
        "{}",
        page.body
    );
    let me = Client {
        http: deployment.http.clone(),
        url: node.url.clone(),
        token: Some(browser.patient_token().await),
        ods: None,
    };

    // Visibility: `total` counts only what is shown; no retrieval details.
    let mine = me.get(DR).await;
    assert_eq!(total(&mine), 1);
    assert_eq!(
        mine.json()["entry"][0]["resource"]["id"].as_str(),
        Some(shown.as_str())
    );
    for secret in ["ssp://", "200000000610"] {
        assert!(!mine.text.contains(secret), "{secret} in {}", mine.text);
    }

    // The Consent round trip, seen by a consumer at once.
    let found = total(&consumer.consumer_search(&subject(1)).await);
    assert!(found >= 1);
    let objected = me.post_json(CONSENT, &consent("active")).await;
    assert_eq!(objected.status, 201, "{}", objected.text);
    assert_eq!(total(&consumer.consumer_search(&subject(1)).await), 0);
    let withdrawn = me
        .put_json(&format!("{CONSENT}/objection"), &consent("inactive"))
        .await;
    assert_eq!(withdrawn.status, 200, "{}", withdrawn.text);
    assert_eq!(withdrawn.json()["status"], "inactive");
    assert_eq!(total(&consumer.consumer_search(&subject(1)).await), found);

    // Another patient's NHS number: 404, and a failure in Ada's own trail
    // only (the other patient is not told of it).
    let other = me
        .get(&format!("{DR}?subject:identifier={NHS}%7C{}", patient(2)))
        .await;
    assert_eq!(other.status, 404, "{}", other.text);
    let events = patient_events(&admin, &ada).await;
    assert_eq!(events[0]["outcome"], "4", "{:?}", events[0]);
    assert!(patient_events(&admin, &patient(2)).await.is_empty());

    // The sign-in and the token are audited as session events: BALP's
    // "User Authentication", Login and token issued, each once.
    let session: Vec<&str> = events
        .iter()
        .filter(|e| e["type"]["code"] == "110114")
        .filter_map(|e| e["subtype"][0]["code"].as_str())
        .collect();
    assert_eq!(session, ["token-issued", "110122"], "{events:?}");

    // Signing out ends the session here, and the token with it.
    browser.get("/my-record/where-my-records-are").await;
    let out = browser.post_form("/my-record/sign-out").await;
    assert_eq!(out.status, 303, "{}", out.body);
    let refused = me.get(DR).await;
    assert_eq!(refused.status, 401, "{}", refused.text);
    assert!(refused.text.contains("has ended"), "{}", refused.text);

    // The pages went through the API's observe layer: metrics under their
    // route templates, and access log lines.
    let viewer = browser.get("/viewer/").await;
    let scrape = reqwest::get(format!("{}/metrics", node.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let records = "/my-record/where-my-records-are";
    assert_eq!(
        series(
            &scrape,
            &format!(
                "nrls_http_requests_total{{method=\"GET\",route=\"{records}\",status=\"200\"}}"
            )
        ),
        2.0,
        "{scrape}"
    );
    assert!(
        requests_on(&scrape, "/my-record/callback") >= 1.0,
        "{scrape}"
    );
    assert!(requests_on(&scrape, "/viewer/") >= 1.0, "{scrape}");
    let logged = access_lines(&node, records);
    assert_eq!(logged.len(), 2, "{}", node.log_text());
    assert_eq!(logged[0]["fields"]["status"], 200);
    let viewer_logged = access_lines(&node, "/viewer/");
    assert_eq!(viewer_logged.len(), 1, "{}", node.log_text());
    assert_eq!(viewer_logged[0]["fields"]["status"], viewer.status);
    // The log names templates, never a query string or an NHS number.
    assert!(!node.log_text().contains(&ada));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_p9_patient_signed_in_through_the_binary_on_sqlite_sees_only_their_shown_records() {
    core_checks(Storage::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_p9_patient_signed_in_through_the_binary_on_postgres_sees_only_their_shown_records() {
    let database = TestDatabase::create().await;
    core_checks(Storage::Postgres {
        url: database.url(),
        statement_timeout_ms: 5000,
    })
    .await;
}
