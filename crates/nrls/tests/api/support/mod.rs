//! Black-box test harness: starts the real nrls service in-process on port 0
//! (real TCP, real HTTP, real store) and talks to it with an HTTP client.
//! `node` runs nrls as processes (several nodes, one database); `ops` writes
//! their configuration and reads their metrics.

#![allow(dead_code)]

pub mod node;
pub mod ops;
pub mod receiver;

use std::time::Duration;

use nrls::app::Application;
use nrls::config::{Backend, Config};
use serde_json::{Value, json};

pub const CRISIS: &str = "http://snomed.info/sct|736253002";
pub const RESPECT: &str = "http://snomed.info/sct|1382601000000107";
pub const NEWS2: &str = "http://snomed.info/sct|1363501000000100";
pub const SUMMARY: &str = "http://snomed.info/sct|887181000000106";
pub const NICIP_MAULR: &str = "https://nicip.nhs.uk|MAULR";
pub const NHS: &str = "https://fhir.nhs.uk/Id/nhs-number";

/// Every backend the black-box suites run against. A PostgreSQL server gets
/// a database of its own, cloned from a migrated template and dropped with it
/// (`testkit::postgres`).
pub const BACKENDS: &[Backend] = &[Backend::Memory, Backend::Sqlite, Backend::Postgres];

/// Test apps: (client id, [(ods, role, types)]).
fn test_apps() -> Vec<auth::AppConfig> {
    let all: Vec<String> = domain::Catalogue::nrl_v3()
        .types()
        .iter()
        .map(|t| t.key())
        .collect();
    let org = |ods: &str, role: &str, types: Vec<String>| auth::OrganisationConfig {
        ods: ods.into(),
        roles: vec![role.into()],
        pointer_types: types,
    };
    vec![
        auth::demo::app_config(
            "producer-a",
            "Producer A",
            vec![
                org("RR8", "producer", all.clone()),
                org("RYJ", "consumer", all.clone()),
            ],
        ),
        auth::demo::app_config(
            "producer-b",
            "Producer B",
            vec![org("RYJ", "producer", vec![CRISIS.into()])],
        ),
        auth::demo::app_config(
            "consumer",
            "Consumer",
            vec![org("RX9", "consumer", all.clone())],
        ),
        auth::demo::app_config(
            "consumer-crisis",
            "Crisis-only consumer",
            vec![org("RX9", "consumer", vec![CRISIS.into()])],
        ),
        auth::demo::app_config(
            "consumer-news2",
            "NEWS2-only consumer",
            vec![org("RX9", "consumer", vec![NEWS2.into()])],
        ),
    ]
}

pub struct TestServer {
    pub url: String,
    pub backend: Backend,
    pub http: reqwest::Client,
    _data: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    /// The server's own database, for [`Backend::Postgres`]; dropped last.
    pub database: Option<testkit::postgres::TestDatabase>,
}

impl TestServer {
    pub async fn start(backend: Backend) -> TestServer {
        Self::start_with(backend, |_| {}).await
    }

