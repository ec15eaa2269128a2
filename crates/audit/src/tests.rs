//! Behaviour every backend shares: append, read, search and paging, alerts,
//! checkpoints and a clean verify. Run against memory, SQLite and PostgreSQL.

use domain::NhsNumber;
use domain::access::{AccessBasis, Denial, ReasonCode};

use super::*;

pub(crate) const NODE: &str = "nrls-test";

pub(crate) fn signer() -> CheckpointSigner {
    CheckpointSigner::from_seed([42; 32])
}

pub(crate) fn options() -> VerifyOptions {
    VerifyOptions {
        keys: vec![signer().public()],
        ..VerifyOptions::default()
    }
}

pub(crate) fn patient(n: u32) -> NhsNumber {
    (n * 10..)
        .find_map(|stem| NhsNumber::from_stem(999_000_000 + stem))
        .unwrap()
}

/// A consumer search by `client` for `patient`, recorded at minute `minute`.
pub(crate) fn facts(client: &str, patient_n: u32, minute: u32) -> AuditFacts {
    AuditFacts {
        interaction: Interaction::Search,
        outcome: AuditOutcome::Success,
        outcome_desc: None,
        recorded: format!("2026-03-01T10:{minute:02}:00Z"),
        request_id: Some(format!("req-{client}-{minute}")),
        client_id: client.to_owned(),
        organisation: Some("RX1".to_owned()),
        user: Some(AuditUser {
            person_id: "555000111222".to_owned(),
            role_code: Some("S0030:G0100:R0570".to_owned()),
        }),
        purpose_of_use: Some("TREAT".to_owned()),
        patient: Some(patient(patient_n)),
        resources: vec!["DocumentReference/RX1-1".to_owned()],
        query: Some("subject:identifier=https://fhir.nhs.uk/Id/nhs-number|9990000018".to_owned()),
        access: None,
        session: None,
        login_subject: None,
    }
}

pub(crate) fn event(client: &str, patient_n: u32, minute: u32) -> fhir::AuditEvent {
    facts(client, patient_n, minute).to_event(NODE)
}

/// Verify options holding the trail to `policy`, as the deployment's
/// `[audit]` settings would.
pub(crate) fn options_for(policy: CheckpointPolicy) -> VerifyOptions {
    VerifyOptions {
        policy,
        ..options()
    }
}

fn break_glass(minute: u32) -> fhir::AuditEvent {
    break_glass_because("unconscious", minute)
}

/// A break-glass search with `reason`: it raises an alert.
pub(crate) fn break_glass_because(reason: &str, minute: u32) -> fhir::AuditEvent {
    break_glass_facts(reason, minute).to_event(NODE)
}

pub(crate) fn break_glass_facts(reason: &str, minute: u32) -> AuditFacts {
    let mut f = facts("glass-app", 1, minute);
    f.access = Some(AccessFacts {
        basis: "break-glass".into(),
        reason: Some(reason.to_owned()),
        decision: "BREAK_GLASS".into(),
        alert: true,
        objection_overridden: true,
    });
    f
}

/// Appends `facts` as compact records, or as their events (JSON records).
async fn add(log: &dyn AuditLog, compact: bool, facts: Vec<AuditFacts>) -> Vec<u64> {
    if compact {
        log.record(NODE, facts).await.unwrap()
    } else {
        let events = facts.iter().map(|f| f.to_event(NODE)).collect();
        log.append(events).await.unwrap()
    }
}

