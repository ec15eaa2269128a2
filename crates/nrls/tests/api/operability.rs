//! Operability, black-box against the real service in-process: metrics move
//! with traffic, the OpenAPI document lists exactly what the router serves,
//! probes and readiness during shutdown, registry reload good and bad.

use crate::support;
use crate::support::ops;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use nrls::app::Application;
use nrls::config::{Backend, Config};
use serde_json::Value;

struct Server {
    url: String,
    admin: Option<String>,
    http: reqwest::Client,
    config_path: std::path::PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    _dir: tempfile::TempDir,
}

impl Server {
    /// Starts from a configuration file on disk (so reload has one to read).
    async fn start(backend: Backend, tweak: impl FnOnce(&mut Config)) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("nrls.toml");
        ops::write_config(&config_path, "", &ops::apps(&[]));
        let mut config = Config::load(&config_path).unwrap();
        config.server.listen = "127.0.0.1:0".parse().unwrap();
        config.store.backend = backend;
        config.store.data_dir = dir.path().join("data");
        tweak(&mut config);
        let app = Application::build(config, false).await.unwrap();
        let url = app.public_url.clone();
        let admin = app
            .admin_port
            .map(|port| format!("http://127.0.0.1:{port}"));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(app.run_until(async {
            let _ = stopped.await;
        }));
        Server {
            url,
            admin,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .unwrap(),
            config_path,
            stop: Some(stop),
            task,
            _dir: dir,
        }
    }

    fn client(&self, token: String, ods: &str) -> support::Client {
        support::Client {
            http: self.http.clone(),
            url: self.url.clone(),
            token: Some(token),
            ods: Some(ods.into()),
        }
    }

    async fn get(&self, url: String) -> (u16, String) {
        let response = self.http.get(url).send().await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    async fn scrape(&self, base: &str) -> String {
        let (status, text) = self.get(format!("{base}/metrics")).await;
        assert_eq!(status, 200, "{text}");
        text
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.await.unwrap().unwrap();
    }
}

