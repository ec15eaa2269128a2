//! Access rules and the audit trail, black-box over real HTTP: an
//! authorisation matrix (identity × endpoint) that also checks no hidden
//! pointer leaks into any body or count, and one AuditEvent per request.

use crate::support;

use nrls::config::{Backend, Config};
use reqwest::Method;
use serde_json::{Value, json};
use support::*;

const IDP: &str = "https://idp.test";
const ACTIVITY: &str = "B0264";

fn configure(c: &mut Config) {
    c.trusted_issuers = vec![auth::TrustedIssuerConfig {
        issuer: IDP.into(),
        audience: "nrls".into(),
        jwks: Some(auth::demo::jwks("test-idp")),
        jwks_url: None,
    }];
    c.access.sensitive_activity_codes = vec![ACTIVITY.into()];
    c.admin.clients = vec!["admin-app".into()];
    c.apps.push(auth::demo::app_config(
        "admin-app",
        "Privacy officer tool",
        vec![auth::OrganisationConfig {
            ods: "X26".into(),
            roles: vec!["consumer".into()],
            pointer_types: vec![CRISIS.into()],
        }],
    ));
}

/// A CIS2-style ID token for a clinician at `ods`, signed by the test IdP.
fn id_token(ods: &str, activities: &[&str], purpose: &str, expires_in: i64) -> String {
    let key = auth::demo::signing_key("test-idp").unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let claims = json!({
        "iss": IDP, "aud": "nrls", "sub": "555000111222", "iat": now, "exp": now + expires_in,
        "selected_roleid": "role-1", "purpose_of_use": purpose,
        "nhsid_nrbac_roles": [{"person_roleid": "role-1", "org_code": ods, "role_code": "S0030:G0100:R0570", "activity_codes": activities}],
    });
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES384);
    header.kid = Some(key.kid.clone());
    let encoding = jsonwebtoken::EncodingKey::from_ec_pem(key.pem.as_bytes()).unwrap();
    jsonwebtoken::encode(&header, &claims, &encoding).unwrap()
}

struct World {
    server: TestServer,
    open: String,
    sensitive: String,
}

