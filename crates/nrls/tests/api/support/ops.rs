//! Helpers shared by the operability suites: configuration files on disk
//! (what a reload re-reads), tokens from the real token endpoint, metric
//! values from a scrape.

#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use serde::Serialize;

pub const CRISIS: &str = "http://snomed.info/sct|736253002";

/// A producer for RR8 and a consumer for RX9, plus `extra` apps.
pub fn apps(extra: &[&str]) -> Vec<auth::AppConfig> {
    let org = |ods: &str, role: &str| auth::OrganisationConfig {
        ods: ods.into(),
        roles: vec![role.into()],
        pointer_types: vec![CRISIS.into()],
    };
    let mut apps = vec![
        auth::demo::app_config("ops-producer", "Ops producer", vec![org("RR8", "producer")]),
        auth::demo::app_config("ops-consumer", "Ops consumer", vec![org("RX9", "consumer")]),
    ];
    apps.extend(
        extra
            .iter()
            .map(|id| auth::demo::app_config(id, id, vec![org("RX9", "consumer")])),
    );
    apps
}

#[derive(Serialize)]
struct AppsFile<'a> {
    apps: &'a [auth::AppConfig],
}

/// Writes a configuration file: `head` (TOML sections) then the apps.
pub fn write_config(path: &Path, head: &str, apps: &[auth::AppConfig]) {
    let apps = toml::to_string(&AppsFile { apps }).unwrap();
    std::fs::write(path, format!("{head}\n{apps}")).unwrap();
}

/// A token for `client_id` from the server at `url`; `None` when refused.
pub async fn token(http: &reqwest::Client, url: &str, client_id: &str) -> Option<String> {
    let endpoint = format!("{url}/oauth2/token");
    let key = auth::demo::signing_key(client_id).unwrap();
    let assertion =
        auth::mint_client_assertion(client_id, &endpoint, &key, Duration::from_secs(120)).unwrap();
    let response = http
        .post(&endpoint)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=client_credentials&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion={assertion}"
        ))
        .send()
        .await
        .unwrap();
    if !response.status().is_success() {
        return None;
    }
    let body: serde_json::Value = response.json().await.unwrap();
    body["access_token"].as_str().map(str::to_owned)
}

/// The value of one series in a Prometheus text scrape (exact name and
/// labels as written), or 0 when absent.
pub fn series(scrape: &str, name_and_labels: &str) -> f64 {
    scrape
        .lines()
        .find_map(|line| {
            let rest = line.strip_prefix(name_and_labels)?;
            rest.strip_prefix(' ')?.trim().parse().ok()
        })
        .unwrap_or(0.0)
}

pub fn uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}
