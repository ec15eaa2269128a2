//! The viewer end to end in process: the real router, memory backends, the
//! API's operations and the audit trail they write.

use std::collections::HashMap;
use std::sync::Arc;

use api::access::AccessServices;
use api::{ApiSettings, AppState};
use auth::{AppRegistry, Authenticator, TokenSettings};
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use domain::catalogue::Catalogue;
use domain::clock::now_instant;
use domain::permissions::TypeSet;
use domain::validation::{ValidationContext, validate};
use domain::{NhsNumber, OdsCode, PointerId};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use store::PointerStore;
use tower::ServiceExt;

use super::demo::{self, DEMO_SENSITIVE_ACTIVITY};
use crate::session::store::memory::MemorySessionStore;
use crate::session::{SessionSettings, Sessions};
use crate::{WebInner, WebState};

pub(crate) const TEMPLATE: &str = r#"{"resourceType":"DocumentReference","masterIdentifier":{"system":"urn:ietf:rfc:3986","value":"urn:test"},"status":"current","docStatus":"final","type":{"coding":[{"system":"http://snomed.info/sct","code":"1382601000000107","display":"ReSPECT (Recommended Summary Plan for Emergency Care and Treatment) form"}]},"category":[{"coding":[{"system":"http://snomed.info/sct","code":"734163000","display":"Care plan"}]}],"subject":{"identifier":{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9990000018"}},"date":"2026-01-01T01:00:00Z","author":[{"identifier":{"system":"https://fhir.nhs.uk/Id/ods-organization-code","value":"RW5"}}],"custodian":{"identifier":{"system":"https://fhir.nhs.uk/Id/ods-organization-code","value":"RW5"}},"content":[{"attachment":{"contentType":"application/pdf","url":"ssp://rw5.thirdparty.nhs.uk/documents/x.pdf","creation":"2026-01-01T01:00:00Z","title":"A record"},"format":{"system":"https://fhir.nhs.uk/England/CodeSystem/England-NRLFormatCode","code":"urn:nhs-ic:unstructured","display":"Unstructured Document"},"extension":[{"url":"https://fhir.nhs.uk/England/StructureDefinition/Extension-England-ContentStability","valueCodeableConcept":{"coding":[{"system":"https://fhir.nhs.uk/England/CodeSystem/England-NRLContentStability","code":"static"}]}},{"url":"https://fhir.nhs.uk/England/StructureDefinition/Extension-England-NRLRetrievalMechanism","valueCodeableConcept":{"coding":[{"system":"https://fhir.nhs.uk/England/CodeSystem/England-NRLRetrievalMechanism","code":"SSP"}]}}]}],"context":{"practiceSetting":{"coding":[{"system":"http://snomed.info/sct","code":"788002001","display":"Adult mental health service"}]},"related":[{"identifier":{"system":"https://fhir.nhs.uk/Id/nhsSpineASID","value":"300000081552"}}]}}"#;

pub(crate) fn patients() -> Vec<NhsNumber> {
    (999_000_000u32..)
        .filter_map(NhsNumber::from_stem)
        .take(6)
        .collect()
}

/// A valid pointer: `kind` picks the type, `url` the attachment, `labels`
/// the confidentiality codes.
pub(crate) async fn add_pointer(
    store: &dyn PointerStore,
    patient: NhsNumber,
    ods: &str,
    local: &str,
    code: (&str, &str),
    url: &str,
    labels: &[&str],
) {
    let mut doc: Value = serde_json::from_str(TEMPLATE).unwrap();
    doc["masterIdentifier"]["value"] = json!(format!("urn:test:{ods}:{local}"));
    doc["subject"]["identifier"]["value"] = json!(patient.to_string());
    doc["author"][0]["identifier"]["value"] = json!(ods);
    doc["custodian"]["identifier"]["value"] = json!(ods);
    doc["type"]["coding"][0]["code"] = json!(code.0);
    doc["type"]["coding"][0]["display"] = json!(code.1);
    doc["content"][0]["attachment"]["url"] = json!(url);
    // Clinical summary pointers are filed under Record headings.
    if code.0 == "887181000000106" {
        doc["category"][0]["coding"][0]["code"] = json!("716931000000107");
        doc["category"][0]["coding"][0]["display"] = json!("Record headings");
    }
    if url.starts_with("https://") || url.starts_with("http://") {
        doc["content"][0]["extension"][1]["valueCodeableConcept"]["coding"][0]["code"] =
            json!("Direct");
    }
    if !labels.is_empty() {
        let codes: Vec<Value> = labels
            .iter()
            .map(|c| {
                let system = if *c == domain::systems::NOT_FOR_PATIENT_VIEW {
                    domain::systems::ACT_CODE
                } else {
                    domain::systems::CONFIDENTIALITY
                };
                json!({"system": system, "code": c})
            })
            .collect();
        doc["meta"] = json!({"security": codes});
    }
    let doc: fhir::DocumentReference = serde_json::from_value(doc).unwrap();
    let catalogue = Catalogue::nrl_v3();
    let custodian = OdsCode::parse(ods).unwrap();
    let ctx = ValidationContext {
        catalogue,
        caller: &custodian,
        permitted_types: TypeSet::all(catalogue),
    };
    let valid = validate(&doc, &ctx).unwrap();
    let id = PointerId::generate(&custodian, local).unwrap();
    let record = valid.into_record(doc, id, 1, &now_instant()).unwrap();
    store.create(record, Vec::new()).await.unwrap();
}

