//! HTTP protocol behaviour, black-box: authentication, required headers, media
//! types, malformed bodies, limits, discovery endpoints and unknown routes.

use crate::support;

use nrls::config::Backend;
use reqwest::Method;
use serde_json::{Value, json};
use support::*;

#[tokio::test]
async fn every_api_call_needs_a_valid_bearer_token() {
    let server = TestServer::start(Backend::Memory).await;
    let good = server.client("consumer", "RX9").await;
    let path = format!("{CONSUMER_DR}?{}", subject(0));
    let cases: Vec<(&str, Option<String>)> = vec![
        ("missing", None),
        ("garbage", Some("not-a-token".into())),
        (
            "tampered",
            Some({
                let t = good.token.clone().unwrap();
                let mut bytes = t.into_bytes();
                let last = bytes.len() - 3;
                bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
                String::from_utf8(bytes).unwrap()
            }),
        ),
    ];
    for (name, token) in cases {
        let client = Client {
            token,
            ..good.clone()
        };
        let reply = client.get(&path).await;
        assert_eq!(reply.status, 401, "{name}: {}", reply.text);
        assert_eq!(reply.issue().0, "ACCESS_DENIED");
        assert_eq!(reply.header("www-authenticate").as_deref(), Some("Bearer"));
    }
    for (method, p) in [
        (Method::POST, PRODUCER_DR.to_owned()),
        (Method::GET, format!("{PRODUCER_DR}/RR8-x")),
        (Method::DELETE, format!("{PRODUCER_DR}/RR8-x")),
    ] {
        let anon = Client {
            token: None,
            ..good.clone()
        };
        assert_eq!(Client::send(anon.request(method, &p)).await.status, 401);
    }
    server.stop().await;
}

#[tokio::test]
async fn a_token_from_another_server_is_refused() {
    let one = TestServer::start(Backend::Memory).await;
    let two = TestServer::start(Backend::Memory).await;
    let mut client = one.client("consumer", "RX9").await;
    client.url = two.url.clone();
    assert_eq!(client.consumer_search(&subject(0)).await.status, 401);
    one.stop().await;
    two.stop().await;
}

#[tokio::test]
async fn required_headers_are_checked() {
    let server = TestServer::start(Backend::Memory).await;
    let c = server.client("consumer", "RX9").await;
    let path = format!("{CONSUMER_DR}?{}", subject(0));
    let no_ods = Client {
        ods: None,
        ..c.clone()
    };
    let r = no_ods.get(&path).await;
    assert_eq!(
        (r.status, r.issue()),
        (
            400,
            (
                "MISSING_OR_INVALID_HEADER".into(),
                "NHSD-End-User-Organisation-ODS".into()
            )
        )
    );
    let bad_ods = Client {
        ods: Some("not an ods!".into()),
        ..c.clone()
    };
    assert_eq!(bad_ods.get(&path).await.status, 400);

    let send = |request_id: Option<&str>, extra: Option<(&str, &str)>| {
        let mut r = c
            .http
            .get(format!("{}{path}", c.url))
            .bearer_auth(c.token.clone().unwrap())
            .header("NHSD-End-User-Organisation-ODS", "RX9");
        if let Some(id) = request_id {
            r = r.header("X-Request-Id", id);
        }
        if let Some((k, v)) = extra {
            r = r.header(k, v);
        }
        Client::send(r)
    };
    let missing = send(None, None).await;
    assert_eq!(
        (missing.status, missing.issue().1.as_str()),
        (400, "X-Request-Id")
    );
    let malformed = send(Some("12345"), None).await;
    assert_eq!(
        (malformed.status, malformed.issue().1.as_str()),
        (400, "X-Request-Id")
    );
    assert_eq!(
        malformed.header("x-request-id").as_deref(),
        Some("12345"),
        "echoed even on error"
    );
    let long = "x".repeat(300);
    let bad_corr = send(Some(&request_id()), Some(("NHSD-Correlation-Id", &long))).await;
    assert_eq!(
        (bad_corr.status, bad_corr.issue().1.as_str()),
        (400, "nhsd-correlation-id")
    );

    let id = request_id();
    let ok = send(Some(&id), Some(("X-Correlation-Id", "corr-123"))).await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.header("x-request-id"), Some(id));
    assert_eq!(ok.header("x-correlation-id").as_deref(), Some("corr-123"));
    server.stop().await;
}

