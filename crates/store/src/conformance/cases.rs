//! The conformance cases. Each takes a fresh, empty store and panics on the
//! first difference from the contract.

use super::*;

/// A create is read back exactly: every field, and the JSON byte for byte
/// (odd spacing, escapes and non-ASCII included).
pub async fn create_then_get_round_trips(store: SharedStore) {
    let mut full = pointer(CUSTODIAN, "full", 1);
    full.master_identifier = Some("urn:ietf:rfc:3986|urn:oid:1.2.3.4".into());
    full.security_labels = vec!["R".into(), "V".into()];
    full.json = "{ \"resourceType\" : \"DocumentReference\",\n\t\"description\": \"Zoë’s plan \\u00e9 \\\"q\\\" 🩺\" }".into();
    let bare = pointer(CUSTODIAN, "bare", 1);
    create(&store, &full).await;
    create(&store, &bare).await;

    let read = get(&store, &full).await.expect("created pointer is found");
    assert_eq!(read, full);
    assert_eq!(read.json.as_bytes(), full.json.as_bytes());
    assert_eq!(get(&store, &bare).await, Some(bare));
}

pub async fn get_missing_is_none(store: SharedStore) {
    assert_eq!(get(&store, &pointer(CUSTODIAN, "nothing", 1)).await, None);
}

/// A second create with an existing id fails and leaves the first untouched.
pub async fn duplicate_id_is_rejected(store: SharedStore) {
    let first = pointer(CUSTODIAN, "same", 1);
    create(&store, &first).await;
    let mut second = pointer(CUSTODIAN, "same", 2);
    second.json = "{}".into();

    let error = expect_err(store.create(second, Vec::new()).await);
    assert_eq!(error, StoreError::DuplicateId(first.id.clone()));
    assert_eq!(get(&store, &first).await, Some(first));
    assert_eq!(store.count().await.unwrap(), 1);
}

pub async fn duplicate_master_identifier_is_rejected_for_same_custodian(store: SharedStore) {
    let mut first = pointer(CUSTODIAN, "m1", 1);
    first.master_identifier = Some("sys|doc-1".into());
    let mut second = pointer(CUSTODIAN, "m2", 2);
    second.master_identifier = first.master_identifier.clone();
    create(&store, &first).await;

    let error = expect_err(store.create(second.clone(), Vec::new()).await);
    assert_eq!(
        error,
        StoreError::DuplicateMasterIdentifier("sys|doc-1".into())
    );
    assert_eq!(get(&store, &second).await, None);
    assert_eq!(get(&store, &first).await, Some(first));
}

pub async fn same_master_identifier_is_allowed_for_other_custodian(store: SharedStore) {
    let mut first = pointer(CUSTODIAN, "m1", 1);
    first.master_identifier = Some("sys|doc-1".into());
    let mut other = pointer(OTHER_CUSTODIAN, "m1", 1);
    other.master_identifier = first.master_identifier.clone();
    create(&store, &first).await;
    create(&store, &other).await;
    assert_eq!(store.count().await.unwrap(), 2);
}

/// Deleting a pointer releases its masterIdentifier.
pub async fn master_identifier_is_free_after_delete(store: SharedStore) {
    let mut first = pointer(CUSTODIAN, "m1", 1);
    first.master_identifier = Some("sys|doc-1".into());
    let mut second = pointer(CUSTODIAN, "m2", 1);
    second.master_identifier = first.master_identifier.clone();
    create(&store, &first).await;
    store.delete(&first.id, None).await.unwrap();
    create(&store, &second).await;
    assert_eq!(get(&store, &second).await, Some(second));
}

/// A supersede removes its target and inserts the new pointer together.
pub async fn supersede_deletes_target(store: SharedStore) {
    let old = pointer(CUSTODIAN, "old", 1);
    let new = pointer(CUSTODIAN, "new", 1);
    create(&store, &old).await;
    store
        .create(new.clone(), vec![supersede(&old)])
        .await
        .unwrap();

    assert_eq!(get(&store, &old).await, None);
    assert_eq!(get(&store, &new).await, Some(new.clone()));
    assert_eq!(patient_ids(&store, 1).await, ids(&[&new]));
    assert_eq!(store.count().await.unwrap(), 1);
}