pub(crate) const RESPECT: (&str, &str) = ("1382601000000107", "ReSPECT form");
const CRISIS: (&str, &str) = ("736253002", "Mental health crisis plan");

struct Fixture {
    app: axum::Router,
    api: AppState,
}

async fn fixture(demo_mode: bool) -> Fixture {
    let store = Arc::new(store::memory::MemoryStore::new());
    let [p0, _, _, _, objecting, _] = patients()[..] else {
        unreachable!()
    };
    add_pointer(
        store.as_ref(),
        p0,
        "RW5",
        "respect",
        RESPECT,
        "ssp://rw5.example/x.pdf",
        &[],
    )
    .await;
    add_pointer(
        store.as_ref(),
        p0,
        "RR8",
        "crisis",
        CRISIS,
        "https://rr8.example.nhs.uk/crisis",
        &[],
    )
    .await;
    add_pointer(
        store.as_ref(),
        p0,
        "RW5",
        "secret",
        CRISIS,
        "https://rw5.example.nhs.uk/secret",
        &["R"],
    )
    .await;
    add_pointer(
        store.as_ref(),
        objecting,
        "RR8",
        "own",
        RESPECT,
        "https://rr8.example.nhs.uk/own",
        &[],
    )
    .await;
    add_pointer(
        store.as_ref(),
        objecting,
        "RW5",
        "other",
        RESPECT,
        "https://rw5.example.nhs.uk/other",
        &[],
    )
    .await;
    let mut access = AccessServices::in_memory();
    access.policy.sensitive_activity_codes = vec![DEMO_SENSITIVE_ACTIVITY.to_owned()];
    demo::seed_access(access.facts.as_ref(), &patients())
        .await
        .unwrap();
    let auth = Authenticator::new(
        Arc::new(AppRegistry::from_configs(&[]).unwrap()),
        TokenSettings::new("http://nrls", "http://nrls/oauth2/token", vec![7; 32]),
    )
    .unwrap();
    let api = AppState::with_ops(
        store,
        Arc::new(auth),
        ApiSettings::default(),
        api::ops::Ops::default(),
        access,
    );
    let state = WebState(Arc::new(WebInner {
        api: api.clone(),
        sessions: Sessions::new(
            Arc::new(MemorySessionStore::new()),
            SessionSettings::default(),
        ),
        cis2: None,
        nhs_login: None,
        patient_types: crate::PatientAccessConfig::default().visible_types,
        demo: demo_mode,
        organisations: HashMap::from([("RR8".to_owned(), "Leeds Teaching Hospitals".to_owned())]),
        https: false,
    }));
    Fixture {
        app: crate::router(state),
        api,
    }
}

/// A browser: keeps the session cookie, reads forms' CSRF tokens.
struct Browser<'a> {
    app: &'a axum::Router,
    cookie: Option<String>,
    csrf: String,
}

