//! `nrls demo-subscriber` and `nrls demo-pointer`: see subscriptions work
//! against `serve --demo`. The subscriber listens on a local port, subscribes
//! the demo consumer to a demo patient's pointer changes with itself as the
//! endpoint, prints each notification and answers 200. `demo-pointer`
//! creates a ReSPECT form pointer for a demo patient as the demo producer.

use std::net::SocketAddr;

use axum::Router;
use axum::body::Bytes;
use axum::http::StatusCode;
use axum::routing::post;
use domain::catalogue::Catalogue;
use domain::{NhsNumber, OdsCode};
use serde_json::{Value, json};

use crate::dataset::{PointerSpec, document_reference};

/// A ReSPECT form (the type the demo notifies about).
const RESPECT: &str = "http://snomed.info/sct|1382601000000107";
const TOPIC: &str = "https://nrls.example.org/fhir/SubscriptionTopic/pointer-min-update";
const BACKPORT: &str = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition";

/// Arguments of `nrls demo-subscriber`.
#[derive(Debug, clap::Args)]
pub struct DemoSubscriberArgs {
    /// Where to listen for notifications.
    #[arg(long, default_value = "127.0.0.1:9090")]
    pub listen: SocketAddr,
    /// Base URL of the nrls server (started with `serve --demo`).
    #[arg(long, env = "NRLS_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// The demo patient to follow.
    #[arg(long, default_value = "9990000018")]
    pub patient: String,
    /// Only listen and print; do not create a subscription.
    #[arg(long)]
    pub no_subscribe: bool,
}

pub async fn run(args: DemoSubscriberArgs) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let endpoint = format!("http://{}/notify", args.listen);
    let app = Router::new().route("/notify", post(print_notification));
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    println!("listening for notifications at {endpoint}");
    if !args.no_subscribe {
        let id = subscribe(&args.url, &args.patient, &endpoint).await?;
        println!(
            "subscribed (demo-consumer, RX9) to pointer changes of patient {}: {}/consumer/FHIR/R4/Subscription/{id}",
            args.patient,
            args.url.trim_end_matches('/')
        );
    }
    match server.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// Subscribes the demo consumer to `patient`'s pointer changes (MinUpdate,
/// id-only) with `endpoint` as the rest-hook; returns the subscription id.
pub(crate) async fn subscribe(url: &str, patient: &str, endpoint: &str) -> Result<String, String> {
    NhsNumber::parse(patient).map_err(|e| format!("--patient: {e}"))?;
    let token = super::token::demo_token(url, crate::demo::CONSUMER_APP).await?;
    let body = json!({
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "nrls demo-subscriber",
        "criteria": TOPIC,
        "_criteria": {"extension": [{
            "url": format!("{BACKPORT}/backport-filter-criteria"),
            "valueString": format!("DocumentReference?patient.identifier=https://fhir.nhs.uk/Id/nhs-number|{patient}"),
        }]},
        "channel": {
            "type": "rest-hook",
            "endpoint": endpoint,
            "payload": "application/fhir+json",
            "_payload": {"extension": [{"url": format!("{BACKPORT}/backport-payload-content"), "valueCode": "id-only"}]},
        }
    });
    let reply = api_call(
        url,
        &token,
        crate::demo::CONSUMER_ODS,
        "/consumer/FHIR/R4/Subscription",
        &body,
    )
    .await?;
    reply["id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("no subscription id in {reply}"))
}

/// POSTs `body` to `path`; the JSON answer.
pub(crate) async fn api_call(
    url: &str,
    token: &str,
    ods: &str,
    path: &str,
    body: &Value,
) -> Result<Value, String> {
    api_post(url, token, ods, path, body).await.map(|(v, _)| v)
}

/// POSTs `body` to `path`; the JSON answer and its `Location`.
pub(crate) async fn api_post(
    url: &str,
    token: &str,
    ods: &str,
    path: &str,
    body: &Value,
) -> Result<(Value, Option<String>), String> {
    let response = reqwest::Client::new()
        .post(format!("{}{path}", url.trim_end_matches('/')))
        .bearer_auth(token)
        .header("NHSD-End-User-Organisation-ODS", ods)
        .header("X-Request-Id", uuid::Uuid::new_v4().to_string())
        .header("content-type", "application/fhir+json")
        .body(body.to_string())
        .send()
        .await
        .map_err(|e| format!("cannot reach {url}: {e}"))?;
    let status = response.status();
    let location = response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let text = response.text().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!("{path} answered {status}: {text}"));
    }
    let json = serde_json::from_str(&text).map_err(|e| format!("{path} answered non-JSON: {e}"))?;
    Ok((json, location))
}

