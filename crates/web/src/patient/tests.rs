//! The patient pages in process: the real router, memory backends, the
//! patient operation and the audit trail it writes. Sessions are planted
//! directly (the sign-in itself is tested against a real OpenID provider in
//! `tests/patient_sign_in.rs`).

use std::collections::HashMap;
use std::sync::Arc;

use api::access::AccessServices;
use api::{ApiSettings, AppState};
use auth::{AppRegistry, Authenticator, TokenSettings};
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use domain::NhsNumber;
use http_body_util::BodyExt;
use tower::ServiceExt;

use crate::oidc::nhs_login::{Proofing, SignedInPatient};
use crate::session::store::memory::MemorySessionStore;
use crate::session::{SessionSettings, Sessions};
use crate::viewer::tests::{RESPECT, add_pointer, audit_events, patients};
use crate::{PatientAccessConfig, WebInner, WebState};

const CLINICAL_SUMMARY: (&str, &str) = ("887181000000106", "Clinical summary");
const LLOYD_GEORGE: (&str, &str) = ("16521000000101", "Lloyd George record folder");

struct Fixture {
    app: axum::Router,
    state: WebState,
}

/// Patient 0: one pointer a patient sees and three hidden ones (labelled R,
/// labelled NOPAT, and a type not on the patient-visible list). Patient 1:
/// one pointer of their own.
async fn fixture() -> Fixture {
    fixture_in(false).await
}

async fn fixture_in(demo_mode: bool) -> Fixture {
    let store = Arc::new(store::memory::MemoryStore::new());
    let [p0, p1, ..] = patients()[..] else {
        unreachable!()
    };
    let ssp = "ssp://rw5.example/x.pdf";
    add_pointer(store.as_ref(), p0, "RW5", "seen", RESPECT, ssp, &[]).await;
    add_pointer(store.as_ref(), p0, "RW5", "r", RESPECT, ssp, &["R"]).await;
    add_pointer(store.as_ref(), p0, "RR8", "nopat", RESPECT, ssp, &["NOPAT"]).await;
    add_pointer(store.as_ref(), p0, "RR8", "lg", LLOYD_GEORGE, ssp, &[]).await;
    add_pointer(store.as_ref(), p1, "RR8", "other", RESPECT, ssp, &[]).await;
    // Patient 2: a Clinical summary at a source that never answers (nothing
    // listens on port 9), and one labelled R that must not be followed.
    let p2 = patients()[2];
    let never = "http://127.0.0.1:9/fhir/Patient/p2";
    add_pointer(
        store.as_ref(),
        p2,
        "RR8",
        "scr",
        CLINICAL_SUMMARY,
        never,
        &[],
    )
    .await;
    add_pointer(
        store.as_ref(),
        p2,
        "RR8",
        "scr-r",
        CLINICAL_SUMMARY,
        never,
        &["R"],
    )
    .await;
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
        AccessServices::in_memory(),
    );
    let registry = federation::SourceRegistry::from_configs(&[federation::SourceConfig {
        ods: "RR8".to_owned(),
        name: "Leeds Teaching Hospitals".to_owned(),
        base_url: "http://127.0.0.1:9/fhir".to_owned(),
        timeout_ms: 1_000,
        resource_types: vec!["AllergyIntolerance".to_owned()],
        auth: federation::SourceAuthConfig::None {},
    }])
    .unwrap();
    let federator =
        federation::Federator::new(registry, &federation::FederationConfig::default()).unwrap();
    let api = api
        .with_shared_care_record(api::operations::SharedCareRecord::new(Arc::new(federator)))
        .ok()
        .unwrap();
    let state = WebState(Arc::new(WebInner {
        api,
        sessions: Sessions::new(
            Arc::new(MemorySessionStore::new()),
            SessionSettings::default(),
        ),
        cis2: None,
        nhs_login: None,
        patient_types: PatientAccessConfig::default().visible_types,
        demo: demo_mode,
        organisations: HashMap::from([("RW5".to_owned(), "Lancashire Care".to_owned())]),
        https: false,
    }));
    Fixture {
        app: crate::router(state.clone()),
        state,
    }
}