#[tokio::test]
async fn media_types_are_negotiated() {
    let server = TestServer::start(Backend::Memory).await;
    let p = server.client("producer-a", "RR8").await;
    let body = pointer("RR8", 0, CRISIS).to_string();
    for ct in [
        "application/fhir+json",
        "application/fhir+json;version=1",
        "application/json; charset=utf-8",
    ] {
        let r = Client::send(
            p.request(Method::POST, PRODUCER_DR)
                .header("content-type", ct)
                .body(body.clone()),
        )
        .await;
        assert_eq!(r.status, 201, "{ct}: {}", r.text);
        assert_eq!(
            r.header("content-type").as_deref(),
            Some("application/fhir+json")
        );
    }
    let xml = Client::send(
        p.request(Method::POST, PRODUCER_DR)
            .header("content-type", "application/xml")
            .body(body.clone()),
    )
    .await;
    assert_eq!(
        (xml.status, xml.issue().0.as_str()),
        (415, "UNSUPPORTED_MEDIA_TYPE")
    );
    let none = Client::send(p.request(Method::POST, PRODUCER_DR).body(body.clone())).await;
    assert_eq!(none.status, 415);
    let accept = Client::send(
        p.request(Method::GET, &format!("{PRODUCER_DR}?{}", subject(0)))
            .header("accept", "application/xml"),
    )
    .await;
    assert_eq!(accept.status, 406);
    server.stop().await;
}