pub async fn supersede_of_missing_target_creates_nothing(store: SharedStore) {
    let absent = pointer(CUSTODIAN, "absent", 1);
    let new = pointer(CUSTODIAN, "new", 1);
    let target = supersede(&absent);

    let error = expect_err(store.create(new.clone(), vec![target.clone()]).await);
    assert_eq!(error, StoreError::SupersedeTargetMissing(target));
    assert_eq!(get(&store, &new).await, None);
    assert_eq!(store.count().await.unwrap(), 0);
}

/// Creates `old`, tries to supersede it with `new` and expects a mismatch on
/// `field` with both pointers exactly as they were.
async fn assert_supersede_mismatch(
    store: &SharedStore,
    old: PointerRecord,
    new: PointerRecord,
    field: &'static str,
) {
    create(store, &old).await;
    let target = supersede(&old);
    let error = expect_err(store.create(new.clone(), vec![target.clone()]).await);
    assert_eq!(error, StoreError::SupersedeMismatch { target, field });
    assert_eq!(get(store, &old).await, Some(old));
    assert_eq!(get(store, &new).await, None);
}

pub async fn supersede_subject_mismatch_leaves_both(store: SharedStore) {
    let old = pointer(CUSTODIAN, "old", 1);
    let new = pointer(CUSTODIAN, "new", 2);
    assert_supersede_mismatch(&store, old, new, "subject").await;
}

pub async fn supersede_custodian_mismatch_leaves_both(store: SharedStore) {
    let old = pointer(OTHER_CUSTODIAN, "old", 1);
    let new = pointer(CUSTODIAN, "new", 1);
    assert_supersede_mismatch(&store, old, new, "custodian").await;
}

pub async fn supersede_type_mismatch_leaves_both(store: SharedStore) {
    let old = pointer(CUSTODIAN, "old", 1);
    let mut new = pointer(CUSTODIAN, "new", 1);
    new.type_key = OTHER_TYPE.into();
    assert_supersede_mismatch(&store, old, new, "type").await;
}

/// With several targets, one bad target (here the last) cancels the whole
/// create: the good targets are not deleted.
pub async fn supersede_with_last_target_bad_leaves_all(store: SharedStore) {
    let first = pointer(CUSTODIAN, "t1", 1);
    let second = pointer(CUSTODIAN, "t2", 1);
    let mut bad = pointer(CUSTODIAN, "t3", 1);
    bad.type_key = OTHER_TYPE.into();
    for record in [&first, &second, &bad] {
        create(&store, record).await;
    }
    let new = pointer(CUSTODIAN, "new", 1);
    let targets = vec![supersede(&first), supersede(&second), supersede(&bad)];

    let error = expect_err(store.create(new.clone(), targets).await);
    assert_eq!(
        error,
        StoreError::SupersedeMismatch {
            target: supersede(&bad),
            field: "type"
        }
    );
    assert_eq!(patient_ids(&store, 1).await, ids(&[&bad, &second, &first]));
    assert_eq!(get(&store, &new).await, None);
}

/// A pointer may take the masterIdentifier of the pointer it supersedes; the
/// identifier then belongs to the new pointer.
pub async fn supersede_takes_over_master_identifier(store: SharedStore) {
    let mut old = pointer(CUSTODIAN, "old", 1);
    old.master_identifier = Some("sys|doc-1".into());
    let mut new = pointer(CUSTODIAN, "new", 1);
    new.master_identifier = old.master_identifier.clone();
    create(&store, &old).await;
    store
        .create(new.clone(), vec![supersede(&old)])
        .await
        .unwrap();
    assert_eq!(get(&store, &new).await, Some(new.clone()));
    assert_eq!(get(&store, &old).await, None);

    let mut third = pointer(CUSTODIAN, "third", 1);
    third.master_identifier = new.master_identifier.clone();
    let error = expect_err(store.create(third, Vec::new()).await);
    assert_eq!(
        error,
        StoreError::DuplicateMasterIdentifier("sys|doc-1".into())
    );
}