struct Page {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Page {
    fn location(&self) -> &str {
        self.headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

impl<'a> Browser<'a> {
    fn new(app: &'a axum::Router) -> Browser<'a> {
        Browser {
            app,
            cookie: None,
            csrf: String::new(),
        }
    }

    async fn send(&mut self, request: Request<Body>) -> Page {
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        if let Some(set) = headers.get(header::SET_COOKIE) {
            let pair = set.to_str().unwrap().split(';').next().unwrap().to_owned();
            self.cookie = Some(pair);
        }
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body = String::from_utf8(bytes.to_vec()).unwrap();
        if let Some(start) = body.find("name=\"csrf\" value=\"") {
            let rest = &body[start + 19..];
            self.csrf = rest[..rest.find('"').unwrap()].to_owned();
        }
        Page {
            status,
            headers,
            body,
        }
    }

    async fn get(&mut self, path: &str) -> Page {
        let mut request = Request::get(path);
        if let Some(cookie) = &self.cookie {
            request = request.header(header::COOKIE, cookie);
        }
        self.send(request.body(Body::empty()).unwrap()).await
    }

    async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        let mut request =
            Request::post(path).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(cookie) = &self.cookie {
            request = request.header(header::COOKIE, cookie);
        }
        self.send(request.body(Body::from(body)).unwrap()).await
    }

    async fn sign_in_as(&mut self, clinician: &str) -> Page {
        self.get("/viewer/demo-sign-in").await;
        let csrf = self.csrf.clone();
        self.post(
            "/viewer/demo-sign-in",
            &[("csrf", &csrf), ("clinician", clinician)],
        )
        .await
    }
}

pub(crate) async fn audit_events(api: &AppState, patient: NhsNumber) -> Vec<Value> {
    let query = audit::AuditQuery {
        patient: Some(patient),
        ..Default::default()
    };
    api.access()
        .audit
        .search(&query)
        .await
        .unwrap()
        .records
        .iter()
        .map(|r| serde_json::from_str(&r.event_json).unwrap())
        .collect()
}

#[tokio::test]
async fn the_demo_sign_in_does_not_exist_outside_demo_mode() {
    let f = fixture(false).await;
    let mut browser = Browser::new(&f.app);
    assert_eq!(
        browser.get("/viewer/demo-sign-in").await.status,
        StatusCode::NOT_FOUND
    );
    let page = browser
        .post("/viewer/demo-sign-in", &[("clinician", "patel")])
        .await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    let sign_in = browser.get("/viewer/sign-in").await;
    assert!(!sign_in.body.contains("demo-sign-in"));
    // Nor can anyone reach a patient page unsigned.
    let records = browser.get("/viewer/patient/9990000018/records").await;
    assert_eq!(records.location(), "/viewer/sign-in");
}

#[tokio::test]
async fn every_form_refuses_a_missing_or_wrong_csrf_token() {
    let f = fixture(true).await;
    let mut browser = Browser::new(&f.app);
    browser.get("/viewer/demo-sign-in").await;
    for fields in [
        &[("clinician", "patel")][..],
        &[("clinician", "patel"), ("csrf", "forged")],
    ] {
        let page = browser.post("/viewer/demo-sign-in", fields).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{fields:?}");
    }
    browser.sign_in_as("patel").await;
    for path in [
        "/viewer/patient",
        "/viewer/sign-out",
        "/viewer/choose-role",
        "/viewer/patient/9990000018/access",
    ] {
        let page = browser.post(path, &[("csrf", "forged")]).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{path}");
    }
}

#[tokio::test]
async fn signing_in_rotates_the_session_id() {
    let f = fixture(true).await;
    let mut browser = Browser::new(&f.app);
    browser.get("/viewer/demo-sign-in").await;
    let planted = browser.cookie.clone().unwrap();
    let page = browser.sign_in_as("patel").await;
    assert_eq!(page.location(), "/viewer/patient");
    assert_ne!(browser.cookie.as_ref().unwrap(), &planted);
    // Whoever holds the pre-sign-in id is not signed in.
    let mut attacker = Browser::new(&f.app);
    attacker.cookie = Some(planted);
    assert_eq!(
        attacker.get("/viewer/patient").await.location(),
        "/viewer/sign-in"
    );
}

#[tokio::test]
async fn the_records_page_is_the_api_search_audited_once_as_the_user_and_role() {
    let f = fixture(true).await;
    let mut browser = Browser::new(&f.app);
    browser.sign_in_as("patel").await;
    let p0 = patients()[0];
    let page = browser.get(&format!("/viewer/patient/{p0}/records")).await;
    assert_eq!(page.status, StatusCode::OK);
    let body = &page.body;
    // Crisis plan before ReSPECT; the ssp:// pointer through the SSP with its ASID.
    let crisis = body.find("Mental health crisis plan").unwrap();
    assert!(crisis < body.find("ReSPECT form").unwrap());
    assert!(body.contains("Retrieved through the Spine Secure Proxy (target ASID 300000081552)"));
    assert!(body.contains("href=\"https://rr8.example.nhs.uk/crisis\""));
    assert!(body.contains("Leeds Teaching Hospitals (RR8)"));
    // The sensitive pointer is absent, not hinted at.
    assert!(!body.contains("secret"));
    assert!(body.contains("Found 2 records"));
    assert_eq!(page.headers[header::CACHE_CONTROL], "no-store");
    assert!(
        page.headers[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .contains("script-src 'self'")
    );

    let events = audit_events(&f.api, p0).await;
    assert_eq!(events.len(), 1, "one AuditEvent per page view");
    let text = events[0].to_string();
    assert!(text.contains("demo-patel"), "the user is an agent: {text}");
    assert!(
        text.contains("S0030:G0100:R0570"),
        "with their role: {text}"
    );
    assert!(text.contains(super::caller::VIEWER_CLIENT_ID));
}

#[tokio::test]
async fn sensitive_pointers_show_only_to_the_activity_code() {
    let f = fixture(true).await;
    let mut browser = Browser::new(&f.app);
    browser.sign_in_as("okafor").await;
    let page = browser
        .get(&format!("/viewer/patient/{}/records", patients()[0]))
        .await;
    assert!(page.body.contains("https://rw5.example.nhs.uk/secret"));
    assert!(page.body.contains("Found 3 records"));
}

#[tokio::test]
async fn no_relationship_asks_for_a_reason_then_break_glass_is_alerted_and_bannered() {
    let f = fixture(true).await;
    let mut browser = Browser::new(&f.app);
    browser.sign_in_as("reid").await;
    let p0 = patients()[0];
    let records = format!("/viewer/patient/{p0}/records");
    let refused = browser.get(&records).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(
        refused
            .body
            .contains("You need a reason to see this patient")
    );
    assert!(!refused.body.contains("rr8.example"));

    let access = format!("/viewer/patient/{p0}/access");
    let csrf = browser.csrf.clone();
    let invalid = browser
        .post(&access, &[("csrf", &csrf), ("basis", "break-glass")])
        .await;
    assert_eq!(invalid.status, StatusCode::BAD_REQUEST);
    assert!(invalid.body.contains("nhsuk-error-summary"));
    assert!(invalid.body.contains("href=\"#category\">Select a reason"));
    assert!(invalid.body.contains("href=\"#detail\">"));

    let csrf = browser.csrf.clone();
    let declared = browser
        .post(
            &access,
            &[
                ("csrf", &csrf),
                ("basis", "break-glass"),
                ("category", "Emergency treatment"),
                ("detail", "Unconscious at the scene"),
            ],
        )
        .await;
    assert_eq!(declared.location(), records);
    let shown = browser.get(&records).await;
    assert_eq!(shown.status, StatusCode::OK);
    assert!(shown.body.contains("Emergency access in use"));
    // The banner stays for the rest of the session, on every page.
    assert!(
        browser
            .get("/viewer/patient")
            .await
            .body
            .contains("Emergency access in use")
    );

    let alerts = f
        .api
        .access()
        .audit
        .alerts(&audit::AlertQuery::default())
        .await
        .unwrap();
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].kind, "break-glass");
    assert!(
        alerts[0]
            .record
            .event_json
            .contains("Unconscious at the scene")
    );
    // Refusal and grant: one AuditEvent each.
    assert_eq!(audit_events(&f.api, p0).await.len(), 2);
}

/// Self-claim is the other answer to a refusal: allowed with a reason,
/// alerted as self-claimed, and without the emergency banner.
#[tokio::test]
async fn a_self_claimed_relationship_is_alerted_without_the_break_glass_banner() {
    let f = fixture(true).await;
    let mut browser = Browser::new(&f.app);
    browser.sign_in_as("reid").await;
    let p0 = patients()[0];
    let records = format!("/viewer/patient/{p0}/records");
    assert_eq!(browser.get(&records).await.status, StatusCode::FORBIDDEN);
    let csrf = browser.csrf.clone();
    let declared = browser
        .post(
            &format!("/viewer/patient/{p0}/access"),
            &[
                ("csrf", &csrf),
                ("basis", "self-claimed"),
                ("category", "Emergency treatment"),
                ("detail", "Patient in my ambulance now"),
            ],
        )
        .await;
    assert_eq!(declared.location(), records);
    let shown = browser.get(&records).await;
    assert_eq!(shown.status, StatusCode::OK);
    assert!(!shown.body.contains("Emergency access in use"));
    let alerts = f
        .api
        .access()
        .audit
        .alerts(&audit::AlertQuery::default())
        .await
        .unwrap();
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].kind, "self-claimed");
    assert!(
        alerts[0]
            .record
            .event_json
            .contains("Patient in my ambulance now")
    );
}

