//! Producer API, black-box: create, read, update, delete, supersede and search,
//! against every backend.

use crate::support;

use serde_json::{Value, json};
use support::*;

#[tokio::test]
async fn create_then_read_returns_the_stored_pointer() {
    for &backend in BACKENDS {
        let server = TestServer::start(backend).await;
        let producer = server.client("producer-a", "RR8").await;
        let reply = producer
            .post_json(PRODUCER_DR, &pointer("RR8", 0, CRISIS))
            .await;
        assert_eq!(reply.status, 201, "{}", reply.text);
        assert_eq!(
            reply.json()["issue"][0]["details"]["coding"][0]["code"],
            "RESOURCE_CREATED"
        );
        // One success code system for create, update and delete, as NRLF's own.
        assert_eq!(
            reply.json()["issue"][0]["details"]["coding"][0]["system"],
            "https://fhir.nhs.uk/CodeSystem/NRLF-SuccessCode"
        );
        assert_eq!(reply.header("etag").as_deref(), Some("W/\"1\""));
        assert_eq!(
            reply.header("content-type").as_deref(),
            Some("application/fhir+json")
        );
        let location = reply.header("location").unwrap();
        let id = location.rsplit('/').next().unwrap();
        assert!(location.starts_with(&server.url));
        assert!(id.starts_with("RR8-") && id.len() == 40, "{id}");

        let read = producer.get(&format!("{PRODUCER_DR}/{id}")).await;
        assert_eq!(read.status, 200);
        let doc = read.json();
        assert_eq!(doc["id"], id);
        assert_eq!(doc["meta"]["versionId"], "1");
        assert!(doc["date"].is_string() && doc["meta"]["lastUpdated"].is_string());
        assert_eq!(doc["subject"]["identifier"]["value"], patient(0));
        server.stop().await;
    }
}

#[tokio::test]
async fn client_chosen_ids_must_carry_the_callers_ods_code() {
    for &backend in BACKENDS {
        let server = TestServer::start(backend).await;
        let producer = server.client("producer-a", "RR8").await;
        let mut body = pointer("RR8", 0, CRISIS);
        body["id"] = json!("RR8-chosen-1");
        assert_eq!(producer.create(&body).await, "RR8-chosen-1");
        let again = producer.post_json(PRODUCER_DR, &body).await;
        assert_eq!(
            (again.status, again.issue().0.as_str()),
            (409, "DUPLICATE_REJECTED")
        );
        body["id"] = json!("RYJ-chosen-2");
        let wrong = producer.post_json(PRODUCER_DR, &body).await;
        assert_eq!(wrong.status, 400);
        assert_eq!(wrong.issue().1, "DocumentReference.id");
        server.stop().await;
    }
}

#[tokio::test]
async fn master_identifier_is_unique_per_custodian() {
    for &backend in BACKENDS {
        let server = TestServer::start(backend).await;
        let a = server.client("producer-a", "RR8").await;
        let b = server.client("producer-b", "RYJ").await;
        let mut body = pointer("RR8", 0, CRISIS);
        body["masterIdentifier"] = json!({"system": "urn:ietf:rfc:3986", "value": "urn:oid:1.2.3"});
        a.create(&body).await;
        let dup = a.post_json(PRODUCER_DR, &body).await;
        assert_eq!(dup.status, 409);
        assert_eq!(
            dup.issue(),
            (
                "DUPLICATE_REJECTED".into(),
                "DocumentReference.masterIdentifier".into()
            )
        );
        let mut other = pointer("RYJ", 0, CRISIS);
        other["masterIdentifier"] = body["masterIdentifier"].clone();
        b.create(&other).await;
        server.stop().await;
    }
}