pub async fn update_at_current_version_replaces(store: SharedStore) {
    let v1 = pointer(CUSTODIAN, "p", 1);
    create(&store, &v1).await;
    let v2 = next_version(&v1);
    store.update(v2.clone(), 1).await.unwrap();
    assert_eq!(get(&store, &v1).await, Some(v2.clone()));
    let v3 = next_version(&v2);
    store.update(v3.clone(), 2).await.unwrap();
    assert_eq!(get(&store, &v1).await, Some(v3));
}

pub async fn update_at_stale_version_conflicts(store: SharedStore) {
    let v1 = pointer(CUSTODIAN, "p", 1);
    create(&store, &v1).await;
    let v2 = next_version(&v1);
    store.update(v2.clone(), 1).await.unwrap();

    let error = expect_err(store.update(next_version(&v1), 1).await);
    assert_eq!(
        error,
        StoreError::VersionConflict {
            id: v1.id.clone(),
            expected: 1,
            actual: 2
        }
    );
    assert_eq!(get(&store, &v1).await, Some(v2));
}

pub async fn update_missing_is_not_found(store: SharedStore) {
    let v1 = pointer(CUSTODIAN, "p", 1);
    let error = expect_err(store.update(next_version(&v1), 1).await);
    assert_eq!(error, StoreError::NotFound(v1.id.clone()));
    assert_eq!(get(&store, &v1).await, None);
}

/// An update keeps the pointer's sequence, so search order and cursors hold.
pub async fn update_keeps_sequence(store: SharedStore) {
    let a = pointer(CUSTODIAN, "a", 1);
    let b = pointer(CUSTODIAN, "b", 1);
    let c = pointer(CUSTODIAN, "c", 1);
    for record in [&a, &b, &c] {
        create(&store, record).await;
    }
    let seq = seq_of(&store, &a).await;
    store.update(next_version(&a), 1).await.unwrap();
    assert_eq!(seq_of(&store, &a).await, seq);
    assert_eq!(patient_ids(&store, 1).await, ids(&[&c, &b, &a]));
}

pub async fn update_cannot_take_another_master_identifier(store: SharedStore) {
    let mut holder = pointer(CUSTODIAN, "holder", 1);
    holder.master_identifier = Some("sys|doc-1".into());
    let other = pointer(CUSTODIAN, "other", 1);
    create(&store, &holder).await;
    create(&store, &other).await;

    let mut taking = next_version(&other);
    taking.master_identifier = holder.master_identifier.clone();
    let error = expect_err(store.update(taking, 1).await);
    assert_eq!(
        error,
        StoreError::DuplicateMasterIdentifier("sys|doc-1".into())
    );
    assert_eq!(get(&store, &other).await, Some(other));

    // Keeping its own identifier through an update is fine.
    store.update(next_version(&holder), 1).await.unwrap();
}

pub async fn delete_checks_version(store: SharedStore) {
    let v1 = pointer(CUSTODIAN, "p", 1);
    create(&store, &v1).await;
    let error = expect_err(store.delete(&v1.id, Some(2)).await);
    assert_eq!(
        error,
        StoreError::VersionConflict {
            id: v1.id.clone(),
            expected: 2,
            actual: 1
        }
    );
    assert_eq!(get(&store, &v1).await, Some(v1.clone()));

    store.delete(&v1.id, Some(1)).await.unwrap();
    assert_eq!(get(&store, &v1).await, None);
    assert!(patient_ids(&store, 1).await.is_empty());
}

pub async fn delete_without_version(store: SharedStore) {
    let v1 = pointer(CUSTODIAN, "p", 1);
    create(&store, &v1).await;
    store.update(next_version(&v1), 1).await.unwrap();
    store.delete(&v1.id, None).await.unwrap();
    assert_eq!(get(&store, &v1).await, None);
    assert_eq!(store.count().await.unwrap(), 0);
}

pub async fn delete_missing_is_not_found(store: SharedStore) {
    let v1 = pointer(CUSTODIAN, "p", 1);
    assert_eq!(
        expect_err(store.delete(&v1.id, None).await),
        StoreError::NotFound(v1.id.clone())
    );
    create(&store, &v1).await;
    store.delete(&v1.id, None).await.unwrap();
    assert_eq!(
        expect_err(store.delete(&v1.id, Some(1)).await),
        StoreError::NotFound(v1.id.clone())
    );
}

