//! Which credentials open which routes; P5; the published capabilities.

use super::*;

#[tokio::test]
async fn app_tokens_do_not_open_patient_routes_nor_patient_tokens_app_routes() {
    let (config, rp_key) = provider();
    let op = OpenIdProvider::start(config).await;
    let s = start(op.issuer(), &rp_key).await;
    let consumer = s.app_token(CONSUMER).await;
    let admin = s.app_token("admin").await;
    let patient = s.patient_token(&s.sign_in("ada").await).await;
    for path in [DR, AUDIT, CONSENT] {
        for app in [&consumer, &admin] {
            let refused = s.send("GET", path, &As::Patient(app.clone()), None).await;
            assert_eq!(refused.status, 401, "{path}: {}", refused.text);
            assert!(refused.text.contains("another API"), "{}", refused.text);
        }
        assert_eq!(
            s.send("GET", path, &As::Cookie(String::new()), None)
                .await
                .status,
            401
        );
    }
    let search = format!("/consumer/FHIR/R4/DocumentReference?subject:identifier={NHS}|{ADA}");
    for (path, ods) in [
        (search.as_str(), "RX9"),
        ("/admin/patients/9990000018/objection", "RX9"),
        ("/producer/FHIR/R4/DocumentReference", "RR8"),
    ] {
        let refused = s
            .send("GET", path, &As::App(patient.clone(), ods), None)
            .await;
        assert_eq!(refused.status, 401, "{path}: {}", refused.text);
    }
    // A token names no session: it cannot mint another.
    let again = s
        .send("POST", "/patient/token", &As::Patient(patient), None)
        .await;
    assert_eq!(again.status, 401);
}

#[tokio::test]
async fn a_p5_patient_gets_no_token_and_no_data() {
    let (config, rp_key) = provider();
    let op = OpenIdProvider::start(config).await;
    let s = start(op.issuer(), &rp_key).await;
    let cookie = s.sign_in("cara").await;
    let token = s
        .send("POST", "/patient/token", &As::Cookie(cookie.clone()), None)
        .await;
    assert_eq!(token.status, 403, "{}", token.text);
    assert!(
        token.text.contains("ACCESS_DENIED_LEVEL") && token.text.contains("P5"),
        "{}",
        token.text
    );
    assert!(!token.text.contains("access_token"));
    for path in [DR, AUDIT, CONSENT] {
        let refused = s.send("GET", path, &As::Cookie(cookie.clone()), None).await;
        assert_eq!(refused.status, 403, "{path}: {}", refused.text);
        assert!(refused.text.contains("P9"), "{}", refused.text);
    }
}

#[tokio::test]
async fn the_patient_api_states_its_capabilities_and_is_in_the_openapi_document() {
    let (config, rp_key) = provider();
    let op = OpenIdProvider::start(config).await;
    let s = start(op.issuer(), &rp_key).await;
    let anyone = As::Cookie(String::new());
    let statement = s
        .send("GET", "/patient/FHIR/R4/metadata", &anyone, None)
        .await;
    assert_eq!(statement.status, 200, "{}", statement.text);
    let resources: Vec<String> = statement.json()["rest"][0]["resource"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(resources, ["DocumentReference", "AuditEvent", "Consent"]);
    let openapi = s.send("GET", "/openapi.json", &anyone, None).await;
    let paths = &openapi.json()["paths"];
    for path in [
        "/patient/FHIR/R4/DocumentReference",
        "/patient/FHIR/R4/AuditEvent",
        "/patient/FHIR/R4/Consent/{id}",
        "/patient/token",
    ] {
        assert!(
            paths.get(path).is_some(),
            "{path} not in the OpenAPI document"
        );
    }
    let search = &paths["/patient/FHIR/R4/DocumentReference"]["get"];
    assert_eq!(search["security"][0], json!({"patientBearer": []}));
    assert!(
        search["parameters"]
            .to_string()
            .contains("\"required\":false")
    );
}

#[tokio::test]
async fn a_patient_token_ends_with_its_session_and_issuing_it_is_audited() {
    let (config, rp_key) = provider();
    let op = OpenIdProvider::start(config).await;
    let s = start(op.issuer(), &rp_key).await;
    let admin = As::App(s.app_token("admin").await, "RX9");
    let mut browser: Browser = browser(s.app.clone());
    browser.sign_in_at("/my-record/sign-in", "ada").await;
    let cookie = browser.cookie.clone().expect("a session cookie");
    let token = As::Patient(s.patient_token(&cookie).await);
    assert_eq!(s.send("GET", DR, &token, None).await.status, 200);

    // Sign-in and token issuance are in Ada's trail, each once.
    let events = stored_events(&s, &admin, ADA).await;
    let subtypes: Vec<&str> = events
        .iter()
        .filter(|e| e["type"]["code"] == "110114")
        .filter_map(|e| e["subtype"][0]["code"].as_str())
        .collect();
    assert_eq!(subtypes, ["token-issued", "110122"], "{events:?}");

    // Signing out ends the token at once (its signature is still cached).
    // The page gives the browser the rotated session's CSRF token.
    browser
        .send("GET", "/my-record/where-my-records-are", None)
        .await;
    let form = format!("csrf={}", browser.csrf);
    let out = browser
        .send("POST", "/my-record/sign-out", Some(form))
        .await;
    assert_eq!(out.status.as_u16(), 303, "{}", out.body);
    for path in [DR, AUDIT, CONSENT] {
        let refused = s.send("GET", path, &token, None).await;
        assert_eq!(refused.status, 401, "{path}: {}", refused.text);
        assert!(refused.text.contains("has ended"), "{}", refused.text);
    }
    let events = stored_events(&s, &admin, ADA).await;
    assert_eq!(events[0]["subtype"][0]["code"], "110123", "{events:?}");

    // "Who looked" lists the session's events among the patient's own only.
    let (cookie, _) = s.signed_in("ada").await;
    let own = s
        .send(
            "GET",
            &format!("{AUDIT}?_include-own=true&_count=100"),
            &cookie,
            None,
        )
        .await;
    let described: Vec<String> = own.json()["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["resource"]["outcomeDesc"].as_str().map(str::to_owned))
        .collect();
    for shown in [
        "Signed in with NHS login",
        "Signed out",
        "Gave an app access to your records",
    ] {
        assert!(
            described.iter().any(|d| d == shown),
            "{shown}: {described:?}"
        );
    }
    let others = s.send("GET", AUDIT, &cookie, None).await;
    assert!(!others.text.contains("Signed"), "{}", others.text);
}