/// A session cookie for a patient NHS login vouched for at `proofing`.
async fn patient_cookie(state: &WebState, nhs: NhsNumber, proofing: Proofing) -> String {
    let mut session = state.sessions.load(&HeaderMap::new()).await.unwrap();
    session.data.patient = Some(SignedInPatient {
        issuer: "https://nhs-login.test".into(),
        subject: "sub-1".into(),
        proofing,
        nhs_number: (proofing == Proofing::P9).then(|| nhs.to_string()),
        stated_level: if proofing == Proofing::P9 { "P9" } else { "P5" }.into(),
        given_name: Some("Ada".into()),
        expires_at: i64::MAX,
        id_token: None,
    });
    let set = state.sessions.commit(session).await.unwrap().unwrap();
    set.to_str().unwrap().split(';').next().unwrap().to_owned()
}

async fn get(
    app: &axum::Router,
    path: &str,
    cookie: &str,
    agent: Option<&str>,
) -> (StatusCode, String, String) {
    let mut request = Request::get(path).header(header::COOKIE, cookie);
    if let Some(agent) = agent {
        request = request.header(header::USER_AGENT, agent);
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let location = response
        .headers()
        .get(header::LOCATION)
        .map(|l| l.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, location, String::from_utf8(bytes.to_vec()).unwrap())
}

#[tokio::test]
async fn one_visible_and_three_hidden_pointers_show_one_with_no_retrieval_details() {
    let f = fixture().await;
    let p0 = patients()[0];
    let cookie = patient_cookie(&f.state, p0, Proofing::P9).await;
    let (status, _, body) = get(&f.app, "/my-record/where-my-records-are", &cookie, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("We found 1 record about you"), "{body}");
    assert!(body.contains("Lancashire Care"));
    assert!(body.contains("A document (PDF)"));
    assert!(!body.contains("Lloyd George"));
    for secret in ["ssp://", "300000081552", "RR8"] {
        assert!(!body.contains(secret), "{secret} leaked");
    }
}

#[tokio::test]
async fn every_view_is_audited_once_as_a_patient_request_about_that_patient_only() {
    let f = fixture().await;
    let [p0, p1, ..] = patients()[..] else {
        unreachable!()
    };
    let cookie = patient_cookie(&f.state, p0, Proofing::P9).await;
    get(&f.app, "/my-record/where-my-records-are", &cookie, None).await;
    let events = audit_events(&f.state.api, p0).await;
    assert_eq!(events.len(), 1);
    let text = events[0].to_string();
    assert!(text.contains("PATRQT"), "{text}");
    assert!(text.contains("nrls-patient"), "{text}");
    // Only the shown pointer is named as read.
    assert!(text.contains("seen") && !text.contains("nopat"), "{text}");
    assert!(audit_events(&f.state.api, p1).await.is_empty());
}

#[tokio::test]
async fn below_p9_or_signed_out_there_is_no_data_and_unknown_pages_are_not_found() {
    let f = fixture().await;
    let p0 = patients()[0];
    let cookie = patient_cookie(&f.state, p0, Proofing::Lower).await;
    let (_, location, _) = get(&f.app, "/my-record/where-my-records-are", &cookie, None).await;
    assert_eq!(location, "/my-record/prove-who-you-are");
    assert!(audit_events(&f.state.api, p0).await.is_empty());
    let (_, location, _) = get(&f.app, "/my-record/where-my-records-are", "x=y", None).await;
    assert_eq!(location, "/my-record/sign-in");
    // No page takes an NHS number: another patient's is simply not found.
    let p9 = patient_cookie(&f.state, p0, Proofing::P9).await;
    let other = format!("/my-record/patient/{}/records", patients()[1]);
    let (status, _, _) = get(&f.app, &other, &p9, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // ...and the attempt is in the patient's own trail as a failure.
    let events = audit_events(&f.state.api, p0).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["outcome"], "4");
    assert!(events[0].to_string().contains("nrls-patient"));
    assert!(audit_events(&f.state.api, patients()[1]).await.is_empty());
}

#[tokio::test]
async fn inside_the_nhs_app_the_pages_have_no_header_or_footer_of_their_own() {
    let f = fixture().await;
    let cookie = patient_cookie(&f.state, patients()[0], Proofing::P9).await;
    let path = "/my-record/where-my-records-are";
    let (_, _, web) = get(&f.app, path, &cookie, Some("Mozilla/5.0 Chrome/120")).await;
    assert!(web.contains("nhsuk-header") && web.contains("nhsuk-footer"));
    for agent in [
        "Mozilla/5.0 (Linux; Android 14) nhsapp-android/2.41.0",
        "Mozilla/5.0 (iPhone) nhsapp-ios/2.41.0",
    ] {
        let (status, _, app) = get(&f.app, path, &cookie, Some(agent)).await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            !app.contains("<header") && !app.contains("<footer"),
            "{agent}"
        );
        assert!(app.contains("Where your records are"));
    }
}

