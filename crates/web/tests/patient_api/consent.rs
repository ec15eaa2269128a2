//! The sharing choice as a Consent: the admin fact, bad bodies.

use super::*;

#[tokio::test]
async fn the_consent_round_trip_is_the_admin_fact_and_consumers_see_it_at_once() {
    let (config, rp_key) = provider();
    let op = OpenIdProvider::start(config).await;
    let s = start(op.issuer(), &rp_key).await;
    let producer = As::App(s.app_token("producer").await, "RR8");
    let consumer = As::App(s.app_token(CONSUMER).await, "RX9");
    let admin = As::App(s.app_token("admin").await, "RX9");
    s.pointer(&producer, ADA, "seen", RESPECT, &[]).await;
    let search = format!("/consumer/FHIR/R4/DocumentReference?subject:identifier={NHS}|{ADA}");
    let admin_objection = format!("/admin/patients/{ADA}/objection");
    let (cookie, token) = s.signed_in("ada").await;
    assert_eq!(total(&s.send("GET", CONSENT, &token, None).await), 0);
    assert_eq!(total(&s.send("GET", &search, &consumer, None).await), 1);

    // Object: an active PCF Consent; consumers see nothing at once, and the
    // admin API reads the same fact.
    let made = s
        .send("POST", CONSENT, &token, Some(consent("active")))
        .await;
    assert_eq!(made.status, 201, "{}", made.text);
    assert!(
        made.location
            .ends_with("/patient/FHIR/R4/Consent/objection")
    );
    assert_eq!(made.json()["status"], "active");
    assert_eq!(made.json()["provision"]["type"], "deny");
    assert_eq!(total(&s.send("GET", &search, &consumer, None).await), 0);
    assert_eq!(
        s.send("GET", &admin_objection, &admin, None).await.status,
        200
    );
    let listed = s.send("GET", CONSENT, &cookie, None).await;
    assert_eq!(total(&listed), 1);
    assert_eq!(
        listed.json()["entry"][0]["resource"]["scope"]["coding"][0]["code"],
        "patient-privacy"
    );

    // Withdraw: the same Consent, inactive; consumers see the pointer again.
    let withdrawn = s
        .send(
            "PUT",
            &format!("{CONSENT}/objection"),
            &token,
            Some(consent("inactive")),
        )
        .await;
    assert_eq!(withdrawn.status, 200, "{}", withdrawn.text);
    assert_eq!(withdrawn.json()["status"], "inactive");
    assert_eq!(total(&s.send("GET", &search, &consumer, None).await), 1);
    assert_eq!(
        s.send("GET", &admin_objection, &admin, None).await.status,
        404
    );
    let read = s
        .send("GET", &format!("{CONSENT}/objection"), &token, None)
        .await;
    assert_eq!(read.json()["status"], "inactive");

    // An objection the admin API records is the patient's Consent too.
    let recorded = s
        .send(
            "PUT",
            &admin_objection,
            &admin,
            Some(json!({"note": "by phone"})),
        )
        .await;
    assert_eq!(recorded.status, 200, "{}", recorded.text);
    assert_eq!(total(&s.send("GET", CONSENT, &token, None).await), 1);

    // Both changes are in "who looked", as changes of sharing choice.
    let history = s.send("GET", AUDIT, &token, None).await;
    assert!(history.text.contains("stopped sharing"), "{}", history.text);
    assert!(
        history.text.contains("started sharing again"),
        "{}",
        history.text
    );
}

#[tokio::test]
async fn bad_consent_bodies_are_400_naming_the_element_and_another_patient_is_404() {
    let (config, rp_key) = provider();
    let op = OpenIdProvider::start(config).await;
    let s = start(op.issuer(), &rp_key).await;
    let admin = As::App(s.app_token("admin").await, "RX9");
    let cookie = s.sign_in("ada").await;
    let token = As::Patient(s.patient_token(&cookie).await);
    let with = |path: &str, value: Value| {
        let mut body = consent("active");
        body[path] = value;
        body
    };
    let cases = [
        (
            with("resourceType", json!("Patient")),
            "Consent.resourceType",
        ),
        (with("status", json!("proposed")), "Consent.status"),
        (with("status", json!("inactive")), "Consent.status"),
        (
            with("provision", json!({"type": "permit"})),
            "Consent.provision.type",
        ),
        (
            with("scope", json!({"coding": [{"code": "research"}]})),
            "Consent.scope",
        ),
        (
            with(
                "patient",
                json!({"identifier": {"system": "urn:other", "value": ADA}}),
            ),
            "Consent.patient.identifier.system",
        ),
    ];
    for (body, expression) in cases {
        let refused = s.send("POST", CONSENT, &token, Some(body)).await;
        assert_eq!(refused.status, 400, "{expression}: {}", refused.text);
        assert_eq!(refused.expression(), expression, "{}", refused.text);
        assert!(refused.text.contains("OperationOutcome"));
    }
    let mut not_json = s.http.post(format!("{}{CONSENT}", s.url));
    if let As::Patient(t) = &token {
        not_json = not_json.bearer_auth(t);
    }
    let broken = not_json
        .header("content-type", "application/fhir+json")
        .body("{\"resourceType\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(broken.status(), 400);
    let wrong_id = s
        .send(
            "PUT",
            &format!("{CONSENT}/objection"),
            &token,
            Some(with("id", json!("x"))),
        )
        .await;
    assert_eq!(
        (wrong_id.status, wrong_id.expression().as_str()),
        (400, "Consent.id")
    );
    assert_eq!(
        s.send(
            "PUT",
            &format!("{CONSENT}/other"),
            &token,
            Some(consent("active"))
        )
        .await
        .status,
        404
    );
    // Naming another patient: 404, nothing recorded for anyone, audited.
    let ben = with(
        "patient",
        json!({"identifier": {"system": NHS, "value": BEN}}),
    );
    let other = s.send("POST", CONSENT, &token, Some(ben)).await;
    assert_eq!(other.status, 404, "{}", other.text);
    assert_eq!(
        s.send(
            "GET",
            &format!("/admin/patients/{BEN}/objection"),
            &admin,
            None
        )
        .await
        .status,
        404
    );
    assert_eq!(
        s.send(
            "GET",
            &format!("/admin/patients/{ADA}/objection"),
            &admin,
            None
        )
        .await
        .status,
        404
    );
    let events = stored_events(&s, &admin, ADA).await;
    assert!(
        events.iter().any(|e| e["outcome"] == "4"),
        "audited as a failure"
    );
}
