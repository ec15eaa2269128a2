//! The audit trail cannot be rewritten without the signing key (issue 11,
//! item 2), black-box over real HTTP and the `nrls audit verify` command:
//! a trail re-chained after its checkpoints were deleted fails verification
//! held to the deployment's `[audit]` interval; an alert acknowledgement is
//! a record of the chain, so an `alert_acks` row inserted by hand fails it;
//! a write refused for another organisation's id leaves an AuditEvent.

use std::path::Path;

use crate::support::*;
use nrls::config::{Backend, Config};
use serde_json::{Value, json};

const IDP: &str = "https://idp.test";
const ADMIN: &str = "admin-app";

fn configure(c: &mut Config) {
    c.trusted_issuers = vec![auth::TrustedIssuerConfig {
        issuer: IDP.into(),
        audience: "nrls".into(),
        jwks: Some(auth::demo::jwks("test-idp")),
        jwks_url: None,
    }];
    c.admin.clients = vec![ADMIN.into()];
    c.apps.push(auth::demo::app_config(
        ADMIN,
        "Privacy officer tool",
        vec![auth::OrganisationConfig {
            ods: "X26".into(),
            roles: vec!["consumer".into()],
            pointer_types: vec![CRISIS.into()],
        }],
    ));
}

/// A CIS2-style ID token for a clinician at RX9, signed by the test IdP:
/// break-glass is an act of a named clinician.
fn id_token() -> String {
    let key = auth::demo::signing_key("test-idp").unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let claims = json!({
        "iss": IDP, "aud": "nrls", "sub": "555000111222", "iat": now, "exp": now + 600,
        "selected_roleid": "role-1", "purpose_of_use": "TREAT",
        "nhsid_nrbac_roles": [{"person_roleid": "role-1", "org_code": "RX9", "role_code": "S0030:G0100:R0570", "activity_codes": []}],
    });
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES384);
    header.kid = Some(key.kid.clone());
    let encoding = jsonwebtoken::EncodingKey::from_ec_pem(key.pem.as_bytes()).unwrap();
    jsonwebtoken::encode(&header, &claims, &encoding).unwrap()
}

/// A break-glass search for patient 0 with `reason`: raises an alert.
async fn break_glass(consumer: &Client, reason: &str) {
    let request = consumer
        .request(
            reqwest::Method::GET,
            &format!("{CONSUMER_DR}?{}", subject(0)),
        )
        .header("NHSD-User-Identity", id_token())
        .header("NHSD-Access-Basis", "break-glass")
        .header("NHSD-Access-Reason", reason);
    let reply = Client::send(request).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
}

/// `nrls audit verify` on a data directory, with extra arguments.
fn verify(data: &Path, extra: &[&str]) -> (bool, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_nrls"))
        .args(["audit", "verify", "--data-dir"])
        .arg(data)
        .args(extra)
        .env_remove("NRLS_CONFIG")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), text)
}

/// A stored record's body: compact (BLOB) or JSON (TEXT).
fn body(value: rusqlite::types::Value) -> audit::Body {
    match value {
        rusqlite::types::Value::Blob(bytes) => audit::Body::Compact(bytes),
        rusqlite::types::Value::Text(json) => audit::Body::Json(json),
        other => panic!("event {other:?}"),
    }
}

