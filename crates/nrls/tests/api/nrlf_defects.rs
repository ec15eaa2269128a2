//! Known defects of NHS England's NRLF implementation, each proven absent here.

use crate::support;

use nrls::config::Backend;
use serde_json::{Value, json};
use support::*;

/// NRLF: a bad NHS number on create gives a 500.
#[tokio::test]
async fn bad_nhs_number_on_create_is_a_400() {
    let server = TestServer::start(Backend::Sqlite).await;
    let p = server.client("producer-a", "RR8").await;
    for bad in ["9999999998", "123", "abcdefghij", "", "99999999999"] {
        let mut body = pointer("RR8", 0, CRISIS);
        body["subject"]["identifier"]["value"] = json!(bad);
        let r = p.post_json(PRODUCER_DR, &body).await;
        assert_eq!(r.status, 400, "{bad}");
        assert_eq!(
            r.issue(),
            (
                "INVALID_NHS_NUMBER".into(),
                "DocumentReference.subject.identifier.value".into()
            )
        );
    }
    server.stop().await;
}

/// NRLF: a consumer with any SNOMED permission can list other SNOMED types
/// (only the code system is checked). Here both system and code must match.
#[tokio::test]
async fn one_snomed_permission_does_not_open_other_snomed_types() {
    let server = TestServer::start(Backend::Sqlite).await;
    let p = server.client("producer-a", "RR8").await;
    let news2 = p.create(&pointer("RR8", 0, NEWS2)).await;
    let crisis = p.create(&pointer("RR8", 0, CRISIS)).await;
    let c = server.client("consumer-news2", "RX9").await;
    let bundle = c.consumer_search(&subject(0)).await.json();
    assert_eq!(bundle["total"], 1);
    assert_eq!(bundle["entry"][0]["resource"]["id"], news2.as_str());
    assert_eq!(c.get(&format!("{CONSUMER_DR}/{crisis}")).await.status, 404);
    let asked = c
        .consumer_search(&format!(
            "{}&type={}",
            subject(0),
            CRISIS.replace('|', "%7C")
        ))
        .await;
    assert_eq!(asked.status, 403);
    server.stop().await;
}

/// NRLF: supersede deletes targets outside the create's transaction and
/// swallows errors. Here two creates racing to supersede one pointer: exactly
/// one wins, and the loser leaves nothing behind.
#[tokio::test]
async fn racing_supersedes_of_one_target_let_exactly_one_win() {
    for &backend in BACKENDS {
        let server = TestServer::start(backend).await;
        let p = server.client("producer-a", "RR8").await;
        let target = p.create(&pointer("RR8", 0, CRISIS)).await;
        let mut tasks = Vec::new();
        for _ in 0..6 {
            let p = p.clone();
            let mut body = pointer("RR8", 0, CRISIS);
            body["relatesTo"] =
                json!([{"code": "replaces", "target": {"identifier": {"value": target}}}]);
            tasks.push(tokio::spawn(async move {
                p.post_json(PRODUCER_DR, &body).await.status
            }));
        }
        let mut statuses = Vec::new();
        for t in tasks {
            statuses.push(t.await.unwrap());
        }
        assert_eq!(
            statuses.iter().filter(|s| **s == 201).count(),
            1,
            "{backend:?}: {statuses:?}"
        );
        assert!(
            statuses.iter().all(|s| *s == 201 || *s == 422),
            "{statuses:?}"
        );
        let c = server.client("consumer", "RX9").await;
        assert_eq!(c.consumer_search(&subject(0)).await.json()["total"], 1);
        server.stop().await;
    }
}