#[tokio::test]
async fn update_enforces_versions_and_immutable_fields() {
    for &backend in BACKENDS {
        let server = TestServer::start(backend).await;
        let producer = server.client("producer-a", "RR8").await;
        let id = producer.create(&pointer("RR8", 0, CRISIS)).await;
        let path = format!("{PRODUCER_DR}/{id}");
        let mut doc = producer.get(&path).await.json();

        doc["description"] = json!("revised");
        let ok = producer.put_json(&path, &doc).await;
        assert_eq!(ok.status, 200, "{}", ok.text);
        assert_eq!(
            ok.json()["issue"][0]["details"]["coding"][0]["code"],
            "RESOURCE_UPDATED"
        );
        assert_eq!(ok.header("etag").as_deref(), Some("W/\"2\""));
        let now = producer.get(&path).await.json();
        assert_eq!(
            (
                now["description"].as_str(),
                now["meta"]["versionId"].as_str()
            ),
            (Some("revised"), Some("2"))
        );
        assert_eq!(now["date"], doc["date"], "date is kept");

        // The body still says version 1: a stale write is refused.
        let stale = producer.put_json(&path, &doc).await;
        assert_eq!(
            (stale.status, stale.issue().0.as_str()),
            (412, "PRECONDITION_FAILED")
        );
        let stale_header = Client::send(
            producer
                .request(reqwest::Method::PUT, &path)
                .header("content-type", "application/fhir+json")
                .header("If-Match", "W/\"1\"")
                .body(now.to_string()),
        )
        .await;
        assert_eq!(stale_header.status, 412);

        let mut changed = now.clone();
        changed["subject"]["identifier"]["value"] = json!(patient(1));
        changed["type"] = pointer("RR8", 0, RESPECT)["type"].clone();
        changed["category"] = pointer("RR8", 0, RESPECT)["category"].clone();
        let immutable = producer.put_json(&path, &changed).await;
        assert_eq!(immutable.status, 400, "{}", immutable.text);
        let exprs: Vec<String> = immutable.issues().into_iter().map(|(_, e)| e).collect();
        assert!(
            exprs.contains(&"DocumentReference.subject".to_owned()),
            "{exprs:?}"
        );
        assert!(
            exprs.contains(&"DocumentReference.type".to_owned()),
            "{exprs:?}"
        );

        let mut wrong_id = now.clone();
        wrong_id["id"] = json!("RR8-other");
        let mismatch = producer.put_json(&path, &wrong_id).await;
        assert_eq!(
            (mismatch.status, mismatch.issue().1.as_str()),
            (400, "DocumentReference.id")
        );

        let missing = producer
            .put_json(&format!("{PRODUCER_DR}/RR8-missing"), &{
                let mut d = now.clone();
                d["id"] = json!("RR8-missing");
                d
            })
            .await;
        assert_eq!(missing.status, 404);
        server.stop().await;
    }
}

#[tokio::test]
async fn concurrent_updates_of_one_version_let_exactly_one_win() {
    for &backend in BACKENDS {
        let server = TestServer::start(backend).await;
        let producer = server.client("producer-a", "RR8").await;
        let id = producer.create(&pointer("RR8", 0, CRISIS)).await;
        let path = format!("{PRODUCER_DR}/{id}");
        let doc = producer.get(&path).await.json();
        let mut tasks = Vec::new();
        for i in 0..8 {
            let (p, path, mut d) = (producer.clone(), path.clone(), doc.clone());
            d["description"] = json!(format!("writer {i}"));
            tasks.push(tokio::spawn(
                async move { p.put_json(&path, &d).await.status },
            ));
        }
        let mut statuses = Vec::new();
        for t in tasks {
            statuses.push(t.await.unwrap());
        }
        assert_eq!(
            statuses.iter().filter(|s| **s == 200).count(),
            1,
            "{statuses:?}"
        );
        assert!(
            statuses.iter().all(|s| *s == 200 || *s == 412),
            "{statuses:?}"
        );
        assert_eq!(producer.get(&path).await.json()["meta"]["versionId"], "2");
        server.stop().await;
    }
}

#[tokio::test]
async fn delete_removes_and_is_scoped_to_the_custodian() {
    for &backend in BACKENDS {
        let server = TestServer::start(backend).await;
        let a = server.client("producer-a", "RR8").await;
        let b = server.client("producer-b", "RYJ").await;
        let id = a.create(&pointer("RR8", 0, CRISIS)).await;
        let path = format!("{PRODUCER_DR}/{id}");
        let foreign = b.delete(&path).await;
        assert_eq!(
            (foreign.status, foreign.issue().0.as_str()),
            (403, "AUTHOR_CREDENTIALS_ERROR")
        );
        let foreign_read = b.get(&path).await;
        assert_eq!(foreign_read.status, 403);
        let gone = a.delete(&path).await;
        assert_eq!(gone.status, 200, "{}", gone.text);
        assert_eq!(
            gone.json()["issue"][0]["details"]["coding"][0]["code"],
            "RESOURCE_REMOVED"
        );
        assert_eq!(a.get(&path).await.status, 404);
        assert_eq!(a.delete(&path).await.status, 404);
        server.stop().await;
    }
}

fn replacing(mut body: Value, targets: &[&str]) -> Value {
    body["relatesTo"] = Value::Array(
        targets
            .iter()
            .map(|t| json!({"code": "replaces", "target": {"type": "DocumentReference", "identifier": {"value": t}}}))
            .collect(),
    );
    body
}