/// Recomputes every record's hashes, as someone with write access to
/// `audit.db` but without the signing key would after an edit.
fn rechain(db: &rusqlite::Connection) {
    let rows: Vec<(i64, String, audit::Body)> = db
        .prepare(
            "SELECT seq, ifnull(appended_ms, appended_at), event FROM audit_records ORDER BY seq",
        )
        .unwrap()
        .query_map([], |r| {
            let appended_at = match r.get::<_, rusqlite::types::Value>(1)? {
                rusqlite::types::Value::Integer(ms) => {
                    audit::compact::format_ms(ms as u64).unwrap()
                }
                rusqlite::types::Value::Text(text) => text,
                other => panic!("appended_at {other:?}"),
            };
            Ok((r.get(0)?, appended_at, body(r.get(2)?)))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let mut prev = [0u8; 32];
    for (seq, appended_at, body) in rows {
        let hash = body.hash(&prev, seq as u64, &appended_at);
        db.execute(
            "UPDATE audit_records SET prev_hash = ?1, hash = ?2 WHERE seq = ?3",
            rusqlite::params![prev.as_slice(), hash.as_slice(), seq],
        )
        .unwrap();
        prev = hash;
    }
}

/// Rewrites the break-glass reason `from` to `to` in the compact records
/// that hold it, as someone who knows the format would; returns how many.
fn rewrite_reason(db: &rusqlite::Connection, from: &str, to: &str) -> usize {
    let rows: Vec<(i64, Vec<u8>)> = db
        .prepare("SELECT seq, event FROM audit_records WHERE typeof(event) = 'blob'")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let mut edited = 0;
    for (seq, bytes) in rows {
        let (mut facts, node) = audit::compact::decode(&bytes).unwrap();
        let Some(access) = facts.access.as_mut() else {
            continue;
        };
        if access.reason.as_deref() != Some(from) {
            continue;
        }
        access.reason = Some(to.to_owned());
        let bytes = audit::compact::encode(&facts, &node);
        db.execute(
            "UPDATE audit_records SET event = ?1 WHERE seq = ?2",
            rusqlite::params![bytes, seq],
        )
        .unwrap();
        edited += 1;
    }
    edited
}

/// The attack the issue reports: with every checkpoint deleted, a
/// break-glass reason changed from "collapsed" to "routine" and the hashes
/// re-chained, `nrls audit verify --config` (the deployment's own file, 3
/// records a checkpoint) refuses the trail.
#[tokio::test]
async fn a_rechained_trail_without_checkpoints_fails_verify_with_the_deployments_interval() {
    let server = TestServer::start_with(Backend::Sqlite, |c| {
        configure(c);
        c.audit.checkpoint_records = 3;
    })
    .await;
    let producer = server.client("producer-a", "RR8").await;
    producer.create(&pointer("RR8", 0, CRISIS)).await;
    let consumer = server.client("consumer", "RX9").await;
    break_glass(&consumer, "collapsed").await;
    for _ in 0..4 {
        consumer.consumer_search(&subject(0)).await;
    }
    let data = server.stop_keeping_data().await;
    let config = data.path().join("nrls.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\ndata_dir = {:?}\n[audit]\ncheckpoint_records = 3\n",
            data.path()
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let (ok, out) = verify(data.path(), &["--config", config]);
    assert!(ok, "the untouched trail verifies: {out}");

    let db = rusqlite::Connection::open(data.path().join("audit.db")).unwrap();
    db.execute("DELETE FROM audit_checkpoints", []).unwrap();
    assert_eq!(rewrite_reason(&db, "collapsed", "routine"), 1);
    rechain(&db);
    drop(db);
    let (ok, out) = verify(data.path(), &["--config", config]);
    assert!(!ok && out.contains("TAMPERED"), "{out}");
    assert!(out.contains("CheckpointMissing"), "{out}");
    // The same interval given as a flag.
    let (ok, out) = verify(data.path(), &["--checkpoint-records", "3"]);
    assert!(!ok && out.contains("CheckpointMissing"), "{out}");
}

/// An acknowledgement made through the admin API is a record of the chain;
/// an `alert_acks` row inserted by hand to hide the other open alert fails
/// verification.
#[tokio::test]
async fn an_acknowledgement_is_chained_and_a_forged_one_fails_verify() {
    let server = TestServer::start_with(Backend::Sqlite, configure).await;
    let producer = server.client("producer-a", "RR8").await;
    producer.create(&pointer("RR8", 0, CRISIS)).await;
    let consumer = server.client("consumer", "RX9").await;
    break_glass(&consumer, "collapsed").await;
    break_glass(&consumer, "unconscious").await;
    let admin = server.client(ADMIN, "X26").await;
    let alerts = admin.get("/admin/alerts").await;
    assert_eq!(alerts.status, 200, "{}", alerts.text);
    let seqs: Vec<u64> = alerts.json()["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs.len(), 2, "{}", alerts.text);
    let acked = admin
        .post_json(
            &format!("/admin/alerts/{}/acknowledge", seqs[0]),
            &json!({"note": "justified"}),
        )
        .await;
    assert_eq!(acked.status, 200, "{}", acked.text);
    // The acknowledgement's own record, by the privacy officer's app.
    let events = admin
        .get(&format!(
            "/admin/FHIR/R4/AuditEvent?agent={ADMIN}&_count=100"
        ))
        .await;
    assert_eq!(events.status, 200, "{}", events.text);
    assert!(
        events.text.contains(audit::acknowledgement::ACK_EXTENSION),
        "{}",
        events.text
    );
    let data = server.stop_keeping_data().await;
    let (ok, out) = verify(data.path(), &[]);
    assert!(ok, "{out}");

    let db = rusqlite::Connection::open(data.path().join("audit.db")).unwrap();
    db.execute(
        "INSERT INTO alert_acks (seq, acknowledged_by, acknowledged_at, note) VALUES (?1, ?2, '2026-01-01T00:00:00Z', 'fine')",
        rusqlite::params![seqs[1] as i64, ADMIN],
    )
    .unwrap();
    drop(db);
    let (ok, out) = verify(data.path(), &[]);
    assert!(
        !ok && out.contains("AcknowledgementNotInChain"),
        "a forged acknowledgement must fail: {out}"
    );
}

/// A producer's PUT or DELETE on another custodian's pointer, refused from
/// the id's prefix before any lookup, leaves an AuditEvent naming the
/// pointer with outcome 4 (denials are audited).
#[tokio::test]
async fn a_write_refused_for_another_organisations_id_is_audited() {
    for &backend in &[Backend::Sqlite, Backend::Postgres] {
        let server = TestServer::start_with(backend, configure).await;
        let owner = server.client("producer-a", "RR8").await;
        let id = owner.create(&pointer("RR8", 0, CRISIS)).await;
        let path = format!("{PRODUCER_DR}/{id}");
        let other = server.client("producer-b", "RYJ").await;
        let mut doc = owner.get(&path).await.json();
        doc["description"] = json!("not yours");
        let put = other.put_json(&path, &doc).await;
        assert_eq!(put.status, 403, "{}", put.text);
        let delete = other.delete(&path).await;
        assert_eq!(delete.status, 403, "{}", delete.text);

        let admin = server.client(ADMIN, "X26").await;
        let events = admin
            .get("/admin/FHIR/R4/AuditEvent?agent=producer-b&_count=100")
            .await;
        assert_eq!(events.status, 200, "{}", events.text);
        let events: Vec<Value> = events.json()["entry"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|e| e["resource"].clone())
            .collect();
        for (action, reply) in [("U", &put), ("D", &delete)] {
            let request_id = reply.header("x-request-id").unwrap();
            let event = events
                .iter()
                .find(|e| e.to_string().contains(&request_id))
                .unwrap_or_else(|| panic!("{backend:?}: no AuditEvent for the refused {action}"));
            assert_eq!(event["action"], action);
            assert_eq!(event["outcome"], "4");
            assert!(event.to_string().contains(&id), "{event}");
        }
        server.stop().await;
    }
}
