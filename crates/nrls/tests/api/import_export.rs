//! `nrls generate`, `import` and `export` on every backend: validation as the
//! API does it, error file, idempotent re-runs, resume from a checkpoint,
//! and an export that re-imports byte for byte.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use nrls::commands::export::export;
use nrls::commands::generate::write_ndjson;
use nrls::commands::import::{ImportArgs, ImportReport, StoreArgs, import_path};
use nrls::dataset::Dataset;
use serde_json::Value;
use store::SharedStore;

fn stores(dir: &Path) -> Vec<(&'static str, SharedStore)> {
    vec![
        (
            "memory",
            Arc::new(store::memory::MemoryStore::new()) as SharedStore,
        ),
        (
            "sqlite",
            Arc::new(
                store::sqlite::SqliteStore::open(&dir.join("nrls.db"), Default::default()).unwrap(),
            ),
        ),
    ]
}

fn args(file: &Path, errors: &Path, batch: usize) -> ImportArgs {
    ImportArgs {
        file: file.to_owned(),
        store: StoreArgs {
            config: None,
            data_dir: None,
            store: None,
            database_url: None,
        },
        errors: Some(errors.to_owned()),
        batch,
        restart: false,
        quiet: true,
    }
}

fn generated(dir: &Path, pointers: u64) -> PathBuf {
    let path = dir.join("data.ndjson");
    let file = std::fs::File::create(&path).unwrap();
    write_ndjson(&Dataset::new(pointers, 42), file, true).unwrap();
    path
}

async fn exported(store: &SharedStore, custodian: Option<&str>) -> String {
    let custodian = custodian.map(|c| domain::OdsCode::parse(c).unwrap());
    let mut out = Vec::new();
    export(store.as_ref(), custodian.as_ref(), &mut out)
        .await
        .unwrap();
    String::from_utf8(out).unwrap()
}

fn issues(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_data_imports_idempotently_and_exports_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let data = generated(dir.path(), 700);
    let errors = dir.path().join("errors.ndjson");
    for (name, store) in stores(dir.path()) {
        let first = import_path(&store, &args(&data, &errors, 128))
            .await
            .unwrap();
        assert_eq!(
            (first.lines, first.imported, first.invalid),
            (700, 700, 0),
            "{name}"
        );
        assert_eq!(store.count().await.unwrap(), 700, "{name}");

        let again = import_path(&store, &args(&data, &errors, 128))
            .await
            .unwrap();
        assert_eq!((again.imported, again.already_present), (0, 700), "{name}");
        assert_eq!(store.count().await.unwrap(), 700, "{name}");

        let dump = exported(&store, None).await;
        assert_eq!(dump.lines().count(), 700, "{name}");
        let dump_file = dir.path().join(format!("{name}-export.ndjson"));
        std::fs::write(&dump_file, &dump).unwrap();
        // The export carries meta.versionId and lastUpdated: importing it into
        // the store it came from finds every pointer already present.
        let back = import_path(&store, &args(&dump_file, &errors, 100))
            .await
            .unwrap();
        assert_eq!((back.imported, back.already_present), (0, 700), "{name}");

        let fresh: SharedStore = Arc::new(store::memory::MemoryStore::new());
        import_path(&fresh, &args(&dump_file, &errors, 100))
            .await
            .unwrap();
        assert_eq!(exported(&fresh, None).await, dump, "{name}: round trip");

        let one = exported(&store, Some("RA0")).await;
        assert!(
            one.lines().count() > 0 && one.lines().count() < 700,
            "{name}"
        );
        assert!(one.lines().all(|l| l.contains(r#""custodian":{"identifier":{"system":"https://fhir.nhs.uk/Id/ods-organization-code","value":"RA0"}}"#)));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_lines_are_reported_and_do_not_stop_the_load() {
    let dir = tempfile::tempdir().unwrap();
    let data = generated(dir.path(), 3);
    let mut lines: Vec<String> = std::fs::read_to_string(&data)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let bad_nhs = lines[1].replace(r#"nhs-number","value":""#, r#"nhs-number","value":"1"#);
    let no_custodian = {
        let mut v: Value = serde_json::from_str(&lines[2]).unwrap();
        v.as_object_mut().unwrap().remove("custodian");
        v.to_string()
    };
    let mut clash: Value = serde_json::from_str(&lines[0]).unwrap();
    clash["description"] = Value::from("same id, other content");
    lines.insert(1, "{ not json".to_owned());
    lines.insert(2, String::new());
    lines.push(bad_nhs);
    lines.push(no_custodian);
    lines.push(clash.to_string());
    let file = dir.path().join("mixed.ndjson");
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let errors = dir.path().join("errors.ndjson");
    for (name, store) in stores(dir.path()) {
        let report: ImportReport = import_path(&store, &args(&file, &errors, 2)).await.unwrap();
        assert_eq!(
            (report.imported, report.invalid, report.rejected),
            (3, 3, 1),
            "{name}: {report:?}"
        );
        let found = issues(&errors);
        let at = |line: u64| {
            found
                .iter()
                .filter(|i| i["line"] == line)
                .collect::<Vec<_>>()
        };
        assert_eq!(at(2)[0]["code"], "MESSAGE_NOT_WELL_FORMED", "{name}");
        assert!(at(3).is_empty(), "blank lines are skipped");
        assert!(
            at(6).iter().any(|i| i["expression"]
                .as_str()
                .unwrap()
                .starts_with("DocumentReference.subject")),
            "{name}: {found:?}"
        );
        assert_eq!(
            at(7)[0]["expression"],
            "DocumentReference.custodian.identifier.value"
        );
        assert_eq!(
            at(8)[0]["expression"],
            "DocumentReference.id",
            "{name}: {found:?}"
        );
        assert!(
            at(8)[0]["reason"]
                .as_str()
                .unwrap()
                .contains("different content")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_import_resumes_after_its_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let data = generated(dir.path(), 300);
    let text = std::fs::read_to_string(&data).unwrap();
    let offset: usize = text.lines().take(100).map(|l| l.len() + 1).sum();
    let errors = dir.path().join("errors.ndjson");
    let checkpoint = dir.path().join("data.ndjson.import-checkpoint");
    for (name, store) in stores(dir.path()) {
        // As a run killed after committing its first 100 lines leaves it.
        std::fs::write(
            &checkpoint,
            format!(
                r#"{{"file_size":{},"line":100,"offset":{offset}}}"#,
                text.len()
            ),
        )
        .unwrap();
        let report = import_path(&store, &args(&data, &errors, 64))
            .await
            .unwrap();
        assert_eq!(
            (report.first_line, report.lines, report.imported),
            (101, 200, 200),
            "{name}"
        );
        assert_eq!(
            store.count().await.unwrap(),
            200,
            "{name}: lines 1-100 skipped"
        );
        assert!(
            !checkpoint.exists(),
            "a finished import removes its checkpoint"
        );
        // A later run starts from the top and loads only what is missing.
        let rest = import_path(&store, &args(&data, &errors, 64))
            .await
            .unwrap();
        assert_eq!((rest.imported, rest.already_present), (100, 200), "{name}");
    }
}