/// The shared behaviour, with records in either format: reads render a
/// compact record as exactly the event its facts make.
pub(crate) async fn all_behaviour(log: &dyn AuditLog, compact: bool) {
    // Append in two calls; seqs continue.
    let seqs = add(
        log,
        compact,
        (0..5).map(|m| facts("app-a", m % 2, m)).collect(),
    )
    .await;
    assert_eq!(seqs, vec![1, 2, 3, 4, 5]);
    let seqs = add(
        log,
        compact,
        vec![
            facts("app-b", 0, 10),
            break_glass_facts("unconscious", 11),
            break_glass_facts("unconscious", 12),
        ],
    )
    .await;
    assert_eq!(seqs, vec![6, 7, 8]);
    assert_eq!(
        log.get(3).await.unwrap().unwrap().compact.is_some(),
        compact
    );
    assert_eq!(
        log.get(7).await.unwrap().unwrap().event_json,
        serde_json::to_string(&break_glass(11)).unwrap(),
        "rendered byte for byte as the event"
    );

    // Read back one, byte for byte.
    let third = log.get(3).await.unwrap().unwrap();
    assert_eq!(third.event().unwrap(), event("app-a", 0, 2));
    assert!(log.get(99).await.unwrap().is_none());

    // Search by patient, newest first, paged.
    let mut query = AuditQuery {
        patient: Some(patient(0)),
        count: 2,
        ..AuditQuery::default()
    };
    let page = log.search(&query).await.unwrap();
    let seqs: Vec<u64> = page.records.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, vec![6, 5]);
    query.before_seq = page.next_before_seq;
    let page = log.search(&query).await.unwrap();
    assert_eq!(
        page.records.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![3, 1]
    );
    assert_eq!(page.next_before_seq, None);

    // By agent (client id, person id or ODS), date range and outcome.
    let by = |agent: &str| AuditQuery {
        agent: Some(agent.to_owned()),
        count: 100,
        ..AuditQuery::default()
    };
    assert_eq!(log.search(&by("app-b")).await.unwrap().records.len(), 1);
    assert_eq!(log.search(&by("RX1")).await.unwrap().records.len(), 8);
    assert_eq!(
        log.search(&by("555000111222")).await.unwrap().records.len(),
        8
    );
    assert_eq!(log.search(&by("nobody")).await.unwrap().records.len(), 0);
    let window = AuditQuery {
        since_ms: fields::parse_instant_ms("2026-03-01T10:02:00Z"),
        until_ms: fields::parse_instant_ms("2026-03-01T10:10:00Z"),
        count: 100,
        ..AuditQuery::default()
    };
    let seqs: Vec<u64> = log
        .search(&window)
        .await
        .unwrap()
        .records
        .iter()
        .map(|r| r.seq)
        .collect();
    assert_eq!(seqs, vec![5, 4, 3]);
    let failures = AuditQuery {
        outcome: Some(AuditOutcome::SeriousFailure),
        ..AuditQuery::default()
    };
    assert!(log.search(&failures).await.unwrap().records.is_empty());

    // Alerts: the two break-glass events, then acknowledge one.
    let alerts = log.alerts(&AlertQuery::default()).await.unwrap();
    assert_eq!(
        alerts.iter().map(|a| a.record.seq).collect::<Vec<_>>(),
        vec![8, 7]
    );
    assert_eq!(alerts[0].kind, "break-glass");
    let ack = Acknowledgement {
        by: "privacy-officer".into(),
        at: now_rfc3339(),
        note: Some("reviewed".into()),
    };
    log.acknowledge(7, ack.clone()).await.unwrap();
    assert_eq!(
        log.acknowledge(7, ack.clone()).await,
        Err(AuditError::AlreadyAcknowledged(7))
    );
    assert_eq!(
        log.acknowledge(3, ack.clone()).await,
        Err(AuditError::AlertNotFound(3))
    );
    assert_eq!(
        log.acknowledge(300, ack.clone()).await,
        Err(AuditError::AlertNotFound(300))
    );
    let open = log.alerts(&AlertQuery::default()).await.unwrap();
    assert_eq!(
        open.iter().map(|a| a.record.seq).collect::<Vec<_>>(),
        vec![8]
    );
    let every = log
        .alerts(&AlertQuery {
            unacknowledged_only: false,
            ..AlertQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(every[1].acknowledgement.as_ref(), Some(&ack));
    // The acknowledgement is a record of the chain, after the alert.
    let record = log.get(9).await.unwrap().unwrap();
    assert_eq!(
        acknowledgement::acknowledgement_of(&record.event().unwrap()),
        Some((7, ack.clone()))
    );
    assert!(log.get(10).await.unwrap().is_none(), "refusals add nothing");

    // A checkpoint now covers everything, and verify is clean.
    let checkpoint = log.checkpoint().await.unwrap().unwrap();
    assert_eq!(checkpoint.seq, 9);
    assert!(
        log.checkpoint().await.unwrap().is_none(),
        "nothing new to sign"
    );
    let report = log.verify(&options()).await.unwrap();
    assert_eq!((report.records, report.unsigned_tail), (9, 0));
    assert_eq!(report.last_checkpoint_seq, Some(9));

    // A checkpoint from an untrusted key is tampering.
    let stranger = VerifyOptions {
        keys: vec![CheckpointSigner::from_seed([1; 32]).public()],
        ..VerifyOptions::default()
    };
    let err = log.verify(&stranger).await.unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::Tampered(Tamper {
                kind: TamperKind::BadCheckpointSignature { .. },
                ..
            })
        ),
        "{err:?}"
    );

    // A patient's sign-in is found by their NHS login account (an agent
    // with no role column of its own, beside a person id) and verifies.
    let mut sign_in = facts("nrls-patient", 1, 20);
    sign_in.session = Some(SessionEvent::Login);
    sign_in.login_subject = Some("nhs-login-sub-1".to_owned());
    assert_eq!(add(log, compact, vec![sign_in]).await, vec![10]);
    assert_eq!(
        log.search(&by("nhs-login-sub-1"))
            .await
            .unwrap()
            .records
            .iter()
            .map(|r| r.seq)
            .collect::<Vec<_>>(),
        vec![10]
    );
    assert_eq!(
        log.search(&by("555000111222")).await.unwrap().records.len(),
        9
    );
    assert_eq!(log.verify(&options()).await.unwrap().records, 10);
}