#[tokio::test]
async fn metrics_series_move_with_traffic() {
    let server = Server::start(Backend::Sqlite, |c| {
        c.apps
            .extend(ops::apps(&["ops-limited"]).into_iter().skip(2));
        c.apps[2].rate_limit_per_second = Some(1);
    })
    .await;
    let before = server.scrape(&server.url).await;
    let http = &server.http;
    let producer = server.client(
        ops::token(http, &server.url, "ops-producer").await.unwrap(),
        "RR8",
    );
    let consumer = server.client(
        ops::token(http, &server.url, "ops-consumer").await.unwrap(),
        "RX9",
    );
    let id = producer
        .create(&support::pointer("RR8", 1, ops::CRISIS))
        .await;
    assert_eq!(
        consumer.consumer_search(&support::subject(1)).await.status,
        200
    );
    assert_eq!(
        consumer
            .get(&format!("{}/{id}", support::CONSUMER_DR))
            .await
            .status,
        200
    );
    assert_eq!(
        server.get(format!("{}/no/such/path", server.url)).await.0,
        404
    );
    assert!(
        ops::token(http, &server.url, "not-onboarded")
            .await
            .is_none()
    );
    let limited = server.client(
        ops::token(http, &server.url, "ops-limited").await.unwrap(),
        "RX9",
    );
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(limited.consumer_search(&support::subject(1)).await.status);
    }
    assert!(statuses.contains(&429), "{statuses:?}");

    let after = server.scrape(&server.url).await;
    let moved = |series: &str| ops::series(&after, series) - ops::series(&before, series);
    let cases = [
        (
            r#"nrls_http_requests_total{method="POST",route="/producer/FHIR/R4/DocumentReference",status="201"}"#,
            1.0,
        ),
        (
            r#"nrls_http_requests_total{method="GET",route="/consumer/FHIR/R4/DocumentReference",status="200"}"#,
            2.0,
        ),
        (
            r#"nrls_http_request_duration_seconds_count{method="GET",route="/consumer/FHIR/R4/DocumentReference/{id}",status="200"}"#,
            1.0,
        ),
        (
            r#"nrls_http_requests_total{method="GET",route="unmatched",status="404"}"#,
            1.0,
        ),
        (
            r#"nrls_http_requests_total{method="POST",route="/oauth2/token",status="200"}"#,
            3.0,
        ),
        (
            r#"nrls_store_operation_duration_seconds_count{operation="create",result="ok"}"#,
            1.0,
        ),
        (
            r#"nrls_store_operation_duration_seconds_count{operation="get",result="ok"}"#,
            1.0,
        ),
        (r#"nrls_token_requests_total{result="issued"}"#, 3.0),
        (r#"nrls_token_requests_total{result="invalid_client"}"#, 1.0),
        ("nrls_rate_limit_rejections_total", 2.0),
        // Every patient-data request above wrote its AuditEvent.
        ("nrls_audit_events_written_total", 4.0),
    ];
    for (series, at_least) in cases {
        assert!(
            moved(series) >= at_least,
            "{series} moved {}:\n{after}",
            moved(series)
        );
    }
    // Group commit, read at scrape time from the SQLite store.
    assert!(
        ops::series(&after, "nrls_store_write_batches_total") >= 1.0,
        "{after}"
    );
    assert!(
        ops::series(&after, "nrls_store_write_batch_ops_total") >= 1.0,
        "{after}"
    );
    assert_eq!(ops::series(&after, "nrls_apps_onboarded"), 3.0);
    // Nothing is waiting to be written once the requests have been answered.
    assert_eq!(ops::series(&after, "nrls_audit_backlog_events"), 0.0);
    // The create's record was kept with it; the trail takes it within moments.
    assert!(after.contains("\nnrls_audit_outbox_events "), "{after}");
    let mut waiting = ops::series(&after, "nrls_audit_outbox_events");
    for _ in 0..100 {
        if waiting == 0.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        waiting = ops::series(
            &server.scrape(&server.url).await,
            "nrls_audit_outbox_events",
        );
    }
    assert_eq!(waiting, 0.0, "the audit outbox was never emptied");
    // No raw path or query string ever becomes a label.
    assert!(!after.contains("no/such/path") && !after.contains(&support::patient(1)));
    server.stop().await;
}

/// The paths an axum router serves, from its Debug output: the one view of
/// its routing table axum offers. A route added with `Router::route` behind
/// the table's back shows up here and not in the document.
fn router_paths(router: &axum::Router) -> BTreeSet<String> {
    let debug = format!("{router:?}");
    // The fallback router ("/" and a catch-all) follows the path router.
    let (paths, _fallback) = debug.split_once("fallback_router").unwrap();
    paths
        .split('"')
        .skip(1)
        .step_by(2)
        .filter(|s| s.starts_with('/'))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn openapi_lists_exactly_the_served_routes() {
    // Structure: the router's own paths equal the documented ones.
    let auth = auth::Authenticator::new(
        Arc::new(auth::AppRegistry::default()),
        auth::TokenSettings::new("http://x", "http://x/oauth2/token", vec![7; 32]),
    )
    .unwrap();
    let state = api::AppState::new(
        Arc::new(store::memory::MemoryStore::new()),
        Arc::new(auth),
        api::ApiSettings::default(),
    );
    let (router, operations) = api::service(state);
    let documented: BTreeSet<String> = operations.iter().map(|op| op.path.clone()).collect();
    assert_eq!(router_paths(&router), documented);

    // Behaviour: over HTTP, each documented (path, method) is served and
    // every other method on that path is a 405.
    let server = Server::start(Backend::Memory, |_| {}).await;
    let (status, text) = server.get(format!("{}/openapi.json", server.url)).await;
    assert_eq!(status, 200);
    let doc: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(doc["openapi"], "3.0.3");
    let paths = doc["paths"].as_object().unwrap();
    assert_eq!(paths.keys().cloned().collect::<BTreeSet<_>>(), documented);
    let mut ids = BTreeSet::new();
    for (path, methods) in paths {
        let concrete = path.replace("{id}", "RR8-missing");
        for method in ["get", "post", "put", "delete", "patch"] {
            let request = server
                .http
                .request(
                    method.to_uppercase().parse().unwrap(),
                    format!("{}{concrete}", server.url),
                )
                .header("X-Request-Id", ops::uuid());
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let body = response.text().await.unwrap();
            match methods.get(method) {
                Some(op) => {
                    assert!(ids.insert(op["operationId"].as_str().unwrap().to_owned()));
                    assert_ne!(status, 405, "{method} {path} is documented but not served");
                    assert!(
                        !(status == 404 && body.contains("no such endpoint")),
                        "{method} {path} is documented but falls through to 404"
                    );
                }
                None => assert_eq!(status, 405, "{method} {path} is served but not documented"),
            }
        }
    }
    // Search parameters come from the list the search parser enforces.
    let search = &paths["/consumer/FHIR/R4/DocumentReference"]["get"]["parameters"];
    assert!(
        search.to_string().contains("subject:identifier"),
        "{search}"
    );
    // Issue 11, item 4: formats a generated client can rely on, and the
    // `_search` bodies documented as the search parameters they are.
    let param = |name: &str| {
        search
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .cloned()
            .unwrap()
    };
    let pattern = param("subject:identifier")["schema"]["pattern"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(pattern.contains("[0-9]{10}"), "{pattern}");
    assert_eq!(param("_count")["schema"]["minimum"], 1);
    assert_eq!(param("_count")["schema"]["maximum"], 500);
    for base in ["/consumer/FHIR/R4", "/producer/FHIR/R4"] {
        let post = &paths[&format!("{base}/DocumentReference/_search")]["post"];
        assert!(
            post.get("parameters")
                .is_none_or(|p| !p.to_string().contains("_count"))
        );
        for media in ["application/json", "application/x-www-form-urlencoded"] {
            let schema = &post["requestBody"]["content"][media]["schema"];
            assert_eq!(
                schema["required"][0], "subject:identifier",
                "{base} {media}: {schema}"
            );
            assert!(schema["properties"]["_count"].is_object(), "{schema}");
            assert!(
                !schema.to_string().contains("DocumentReference"),
                "{schema}"
            );
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn probes_and_readiness_during_shutdown() {
    let server = Server::start(Backend::Sqlite, |c| {
        c.server.admin_listen = Some("127.0.0.1:0".parse().unwrap());
        c.server.shutdown_drain_seconds = 2;
    })
    .await;
    let admin = server.admin.clone().unwrap();
    for base in [&server.url, &admin] {
        assert_eq!(server.get(format!("{base}/livez")).await.0, 200);
        let (status, body) = server.get(format!("{base}/readyz")).await;
        assert_eq!((status, body.contains("\"ready\"")), (200, true), "{body}");
    }
    // With an admin listener, /metrics and reload live there only.
    assert_eq!(server.get(format!("{}/metrics", server.url)).await.0, 404);
    assert!(
        server
            .scrape(&admin)
            .await
            .contains("nrls_http_requests_total")
    );

    let Server {
        url,
        http,
        stop,
        task,
        ..
    } = server;
    stop.unwrap().send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Draining: still answering, but no longer ready.
    for base in [&url, &admin] {
        let response = http.get(format!("{base}/readyz")).send().await.unwrap();
        assert_eq!(response.status(), 503);
        assert!(response.text().await.unwrap().contains("shutting_down"));
        let live = http.get(format!("{base}/livez")).send().await.unwrap();
        assert_eq!(live.status(), 200);
    }
    task.await.unwrap().unwrap();
    let fresh = reqwest::Client::new();
    assert!(fresh.get(format!("{url}/livez")).send().await.is_err());
}

#[tokio::test]
async fn reload_with_a_good_config_adds_an_app() {
    let server = Server::start(Backend::Memory, |c| {
        c.server.admin_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let admin = server.admin.clone().unwrap();
    assert!(
        ops::token(&server.http, &server.url, "ops-new")
            .await
            .is_none()
    );
    // Not on the public listener.
    let public = server
        .http
        .post(format!("{}/-/reload", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(public.status(), 404);

    ops::write_config(&server.config_path, "", &ops::apps(&["ops-new"]));
    let response = server
        .http
        .post(format!("{admin}/-/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["apps"], 3);
    let token = ops::token(&server.http, &server.url, "ops-new")
        .await
        .unwrap();
    let reply = server
        .client(token, "RX9")
        .consumer_search(&support::subject(2))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let scrape = server.scrape(&admin).await;
    assert_eq!(
        ops::series(&scrape, r#"nrls_config_reloads_total{result="success"}"#),
        1.0
    );
    assert_eq!(ops::series(&scrape, "nrls_apps_onboarded"), 3.0);
    server.stop().await;
}

#[tokio::test]
async fn reload_with_a_bad_config_keeps_the_old_registry() {
    let server = Server::start(Backend::Memory, |c| {
        c.server.admin_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let admin = server.admin.clone().unwrap();
    let token = ops::token(&server.http, &server.url, "ops-consumer")
        .await
        .unwrap();
    let consumer = server.client(token, "RX9");

    // A syntax error, an unknown key, then an app that does not validate.
    let mut bad_app = ops::apps(&["ops-new"]);
    bad_app[2].organisations[0].pointer_types = vec!["http://snomed.info/sct|0".into()];
    let bad_files: [(&str, Vec<auth::AppConfig>, &str); 3] = [
        ("[server\n", ops::apps(&["ops-new"]), "line 1"),
        ("[server]\nlisen = 1\n", ops::apps(&["ops-new"]), "lisen"),
        ("", bad_app, "ops-new"),
    ];
    for (head, apps, why) in bad_files {
        ops::write_config(&server.config_path, head, &apps);
        let response = server
            .http
            .post(format!("{admin}/-/reload"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 422);
        let body: Value = response.json().await.unwrap();
        assert!(body["error"].as_str().unwrap().contains(why), "{body}");
        // The old registry is in force: existing tokens work, no new app.
        assert_eq!(
            consumer.consumer_search(&support::subject(3)).await.status,
            200
        );
        assert!(
            ops::token(&server.http, &server.url, "ops-new")
                .await
                .is_none()
        );
    }
    let scrape = server.scrape(&admin).await;
    assert_eq!(
        ops::series(&scrape, r#"nrls_config_reloads_total{result="failure"}"#),
        3.0
    );
    assert_eq!(ops::series(&scrape, "nrls_apps_onboarded"), 2.0);
    server.stop().await;
}