    pub async fn start_with(backend: Backend, tweak: impl FnOnce(&mut Config)) -> TestServer {
        let data = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.server.listen = "127.0.0.1:0".parse().unwrap();
        config.store.backend = backend;
        config.store.data_dir = data.path().to_owned();
        config.apps = test_apps();
        let database = match backend {
            Backend::Postgres => {
                let database = testkit::postgres::TestDatabase::create().await;
                config.store.database_url = Some(database.url().to_owned());
                // Many servers run side by side: a few connections each.
                config.store.pool_size = 4;
                Some(database)
            }
            _ => None,
        };
        tweak(&mut config);
        let app = Application::build(config, false).await.unwrap();
        let url = app.public_url.clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            app.run_until(async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap();
        TestServer {
            url,
            backend,
            http,
            _data: data,
            stop: Some(stop),
            task: Some(task),
            database,
        }
    }

    /// Where this server keeps its files (pointer store, audit trail).
    pub fn data_dir(&self) -> &std::path::Path {
        self._data.path()
    }

    /// Stops the server and hands back its data folder for inspection.
    pub async fn stop_keeping_data(mut self) -> tempfile::TempDir {
        self.halt().await;
        let TestServer { _data, .. } = self;
        _data
    }

    async fn halt(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// An access token for a test app, obtained through the real token endpoint.
    pub async fn token(&self, client_id: &str) -> String {
        let endpoint = format!("{}/oauth2/token", self.url);
        let key = auth::demo::signing_key(client_id).unwrap();
        let assertion =
            auth::mint_client_assertion(client_id, &endpoint, &key, Duration::from_secs(120))
                .unwrap();
        let response = self
            .http
            .post(&endpoint)
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

    /// A client acting as `client_id` for organisation `ods`.
    pub async fn client(&self, client_id: &str, ods: &str) -> Client {
        Client {
            http: self.http.clone(),
            url: self.url.clone(),
            token: Some(self.token(client_id).await),
            ods: Some(ods.into()),
        }
    }

    /// A client without any credentials.
    pub fn anonymous(&self) -> Client {
        Client {
            http: self.http.clone(),
            url: self.url.clone(),
            token: None,
            ods: None,
        }
    }
}

/// Sends requests with the headers NRL requires.
#[derive(Clone)]
pub struct Client {
    pub http: reqwest::Client,
    pub url: String,
    pub token: Option<String>,
    pub ods: Option<String>,
}

pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    /// The first issue's Spine code and expression.
    pub fn issue(&self) -> (String, String) {
        let v = self.json();
        assert_eq!(v["resourceType"], "OperationOutcome", "{}", self.text);
        let issue = &v["issue"][0];
        (
            issue["details"]["coding"][0]["code"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            issue["expression"][0]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        )
    }

    /// Every issue's (code, expression).
    pub fn issues(&self) -> Vec<(String, String)> {
        self.json()["issue"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                (
                    i["details"]["coding"][0]["code"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    i["expression"][0].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }
}

pub fn request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

impl Client {
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut r = self
            .http
            .request(method, format!("{}{path}", self.url))
            .header("X-Request-Id", request_id());
        if let Some(t) = &self.token {
            r = r.bearer_auth(t);
        }
        if let Some(o) = &self.ods {
            r = r.header("NHSD-End-User-Organisation-ODS", o);
        }
        r
    }

    pub async fn send(r: reqwest::RequestBuilder) -> Reply {
        let response = r.send().await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        Reply {
            status,
            headers,
            text,
        }
    }

    pub async fn get(&self, path: &str) -> Reply {
        Self::send(self.request(reqwest::Method::GET, path)).await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        Self::send(self.request(reqwest::Method::DELETE, path)).await
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Reply {
        Self::send(
            self.request(reqwest::Method::POST, path)
                .header("content-type", "application/fhir+json")
                .body(body.to_string()),
        )
        .await
    }

    pub async fn put_json(&self, path: &str, body: &Value) -> Reply {
        Self::send(
            self.request(reqwest::Method::PUT, path)
                .header("content-type", "application/fhir+json")
                .body(body.to_string()),
        )
        .await
    }

    /// Creates a pointer; returns its id.
    pub async fn create(&self, body: &Value) -> String {
        let reply = self
            .post_json("/producer/FHIR/R4/DocumentReference", body)
            .await;
        assert_eq!(reply.status, 201, "{}", reply.text);
        let location = reply.header("location").unwrap();
        location.rsplit('/').next().unwrap().to_owned()
    }

    pub async fn consumer_search(&self, query: &str) -> Reply {
        self.get(&format!("/consumer/FHIR/R4/DocumentReference?{query}"))
            .await
    }
}

/// The n-th valid NHS number of the 999 range.
pub fn patient(n: usize) -> String {
    nrls::demo::patients(n + 1)[n].to_string()
}

/// `subject:identifier=...` for patient n, URL-encoded.
pub fn subject(n: usize) -> String {
    format!("subject:identifier={NHS}%7C{}", patient(n))
}

/// A valid pointer of `type_key` for patient `n`, custodian `ods`.
pub fn pointer(ods: &str, n: usize, type_key: &str) -> Value {
    let catalogue = domain::Catalogue::nrl_v3();
    let t = catalogue.find_key(type_key).unwrap();
    json!({
        "resourceType": "DocumentReference",
        "status": "current",
        "docStatus": "final",
        "type": {"coding": [{"system": t.system, "code": t.code, "display": t.display}]},
        "category": [{"coding": [{"system": "http://snomed.info/sct", "code": t.category_code, "display": t.category_display}]}],
        "subject": {"identifier": {"system": NHS, "value": patient(n)}},
        "author": [{"identifier": {"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": ods}}],
        "custodian": {"identifier": {"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": ods}},
        "content": [{
            "attachment": {"contentType": "application/pdf", "url": format!("ssp://{}.example.nhs.uk/doc.pdf", ods.to_lowercase())},
            "format": {"system": "https://fhir.nhs.uk/England/CodeSystem/England-NRLFormatCode", "code": "urn:nhs-ic:unstructured"},
            "extension": [
                {"url": "https://fhir.nhs.uk/England/StructureDefinition/Extension-England-ContentStability",
                 "valueCodeableConcept": {"coding": [{"system": "https://fhir.nhs.uk/England/CodeSystem/England-NRLContentStability", "code": "static"}]}},
                {"url": "https://fhir.nhs.uk/England/StructureDefinition/Extension-England-NRLRetrievalMechanism",
                 "valueCodeableConcept": {"coding": [{"system": "https://fhir.nhs.uk/England/CodeSystem/England-NRLRetrievalMechanism", "code": "SSP"}]}}
            ]
        }],
        "context": {
            "practiceSetting": {"coding": [{"system": "http://snomed.info/sct", "code": "788002001"}]},
            "related": [{"identifier": {"system": "https://fhir.nhs.uk/Id/nhsSpineASID", "value": "200000000610"}}]
        }
    })
}

pub const PRODUCER_DR: &str = "/producer/FHIR/R4/DocumentReference";
pub const CONSUMER_DR: &str = "/consumer/FHIR/R4/DocumentReference";
