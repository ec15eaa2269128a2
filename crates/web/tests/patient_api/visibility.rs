//! What a patient is shown through the API, by cookie and by token.

use super::*;

#[tokio::test]
async fn a_p9_patient_sees_through_the_api_only_what_patients_are_shown() {
    let (config, rp_key) = provider();
    let op = OpenIdProvider::start(config).await;
    let s = start(op.issuer(), &rp_key).await;
    let producer = As::App(s.app_token("producer").await, "RR8");
    let admin = As::App(s.app_token("admin").await, "RX9");
    let seen = s.pointer(&producer, ADA, "seen", RESPECT, &[]).await;
    let restricted = s.pointer(&producer, ADA, "r", RESPECT, &["R"]).await;
    s.pointer(&producer, ADA, "nopat", RESPECT, &["NOPAT"])
        .await;
    s.pointer(&producer, ADA, "lg", LLOYD_GEORGE, &[]).await;
    let bens = s.pointer(&producer, BEN, "ben", RESPECT, &[]).await;

    // After a real NHS login at P9: by the session cookie, then by a token
    // the session obtains. 1 visible + 3 hidden: total 1.
    let (cookie, token) = s.signed_in("ada").await;
    for who in [&cookie, &token] {
        let found = s.send("GET", DR, who, None).await;
        assert_eq!(total(&found), 1, "{}", found.text);
        assert_eq!(found.json()["entry"].as_array().unwrap().len(), 1);
        assert!(found.text.contains(&seen), "{}", found.text);
        for detail in ["ssp://", ASID, "nhsSpineASID"] {
            assert!(
                !found.text.contains(detail),
                "{detail} shown: {}",
                found.text
            );
        }
    }
    assert_eq!(
        s.send("GET", &format!("{DR}/{seen}"), &token, None)
            .await
            .status,
        200
    );
    for hidden in [&restricted, &bens] {
        assert_eq!(
            s.send("GET", &format!("{DR}/{hidden}"), &token, None)
                .await
                .status,
            404
        );
    }

    // Every patient call is one AuditEvent, PATRQT.
    let before = stored_events(&s, &admin, ADA).await.len();
    let own = format!("{DR}?subject:identifier={NHS}|{ADA}");
    assert_eq!(total(&s.send("GET", &own, &token, None).await), 1);
    let events = stored_events(&s, &admin, ADA).await;
    assert_eq!(events.len(), before + 1);
    assert!(events.iter().any(|e| e.to_string().contains("PATRQT")));

    // Another patient's NHS number: 404, audited as a failure.
    let other = s
        .send(
            "GET",
            &format!("{DR}?subject:identifier={NHS}|{BEN}"),
            &token,
            None,
        )
        .await;
    assert_eq!(other.status, 404, "{}", other.text);
    assert!(!other.text.contains(&bens));
    let events = stored_events(&s, &admin, ADA).await;
    assert_eq!(events.len(), before + 2);
    assert!(
        events
            .iter()
            .any(|e| e["outcome"] == "4" && e.to_string().contains(PATIENT_CLIENT)),
        "the refusal is in the audit trail"
    );
    // A malformed one is 400 naming the parameter; unknown parameters too.
    let bad = s
        .send(
            "GET",
            &format!("{DR}?subject:identifier={NHS}|123"),
            &token,
            None,
        )
        .await;
    assert_eq!(
        (bad.status, bad.expression().as_str()),
        (400, "subject:identifier")
    );
    let odd = s
        .send("GET", &format!("{DR}?colour=red"), &token, None)
        .await;
    assert_eq!((odd.status, odd.expression().as_str()), (400, "colour"));
}
