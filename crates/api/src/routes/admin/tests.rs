//! The admin router end to end, through tower, on the in-memory backends.

use std::sync::Arc;
use std::time::Duration;

use audit::memory::MemoryAuditLog;
use audit::{
    AccessFacts, AuditFacts, AuditLog, AuditOutcome, AuditQuery, CheckpointPolicy,
    CheckpointSigner, Interaction, now_rfc3339,
};
use auth::config::OrganisationConfig;
use auth::{AppRegistry, Authenticator, TokenSettings};
use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use domain::NhsNumber;
use serde_json::{Value, json};
use store::access::memory::MemoryAccessStore;
use tower::ServiceExt;

use super::routes;
use crate::access::AccessServices;
use crate::ops::Ops;
use crate::{ApiSettings, AppState};

const ISSUER: &str = "http://nrls.test";
const ENDPOINT: &str = "http://nrls.test/oauth2/token";
const REQUEST_ID: &str = "6b2f3f0e-8d7c-4d1a-9b1e-2f6c9a0d4e11";

struct Fixture {
    router: Router,
    audit: Arc<MemoryAuditLog>,
    admin_token: String,
    other_token: String,
}

async fn token(auth: &Authenticator, client_id: &str) -> String {
    let key = auth::demo::signing_key(client_id).unwrap();
    let assertion =
        auth::mint_client_assertion(client_id, ENDPOINT, &key, Duration::from_secs(60)).unwrap();
    let form = vec![
        ("grant_type".to_owned(), "client_credentials".to_owned()),
        (
            "client_assertion_type".to_owned(),
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".to_owned(),
        ),
        ("client_assertion".to_owned(), assertion),
    ];
    auth.issue_token(&form).await.unwrap().access_token
}

async fn fixture() -> Fixture {
    let org = || OrganisationConfig {
        ods: "X26".into(),
        roles: vec!["consumer".into()],
        pointer_types: vec!["http://snomed.info/sct|736253002".into()],
    };
    let registry = AppRegistry::from_configs(&[
        auth::demo::app_config("privacy-office", "Privacy office", vec![org()]),
        auth::demo::app_config("ambulance", "Ambulance", vec![org()]),
    ])
    .unwrap();
    let auth = Arc::new(
        Authenticator::new(
            Arc::new(registry),
            TokenSettings::new(
                ISSUER,
                ENDPOINT,
                b"0123456789abcdef0123456789abcdef".to_vec(),
            ),
        )
        .unwrap(),
    );
    let audit = Arc::new(MemoryAuditLog::new(
        CheckpointSigner::from_seed([5; 32]),
        CheckpointPolicy::default(),
    ));
    let access = AccessServices {
        facts: Arc::new(MemoryAccessStore::new()),
        audit: audit.clone(),
        node: "node-1".to_owned(),
        ..AccessServices::in_memory()
    };
    let settings = ApiSettings {
        public_url: "http://nrls.test".to_owned(),
        admin_clients: vec!["privacy-office".to_owned()],
        ..ApiSettings::default()
    };
    let store = Arc::new(store::memory::MemoryStore::new());
    let state = AppState::with_ops(store, Arc::clone(&auth), settings, Ops::default(), access);
    // The admin routes as `/admin` serves them, without the prefix.
    let router = routes().into_parts().0.with_state(state);
    Fixture {
        router,
        admin_token: token(&auth, "privacy-office").await,
        other_token: token(&auth, "ambulance").await,
        audit,
    }
}

impl Fixture {
    async fn call(&self, method: Method, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.call_as(&self.admin_token, method, uri, body).await
    }

