//! One behaviour suite, run on both access-store backends.

use domain::{NhsNumber, OdsCode};

use super::*;

fn nhs(stem: u32) -> NhsNumber {
    (stem..).find_map(NhsNumber::from_stem).unwrap()
}

fn new(patient: NhsNumber, ods: &str, kind: RelationshipKind) -> NewRelationship {
    NewRelationship {
        nhs_number: patient,
        ods: OdsCode::parse(ods).unwrap(),
        kind,
        recorded_by: "admin-app".into(),
        recorded_at: "2026-03-01T10:00:00Z".into(),
    }
}

async fn behaviour(store: &dyn AccessStore) {
    let (a, b) = (nhs(999_000_001), nhs(999_000_100));
    assert_eq!(
        store.patient_access(a).await.unwrap(),
        PatientAccess::default()
    );

    let gp = store
        .add_relationship(new(a, "y05868", RelationshipKind::RegisteredPractice))
        .await
        .unwrap();
    assert_eq!(gp.ods.as_str(), "Y05868");
    let referral = store
        .add_relationship(new(a, "RX1", RelationshipKind::Referral))
        .await
        .unwrap();
    store
        .add_relationship(new(a, "RX1", RelationshipKind::Encounter))
        .await
        .unwrap();
    store
        .add_relationship(new(b, "X26", RelationshipKind::Encounter))
        .await
        .unwrap();
    assert_eq!(
        store
            .add_relationship(new(a, "RX1", RelationshipKind::Referral))
            .await,
        Err(AccessStoreError::DuplicateRelationship(referral.id))
    );

    let access = store.patient_access(a).await.unwrap();
    let orgs: Vec<&str> = access
        .related_organisations
        .iter()
        .map(OdsCode::as_str)
        .collect();
    assert_eq!(orgs, vec!["RX1", "Y05868"]);
    assert!(!access.objection);
    assert_eq!(store.relationships(a).await.unwrap().len(), 3);

    assert_eq!(store.remove_relationship(gp.id).await.unwrap(), gp);
    assert_eq!(
        store.remove_relationship(gp.id).await,
        Err(AccessStoreError::RelationshipNotFound(gp.id))
    );
    let orgs = store.patient_access(a).await.unwrap().related_organisations;
    assert_eq!(orgs, vec![OdsCode::parse("RX1").unwrap()]);

    let objection = Objection {
        nhs_number: a,
        recorded_by: "admin-app".into(),
        recorded_at: "2026-03-02T09:00:00Z".into(),
        note: Some("by letter".into()),
    };
    store.record_objection(objection.clone()).await.unwrap();
    assert!(store.patient_access(a).await.unwrap().objection);
    assert!(!store.patient_access(b).await.unwrap().objection);
    assert_eq!(store.objection(a).await.unwrap(), Some(objection));
    assert!(store.withdraw_objection(a).await.unwrap());
    assert!(!store.withdraw_objection(a).await.unwrap());
    assert_eq!(store.objection(a).await.unwrap(), None);
}

#[tokio::test]
async fn memory_store() {
    let store = memory::MemoryAccessStore::new();
    behaviour(&store).await;
    // The facts live apart from the pointers: read them apart.
    assert_eq!(
        store.patient_access_and_pointers(nhs(999_000_001)).await,
        Ok(None)
    );
}

#[tokio::test]
async fn sqlite_store_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(sqlite::FILE_NAME);
    behaviour(&sqlite::SqliteAccessStore::open(&path).unwrap()).await;
    let reopened = sqlite::SqliteAccessStore::open(&path).unwrap();
    assert_eq!(
        reopened.patient_access_and_pointers(nhs(999_000_001)).await,
        Ok(None)
    );
    assert_eq!(
        reopened
            .relationships(nhs(999_000_001))
            .await
            .unwrap()
            .len(),
        2
    );
}

