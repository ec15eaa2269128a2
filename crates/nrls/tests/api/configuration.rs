//! The configuration reference stays true: the example file parses and its
//! apps validate, every setting in `config.rs` is documented in
//! docs/configuration.md and present in the example, and unknown keys are
//! errors naming the file, key and line.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use nrls::config::Config;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

#[test]
fn the_example_config_parses_and_its_apps_validate() {
    let path = repo("deploy/nrls.example.toml");
    let config = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.source.as_deref(), Some(path.as_path()));
    assert!(config.server.admin_listen.is_some());
    assert_eq!(config.server.shutdown_grace_seconds, 20);
    assert_eq!(config.apps.len(), 2);
    auth::AppRegistry::from_configs(&config.apps).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn unknown_keys_are_errors_naming_file_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nrls.toml");
    std::fs::write(
        &path,
        "[server]\nlisten = \"127.0.0.1:1\"\n\n[store]\ndata_dri = \"x\"\n",
    )
    .unwrap();
    let err = Config::load(&path).unwrap_err().to_string();
    assert!(err.contains("nrls.toml"), "{err}");
    assert!(err.contains("data_dri"), "{err}");
    assert!(err.contains("line 5"), "{err}");
}

/// `section.key` for every field of every section struct in config.rs,
/// read from its source so a new setting cannot slip past this test.
fn settings_in_source() -> BTreeSet<String> {
    let local = std::fs::read_to_string(repo("crates/nrls/src/config.rs")).unwrap();
    // Sections whose struct lives in another crate.
    let elsewhere = |ty: &str| match ty {
        "domain::access::AccessPolicy" => {
            Some(("crates/domain/src/access/policy.rs", "AccessPolicy"))
        }
        "federation::FederationConfig" => {
            Some(("crates/federation/src/fanout.rs", "FederationConfig"))
        }
        "web::ViewerConfig" => Some(("crates/web/src/config.rs", "ViewerConfig")),
        "web::PatientAccessConfig" => {
            Some(("crates/web/src/patient/config.rs", "PatientAccessConfig"))
        }
        _ => None,
    };
    let block = |ty: &str| -> Vec<(String, String)> {
        let (source, name) = match elsewhere(ty) {
            Some((file, name)) => (std::fs::read_to_string(repo(file)).unwrap(), name),
            None => (local.clone(), ty),
        };
        let start = source
            .find(&format!("pub struct {name} {{"))
            .unwrap_or_else(|| panic!("no struct {name}"));
        let body = &source[start..];
        let body = &body[..body.find("\n}").unwrap()];
        let mut fields = Vec::new();
        let mut skipped = false;
        for line in body.lines().skip(1).map(str::trim) {
            if line.starts_with("#[serde(skip") {
                skipped = true;
            } else if let Some(field) = line.strip_prefix("pub ") {
                let (key, ty) = field.split_once(':').unwrap();
                if !std::mem::take(&mut skipped) {
                    fields.push((
                        key.trim().to_owned(),
                        ty.trim().trim_end_matches(',').to_owned(),
                    ));
                }
            }
        }
        fields
    };
    let mut settings = BTreeSet::new();
    for (section, ty) in block("Config") {
        if ty.starts_with("Vec<") {
            continue; // [[apps]]: documented with the app fields
        }
        for (key, _) in block(&ty) {
            settings.insert(format!("{section}.{key}"));
        }
    }
    assert!(settings.len() >= 15, "{settings:?}");
    settings
}

#[test]
fn every_setting_is_documented_and_in_the_example() {
    let docs = std::fs::read_to_string(repo("docs/configuration.md")).unwrap();
    let example = std::fs::read_to_string(repo("deploy/nrls.example.toml")).unwrap();
    for setting in settings_in_source() {
        assert!(
            docs.contains(&format!("`{setting}`")),
            "docs/configuration.md does not document `{setting}`"
        );
        let key = setting.split_once('.').unwrap().1;
        assert!(
            example.lines().any(|l| {
                let l = l.trim_start_matches(['#', ' ']);
                l.starts_with(&format!("{key} =")) || l.starts_with(&format!("{key}="))
            }),
            "deploy/nrls.example.toml does not show `{setting}`"
        );
    }
    for app_key in [
        "client_id",
        "name",
        "jwks",
        "jwks_url",
        "rate_limit_per_second",
        "requires_user_identity",
        "organisations",
    ] {
        assert!(
            docs.contains(&format!("`{app_key}`")),
            "apps.{app_key} undocumented"
        );
    }
}