async fn post(app: &axum::Router, path: &str, cookie: &str, form: &str) -> StatusCode {
    let request = Request::post(path)
        .header(header::COOKIE, cookie)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(form.to_owned()))
        .unwrap();
    app.clone().oneshot(request).await.unwrap().status()
}

async fn csrf(state: &WebState, cookie: &str) -> String {
    let mut headers = HeaderMap::new();
    headers.insert(header::COOKIE, cookie.parse().unwrap());
    state.sessions.load(&headers).await.unwrap().data.csrf
}

#[tokio::test]
async fn an_objection_made_here_is_the_admin_fact_and_consumers_see_it_at_once() {
    let f = fixture().await;
    let p0 = patients()[0];
    let cookie = patient_cookie(&f.state, p0, Proofing::P9).await;
    let token = csrf(&f.state, &cookie).await;
    let facts = &f.state.api.access().facts;
    let ctx = f.state.api.context();

    let (_, _, before) = get(&f.app, "/my-record/sharing", &cookie, None).await;
    assert!(before.contains("Your records are shared"));
    // Without the form's CSRF token nothing changes.
    let forged = post(&f.app, "/my-record/sharing", &cookie, "choice=object").await;
    assert_eq!(forged, StatusCode::FORBIDDEN);
    assert!(facts.objection(p0).await.unwrap().is_none());

    let form = format!("csrf={token}&choice=object");
    let done = post(&f.app, "/my-record/sharing", &cookie, &form).await;
    assert_eq!(done, StatusCode::SEE_OTHER);
    // The admin API's fact, and the access policy's input for consumers.
    assert!(facts.objection(p0).await.unwrap().is_some());
    assert!(
        api::operations::patient_access(&ctx, p0)
            .await
            .unwrap()
            .objection
    );
    let (_, _, after) = get(&f.app, "/my-record/sharing", &cookie, None).await;
    assert!(after.contains("You chose to stop sharing"), "{after}");

    let form = format!("csrf={token}&choice=share");
    post(&f.app, "/my-record/sharing", &cookie, &form).await;
    assert!(facts.objection(p0).await.unwrap().is_none());
    assert!(
        !api::operations::patient_access(&ctx, p0)
            .await
            .unwrap()
            .objection
    );

    // Every view and change audited as the patient's own request: 2 views,
    // 1 record, 1 withdrawal (the forged POST reached no patient data).
    let events = audit_events(&f.state.api, p0).await;
    assert_eq!(events.len(), 4);
    assert!(events.iter().all(|e| e.to_string().contains("PATRQT")));
}

#[tokio::test]
async fn the_demo_nhs_login_exists_only_in_demo_mode() {
    let off = fixture_in(false).await;
    let cookie = patient_cookie(&off.state, patients()[0], Proofing::Lower).await;
    let token = csrf(&off.state, &cookie).await;
    let (status, _, _) = get(&off.app, "/my-record/demo-sign-in", &cookie, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let form = format!("csrf={token}&patient=ada");
    let posted = post(&off.app, "/my-record/demo-sign-in", &cookie, &form).await;
    assert_eq!(posted, StatusCode::NOT_FOUND);

    let on = fixture_in(true).await;
    let (status, _, page) = get(&on.app, "/my-record/demo-sign-in", "x=y", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("Demo only") && page.contains("Ada Lovelace"));
    for (who, lands) in [
        ("ada", "/my-record/where-my-records-are"),
        ("cara", "/my-record/prove-who-you-are"),
    ] {
        let cookie = patient_cookie(&on.state, patients()[0], Proofing::Lower).await;
        let token = csrf(&on.state, &cookie).await;
        let request = Request::post("/my-record/demo-sign-in")
            .header(header::COOKIE, &cookie)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(format!("csrf={token}&patient={who}")))
            .unwrap();
        let response = on.app.clone().oneshot(request).await.unwrap();
        assert_eq!(response.headers()[header::LOCATION], lands, "{who}");
    }
}

