//! Consumer API, black-box: search (GET and POST), filters, counts, paging and
//! read, with permissions enforced on type system and code.

use crate::support;

use serde_json::{Value, json};
use support::*;

fn ids(bundle: &Value) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .map(|e| {
            e.iter()
                .map(|e| e["resource"]["id"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

async fn seeded(backend: nrls::config::Backend) -> (TestServer, Vec<String>) {
    let server = TestServer::start(backend).await;
    let a = server.client("producer-a", "RR8").await;
    let b = server.client("producer-b", "RYJ").await;
    let mut created = Vec::new();
    for t in [CRISIS, RESPECT, NEWS2, NICIP_MAULR] {
        created.push(a.create(&pointer("RR8", 0, t)).await);
    }
    created.push(b.create(&pointer("RYJ", 0, CRISIS)).await);
    a.create(&pointer("RR8", 1, CRISIS)).await;
    (server, created)
}

#[tokio::test]
async fn search_by_nhs_number_returns_that_patients_pointers_newest_first() {
    for &backend in BACKENDS {
        let (server, created) = seeded(backend).await;
        let consumer = server.client("consumer", "RX9").await;
        let reply = consumer.consumer_search(&subject(0)).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        let bundle = reply.json();
        assert_eq!(
            (bundle["resourceType"].as_str(), bundle["type"].as_str()),
            (Some("Bundle"), Some("searchset"))
        );
        assert_eq!(bundle["total"], 5);
        let mut expected = created.clone();
        expected.reverse();
        assert_eq!(ids(&bundle), expected);
        let entry = &bundle["entry"][0];
        assert_eq!(entry["search"]["mode"], "match");
        assert_eq!(
            entry["fullUrl"],
            format!("{}{CONSUMER_DR}/{}", server.url, expected[0])
        );
        assert!(
            bundle["link"][0]["url"]
                .as_str()
                .unwrap()
                .contains("subject%3Aidentifier")
        );

        let none = consumer.consumer_search(&subject(5)).await.json();
        assert_eq!(none["total"], 0);
        assert!(none.get("entry").is_none());
        server.stop().await;
    }
}

#[tokio::test]
async fn filters_combine_type_category_and_custodian() {
    for &backend in BACKENDS {
        let (server, _) = seeded(backend).await;
        let c = server.client("consumer", "RX9").await;
        let total = |q: String| {
            let c = c.clone();
            async move {
                let r = c.consumer_search(&q).await;
                assert_eq!(r.status, 200, "{q}: {}", r.text);
                r.json()["total"].as_u64().unwrap()
            }
        };
        let s = subject(0);
        let enc = |t: &str| t.replace('|', "%7C");
        assert_eq!(total(format!("{s}&type={}", enc(CRISIS))).await, 2);
        assert_eq!(
            total(format!("{s}&type={},{}", enc(CRISIS), enc(NEWS2))).await,
            3
        );
        assert_eq!(
            total(format!("{s}&category=http://snomed.info/sct%7C734163000")).await,
            3
        );
        assert_eq!(
            total(format!("{s}&category=http://snomed.info/sct%7C734163000,http://snomed.info/sct%7C1102421000000108")).await,
            4
        );
        let custodian = "custodian:identifier=https://fhir.nhs.uk/Id/ods-organization-code%7CRYJ";
        assert_eq!(total(format!("{s}&{custodian}")).await, 1);
        assert_eq!(
            total(format!("{s}&{custodian}&type={}", enc(RESPECT))).await,
            0
        );
        server.stop().await;
    }
}

#[tokio::test]
async fn post_search_and_get_search_agree() {
    for &backend in BACKENDS {
        let (server, _) = seeded(backend).await;
        let c = server.client("consumer", "RX9").await;
        let get = c
            .consumer_search(&format!(
                "{}&type={}",
                subject(0),
                CRISIS.replace('|', "%7C")
            ))
            .await
            .json();
        let json_body = Client::send(
            c.request(reqwest::Method::POST, &format!("{CONSUMER_DR}/_search"))
                .header("content-type", "application/json")
                .body(
                    json!({"subject:identifier": format!("{NHS}|{}", patient(0)), "type": CRISIS})
                        .to_string(),
                ),
        )
        .await;
        assert_eq!(json_body.status, 200, "{}", json_body.text);
        let form = Client::send(
            c.request(reqwest::Method::POST, &format!("{CONSUMER_DR}/_search"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(format!(
                    "{}&type={}",
                    subject(0),
                    CRISIS.replace('|', "%7C")
                )),
        )
        .await;
        assert_eq!(form.status, 200, "{}", form.text);
        assert_eq!(ids(&get), ids(&json_body.json()));
        assert_eq!(ids(&get), ids(&form.json()));
        server.stop().await;
    }
}

#[tokio::test]
async fn summary_count_gives_the_total_only() {
    for &backend in BACKENDS {
        let (server, _) = seeded(backend).await;
        let c = server.client("consumer-crisis", "RX9").await;
        let reply = c
            .consumer_search(&format!("{}&_summary=count", subject(0)))
            .await
            .json();
        assert_eq!(reply["total"], 2, "only the permitted type is counted");
        assert!(reply.get("entry").is_none());
        server.stop().await;
    }
}

#[tokio::test]
async fn paging_walks_every_match_once_and_is_stable_under_inserts() {
    for &backend in BACKENDS {
        let server = TestServer::start(backend).await;
        let producer = server.client("producer-a", "RR8").await;
        let consumer = server.client("consumer", "RX9").await;
        let mut created = Vec::new();
        for _ in 0..7 {
            created.push(producer.create(&pointer("RR8", 2, CRISIS)).await);
        }
        let first = consumer
            .consumer_search(&format!("{}&_count=3", subject(2)))
            .await
            .json();
        assert_eq!(first["total"], 7);
        let mut seen = ids(&first);
        assert_eq!(seen.len(), 3);
        let mut next = first["link"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["relation"] == "next")
            .cloned();
        // A pointer created mid-paging must not shift or repeat later pages.
        producer.create(&pointer("RR8", 2, CRISIS)).await;
        while let Some(link) = next {
            let url = link["url"].as_str().unwrap();
            assert!(url.starts_with(&server.url));
            let page = consumer.get(&url[server.url.len()..]).await;
            assert_eq!(page.status, 200, "{}", page.text);
            let page = page.json();
            assert_eq!(page["total"], 8);
            seen.extend(ids(&page));
            next = page["link"]
                .as_array()
                .unwrap()
                .iter()
                .find(|l| l["relation"] == "next")
                .cloned();
        }
        created.reverse();
        assert_eq!(seen, created);

        // A cursor replayed with other filters is refused.
        let cursor_url = first["link"][1]["url"].as_str().unwrap();
        let cursor = cursor_url.split("_cursor=").nth(1).unwrap();
        let replay = consumer
            .consumer_search(&format!(
                "{}&type={}&_cursor={cursor}",
                subject(2),
                CRISIS.replace('|', "%7C")
            ))
            .await;
        assert_eq!((replay.status, replay.issue().1.as_str()), (400, "_cursor"));
        let other_patient = consumer
            .consumer_search(&format!("{}&_cursor={cursor}", subject(3)))
            .await;
        assert_eq!(other_patient.status, 400);
        server.stop().await;
    }
}

#[tokio::test]
async fn page_size_has_a_default_and_a_maximum() {
    let server = TestServer::start_with(nrls::config::Backend::Memory, |c| {
        c.search.default_count = 2;
        c.search.max_count = 4;
    })
    .await;
    let producer = server.client("producer-a", "RR8").await;
    for _ in 0..5 {
        producer.create(&pointer("RR8", 0, CRISIS)).await;
    }
    let c = server.client("consumer", "RX9").await;
    let default = c.consumer_search(&subject(0)).await.json();
    assert_eq!(
        (default["total"].as_u64(), ids(&default).len()),
        (Some(5), 2)
    );
    let too_big = c.consumer_search(&format!("{}&_count=5", subject(0))).await;
    assert_eq!(
        (too_big.status, too_big.issue().1.as_str()),
        (400, "_count")
    );
    server.stop().await;
}

#[tokio::test]
async fn consumer_read_hides_types_it_may_not_see() {
    for &backend in BACKENDS {
        let (server, created) = seeded(backend).await;
        let all = server.client("consumer", "RX9").await;
        let crisis_only = server.client("consumer-crisis", "RX9").await;
        let respect = &created[1];
        let read = all.get(&format!("{CONSUMER_DR}/{respect}")).await;
        assert_eq!(read.status, 200);
        assert_eq!(read.header("etag").as_deref(), Some("W/\"1\""));
        let hidden = crisis_only.get(&format!("{CONSUMER_DR}/{respect}")).await;
        let missing = crisis_only
            .get(&format!("{CONSUMER_DR}/RR8-no-such-pointer"))
            .await;
        assert_eq!((hidden.status, missing.status), (404, 404));
        assert_eq!(
            hidden.issue().0,
            missing.issue().0,
            "a hidden pointer looks exactly like a missing one"
        );
        let crisis = crisis_only
            .get(&format!("{CONSUMER_DR}/{}", created[0]))
            .await;
        assert_eq!(crisis.status, 200);
        server.stop().await;
    }
}

#[tokio::test]
async fn search_results_respect_type_permissions() {
    for &backend in BACKENDS {
        let (server, _) = seeded(backend).await;
        let c = server.client("consumer-crisis", "RX9").await;
        let bundle = c.consumer_search(&subject(0)).await.json();
        assert_eq!(bundle["total"], 2);
        for entry in bundle["entry"].as_array().unwrap() {
            assert_eq!(entry["resource"]["type"]["coding"][0]["code"], "736253002");
        }
        let asked = c
            .consumer_search(&format!(
                "{}&type={}",
                subject(0),
                RESPECT.replace('|', "%7C")
            ))
            .await;
        assert_eq!(
            (asked.status, asked.issue().0.as_str()),
            (403, "ACCESS_DENIED_LEVEL")
        );
        server.stop().await;
    }
}