#[tokio::test]
async fn memory_backend_behaviour() {
    for compact in [false, true] {
        let log = memory::MemoryAuditLog::new(signer(), CheckpointPolicy::default());
        all_behaviour(&log, compact).await;
    }
}

#[tokio::test]
async fn sqlite_backend_behaviour() {
    for compact in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let log = sqlite::SqliteAuditLog::open(
            &dir.path().join("audit.db"),
            signer(),
            sqlite::SqliteAuditOptions::default(),
        )
        .unwrap();
        all_behaviour(&log, compact).await;
    }
}

#[tokio::test]
async fn checkpoints_follow_the_record_interval() {
    let policy = CheckpointPolicy {
        records: 10,
        seconds: 3600,
    };
    let log = memory::MemoryAuditLog::new(signer(), policy);
    for m in 0..25 {
        log.append(vec![event("a", 0, m % 60)]).await.unwrap();
    }
    let report = log.verify(&options()).await.unwrap();
    assert_eq!(report.last_checkpoint_seq, Some(20));
    assert_eq!(report.unsigned_tail, 5);
    assert_eq!(report.checkpoints, 2);
}

#[tokio::test]
async fn a_batch_is_signed_at_every_interval_so_no_run_is_longer() {
    let policy = CheckpointPolicy {
        records: 10,
        seconds: 3600,
    };
    let log = memory::MemoryAuditLog::new(signer(), policy);
    // One append of 25 events: checkpoints fall at 10 and 20, inside it.
    log.append((0..25).map(|m| event("a", 0, m)).collect())
        .await
        .unwrap();
    let report = log.verify(&options_for(policy)).await.unwrap();
    assert_eq!(report.checkpoints, 2);
    assert_eq!(report.last_checkpoint_seq, Some(20));
    assert_eq!(report.unsigned_tail, 5);
}