async fn world() -> World {
    let server = TestServer::start_with(Backend::Sqlite, configure).await;
    let producer = server.client("producer-a", "RR8").await;
    let open = producer.create(&pointer("RR8", 0, CRISIS)).await;
    let mut secret = pointer("RR8", 0, CRISIS);
    secret["meta"] = json!({"security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "V"}]});
    let sensitive = producer.create(&secret).await;
    World {
        server,
        open,
        sensitive,
    }
}

/// One identity's view: extra headers on top of a token for `app` acting for `ods`.
struct Identity {
    name: &'static str,
    client: Client,
    headers: Vec<(&'static str, String)>,
}

impl Identity {
    async fn send(&self, method: Method, path: &str) -> Reply {
        let mut r = self.client.request(method, path);
        for (k, v) in &self.headers {
            r = r.header(*k, v);
        }
        Client::send(r).await
    }
}

/// What an identity should get: the search status, and which pointers it sees.
struct Expect {
    status: u16,
    sees_open: bool,
    sees_sensitive: bool,
}

#[tokio::test]
async fn authorisation_matrix_hides_what_must_be_hidden() {
    let w = world().await;
    let s = &w.server;
    let consumer = s.client("consumer", "RX9").await;
    let user = |acts: &[&str], purpose: &str| id_token("RX9", acts, purpose, 600);
    let tampered = {
        let mut t = consumer.token.clone().unwrap();
        t.pop();
        t.push('x');
        t
    };
    let mut identities = vec![
        (
            Identity {
                name: "no token",
                client: Client {
                    token: None,
                    ..consumer.clone()
                },
                headers: vec![],
            },
            Expect {
                status: 401,
                sees_open: false,
                sees_sensitive: false,
            },
        ),
        (
            Identity {
                name: "wrong signature",
                client: Client {
                    token: Some(tampered),
                    ..consumer.clone()
                },
                headers: vec![],
            },
            Expect {
                status: 401,
                sees_open: false,
                sees_sensitive: false,
            },
        ),
        (
            Identity {
                name: "app without consumer role",
                client: s.client("producer-b", "RYJ").await,
                headers: vec![],
            },
            Expect {
                status: 403,
                sees_open: false,
                sees_sensitive: false,
            },
        ),
        (
            Identity {
                name: "organisation not onboarded",
                client: s.client("consumer", "RR8").await,
                headers: vec![],
            },
            Expect {
                status: 403,
                sees_open: false,
                sees_sensitive: false,
            },
        ),
        (
            Identity {
                name: "type not permitted",
                client: s.client("consumer-news2", "RX9").await,
                headers: vec![],
            },
            Expect {
                status: 200,
                sees_open: false,
                sees_sensitive: false,
            },
        ),
        (
            Identity {
                name: "trusted app, no user",
                client: consumer.clone(),
                headers: vec![],
            },
            Expect {
                status: 200,
                sees_open: true,
                sees_sensitive: false,
            },
        ),
        (
            Identity {
                name: "user without relationship",
                client: consumer.clone(),
                headers: vec![("NHSD-User-Identity", user(&[], "TREAT"))],
            },
            Expect {
                status: 403,
                sees_open: false,
                sees_sensitive: false,
            },
        ),
        (
            Identity {
                name: "user, self-claimed with reason",
                client: consumer.clone(),
                headers: vec![
                    ("NHSD-User-Identity", user(&[], "TREAT")),
                    ("NHSD-Access-Basis", "self-claimed".into()),
                    ("NHSD-Access-Reason", "patient in ED".into()),
                ],
            },
            Expect {
                status: 200,
                sees_open: true,
                sees_sensitive: false,
            },
        ),
        (
            Identity {
                name: "user, self-claimed without reason",
                client: consumer.clone(),
                headers: vec![
                    ("NHSD-User-Identity", user(&[], "TREAT")),
                    ("NHSD-Access-Basis", "self-claimed".into()),
                ],
            },
            Expect {
                status: 403,
                sees_open: false,
                sees_sensitive: false,
            },
        ),
        (
            Identity {
                name: "user with sensitive activity, break-glass",
                client: consumer.clone(),
                headers: vec![
                    ("NHSD-User-Identity", user(&[ACTIVITY], "TREAT")),
                    ("NHSD-Access-Basis", "break-glass".into()),
                    ("NHSD-Access-Reason", "cardiac arrest".into()),
                ],
            },
            Expect {
                status: 200,
                sees_open: true,
                sees_sensitive: true,
            },
        ),
        // Issue 11, item 3: without a verified clinician, break-glass and
        // self-claim are refused (the trusted app would otherwise see all).
        (
            Identity {
                name: "app-only break-glass",
                client: consumer.clone(),
                headers: vec![
                    ("NHSD-Access-Basis", "break-glass".into()),
                    ("NHSD-Access-Reason", "collapsed".into()),
                ],
            },
            Expect {
                status: 403,
                sees_open: false,
                sees_sensitive: false,
            },
        ),
        (
            Identity {
                name: "app-only self-claimed",
                client: consumer.clone(),
                headers: vec![
                    ("NHSD-Access-Basis", "self-claimed".into()),
                    ("NHSD-Access-Reason", "patient in ED".into()),
                ],
            },
            Expect {
                status: 403,
                sees_open: false,
                sees_sensitive: false,
            },
        ),
        (
            Identity {
                name: "user, purpose not direct care",
                client: consumer.clone(),
                headers: vec![
                    ("NHSD-User-Identity", user(&[ACTIVITY], "HRESCH")),
                    ("NHSD-Access-Basis", "break-glass".into()),
                    ("NHSD-Access-Reason", "research".into()),
                ],
            },
            Expect {
                status: 403,
                sees_open: false,
                sees_sensitive: false,
            },
        ),
        (
            Identity {
                name: "expired user token",
                client: consumer.clone(),
                headers: vec![("NHSD-User-Identity", id_token("RX9", &[], "TREAT", -120))],
            },
            Expect {
                status: 401,
                sees_open: false,
                sees_sensitive: false,
            },
        ),
        (
            Identity {
                name: "user token valid for a century",
                client: consumer.clone(),
                headers: vec![(
                    "NHSD-User-Identity",
                    id_token("RX9", &[ACTIVITY], "TREAT", 100 * 365 * 86_400),
                )],
            },
            Expect {
                status: 401,
                sees_open: false,
                sees_sensitive: false,
            },
        ),
        (
            Identity {
                name: "user token from unknown issuer",
                client: consumer.clone(),
                headers: vec![("NHSD-User-Identity", "eyJhbGciOiJub25lIn0.e30.".into())],
            },
            Expect {
                status: 401,
                sees_open: false,
                sees_sensitive: false,
            },
        ),
    ];
    let search = format!("{CONSUMER_DR}?{}", subject(0));
    let count = format!("{CONSUMER_DR}?{}&_summary=count", subject(0));
    let mut cells = 0;
    for (identity, expect) in &mut identities {
        let reply = identity.send(Method::GET, &search).await;
        assert_eq!(
            reply.status, expect.status,
            "{}: {}",
            identity.name, reply.text
        );
        assert_eq!(
            reply.text.contains(&w.open),
            expect.sees_open,
            "{}: open pointer",
            identity.name
        );
        assert_eq!(
            reply.text.contains(&w.sensitive),
            expect.sees_sensitive,
            "{}: sensitive pointer leaked",
            identity.name
        );
        let counted = identity.send(Method::GET, &count).await;
        assert_eq!(counted.status, expect.status, "{} count", identity.name);
        if expect.status == 200 {
            let total = u64::from(expect.sees_open) + u64::from(expect.sees_sensitive);
            assert_eq!(
                counted.json()["total"],
                total,
                "{}: count reveals hidden pointers",
                identity.name
            );
        }
        for (id, visible) in [
            (&w.open, expect.sees_open),
            (&w.sensitive, expect.sees_sensitive),
        ] {
            let read = identity
                .send(Method::GET, &format!("{CONSUMER_DR}/{id}"))
                .await;
            let wanted = match (expect.status, visible) {
                (200, true) => 200,
                (200, false) => 404,
                (other, _) => other,
            };
            assert_eq!(
                read.status, wanted,
                "{}: read {id}: {}",
                identity.name, read.text
            );
            if !visible {
                assert!(
                    !read.text.contains("\"resourceType\":\"DocumentReference\""),
                    "{}",
                    identity.name
                );
            }
        }
        cells += 4;
    }
    // The producer always manages its own pointers, sensitive ones included.
    let producer = s.client("producer-a", "RR8").await;
    assert_eq!(
        producer
            .get(&format!("{PRODUCER_DR}/{}", w.sensitive))
            .await
            .status,
        200
    );
    println!(
        "authorisation matrix: {} identities x 4 requests = {cells} cells",
        identities.len()
    );
    w.server.stop().await;
}

/// Issue 11, item 3: a read never tells whether an id exists. The request
/// is decided first, so a refused caller gets the same answer for a hidden
/// pointer and a missing one, and an allowed caller the same 404.
#[tokio::test]
async fn reads_do_not_reveal_whether_a_pointer_exists() {
    let w = world().await;
    let s = &w.server;
    let missing = "RR8-00000000-0000-4000-8000-000000000000";
    let consumer = s.client("consumer", "RX9").await;
    let unrelated = Identity {
        name: "user without relationship",
        client: consumer.clone(),
        headers: vec![("NHSD-User-Identity", id_token("RX9", &[], "TREAT", 600))],
    };
    let plain_app = Identity {
        name: "trusted app without the activity code",
        client: consumer.clone(),
        headers: vec![],
    };
    let wrong_type = Identity {
        name: "app not onboarded for the type",
        client: s.client("consumer-news2", "RX9").await,
        headers: vec![],
    };
    for (identity, status) in [(&unrelated, 403), (&plain_app, 404), (&wrong_type, 404)] {
        let answer = |id: &str| {
            let path = format!("{CONSUMER_DR}/{id}");
            async move {
                let reply = identity.send(Method::GET, &path).await;
                (reply.status, reply.issue().0)
            }
        };
        let hidden = answer(&w.sensitive).await;
        let absent = answer(missing).await;
        assert_eq!(hidden.0, status, "{}: {hidden:?}", identity.name);
        assert_eq!(hidden, absent, "{}", identity.name);
    }
    // The refusal of an existing pointer is still audited against its patient.
    let audited = audit_events(s, &patient(0)).await;
    assert!(
        audited
            .iter()
            .any(|e| e.to_string().contains("NO_LEGITIMATE_RELATIONSHIP")),
        "the refused read is in the patient's trail"
    );
    w.server.stop().await;
}

/// Issue 11, item 4: the admin API's bad bodies and ids are OperationOutcomes
/// naming what is wrong, as everywhere else.
#[tokio::test]
async fn admin_input_errors_are_operation_outcomes() {
    let w = world().await;
    let admin = admin(&w.server).await;
    let send = |method: Method, path: &str, content_type: Option<&str>, body: &str| {
        let mut r = admin.request(method, path).body(body.to_owned());
        if let Some(ct) = content_type {
            r = r.header("content-type", ct);
        }
        Client::send(r)
    };
    let json = Some("application/json");
    let cases = [
        (
            send(Method::POST, "/admin/relationships", json, "{not json").await,
            400,
            "MESSAGE_NOT_WELL_FORMED",
        ),
        (
            send(
                Method::POST,
                "/admin/relationships",
                json,
                r#"{"patient": "9999999999"}"#,
            )
            .await,
            400,
            "INVALID_RESOURCE",
        ),
        (
            send(
                Method::POST,
                "/admin/relationships",
                json,
                r#"{"patient": 5, "ods": "RX9", "kind": "encounter"}"#,
            )
            .await,
            400,
            "INVALID_RESOURCE",
        ),
        (
            send(
                Method::POST,
                "/admin/relationships",
                Some("text/plain"),
                "x",
            )
            .await,
            415,
            "UNSUPPORTED_MEDIA_TYPE",
        ),
        (
            send(
                Method::POST,
                "/admin/alerts/not-a-number/acknowledge",
                None,
                "",
            )
            .await,
            404,
            "RESOURCE_NOT_FOUND",
        ),
    ];
    for (i, (reply, status, code)) in cases.into_iter().enumerate() {
        assert_eq!(reply.status, status, "case {i}: {}", reply.text);
        assert_eq!(reply.issue().0, code, "case {i}: {}", reply.text);
    }
    let typed = send(
        Method::POST,
        "/admin/relationships",
        json,
        r#"{"patient": 5, "ods": "RX9", "kind": "encounter"}"#,
    )
    .await;
    assert_eq!(typed.issue().1, "patient", "{}", typed.text);
    let missing = send(
        Method::POST,
        "/admin/relationships",
        json,
        r#"{"patient": "9999999999", "kind": "encounter"}"#,
    )
    .await;
    assert_eq!(missing.issue().1, "ods", "{}", missing.text);
    w.server.stop().await;
}

async fn admin(s: &TestServer) -> Client {
    s.client("admin-app", "X26").await
}

#[tokio::test]
async fn relationships_and_objections_are_managed_through_the_admin_api() {
    let w = world().await;
    let s = &w.server;
    let consumer = s.client("consumer", "RX9").await;
    let user = Identity {
        name: "user",
        client: consumer.clone(),
        headers: vec![("NHSD-User-Identity", id_token("RX9", &[], "TREAT", 600))],
    };
    let search = format!("{CONSUMER_DR}?{}", subject(0));
    assert_eq!(
        user.send(Method::GET, &search).await.status,
        403,
        "no relationship yet"
    );

    let admin = admin(s).await;
    let added = admin
        .post_json(
            "/admin/relationships",
            &json!({"patient": patient(0), "ods": "RX9", "kind": "encounter"}),
        )
        .await;
    assert!(added.status == 200 || added.status == 201, "{}", added.text);
    let seen = user.send(Method::GET, &search).await;
    assert_eq!(seen.status, 200, "{}", seen.text);
    assert!(seen.text.contains(&w.open));

    // The patient objects: consumers other than the custodian see nothing...
    let objected = admin
        .put_json(
            &format!("/admin/patients/{}/objection", patient(0)),
            &json!({"note": "patient asked"}),
        )
        .await;
    assert!(objected.status < 300, "{}", objected.text);
    let hidden = user.send(Method::GET, &search).await;
    assert_eq!(hidden.status, 200);
    assert_eq!(hidden.json()["total"], 0);
    assert!(!hidden.text.contains(&w.open));
    assert_eq!(
        consumer.consumer_search(&subject(0)).await.json()["total"],
        0,
        "app-only calls too"
    );
    // An app alone cannot lift the objection with break-glass: refused with
    // its reason code, and the refusal is in the audit trail.
    let app_only_glass = Identity {
        name: "app-only bg",
        client: consumer.clone(),
        headers: vec![
            ("NHSD-Access-Basis", "break-glass".into()),
            ("NHSD-Access-Reason", "collapsed".into()),
        ],
    };
    let refused = app_only_glass.send(Method::GET, &search).await;
    assert_eq!(refused.status, 403, "{}", refused.text);
    assert!(
        refused.text.contains("CLINICIAN_IDENTITY_REQUIRED") && !refused.text.contains(&w.open),
        "{}",
        refused.text
    );
    let audited = audit_events(s, &patient(0)).await;
    assert!(
        audited
            .iter()
            .any(|e| e.to_string().contains("CLINICIAN_IDENTITY_REQUIRED")),
        "the refusal is audited"
    );
    // ...unless break-glass with a reason, which raises an alert.
    let glass = Identity {
        name: "bg",
        client: consumer.clone(),
        headers: vec![
            ("NHSD-User-Identity", id_token("RX9", &[], "TREAT", 600)),
            ("NHSD-Access-Basis", "break-glass".into()),
            ("NHSD-Access-Reason", "unconscious patient".into()),
        ],
    };
    let broken = glass.send(Method::GET, &search).await;
    assert!(broken.text.contains(&w.open), "{}", broken.text);
    // The custodian still manages its own pointers.
    let producer = s.client("producer-a", "RR8").await;
    assert_eq!(
        producer
            .get(&format!("{PRODUCER_DR}?{}", subject(0)))
            .await
            .json()["total"],
        2
    );

    let alerts = admin.get("/admin/alerts").await;
    assert_eq!(alerts.status, 200, "{}", alerts.text);
    assert!(
        alerts.text.contains("break-glass") && alerts.text.contains("unconscious patient"),
        "{}",
        alerts.text
    );
    let non_admin = consumer.get("/admin/alerts").await;
    assert_eq!(non_admin.status, 403);
    w.server.stop().await;
}

async fn audit_events(s: &TestServer, nhs: &str) -> Vec<Value> {
    let admin = admin(s).await;
    let reply = admin
        .get(&format!(
            "/admin/FHIR/R4/AuditEvent?patient={nhs}&_count=100"
        ))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.json()["entry"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|e| e["resource"].clone())
        .collect()
}

#[tokio::test]
async fn every_request_kind_writes_exactly_one_audit_event() {
    let w = world().await;
    let s = &w.server;
    let producer = s.client("producer-a", "RR8").await;
    let consumer = s.client("consumer", "RX9").await;
    let nhs = patient(0);
    // Only events written by the client apps, not the admin's own searches.
    let count = |events: &[Value]| {
        events
            .iter()
            .filter(|e| !e.to_string().contains("admin-app"))
            .count()
    };
    let before = count(&audit_events(s, &nhs).await);
    assert_eq!(before, 2, "the two creates of the fixture");

    let id = w.open.clone();
    let path = format!("{PRODUCER_DR}/{id}");
    let steps: Vec<(&str, Reply)> = vec![
        (
            "consumer search",
            consumer.consumer_search(&subject(0)).await,
        ),
        (
            "consumer count",
            consumer
                .consumer_search(&format!("{}&_summary=count", subject(0)))
                .await,
        ),
        (
            "consumer read",
            consumer.get(&format!("{CONSUMER_DR}/{id}")).await,
        ),
        ("producer read", producer.get(&path).await),
        (
            "producer search",
            producer.get(&format!("{PRODUCER_DR}?{}", subject(0))).await,
        ),
        ("update", {
            let mut doc = producer.get(&path).await.json();
            doc["description"] = json!("changed");
            producer.put_json(&path, &doc).await
        }),
        ("supersede", {
            let mut body = pointer("RR8", 0, CRISIS);
            body["relatesTo"] =
                json!([{"code": "replaces", "target": {"identifier": {"value": id}}}]);
            producer.post_json(PRODUCER_DR, &body).await
        }),
        (
            "denied read",
            s.client("consumer-news2", "RX9")
                .await
                .get(&format!("{CONSUMER_DR}/{}", w.sensitive))
                .await,
        ),
        (
            "delete",
            producer
                .delete(&format!("{PRODUCER_DR}/{}", w.sensitive))
                .await,
        ),
    ];
    // The update step first GETs the pointer: one more audited request.
    let events = audit_events(s, &nhs).await;
    let mine: Vec<&Value> = events
        .iter()
        .filter(|e| !e.to_string().contains("admin-app"))
        .collect();
    assert_eq!(
        mine.len(),
        before + steps.len() + 1,
        "one event per request: {:#?}",
        steps.iter().map(|(n, r)| (n, r.status)).collect::<Vec<_>>()
    );
    for (name, reply) in &steps {
        let request_id = reply.header("x-request-id").unwrap();
        let matching: Vec<&&Value> = mine
            .iter()
            .filter(|e| e.to_string().contains(&request_id))
            .collect();
        assert_eq!(
            matching.len(),
            1,
            "{name}: exactly one AuditEvent carries its X-Request-Id"
        );
        let event = matching[0];
        assert_eq!(event["resourceType"], "AuditEvent");
        let outcome = event["outcome"].as_str().unwrap();
        assert_eq!(
            outcome == "0",
            reply.status < 400,
            "{name}: outcome {outcome} for status {}",
            reply.status
        );
        assert!(event.to_string().contains(&nhs), "{name}: patient entity");
    }
    w.server.stop().await;
}

#[tokio::test]
async fn the_audit_trail_verifies_and_detects_tampering() {
    let w = world().await;
    let consumer = w.server.client("consumer", "RX9").await;
    for _ in 0..5 {
        consumer.consumer_search(&subject(0)).await;
    }
    let data = w.server.stop_keeping_data().await;
    let dir = data.path();
    let verify = |data: &std::path::Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_nrls"))
            .args(["audit", "verify", "--data-dir"])
            .arg(data)
            .output()
            .unwrap()
    };
    let ok = verify(dir);
    assert!(
        ok.status.success(),
        "{}{}",
        String::from_utf8_lossy(&ok.stdout),
        String::from_utf8_lossy(&ok.stderr)
    );
    let db = rusqlite::Connection::open(dir.join("audit.db")).unwrap();
    // Record 3 made to name another interaction (a search a read, a create
    // an update): its compact record's interaction bits changed in place.
    let mut bytes: Vec<u8> = db
        .query_row("SELECT event FROM audit_records WHERE seq = 3", [], |r| {
            r.get(0)
        })
        .unwrap();
    bytes[1] ^= 1;
    let changed = db
        .execute(
            "UPDATE audit_records SET event = ?1 WHERE seq = 3",
            rusqlite::params![bytes],
        )
        .unwrap();
    assert_eq!(changed, 1);
    drop(db);
    let bad = verify(dir);
    assert!(
        !bad.status.success(),
        "a modified record must fail verification"
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&bad.stdout),
        String::from_utf8_lossy(&bad.stderr)
    );
    assert!(text.contains('3'), "names the first bad record: {text}");
}
