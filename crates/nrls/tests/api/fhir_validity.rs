//! Issue 11, item 1: a stored pointer is valid FHIR R4, always. Black-box:
//! each FHIR-invalid body the producer API used to store (201) is now a 400
//! naming the element; `nrls check` finds pointers stored before the rule, on
//! SQLite and PostgreSQL, and changes nothing; an error's `expression` is
//! never `[""]`.

use std::path::Path;
use std::process::Command;

use crate::support::{BACKENDS, CRISIS, PRODUCER_DR, TestServer, pointer, subject};
use domain::catalogue::Catalogue;
use domain::permissions::TypeSet;
use domain::validation::{ValidationContext, validate};
use domain::{OdsCode, PointerId, PointerRecord};
use nrls::commands::check::check;
use nrls::commands::store_args::StoreArgs;
use nrls::config::Backend;
use serde_json::{Value, json};
use store::SharedStore;

/// The examples of the issue: (JSON pointer of the parent, key, value, expression).
fn examples() -> Vec<(&'static str, &'static str, Value, &'static str)> {
    let ext = json!([{"url": "https://example.org/fhir/StructureDefinition/x"}]);
    vec![
        (
            "",
            "description",
            json!(""),
            "DocumentReference.description",
        ),
        (
            "",
            "description",
            Value::Null,
            "DocumentReference.description",
        ),
        ("", "identifier", json!([]), "DocumentReference.identifier"),
        (
            "",
            "securityLabel",
            json!([]),
            "DocumentReference.securityLabel",
        ),
        ("", "extension", json!([]), "DocumentReference.extension"),
        ("", "text", json!({}), "DocumentReference.text"),
        (
            "/content/0/attachment",
            "title",
            json!(""),
            "DocumentReference.content[0].attachment.title",
        ),
        (
            "/type/coding/0",
            "display",
            json!(""),
            "DocumentReference.type.coding[0].display",
        ),
        (
            "/content/0/attachment",
            "creation",
            json!("yesterday"),
            "DocumentReference.content[0].attachment.creation",
        ),
        (
            "/content/0/attachment",
            "size",
            json!(-1),
            "DocumentReference.content[0].attachment.size",
        ),
        (
            "/content/0/attachment",
            "size",
            json!("12"),
            "DocumentReference.content[0].attachment.size",
        ),
        ("", "extension", ext, "DocumentReference.extension[0]"),
        (
            "",
            "contained",
            json!([{"resourceType": "Patient", "unknown": 1}]),
            "DocumentReference.contained[0]",
        ),
        (
            "/context",
            "period",
            json!({"start": "soon"}),
            "DocumentReference.context.period.start",
        ),
    ]
}

fn mutated(parent: &str, key: &str, value: &Value) -> Value {
    let mut body = pointer("RR8", 1, CRISIS);
    body.pointer_mut(parent).unwrap()[key] = value.clone();
    body
}

#[tokio::test]
async fn each_fhir_invalid_example_is_refused_with_its_expression() {
    let server = TestServer::start(Backend::Sqlite).await;
    let producer = server.client("producer-a", "RR8").await;
    for (parent, key, value, expression) in examples() {
        let reply = producer
            .post_json(PRODUCER_DR, &mutated(parent, key, &value))
            .await;
        assert_eq!(reply.status, 400, "{key}={value}: {}", reply.text);
        let issues = reply.issues();
        assert!(
            issues.contains(&("INVALID_RESOURCE".to_owned(), expression.to_owned())),
            "{key}={value}: {issues:?}"
        );
    }
    // Nothing was stored: the patient has no pointers.
    let consumer = server.client("consumer", "RX9").await;
    let found = consumer.consumer_search(&subject(1)).await;
    assert_eq!(found.json()["total"], 0, "{}", found.text);
    server.stop().await;
}

#[tokio::test]
async fn every_violation_is_reported_together_on_create_and_update() {
    for &backend in BACKENDS {
        let server = TestServer::start(backend).await;
        let producer = server.client("producer-a", "RR8").await;
        let id = producer.create(&pointer("RR8", 2, CRISIS)).await;
        let mut body = pointer("RR8", 2, CRISIS);
        body["id"] = json!(id);
        body["description"] = json!("");
        body["text"] = json!({});
        body["context"]["period"] = json!({"start": "soon"});
        body["content"][0]["attachment"]["size"] = json!("12");
        let reply = producer
            .put_json(&format!("{PRODUCER_DR}/{id}"), &body)
            .await;
        assert_eq!(reply.status, 400, "{backend:?}: {}", reply.text);
        let mut expressions: Vec<String> = reply.issues().into_iter().map(|(_, e)| e).collect();
        expressions.sort();
        assert_eq!(
            expressions,
            [
                "DocumentReference.content[0].attachment.size",
                "DocumentReference.context.period.start",
                "DocumentReference.description",
                "DocumentReference.text",
            ],
            "{backend:?}"
        );
        // The stored pointer is untouched and still valid.
        let read = producer.get(&format!("{PRODUCER_DR}/{id}")).await;
        assert_eq!(read.status, 200);
        assert_eq!(read.json()["meta"]["versionId"], "1");
        server.stop().await;
    }
}

#[tokio::test]
async fn a_query_parameter_without_a_name_has_no_empty_expression() {
    let server = TestServer::start(Backend::Memory).await;
    let consumer = server.client("consumer", "RX9").await;
    let reply = consumer
        .consumer_search(&format!("{}&=x", subject(1)))
        .await;
    assert_eq!(reply.status, 400, "{}", reply.text);
    for issue in reply.json()["issue"].as_array().unwrap() {
        if let Some(expressions) = issue.get("expression") {
            let expressions = expressions.as_array().unwrap();
            assert!(!expressions.is_empty(), "{}", reply.text);
            assert!(
                expressions
                    .iter()
                    .all(|e| e.as_str().is_some_and(|e| !e.is_empty())),
                "{}",
                reply.text
            );
        }
    }
    server.stop().await;
}