#[tokio::test]
async fn an_objection_is_explained_and_only_own_records_shown() {
    let f = fixture(true).await;
    // Hughes' practice is related to the first six demo patients, including
    // the objecting one; he has two roles and chooses first.
    let mut gp = Browser::new(&f.app);
    gp.sign_in_as("hughes").await;
    assert_eq!(
        gp.get("/viewer/patient").await.location(),
        "/viewer/choose-role"
    );
    let choose = gp.get("/viewer/choose-role").await;
    assert!(choose.body.contains("General practitioner"));
    assert!(choose.body.contains("Clinical lead"));
    let csrf = gp.csrf.clone();
    gp.post(
        "/viewer/choose-role",
        &[("csrf", &csrf), ("role", "demo-role-hughes-gp")],
    )
    .await;
    let objecting = patients()[demo::OBJECTING_PATIENT];
    let page = gp
        .get(&format!("/viewer/patient/{objecting}/records"))
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("This patient has objected to sharing"));
    assert!(page.body.contains("No records were found"));
}

#[tokio::test]
async fn find_a_patient_checks_the_number_and_remembers_recent_patients() {
    let f = fixture(true).await;
    let mut browser = Browser::new(&f.app);
    browser.sign_in_as("patel").await;
    browser.get("/viewer/patient").await;
    let csrf = browser.csrf.clone();
    let bad = browser
        .post(
            "/viewer/patient",
            &[("csrf", &csrf), ("nhs_number", "999 000 0019")],
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(
        bad.body
            .contains("<a href=\"#nhs-number\">This is not a valid NHS number")
    );
    assert!(bad.body.contains("<title>Error: "));
    let csrf = browser.csrf.clone();
    let good = browser
        .post(
            "/viewer/patient",
            &[("csrf", &csrf), ("nhs_number", "999 000 0018")],
        )
        .await;
    assert_eq!(good.location(), "/viewer/patient/9990000018/records");
    browser.get(good.location()).await;
    let find = browser.get("/viewer/patient").await;
    assert!(find.body.contains("NHS number 999 000 0018"));
}

#[tokio::test]
async fn signing_out_ends_the_session() {
    let f = fixture(true).await;
    let mut browser = Browser::new(&f.app);
    browser.sign_in_as("patel").await;
    let signed_in = browser.cookie.clone();
    browser.get("/viewer/patient").await;
    let csrf = browser.csrf.clone();
    let out = browser.post("/viewer/sign-out", &[("csrf", &csrf)]).await;
    assert_eq!(out.location(), "/viewer/signed-out");
    let mut replay = Browser::new(&f.app);
    replay.cookie = signed_in;
    assert_eq!(
        replay.get("/viewer/patient").await.location(),
        "/viewer/sign-in"
    );
}

#[tokio::test]
async fn assets_are_served_with_long_caching_and_pages_are_not_cached() {
    let f = fixture(false).await;
    let mut browser = Browser::new(&f.app);
    let css = browser
        .get(&format!(
            "{}/nhsuk-frontend/nhsuk-frontend.min.css",
            crate::assets::base()
        ))
        .await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(
        css.headers[header::CACHE_CONTROL]
            .to_str()
            .unwrap()
            .contains("immutable")
    );
    assert!(
        css.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/css")
    );
    let page = browser.get("/viewer/sign-in").await;
    assert_eq!(page.headers[header::CACHE_CONTROL], "no-store");
    assert!(!page.body.contains("<script>"), "no inline script");
    assert!(!page.body.contains("style="), "no inline style");
}
