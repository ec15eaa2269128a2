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
    behaviour(&memory::MemoryAccessStore::new()).await;
}

#[tokio::test]
async fn sqlite_store_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(sqlite::FILE_NAME);
    behaviour(&sqlite::SqliteAccessStore::open(&path).unwrap()).await;
    let reopened = sqlite::SqliteAccessStore::open(&path).unwrap();
    assert_eq!(
        reopened
            .relationships(nhs(999_000_001))
            .await
            .unwrap()
            .len(),
        2
    );
}

#[tokio::test]
async fn postgres_store_shared_by_two_handles() {
    use crate::postgres::PostgresStore;
    use testkit::postgres::TestDatabase;
    let db = TestDatabase::create().await;
    let first = PostgresStore::open(crate::postgres::PostgresOptions {
        pool_size: 4,
        ..crate::postgres::PostgresOptions::new(db.url())
    })
    .await
    .unwrap();
    behaviour(&postgres::PostgresAccessStore::new(first.database())).await;
    // A second node on the same database sees what the first recorded.
    let second = PostgresStore::open(crate::postgres::PostgresOptions {
        pool_size: 4,
        ..crate::postgres::PostgresOptions::new(db.url())
    })
    .await
    .unwrap();
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
