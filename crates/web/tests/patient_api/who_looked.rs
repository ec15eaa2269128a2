//! "Who looked" as FHIR AuditEvents: role categories, no identities.

use super::*;

/// A clinician's view as the audit trail stores it: name-free but with a
/// user id, a role code, a client id and a request id, none of which may
/// reach the patient.
async fn clinician_looked(s: &Service, nhs: &str) -> Vec<&'static str> {
    let facts = audit::AuditFacts {
        interaction: audit::Interaction::Search,
        outcome: audit::AuditOutcome::Success,
        outcome_desc: None,
        recorded: audit::now_rfc3339(),
        request_id: Some("req-secret-4242".into()),
        client_id: "acme-viewer-app".into(),
        organisation: Some("RX9".into()),
        user: Some(audit::AuditUser {
            person_id: "555000777123".into(),
            role_code: Some("S0030:G0100:R8001".into()),
        }),
        purpose_of_use: Some("TREAT".into()),
        patient: Some(domain::NhsNumber::parse(nhs).unwrap()),
        resources: vec!["RR8-planted".into()],
        query: Some(format!("subject:identifier={NHS}|{nhs}")),
        access: None,
        session: None,
        login_subject: None,
    };
    let access = s.state.access();
    access
        .audit
        .append(vec![facts.to_event(&access.node)])
        .await
        .unwrap();
    vec![
        "555000777123",
        "R8001",
        "S0030",
        "acme-viewer-app",
        "req-secret-4242",
        "sds-user-id",
        "urn:nrls:client-id",
        CONSUMER,
    ]
}

fn entries(reply: &Reply) -> Vec<Value> {
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.json()["entry"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test]
async fn who_looked_through_the_api_names_role_categories_and_no_staff_identity() {
    let (config, rp_key) = provider();
    let op = OpenIdProvider::start(config).await;
    let s = start(op.issuer(), &rp_key).await;
    let producer = As::App(s.app_token("producer").await, "RR8");
    s.pointer(&producer, ADA, "seen", RESPECT, &[]).await;
    // An app alone (no user) searches through the consumer API, then a
    // nurse's view is in the trail.
    let consumer = As::App(s.app_token(CONSUMER).await, "RX9");
    let search = format!("/consumer/FHIR/R4/DocumentReference?subject:identifier={NHS}|{ADA}");
    assert_eq!(total(&s.send("GET", &search, &consumer, None).await), 1);
    let secrets = clinician_looked(&s, ADA).await;
    let (cookie, token) = s.signed_in("ada").await;

    let history = s.send("GET", AUDIT, &token, None).await;
    let found = entries(&history);
    // The nurse's view, the consumer app's search, the producer's create.
    assert_eq!(found.len(), 3, "{}", history.text);
    assert!(
        history
            .text
            .contains("Added, changed or removed a record about you")
    );
    // The raw body: categories and the organisation, no identities.
    for secret in &secrets {
        assert!(
            !history.text.contains(secret),
            "{secret} in {}",
            history.text
        );
    }
    assert_eq!(found[0]["resource"]["resourceType"], "AuditEvent");
    let newest = &found[0]["resource"]["agent"][0];
    assert_eq!(newest["type"]["coding"][0]["code"], "nurse");
    assert_eq!(newest["type"]["coding"][0]["display"], "A nurse");
    assert_eq!(newest["who"]["identifier"]["value"], "RX9");
    assert_eq!(newest["who"]["display"], "Yorkshire Ambulance Service");
    assert_eq!(
        found[1]["resource"]["agent"][0]["type"]["coding"][0]["code"],
        "system"
    );
    let when = |i: usize| {
        found[i]["resource"]["recorded"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert!(when(0) >= when(1), "newest first");

    // Paged with next links; own views only when asked; dated.
    let first = s
        .send("GET", &format!("{AUDIT}?_count=1"), &token, None)
        .await;
    assert_eq!(entries(&first).len(), 1);
    let next = first.json()["link"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["relation"] == "next")
        .map(|l| l["url"].as_str().unwrap().to_owned())
        .expect("a next link");
    let path = &next[next.find("/patient/").unwrap()..];
    let second = s.send("GET", path, &token, None).await;
    assert_eq!(
        entries(&second)[0]["resource"]["agent"][0]["type"]["coding"][0]["code"],
        "system"
    );
    let own = s
        .send("GET", &format!("{AUDIT}?_include-own=true"), &cookie, None)
        .await;
    assert!(entries(&own).len() > 2, "{}", own.text);
    assert!(own.text.contains("\"you\"") && own.text.contains("PATRQT"));
    let old = s
        .send("GET", &format!("{AUDIT}?date=le2001-01-01"), &token, None)
        .await;
    assert!(entries(&old).is_empty(), "{}", old.text);
    let bad = s
        .send("GET", &format!("{AUDIT}?_count=1000"), &token, None)
        .await;
    assert_eq!((bad.status, bad.expression().as_str()), (400, "_count"));
    let other = s
        .send(
            "GET",
            &format!("{AUDIT}?patient.identifier={NHS}|{BEN}"),
            &token,
            None,
        )
        .await;
    assert_eq!(other.status, 404);
}