pub async fn patient_pointers_newest_first_for_that_patient_only(store: SharedStore) {
    let a = pointer(CUSTODIAN, "a", 1);
    let other = pointer(CUSTODIAN, "other", 2);
    let b = pointer(OTHER_CUSTODIAN, "b", 1);
    let c = pointer(CUSTODIAN, "c", 1);
    for record in [&a, &other, &b, &c] {
        create(&store, record).await;
    }
    let stored = store.patient_pointers(patient(1)).await.unwrap();
    let records: Vec<_> = stored.iter().map(|s| s.record.clone()).collect();
    assert_eq!(records, vec![c, b, a]);
    assert!(
        stored.windows(2).all(|w| w[0].seq > w[1].seq),
        "sequences strictly decrease"
    );
    assert_eq!(patient_ids(&store, 2).await, ids(&[&other]));
    assert!(patient_ids(&store, 3).await.is_empty());
}

/// Create A, delete A, create B: B's sequence is above A's, even though A
/// held the highest sequence when it was deleted.
pub async fn sequences_never_reused_after_delete(store: SharedStore) {
    let a = pointer(CUSTODIAN, "a", 1);
    create(&store, &a).await;
    let seq_a = seq_of(&store, &a).await;
    store.delete(&a.id, None).await.unwrap();
    let b = pointer(CUSTODIAN, "b", 1);
    create(&store, &b).await;
    assert!(seq_of(&store, &b).await > seq_a);
}

pub async fn count_follows_creates_and_deletes(store: SharedStore) {
    assert_eq!(store.count().await.unwrap(), 0);
    let records: Vec<_> = (0..5)
        .map(|i| pointer(CUSTODIAN, &format!("p{i}"), i))
        .collect();
    for record in &records {
        create(&store, record).await;
    }
    assert_eq!(store.count().await.unwrap(), 5);
    store.delete(&records[0].id, None).await.unwrap();
    store
        .create(pointer(CUSTODIAN, "p5", 1), vec![supersede(&records[1])])
        .await
        .unwrap();
    assert_eq!(store.count().await.unwrap(), 4);
}

/// 64 creates racing from separate tasks all land, each with its own sequence.
pub async fn concurrent_creates_all_land(store: SharedStore) {
    let tasks: Vec<_> = (0..64u32)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                store
                    .create(pointer(CUSTODIAN, &format!("c{i}"), i % 4), Vec::new())
                    .await
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task ran").expect("create succeeded");
    }
    assert_eq!(store.count().await.unwrap(), 64);
    let mut seqs = Vec::new();
    for n in 0..4 {
        let stored = store.patient_pointers(patient(n)).await.unwrap();
        assert_eq!(stored.len(), 16);
        seqs.extend(stored.iter().map(|s| s.seq));
    }
    assert_eq!(distinct(seqs), 64);
}

/// Updates racing at the same version: exactly one wins, every other one is
/// told the version moved on.
pub async fn concurrent_updates_at_same_version_one_wins(store: SharedStore) {
    let v1 = pointer(CUSTODIAN, "p", 1);
    create(&store, &v1).await;
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = Arc::clone(&store);
            let mut v2 = next_version(&v1);
            v2.json = format!("{{\"writer\":{i}}}");
            tokio::spawn(async move { (store.update(v2.clone(), 1).await, v2) })
        })
        .collect();
    let mut winners = Vec::new();
    for task in tasks {
        match task.await.expect("task ran") {
            (Ok(()), record) => winners.push(record),
            (Err(error), _) => {
                assert_eq!(
                    error,
                    StoreError::VersionConflict {
                        id: v1.id.clone(),
                        expected: 1,
                        actual: 2
                    }
                )
            }
        }
    }
    assert_eq!(winners.len(), 1, "exactly one update wins");
    assert_eq!(get(&store, &v1).await, winners.pop());
}

pub async fn health_and_backend(store: SharedStore) {
    store.health().await.unwrap();
    assert!(!store.backend().is_empty());
}