/// A clinician (with a name, a user id and a free-text reason that must
/// never reach the patient) breaks the glass for `nhs`, through the same
/// caller and search the viewer uses.
async fn clinician_breaks_the_glass(state: &WebState, nhs: NhsNumber) -> Vec<String> {
    use crate::session::data::{BasisKind, PatientBasis, RoleProfile, SignedInUser};
    let user = SignedInUser {
        issuer: "https://cis2.test".into(),
        person_id: "555000777123".into(),
        name: "Dr Secret Clinician".into(),
        roles: vec![RoleProfile {
            person_role_id: "role-777".into(),
            org: "RR8".into(),
            org_name: None,
            role_code: Some("S0030:G0100:R8001".into()),
            role_name: Some("Nurse".into()),
            activity_codes: vec!["B0264".into()],
        }],
        selected: Some("role-777".into()),
        expires_at: i64::MAX,
        id_token: None,
    };
    let basis = PatientBasis {
        nhs_number: nhs.to_string(),
        kind: BasisKind::BreakGlass,
        reason: "Emergency treatment: told by Nurse Hidden Name at 10.1.2.3".into(),
    };
    let caller = crate::viewer::caller::caller(&user, Some(&basis)).unwrap();
    let request_id = caller.ids.request_id.clone();
    crate::viewer::records::search_pointers(&state.api, &caller, nhs)
        .await
        .unwrap();
    vec![
        user.person_id,
        user.name,
        "role-777".into(),
        "R8001".into(),
        "nrls-viewer".into(),
        "Nurse Hidden Name".into(),
        "10.1.2.3".into(),
        request_id,
    ]
}

#[tokio::test]
async fn who_looked_shows_organisation_and_purpose_but_no_staff_identity_in_html_or_json() {
    let f = fixture().await;
    let p0 = patients()[0];
    let secrets = clinician_breaks_the_glass(&f.state, p0).await;
    let cookie = patient_cookie(&f.state, p0, Proofing::P9).await;
    let (status, _, html) = get(&f.app, "/my-record/who-looked", &cookie, None).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(
        html.contains("Emergency access (reason given: Emergency treatment)"),
        "{html}"
    );
    // The role category, never the role code.
    assert!(html.contains("(RR8)") && html.contains("A nurse"), "{html}");

    let history = api::operations::patient_audit::who_looked(
        &f.state.api.context(),
        &api::operations::patient::PatientCaller::new(p0),
        api::operations::patient_audit::HistoryQuery {
            since_ms: None,
            until_ms: None,
            count: 50,
            before: None,
            include_own: true,
        },
    )
    .await
    .unwrap();
    let json = serde_json::to_string(&history).unwrap();
    assert!(json.contains("RR8"), "{json}");
    for secret in &secrets {
        assert!(!html.contains(secret.as_str()), "{secret} in the HTML");
        assert!(!json.contains(secret.as_str()), "{secret} in the JSON");
    }
    // The stored event does hold them: the projection is what removes them.
    let stored = audit_events(&f.state.api, p0).await;
    let text = serde_json::to_string(&stored).unwrap();
    assert!(text.contains("555000777123") && text.contains(&secrets[7]));

    // The patient's own views are hidden unless asked for.
    let (_, _, default) = get(&f.app, "/my-record/who-looked", &cookie, None).await;
    assert!(!default.contains("You looked"));
    let (_, _, own) = get(&f.app, "/my-record/who-looked?own=yes", &cookie, None).await;
    assert!(own.contains("You looked") && own.contains("</span>Who looked at your records</td>"));
    // A date range before anything happened: nothing.
    let (_, _, old) = get(
        &f.app,
        "/my-record/who-looked?from=2001-01-01&to=2001-12-31",
        &cookie,
        None,
    )
    .await;
    assert!(old.contains("Nobody has looked at your records in this time"));
}