#[tokio::test]
async fn supersede_replaces_atomically_or_not_at_all() {
    for &backend in BACKENDS {
        let server = TestServer::start(backend).await;
        let producer = server.client("producer-a", "RR8").await;
        let consumer = server.client("consumer", "RX9").await;
        let old1 = producer.create(&pointer("RR8", 0, CRISIS)).await;
        let old2 = producer.create(&pointer("RR8", 0, CRISIS)).await;
        let other_type = producer.create(&pointer("RR8", 0, RESPECT)).await;
        let other_patient = producer.create(&pointer("RR8", 1, CRISIS)).await;

        // A bad target anywhere in the list: nothing is created, nothing deleted.
        for (bad, code) in [
            ("RR8-does-not-exist", 422),
            (other_type.as_str(), 422),
            (other_patient.as_str(), 422),
        ] {
            let reply = producer
                .post_json(
                    PRODUCER_DR,
                    &replacing(pointer("RR8", 0, CRISIS), &[&old1, bad]),
                )
                .await;
            assert_eq!(reply.status, code, "{bad}: {}", reply.text);
            assert_eq!(
                reply.issue().1,
                "DocumentReference.relatesTo[1].target.identifier.value"
            );
        }
        let before = consumer.consumer_search(&subject(0)).await.json();
        assert_eq!(before["total"], 3);

        let new = producer
            .create(&replacing(pointer("RR8", 0, CRISIS), &[&old1, &old2]))
            .await;
        assert_eq!(
            producer.get(&format!("{PRODUCER_DR}/{old1}")).await.status,
            404
        );
        assert_eq!(
            producer.get(&format!("{PRODUCER_DR}/{old2}")).await.status,
            404
        );
        let after = consumer.consumer_search(&subject(0)).await.json();
        assert_eq!(after["total"], 2);
        let ids: Vec<&str> = after["entry"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["resource"]["id"].as_str().unwrap())
            .collect();
        assert!(ids.contains(&new.as_str()) && ids.contains(&other_type.as_str()));

        // Another custodian's pointer can never be superseded.
        let b = server.client("producer-b", "RYJ").await;
        let foreign = b
            .post_json(
                PRODUCER_DR,
                &replacing(pointer("RYJ", 1, CRISIS), &[&other_patient]),
            )
            .await;
        assert_eq!(foreign.status, 422, "{}", foreign.text);
        assert_eq!(
            producer
                .get(&format!("{PRODUCER_DR}/{other_patient}"))
                .await
                .status,
            200
        );
        server.stop().await;
    }
}

#[tokio::test]
async fn producer_search_sees_only_its_own_pointers() {
    for &backend in BACKENDS {
        let server = TestServer::start(backend).await;
        let a = server.client("producer-a", "RR8").await;
        let b = server.client("producer-b", "RYJ").await;
        a.create(&pointer("RR8", 0, CRISIS)).await;
        a.create(&pointer("RR8", 0, RESPECT)).await;
        b.create(&pointer("RYJ", 0, CRISIS)).await;
        let own = a.get(&format!("{PRODUCER_DR}?{}", subject(0))).await.json();
        assert_eq!(own["total"], 2);
        assert!(
            own["entry"]
                .as_array()
                .unwrap()
                .iter()
                .all(|e| e["resource"]["custodian"]["identifier"]["value"] == "RR8")
        );
        let posted = Client::send(
            a.request(reqwest::Method::POST, &format!("{PRODUCER_DR}/_search"))
                .header("content-type", "application/json")
                .body(
                    json!({"subject:identifier": format!("{NHS}|{}", patient(0)), "type": RESPECT})
                        .to_string(),
                ),
        )
        .await;
        assert_eq!(posted.status, 200, "{}", posted.text);
        assert_eq!(posted.json()["total"], 1);
        let theirs = b.get(&format!("{PRODUCER_DR}?{}", subject(0))).await.json();
        assert_eq!(theirs["total"], 1);
        server.stop().await;
    }
}

#[tokio::test]
async fn producers_may_only_create_permitted_types_and_as_their_organisation() {
    for &backend in BACKENDS {
        let server = TestServer::start(backend).await;
        let b = server.client("producer-b", "RYJ").await;
        let reply = b.post_json(PRODUCER_DR, &pointer("RYJ", 0, RESPECT)).await;
        assert_eq!(
            (reply.status, reply.issue().0.as_str()),
            (403, "ACCESS_DENIED_LEVEL")
        );
        let custodian = b.post_json(PRODUCER_DR, &pointer("RR8", 0, CRISIS)).await;
        assert_eq!(custodian.status, 403);
        assert_eq!(
            custodian.issue(),
            (
                "AUTHOR_CREDENTIALS_ERROR".into(),
                "DocumentReference.custodian.identifier.value".into()
            )
        );
        // producer-a holds only the consumer role for RYJ.
        let a_as_ryj = server.client("producer-a", "RYJ").await;
        let role = a_as_ryj
            .post_json(PRODUCER_DR, &pointer("RYJ", 0, CRISIS))
            .await;
        assert_eq!(
            (role.status, role.issue().0.as_str()),
            (403, "ACCESS_DENIED")
        );
        let unknown_org = server.client("producer-a", "RX9").await;
        assert_eq!(
            unknown_org
                .post_json(PRODUCER_DR, &pointer("RX9", 0, CRISIS))
                .await
                .status,
            403
        );
        server.stop().await;
    }
}