/// NRLF: documented error codes differ from the ones returned. Here each
/// documented (status, code) pair of the NRL v3 specs is what comes back.
#[tokio::test]
async fn returned_error_codes_are_the_documented_ones() {
    let server = TestServer::start(Backend::Memory).await;
    let p = server.client("producer-a", "RR8").await;
    let c = server.client("consumer", "RX9").await;
    let anon = Client {
        token: None,
        ..c.clone()
    };
    let cases: Vec<(Reply, u16, &str)> = vec![
        (
            anon.consumer_search(&subject(0)).await,
            401,
            "ACCESS_DENIED",
        ),
        (
            c.consumer_search("colour=red").await,
            400,
            "INVALID_PARAMETER",
        ),
        (
            c.get(&format!("{CONSUMER_DR}/RR8-missing")).await,
            404,
            "RESOURCE_NOT_FOUND",
        ),
        (
            p.get(&format!("{PRODUCER_DR}/RYJ-theirs")).await,
            403,
            "AUTHOR_CREDENTIALS_ERROR",
        ),
        (
            p.post_json(PRODUCER_DR, &json!({"resourceType": "DocumentReference"}))
                .await,
            400,
            "INVALID_RESOURCE",
        ),
        (
            Client::send(
                p.request(reqwest::Method::POST, PRODUCER_DR)
                    .header("content-type", "application/json")
                    .body("{"),
            )
            .await,
            400,
            "MESSAGE_NOT_WELL_FORMED",
        ),
    ];
    for (reply, status, code) in cases {
        assert_eq!(reply.status, status, "{}", reply.text);
        let v = reply.json();
        let coding = &v["issue"][0]["details"]["coding"][0];
        assert_eq!(coding["code"], code);
        assert_eq!(
            coding["system"],
            "https://fhir.nhs.uk/CodeSystem/Spine-ErrorOrWarningCode"
        );
    }
    server.stop().await;
}

/// NRLF: missing fields and unparsed bodies escape as 500 with exception text.
/// Here every required element, removed, is a 400 naming that element.
#[tokio::test]
async fn each_missing_required_element_is_named() {
    let server = TestServer::start(Backend::Memory).await;
    let p = server.client("producer-a", "RR8").await;
    for field in [
        "resourceType",
        "status",
        "type",
        "category",
        "subject",
        "author",
        "custodian",
        "content",
        "context",
    ] {
        let mut body = pointer("RR8", 0, CRISIS);
        body.as_object_mut().unwrap().remove(field);
        let r = p.post_json(PRODUCER_DR, &body).await;
        assert_eq!(r.status, 400, "{field}: {}", r.text);
        let exprs: Vec<String> = r.issues().into_iter().map(|(_, e)| e).collect();
        assert!(
            exprs.contains(&format!("DocumentReference.{field}")),
            "{field}: {exprs:?}"
        );
        assert!(!r.text.contains("panicked") && !r.text.contains("Traceback"));
    }
    server.stop().await;
}

/// Random damage to a valid pointer, sent over HTTP: never a 5xx.
#[tokio::test]
async fn damaged_pointers_never_cause_a_server_error() {
    let server = TestServer::start(Backend::Sqlite).await;
    let p = server.client("producer-a", "RR8").await;
    let junk = [
        json!(null),
        json!(0),
        json!(-1),
        json!(""),
        json!("x"),
        json!([]),
        json!({}),
        json!(true),
        json!(1e308),
        json!("\u{0000}"),
    ];
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    for _ in 0..300 {
        let mut body = pointer("RR8", 0, CRISIS);
        let mut paths = Vec::new();
        collect_paths(&body, String::new(), &mut paths);
        for _ in 0..1 + next(3) {
            let path = &paths[next(paths.len())];
            if let Some(slot) = body.pointer_mut(path) {
                *slot = junk[next(junk.len())].clone();
            }
        }
        let r = p.post_json(PRODUCER_DR, &body).await;
        assert!(r.status < 500, "{body}: {}", r.text);
        let v = r.json();
        if r.status >= 400 {
            assert_eq!(v["resourceType"], "OperationOutcome");
        }
    }
    server.stop().await;
}

fn collect_paths(v: &Value, prefix: String, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                let p = format!("{prefix}/{k}");
                out.push(p.clone());
                collect_paths(child, p, out);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                let p = format!("{prefix}/{i}");
                out.push(p.clone());
                collect_paths(child, p, out);
            }
        }
        _ => {}
    }
}