#[tokio::test]
async fn an_unsigned_tail_older_than_the_interval_fails() {
    let policy = CheckpointPolicy {
        records: 1000,
        seconds: 60,
    };
    let log = memory::MemoryAuditLog::new(signer(), policy);
    log.append(vec![event("a", 0, 1)]).await.unwrap();
    let now = fields::parse_instant_ms(&now_rfc3339()).unwrap();
    let at = |seconds: i64| VerifyOptions {
        now_ms: Some(now + seconds * 1000),
        ..options_for(policy)
    };
    // Within the interval plus the tolerance: a live node's tail.
    log.verify(&at(60 + 20)).await.unwrap();
    let late = log.verify(&at(60 + 120)).await.unwrap_err();
    assert!(
        matches!(
            late,
            VerifyError::Tampered(Tamper {
                first_bad_seq: 1,
                kind: TamperKind::CheckpointOverdue { .. },
            })
        ),
        "{late:?}"
    );
    // The final checkpoint of a graceful shutdown covers it.
    log.checkpoint().await.unwrap().unwrap();
    log.verify(&at(3600)).await.unwrap();
}

#[test]
fn events_follow_balp() {
    let mut f = facts("app-a", 0, 1);
    let basis = AccessBasis::SelfClaimed {
        reason: Some("clinic".into()),
    };
    f.access = Some(AccessFacts::denied(
        &basis,
        &Denial {
            reason: ReasonCode::NoLegitimateRelationship,
        },
    ));
    f.outcome = AuditOutcome::of_status(403);
    let json = serde_json::to_value(f.to_event(NODE)).unwrap();
    assert_eq!(json["type"]["code"], "rest");
    assert_eq!(json["subtype"][0]["code"], "search-type");
    assert_eq!(json["action"], "E");
    assert_eq!(json["outcome"], "4");
    assert_eq!(json["source"]["observer"]["display"], NODE);
    assert_eq!(json["agent"][0]["who"]["identifier"]["value"], "app-a");
    assert_eq!(json["agent"][1]["requestor"], true);
    assert_eq!(
        json["agent"][1]["role"][0]["coding"][0]["code"],
        "S0030:G0100:R0570"
    );
    assert_eq!(json["agent"][2]["who"]["identifier"]["value"], "RX1");
    assert_eq!(json["purposeOfEvent"][0]["coding"][0]["code"], "TREAT");
    let entity = json["entity"].as_array().unwrap();
    assert_eq!(entity[0]["role"]["code"], "1");
    assert_eq!(
        entity[0]["what"]["identifier"]["value"],
        format!("{:010}", patient(0).as_u64())
    );
    assert_eq!(entity[1]["what"]["reference"], "DocumentReference/RX1-1");
    assert_eq!(entity[2]["role"]["code"], "24");
    assert!(
        entity[2]["query"]
            .as_str()
            .is_some_and(|q| !q.contains("nhs-number"))
    );
    assert_eq!(entity[3]["type"]["code"], "XrequestId");
    let ext = &json["extension"][0];
    assert_eq!(
        ext["extension"][1]["valueCode"],
        "NO_LEGITIMATE_RELATIONSHIP"
    );
    assert_eq!(ext["extension"][3]["valueString"], "clinic");
    let fields = fields::SearchFields::of(&f.to_event(NODE));
    assert_eq!(fields.alert, None);
    assert_eq!(fields.outcome, "4");
}

#[tokio::test]
async fn postgres_backend_behaviour() {
    let db = testkit::postgres::TestDatabase::create().await;
    let pointers = store::postgres::PostgresStore::open(db.options())
        .await
        .unwrap();
    let log = postgres::PostgresAuditLog::open(
        pointers.database(),
        signer(),
        postgres::PostgresAuditOptions::default(),
    )
    .await
    .unwrap();
    all_behaviour(&log, false).await;
}

#[tokio::test]
async fn postgres_backend_behaviour_with_compact_records() {
    let db = testkit::postgres::TestDatabase::create().await;
    let pointers = store::postgres::PostgresStore::open(db.options())
        .await
        .unwrap();
    let log = postgres::PostgresAuditLog::open(
        pointers.database(),
        signer(),
        postgres::PostgresAuditOptions::default(),
    )
    .await
    .unwrap();
    all_behaviour(&log, true).await;
}