    async fn call_as(
        &self,
        token: &str,
        method: Method,
        uri: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header("x-request-id", REQUEST_ID)
            .header("authorization", format!("Bearer {token}"));
        if body.is_some() {
            request = request.header("content-type", "application/json");
        }
        let body = body.map_or(Body::empty(), |b| Body::from(b.to_string()));
        let response = self
            .router
            .clone()
            .oneshot(request.body(body).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    async fn audit_count(&self) -> usize {
        let query = AuditQuery {
            count: 1000,
            ..AuditQuery::default()
        };
        self.audit.search(&query).await.unwrap().records.len()
    }
}

const PATIENT: &str = "9990000018";

#[tokio::test]
async fn relationships_and_objections_are_managed_and_audited() {
    let f = fixture().await;
    let body = json!({ "patient": PATIENT, "ods": "rx1", "kind": "referral" });
    let (status, created) = f
        .call(Method::POST, "/relationships", Some(body.clone()))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["ods"], "RX1");
    assert_eq!(
        f.call(Method::POST, "/relationships", Some(body)).await.0,
        StatusCode::CONFLICT
    );
    let bad = json!({ "patient": PATIENT, "ods": "RX1", "kind": "friend" });
    assert_eq!(
        f.call(Method::POST, "/relationships", Some(bad)).await.0,
        StatusCode::BAD_REQUEST
    );

    let (status, list) = f
        .call(
            Method::GET,
            &format!("/relationships?patient={PATIENT}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["relationships"].as_array().unwrap().len(), 1);
    assert_eq!(
        f.call(Method::GET, "/relationships?nhs=1", None).await.0,
        StatusCode::BAD_REQUEST
    );
    let id = created["id"].as_u64().unwrap();
    assert_eq!(
        f.call(Method::DELETE, &format!("/relationships/{id}"), None)
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        f.call(Method::DELETE, &format!("/relationships/{id}"), None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );

    let objection = format!("/patients/{PATIENT}/objection");
    assert_eq!(
        f.call(Method::GET, &objection, None).await.0,
        StatusCode::NOT_FOUND
    );
    let (status, recorded) = f
        .call(Method::PUT, &objection, Some(json!({ "note": "letter" })))
        .await;
    assert_eq!(
        (status, recorded["note"].as_str()),
        (StatusCode::OK, Some("letter"))
    );
    assert_eq!(
        f.call(Method::GET, &objection, None).await.0,
        StatusCode::OK
    );
    assert_eq!(
        f.call(Method::DELETE, &objection, None).await.0,
        StatusCode::OK
    );
    assert_eq!(
        f.call(Method::DELETE, &objection, None).await.0,
        StatusCode::NOT_FOUND
    );

    // Every call above (12) wrote exactly one AuditEvent, failures included.
    assert_eq!(f.audit_count().await, 12);
    let page = f
        .audit
        .search(&AuditQuery {
            count: 1,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    let last: Value = serde_json::from_str(&page.records[0].event_json).unwrap();
    assert_eq!(last["subtype"][0]["code"], "delete");
    assert_eq!(last["outcome"], "4");
    assert_eq!(
        last["agent"][0]["who"]["identifier"]["value"],
        "privacy-office"
    );
}

#[tokio::test]
async fn only_admin_apps_get_in() {
    let f = fixture().await;
    let (status, body) = f
        .call_as(&f.other_token, Method::GET, "/alerts", None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["resourceType"], "OperationOutcome");
    assert_eq!(
        f.call_as("nonsense", Method::GET, "/alerts", None).await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn alerts_are_listed_and_acknowledged() {
    let f = fixture().await;
    let mut facts = AuditFacts {
        interaction: Interaction::Search,
        outcome: AuditOutcome::Success,
        outcome_desc: None,
        recorded: now_rfc3339(),
        request_id: None,
        client_id: "ambulance".into(),
        organisation: Some("X26".into()),
        user: None,
        purpose_of_use: Some("ETREAT".into()),
        patient: NhsNumber::parse(PATIENT).ok(),
        resources: vec![],
        query: None,
        access: Some(AccessFacts {
            basis: "break-glass".into(),
            reason: Some("cardiac arrest".into()),
            decision: "BREAK_GLASS".into(),
            alert: true,
            objection_overridden: false,
        }),
        session: None,
        login_subject: None,
    };
    let seqs = f
        .audit
        .append(vec![facts.to_event("node-1")])
        .await
        .unwrap();
    facts.access = None;
    f.audit
        .append(vec![facts.to_event("node-1")])
        .await
        .unwrap();

    let (status, open) = f.call(Method::GET, "/alerts", None).await;
    assert_eq!(status, StatusCode::OK);
    let alerts = open["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0]["kind"], "break-glass");
    let ack = format!("/alerts/{}/acknowledge", seqs[0]);
    assert_eq!(
        f.call(Method::POST, &ack, Some(json!({ "note": "justified" })))
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        f.call(Method::POST, &ack, None).await.0,
        StatusCode::CONFLICT
    );
    assert_eq!(
        f.call(Method::POST, "/alerts/999/acknowledge", None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    let (_, open) = f.call(Method::GET, "/alerts", None).await;
    assert!(open["alerts"].as_array().unwrap().is_empty());
    let (_, all) = f.call(Method::GET, "/alerts?status=all", None).await;
    assert_eq!(all["alerts"][0]["acknowledgement"]["note"], "justified");
    assert_eq!(
        f.call(Method::GET, "/alerts?status=maybe", None).await.0,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn audit_events_are_searched_and_paged_as_a_bundle() {
    let f = fixture().await;
    for _ in 0..3 {
        f.call(Method::GET, &format!("/patients/{PATIENT}/objection"), None)
            .await;
    }
    let uri =
        format!("/FHIR/R4/AuditEvent?patient={PATIENT}&agent=privacy-office&outcome=4&_count=2");
    let (status, bundle) = f.call(Method::GET, &uri, None).await;
    assert_eq!(status, StatusCode::OK, "{bundle}");
    assert_eq!(bundle["type"], "searchset");
    let entries = bundle["entry"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["resource"]["resourceType"], "AuditEvent");
    assert_eq!(entries[0]["resource"]["id"], "3");
    let next = bundle["link"][1]["url"].as_str().unwrap();
    let next = next.strip_prefix("http://nrls.test/admin").unwrap();
    let (status, page2) = f.call(Method::GET, next, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page2["entry"].as_array().unwrap().len(), 1);
    // The searches themselves were audited, with their query.
    let (_, searches) = f
        .call(
            Method::GET,
            "/FHIR/R4/AuditEvent?agent=privacy-office&date=ge2020-01-01",
            None,
        )
        .await;
    let newest = &searches["entry"][0]["resource"];
    assert_eq!(newest["subtype"][0]["code"], "search-type");
    assert!(
        newest["entity"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["query"].is_string())
    );
    assert_eq!(
        f.call(Method::GET, "/FHIR/R4/AuditEvent?foo=1", None)
            .await
            .0,
        StatusCode::BAD_REQUEST
    );
}