/// Prints one line per notification (and per event), then the Bundle.
async fn print_notification(body: Bytes) -> StatusCode {
    let bundle: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let parameters = bundle["entry"][0]["resource"]["parameter"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let value = |name: &str| {
        parameters
            .iter()
            .find(|p| p["name"] == name)
            .map(|p| {
                p.as_object()
                    .and_then(|o| o.iter().find(|(k, _)| k.starts_with("value")))
                    .map(|(_, v)| v.to_string())
                    .unwrap_or_default()
            })
            .unwrap_or_default()
    };
    println!(
        "{} {} status={} events-since-start={}",
        domain::clock::now_instant(),
        value("type").trim_matches('"'),
        value("status").trim_matches('"'),
        value("events-since-subscription-start").trim_matches('"'),
    );
    for event in parameters
        .iter()
        .filter(|p| p["name"] == "notification-event")
    {
        let part = |name: &str| -> Vec<String> {
            event["part"]
                .as_array()
                .map(|parts| {
                    parts
                        .iter()
                        .filter(|p| p["name"] == name)
                        .map(|p| {
                            p["valueString"]
                                .as_str()
                                .or(p["valueReference"]["reference"].as_str())
                                .unwrap_or_default()
                                .to_owned()
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        println!(
            "  event {}: {} (replaces: {})",
            part("event-number").join(""),
            part("focus").join(""),
            part("additional-context").join(", ")
        );
    }
    StatusCode::OK
}

/// Arguments of `nrls demo-pointer`.
#[derive(Debug, clap::Args)]
pub struct DemoPointerArgs {
    /// Base URL of the nrls server (started with `serve --demo`).
    #[arg(long, env = "NRLS_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// The demo patient the ReSPECT form is for.
    #[arg(long, default_value = "9990000018")]
    pub patient: String,
    /// The custodian (a demo organisation the demo producer acts for).
    #[arg(long, default_value = "RR8")]
    pub custodian: String,
}

/// Creates a ReSPECT form pointer through the producer API.
pub async fn create_pointer(args: DemoPointerArgs) -> Result<(), String> {
    let nhs_number = NhsNumber::parse(&args.patient).map_err(|e| format!("--patient: {e}"))?;
    let custodian = OdsCode::parse(&args.custodian).ok_or("--custodian is not an ODS code")?;
    let body = respect_form(nhs_number, &custodian)?;
    let token = super::token::demo_token(&args.url, crate::demo::PRODUCER_APP).await?;
    api_call(
        &args.url,
        &token,
        custodian.as_str(),
        "/producer/FHIR/R4/DocumentReference",
        &body,
    )
    .await?;
    println!("created a ReSPECT form pointer for {nhs_number}, custodian {custodian}");
    Ok(())
}

/// A new ReSPECT form pointer for `nhs_number`, as a producer submits it.
pub(crate) fn respect_form(nhs_number: NhsNumber, custodian: &OdsCode) -> Result<Value, String> {
    let pointer_type = Catalogue::nrl_v3()
        .find_key(RESPECT)
        .ok_or("ReSPECT forms are not in the catalogue")?;
    let local_id = format!("respect-{}", uuid::Uuid::new_v4().simple());
    let mut body = document_reference(&PointerSpec {
        nhs_number,
        custodian,
        pointer_type,
        local_id: &local_id,
        created_offset: 0,
    });
    // The server assigns the id.
    if let Some(object) = body.as_object_mut() {
        object.remove("id");
    }
    Ok(body)
}