/// A pointer as the API would have stored it, from `body`.
fn record(id: &str, body: &Value) -> PointerRecord {
    let doc: fhir::DocumentReference = serde_json::from_value(body.clone()).unwrap();
    let caller = OdsCode::parse("RR8").unwrap();
    let catalogue = Catalogue::nrl_v3();
    let ctx = ValidationContext {
        catalogue,
        caller: &caller,
        permitted_types: TypeSet::all(catalogue),
    };
    let valid = validate(&doc, &ctx).unwrap();
    valid
        .into_record(
            doc,
            PointerId::parse(id).unwrap(),
            1,
            "2026-01-01T00:00:00Z",
        )
        .unwrap()
}

/// Stores one valid pointer and two an older nrls accepted, bypassing
/// validation (the store API takes records as they are).
async fn seed(store: &SharedStore) {
    store
        .create(record("RR8-good", &pointer("RR8", 3, CRISIS)), vec![])
        .await
        .unwrap();
    let mut old = record("RR8-blank", &pointer("RR8", 4, CRISIS));
    old.json = old.json.replacen('{', r#"{"description":"","#, 1);
    store.create(old, vec![]).await.unwrap();
    let mut old = record("RR8-soon", &pointer("RR8", 5, CRISIS));
    old.json = old.json.replacen(
        r#""context":{"#,
        r#""context":{"period":{"start":"soon"},"#,
        1,
    );
    store.create(old, vec![]).await.unwrap();
}

/// Runs the real binary's `check`; returns (exit success, report lines).
fn run_check(store_flags: &[&str]) -> (bool, Vec<Value>) {
    let output = Command::new(env!("CARGO_BIN_EXE_nrls"))
        .arg("check")
        .args(store_flags)
        .env_remove("NRLS_CONFIG")
        .output()
        .unwrap();
    let lines = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (output.status.success(), lines)
}

fn assert_report(lines: &[Value]) {
    let found: Vec<(&str, &str)> = lines
        .iter()
        .map(|l| {
            (
                l["id"].as_str().unwrap(),
                l["issues"][0]["expression"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        found,
        [
            ("RR8-blank", "DocumentReference.description"),
            ("RR8-soon", "DocumentReference.context.period.start"),
        ],
        "{lines:?}"
    );
}

async fn check_changes_nothing(store: &SharedStore) {
    let before = store.pointers_after(0, 100, None).await.unwrap();
    let mut out = Vec::new();
    let summary = check(store.as_ref(), None, &mut out).await.unwrap();
    assert_eq!((summary.checked, summary.failed), (3, 2));
    let lines: Vec<Value> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_report(&lines);
    let after = store.pointers_after(0, 100, None).await.unwrap();
    let json =
        |v: &[store::StoredPointer]| v.iter().map(|p| p.record.json.clone()).collect::<Vec<_>>();
    assert_eq!(json(&before), json(&after));
}

fn open(args: &StoreArgs) -> SharedStore {
    args.open().unwrap()
}

#[tokio::test]
async fn check_reports_stored_pointers_that_fail_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let args = StoreArgs {
        config: None,
        data_dir: Some(dir.path().to_owned()),
        store: Some(Backend::Sqlite),
        database_url: None,
    };
    let store = open(&args);
    seed(&store).await;
    check_changes_nothing(&store).await;
    drop(store);
    let dir_flag = dir.path().to_str().unwrap();
    let (ok, lines) = run_check(&["--store", "sqlite", "--data-dir", dir_flag]);
    assert!(!ok, "a failing pointer makes the exit code non-zero");
    assert_report(&lines);
    assert_clean_after_fix(&["--store", "sqlite", "--data-dir", dir_flag], dir.path()).await;
}

/// Deleting the two bad pointers makes `check` pass.
async fn assert_clean_after_fix(flags: &[&str], dir: &Path) {
    let args = StoreArgs {
        config: None,
        data_dir: Some(dir.to_owned()),
        store: None,
        database_url: None,
    };
    let args = match flags {
        ["--database", url] => StoreArgs {
            database_url: Some((*url).to_owned()),
            ..args
        },
        _ => StoreArgs {
            store: Some(Backend::Sqlite),
            ..args
        },
    };
    let store = open(&args);
    for id in ["RR8-blank", "RR8-soon"] {
        store
            .delete(&PointerId::parse(id).unwrap(), None)
            .await
            .unwrap();
    }
    drop(store);
    let (ok, lines) = run_check(flags);
    assert!(ok && lines.is_empty(), "{lines:?}");
}

#[tokio::test]
async fn check_reports_stored_pointers_that_fail_on_postgres() {
    let database = testkit::postgres::TestDatabase::create().await;
    let args = StoreArgs {
        config: None,
        data_dir: None,
        store: None,
        database_url: Some(database.url().to_owned()),
    };
    let store = open(&args);
    seed(&store).await;
    check_changes_nothing(&store).await;
    drop(store);
    let (ok, lines) = run_check(&["--database", database.url()]);
    assert!(!ok, "a failing pointer makes the exit code non-zero");
    assert_report(&lines);
    let dir = tempfile::tempdir().unwrap();
    assert_clean_after_fix(&["--database", database.url()], dir.path()).await;
}