#[tokio::test]
async fn the_shared_care_record_names_the_organisations_that_did_not_answer_and_is_audited_once() {
    let f = fixture().await;
    let p2 = patients()[2];
    let cookie = patient_cookie(&f.state, p2, Proofing::P9).await;
    let (status, _, body) = get(&f.app, "/my-record/shared-care-record", &cookie, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body.contains("Some of your records could not be fetched"),
        "{body}"
    );
    assert!(
        body.contains("We could not get records from: Leeds Teaching Hospitals."),
        "{body}"
    );
    for section in ["Allergies", "Medicines", "Conditions", "Immunisations"] {
        assert!(body.contains(section), "{section} missing");
    }
    for secret in ["127.0.0.1", "/fhir", "refused"] {
        assert!(!body.contains(secret), "{secret} leaked");
    }

    // One AuditEvent, the patient's own request, naming only the pointer
    // that was followed (not the R-labelled one).
    let events = audit_events(&f.state.api, p2).await;
    assert_eq!(events.len(), 1);
    let text = events[0].to_string();
    assert!(text.contains("PATRQT"), "{text}");
    assert!(text.contains("nrls-patient"), "{text}");
    assert_eq!(text.matches("DocumentReference/").count(), 1, "{text}");

    // Linked from the patient's pages; below P9 no data and no audit.
    let (_, _, records) = get(&f.app, "/my-record/where-my-records-are", &cookie, None).await;
    assert!(records.contains("href=\"/my-record/shared-care-record\""));
    let lower = patient_cookie(&f.state, p2, Proofing::Lower).await;
    let (status, location, _) = get(&f.app, "/my-record/shared-care-record", &lower, None).await;
    assert!(status.is_redirection(), "{status}");
    assert_eq!(location, "/my-record/prove-who-you-are");
    // The records view above is the second event; below P9 adds none.
    assert_eq!(audit_events(&f.state.api, p2).await.len(), 2);

    // In "who looked" (own views included) it is the shared care record,
    // not a "where your records are" search.
    let (_, _, own) = get(&f.app, "/my-record/who-looked?own=yes", &cookie, None).await;
    assert!(own.contains("Your shared care record"), "{own}");
    // The records view (p2 is shown none of its pointers) is the only search.
    assert_eq!(
        own.matches("Searched, no records shown").count(),
        1,
        "{own}"
    );
}

/// The stored events naming NHS login account `subject` as an agent.
async fn events_of_subject(state: &WebState, subject: &str) -> Vec<serde_json::Value> {
    let query = audit::AuditQuery {
        agent: Some(subject.to_owned()),
        ..Default::default()
    };
    let page = state.api.access().audit.search(&query).await.unwrap();
    page.records
        .iter()
        .map(|r| serde_json::from_str(&r.event_json).unwrap())
        .collect()
}

#[tokio::test]
async fn the_explanation_page_and_sign_out_are_each_one_audit_event_shown_only_as_own_views() {
    let f = fixture().await;
    let p0 = patients()[0];
    // Below P9: one event naming the NHS login account, no NHS number (none
    // was proved), so nothing in any patient's trail.
    let p5 = patient_cookie(&f.state, p0, Proofing::Lower).await;
    let (status, _, _) = get(&f.app, "/my-record/prove-who-you-are", &p5, None).await;
    assert_eq!(status, StatusCode::OK);
    let events = events_of_subject(&f.state, "sub-1").await;
    assert_eq!(events.len(), 1, "{events:?}");
    let text = events[0].to_string();
    assert!(
        text.contains("PATRQT") && text.contains("nrls-patient"),
        "{text}"
    );
    assert!(text.contains(api::audit_trail::NHS_LOGIN_SUBJECT), "{text}");
    assert!(
        !text.contains("https://fhir.nhs.uk/Id/nhs-number"),
        "{text}"
    );
    assert!(audit_events(&f.state.api, p0).await.is_empty());

    // Sign-out at P9: a BALP logout in the patient's own trail.
    let p9 = patient_cookie(&f.state, p0, Proofing::P9).await;
    let token = csrf(&f.state, &p9).await;
    let out = post(&f.app, "/my-record/sign-out", &p9, &format!("csrf={token}")).await;
    assert_eq!(out, StatusCode::SEE_OTHER);
    let events = audit_events(&f.state.api, p0).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["type"]["code"], "110114");
    assert_eq!(events[0]["subtype"][0]["code"], "110123");
    assert_eq!(events[0]["outcome"], "0");

    // "Who looked" shows it only among the patient's own views.
    let ctx = f.state.api.context();
    let caller = api::operations::patient::PatientCaller::new(p0);
    let history = |include_own| api::operations::patient_audit::HistoryQuery {
        since_ms: None,
        until_ms: None,
        count: 20,
        before: None,
        include_own,
    };
    let hidden = api::operations::patient_audit::who_looked(&ctx, &caller, history(false))
        .await
        .unwrap();
    assert!(hidden.entries.is_empty(), "{hidden:?}");
    let own = api::operations::patient_audit::who_looked(&ctx, &caller, history(true))
        .await
        .unwrap();
    let signed_out: Vec<_> = own
        .entries
        .iter()
        .filter(|e| e.looked == api::operations::patient_audit::Looked::SignedOut)
        .collect();
    assert_eq!(signed_out.len(), 1, "{own:?}");
    assert_eq!(signed_out[0].looked.describe(false), "Signed out");
}