#[tokio::test]
async fn malformed_bodies_get_clear_outcomes_never_500() {
    let server = TestServer::start(Backend::Sqlite).await;
    let p = server.client("producer-a", "RR8").await;
    let post = |body: String| {
        let p = p.clone();
        async move {
            Client::send(
                p.request(Method::POST, PRODUCER_DR)
                    .header("content-type", "application/fhir+json")
                    .body(body),
            )
            .await
        }
    };
    let cases: Vec<(String, u16, &str)> = vec![
        ("".into(), 400, "MESSAGE_NOT_WELL_FORMED"),
        ("{".into(), 400, "MESSAGE_NOT_WELL_FORMED"),
        ("{\"a\":1} {}".into(), 400, "MESSAGE_NOT_WELL_FORMED"),
        ("[]".into(), 400, "INVALID_RESOURCE"),
        ("\"text\"".into(), 400, "INVALID_RESOURCE"),
        ("null".into(), 400, "INVALID_RESOURCE"),
        (r#"{"status": 5}"#.into(), 400, "INVALID_RESOURCE"),
        (
            format!("{}{}", "[".repeat(200), "]".repeat(200)),
            400,
            "INVALID_RESOURCE",
        ),
        (
            format!(
                r#"{{"resourceType":"DocumentReference","text":{}{}}}"#,
                "[".repeat(200),
                "]".repeat(200)
            ),
            400,
            "MESSAGE_NOT_WELL_FORMED",
        ),
        ("{}".into(), 400, "INVALID_RESOURCE"),
        (
            String::from_utf8_lossy(&[0xff, 0xfe, 0x00]).into_owned(),
            400,
            "MESSAGE_NOT_WELL_FORMED",
        ),
    ];
    for (body, status, code) in cases {
        let r = post(body.clone()).await;
        assert_eq!(
            (r.status, r.issue().0.as_str()),
            (status, code),
            "{body:.40}: {}",
            r.text
        );
    }
    let typed =
        post(r#"{"resourceType":"DocumentReference","subject":{"identifier":{"value":9}}}"#.into())
            .await;
    assert_eq!(
        typed.issue().1,
        "DocumentReference.subject.identifier.value"
    );

    // Every rule broken at once: all reported together, each with its element.
    let mut bad = pointer("RR8", 0, CRISIS);
    bad["status"] = json!("superseded");
    bad["subject"]["identifier"]["value"] = json!("9999999998");
    bad["content"][0]["attachment"]["data"] = json!("aGVsbG8=");
    bad["author"] = json!([]);
    let r = post(bad.to_string()).await;
    assert_eq!(r.status, 400);
    let exprs: Vec<String> = r.issues().into_iter().map(|(_, e)| e).collect();
    for e in [
        "DocumentReference.status",
        "DocumentReference.subject.identifier.value",
        "DocumentReference.content[0].attachment.data",
        "DocumentReference.author",
    ] {
        assert!(exprs.contains(&e.to_owned()), "{e} missing from {exprs:?}");
    }
    server.stop().await;
}

#[tokio::test]
async fn bodies_over_the_limit_are_413() {
    let server =
        TestServer::start_with(Backend::Memory, |c| c.server.body_limit_bytes = 4096).await;
    let p = server.client("producer-a", "RR8").await;
    let mut big = pointer("RR8", 0, CRISIS);
    big["description"] = json!("x".repeat(5000));
    let r = p.post_json(PRODUCER_DR, &big).await;
    assert_eq!((r.status, r.issue().0.as_str()), (413, "PAYLOAD_TOO_LARGE"));
    server.stop().await;
}

#[tokio::test]
async fn search_parameter_errors_name_the_parameter() {
    let server = TestServer::start(Backend::Memory).await;
    let c = server.client("consumer", "RX9").await;
    let s = subject(0);
    let cases = [
        (String::new(), "INVALID_PARAMETER", "subject:identifier"),
        (
            format!("subject:identifier={NHS}%7C9999999998"),
            "INVALID_NHS_NUMBER",
            "subject:identifier",
        ),
        (
            "subject:identifier=urn:x%7C9999999999".to_owned(),
            "INVALID_IDENTIFIER_SYSTEM",
            "subject:identifier",
        ),
        (format!("{s}&unknown=1"), "INVALID_PARAMETER", "unknown"),
        (
            format!("{s}&type=http://snomed.info/sct%7C123"),
            "INVALID_CODE_VALUE",
            "type",
        ),
        (
            format!("{s}&_summary=data"),
            "INVALID_PARAMETER",
            "_summary",
        ),
        (format!("{s}&_count=abc"), "INVALID_PARAMETER", "_count"),
        (
            format!("{s}&_cursor=%00%01"),
            "INVALID_PARAMETER",
            "_cursor",
        ),
        (
            format!("{s}&{s}"),
            "INVALID_PARAMETER",
            "subject:identifier",
        ),
    ];
    for (query, code, expression) in cases {
        let r = c.consumer_search(&query).await;
        assert_eq!(
            (r.status, r.issue()),
            (400, (code.to_owned(), expression.to_owned())),
            "{query}"
        );
    }
    let bad_post = Client::send(
        c.request(Method::POST, &format!("{CONSUMER_DR}/_search"))
            .header("content-type", "application/json")
            .body(r#"{"subject:identifier": 5}"#),
    )
    .await;
    assert_eq!(bad_post.status, 400);
    server.stop().await;
}

#[tokio::test]
async fn discovery_and_status_endpoints() {
    let server = TestServer::start(Backend::Sqlite).await;
    let anon = server.anonymous();
    for base in ["/producer/FHIR/R4", "/consumer/FHIR/R4"] {
        let meta = anon.get(&format!("{base}/metadata")).await;
        assert_eq!(meta.status, 200);
        let cs = meta.json();
        assert_eq!(cs["resourceType"], "CapabilityStatement");
        assert_eq!(cs["rest"][0]["resource"][0]["type"], "DocumentReference");
        let status = anon.get(&format!("{base}/_status")).await;
        assert_eq!(status.status, 200);
        assert!(status.text.contains("sqlite"));
    }
    let smart = anon.get("/.well-known/smart-configuration").await.json();
    assert_eq!(
        smart["token_endpoint"],
        format!("{}/oauth2/token", server.url)
    );
    assert!(
        smart["token_endpoint_auth_signing_alg_values_supported"]
            .as_array()
            .unwrap()
            .contains(&json!("RS384"))
    );
    server.stop().await;
}

/// The CapabilityStatement is the contract: every parameter it lists is
/// accepted, and a parameter it does not list is refused.
#[tokio::test]
async fn capability_statement_matches_what_is_accepted() {
    let server = TestServer::start(Backend::Memory).await;
    for (base, client) in [
        ("/consumer/FHIR/R4", server.client("consumer", "RX9").await),
        (
            "/producer/FHIR/R4",
            server.client("producer-a", "RR8").await,
        ),
    ] {
        let cs = client.get(&format!("{base}/metadata")).await.json();
        let params: Vec<String> = cs["rest"][0]["resource"][0]["searchParam"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_owned())
            .collect();
        let sample = |name: &str| -> Option<String> {
            Some(match name {
                "subject:identifier" => return None,
                "custodian:identifier" => {
                    "https://fhir.nhs.uk/Id/ods-organization-code%7CRR8".into()
                }
                "type" => CRISIS.replace('|', "%7C"),
                "category" => "http://snomed.info/sct%7C734163000".into(),
                "_summary" => "count".into(),
                "_count" => "5".into(),
                "_cursor" => return None,
                other => panic!("untested parameter {other}"),
            })
        };
        for name in &params {
            if let Some(value) = sample(name) {
                let r = client
                    .get(&format!(
                        "{base}/DocumentReference?{}&{name}={value}",
                        subject(0)
                    ))
                    .await;
                assert_eq!(r.status, 200, "{base} {name}: {}", r.text);
            }
        }
        for name in [
            "custodian:identifier",
            "_count",
            "type",
            "category",
            "_summary",
            "subject:identifier",
            "date",
            "_sort",
            "_include",
        ] {
            if !params.contains(&name.to_owned()) {
                let r = client
                    .get(&format!("{base}/DocumentReference?{}&{name}=x", subject(0)))
                    .await;
                assert_eq!(
                    (r.status, r.issue().1.as_str()),
                    (400, name),
                    "{base} {name}"
                );
            }
        }
        let interactions: Vec<String> = cs["rest"][0]["resource"][0]["interaction"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["code"].as_str().unwrap().to_owned())
            .collect();
        let write_allowed = client
            .delete(&format!("{base}/DocumentReference/RR8-x"))
            .await
            .status
            != 405;
        assert_eq!(
            write_allowed,
            interactions.contains(&"delete".to_owned()),
            "{base}"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn unknown_routes_and_methods_are_operation_outcomes() {
    let server = TestServer::start(Backend::Memory).await;
    let c = server.client("consumer", "RX9").await;
    let r = c.get("/nowhere").await;
    assert_eq!(
        (r.status, r.issue().0.as_str()),
        (404, "RESOURCE_NOT_FOUND")
    );
    let m = Client::send(c.request(Method::PATCH, &format!("{CONSUMER_DR}/RR8-x"))).await;
    assert_eq!(
        (m.status, m.issue().0.as_str()),
        (405, "METHOD_NOT_ALLOWED")
    );
    let bad_id = c.get(&format!("{CONSUMER_DR}/not_an_id!")).await;
    assert_eq!(bad_id.status, 404);
    server.stop().await;
}

#[tokio::test]
async fn token_endpoint_follows_rfc_6749() {
    let server = TestServer::start(Backend::Memory).await;
    let endpoint = format!("{}/oauth2/token", server.url);
    let post = |body: String, ct: &'static str| {
        let http = server.http.clone();
        let endpoint = endpoint.clone();
        async move {
            let r = http
                .post(endpoint)
                .header("content-type", ct)
                .body(body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let cache = r
                .headers()
                .get("cache-control")
                .map(|v| v.to_str().unwrap().to_owned());
            (status, r.json::<Value>().await.unwrap(), cache)
        }
    };
    let (status, body, cache) = post("grant_type=password&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion=x".into(), "application/x-www-form-urlencoded").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("unsupported_grant_type"))
    );
    assert_eq!(cache.as_deref(), Some("no-store"));
    let (status, body, _) = post("{}".into(), "application/json").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request"))
    );
    // An assertion for the wrong audience.
    let key = auth::demo::signing_key("consumer").unwrap();
    let wrong_aud = auth::mint_client_assertion(
        "consumer",
        "http://elsewhere/token",
        &key,
        std::time::Duration::from_secs(60),
    )
    .unwrap();
    let (status, body, _) = post(
        format!("grant_type=client_credentials&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion={wrong_aud}"),
        "application/x-www-form-urlencoded",
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
    // Signed with another app's key.
    let other = auth::demo::signing_key("producer-a").unwrap();
    let forged = auth::mint_client_assertion(
        "consumer",
        &endpoint,
        &other,
        std::time::Duration::from_secs(60),
    )
    .unwrap();
    let (status, _, _) = post(
        format!("grant_type=client_credentials&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion={forged}"),
        "application/x-www-form-urlencoded",
    )
    .await;
    assert_eq!(status, 401);
    server.stop().await;
}

#[tokio::test]
async fn gateway_mode_is_off_by_default_and_trusts_connection_metadata_when_on() {
    let meta = json!({"nrl.ods-code": "RX9", "nrl.pointer-types": [CRISIS], "client_rp_details": {"developer.app.id": "gw-app"}}).to_string();
    let off = TestServer::start(Backend::Memory).await;
    let r = Client::send(
        off.anonymous()
            .request(Method::GET, &format!("{CONSUMER_DR}?{}", subject(0)))
            .header("NHSD-Connection-Metadata", meta.clone())
            .header("NHSD-End-User-Organisation-ODS", "RX9"),
    )
    .await;
    assert_eq!(r.status, 401);
    off.stop().await;

    let on = TestServer::start_with(Backend::Memory, |c| c.server.gateway_mode = true).await;
    on.client("producer-a", "RR8")
        .await
        .create(&pointer("RR8", 0, RESPECT))
        .await;
    on.client("producer-a", "RR8")
        .await
        .create(&pointer("RR8", 0, CRISIS))
        .await;
    let r = Client::send(
        on.anonymous()
            .request(Method::GET, &format!("{CONSUMER_DR}?{}", subject(0)))
            .header("NHSD-Connection-Metadata", meta)
            .header("NHSD-End-User-Organisation-ODS", "RX9"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["total"], 1, "only the gateway-granted type");
    on.stop().await;
}

#[tokio::test]
async fn apps_over_their_rate_limit_get_429_with_retry_after() {
    let server = TestServer::start_with(Backend::Memory, |c| {
        for app in &mut c.apps {
            if app.client_id == "consumer-crisis" {
                app.rate_limit_per_second = Some(3);
            }
        }
    })
    .await;
    let limited = server.client("consumer-crisis", "RX9").await;
    let free = server.client("consumer", "RX9").await;
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(limited.consumer_search(&subject(0)).await.status);
    }
    assert_eq!(&statuses[..3], &[200, 200, 200], "{statuses:?}");
    let refused = limited.consumer_search(&subject(0)).await;
    assert_eq!(
        (refused.status, refused.issue().0.as_str()),
        (429, "TOO_MANY_REQUESTS")
    );
    assert!(
        refused
            .header("retry-after")
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );
    for _ in 0..10 {
        assert_eq!(
            free.consumer_search(&subject(0)).await.status,
            200,
            "other apps are not limited"
        );
    }
    server.stop().await;
}