/// A PostgreSQL pointer store on `db`, whose database handle the access
/// store uses.
async fn pointer_store(db: &testkit::postgres::TestDatabase) -> crate::postgres::PostgresStore {
    crate::postgres::PostgresStore::open(crate::postgres::PostgresOptions {
        pool_size: 4,
        ..crate::postgres::PostgresOptions::new(db.url())
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn postgres_store_shared_by_two_handles() {
    use testkit::postgres::TestDatabase;
    let db = TestDatabase::create().await;
    let first = pointer_store(&db).await;
    behaviour(&postgres::PostgresAccessStore::new(first.database())).await;
    // A second node on the same database sees what the first recorded.
    let second = pointer_store(&db).await;
    let other = postgres::PostgresAccessStore::new(second.database());
    assert_eq!(
        other.relationships(nhs(999_000_001)).await.unwrap().len(),
        2
    );
    // The same relationship recorded through both at once: one wins, the
    // other is told the winner's id.
    let first_store = postgres::PostgresAccessStore::new(first.database());
    for round in 0..10 {
        let patient = nhs(999_100_000 + round * 100);
        let (a, b) = tokio::join!(
            first_store.add_relationship(new(patient, "RX1", RelationshipKind::Referral)),
            other.add_relationship(new(patient, "RX1", RelationshipKind::Referral)),
        );
        let winner = match (a, b) {
            (Ok(w), Err(AccessStoreError::DuplicateRelationship(id)))
            | (Err(AccessStoreError::DuplicateRelationship(id)), Ok(w)) => {
                assert_eq!(w.id, id);
                w
            }
            other => panic!("round {round}: {other:?}"),
        };
        assert_eq!(other.relationships(patient).await.unwrap(), vec![winner]);
    }
}

/// PostgreSQL reads a consumer search's access facts and the patient's
/// pointers in one statement; both halves are what the two reads apart give.
#[tokio::test]
async fn postgres_reads_the_facts_and_the_pointers_together() {
    use crate::PointerStore;
    use crate::conformance::{CUSTODIAN, next_version, patient, pointer};
    use testkit::postgres::TestDatabase;
    let db = TestDatabase::create().await;
    let pointers = pointer_store(&db).await;
    let facts = postgres::PostgresAccessStore::new(pointers.database());
    let (a, b) = (patient(1), patient(2));
    assert_eq!(
        facts.patient_access_and_pointers(a).await.unwrap(),
        Some((PatientAccess::default(), Vec::new()))
    );

    for (local, n) in [("one", 1), ("two", 1), ("three", 1), ("other", 2)] {
        pointers
            .create(pointer(CUSTODIAN, local, n), Vec::new())
            .await
            .unwrap();
    }
    pointers
        .update(next_version(&pointer(CUSTODIAN, "one", 1)), 1)
        .await
        .unwrap();
    for ods in ["Y05868", "RX1"] {
        facts
            .add_relationship(new(a, ods, RelationshipKind::Encounter))
            .await
            .unwrap();
    }
    let objection = Objection {
        nhs_number: a,
        recorded_by: "admin-app".into(),
        recorded_at: "2026-03-02T09:00:00Z".into(),
        note: None,
    };
    facts.record_objection(objection).await.unwrap();

    for who in [a, b] {
        let (access, rows) = facts
            .patient_access_and_pointers(who)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(access, facts.patient_access(who).await.unwrap());
        assert_eq!(rows, pointers.patient_pointers(who).await.unwrap());
    }
    let (access, rows) = facts.patient_access_and_pointers(a).await.unwrap().unwrap();
    assert!(access.objection);
    assert_eq!(access.related_organisations.len(), 2);
    let seqs: Vec<i64> = rows.iter().map(|r| r.seq).collect();
    assert_eq!(seqs.len(), 3);
    assert!(
        seqs.windows(2).all(|w| w[0] > w[1]),
        "newest first: {seqs:?}"
    );
}
