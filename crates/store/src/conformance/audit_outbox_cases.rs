//! Conformance cases for the audit outbox (`crate::audit_outbox`): an
//! audited write happens exactly as the plain one does, and a backend that
//! keeps the record keeps it exactly when the write commits.

use crate::{AuditKept, OutboxedAudit, PointerWrite};

use super::*;

async fn waiting(store: &SharedStore) -> Vec<OutboxedAudit> {
    store.audit_outbox(1000).await.expect("audit outbox")
}

async fn audited_create(store: &SharedStore, record: &PointerRecord, entry: &[u8]) -> AuditKept {
    store
        .write_audited(
            PointerWrite::Create {
                record: record.clone(),
                supersedes: Vec::new(),
            },
            entry.to_vec(),
        )
        .await
        .expect("audited create")
}

/// Each audited write (create, update, delete) is applied, and its record
/// is kept in order when the backend says so, and nowhere when it does not.
pub async fn audit_outbox_keeps_each_committed_writes_record(store: SharedStore) {
    let record = pointer(CUSTODIAN, "audited", 1);
    let kept = audited_create(&store, &record, b"create").await;
    assert_eq!(store.get(&record.id).await.unwrap(), Some(record.clone()));

    let next = next_version(&record);
    let update = PointerWrite::Update {
        record: next.clone(),
        expected_version: 1,
    };
    assert_eq!(
        store.write_audited(update, b"update".to_vec()).await,
        Ok(kept)
    );
    assert_eq!(store.get(&record.id).await.unwrap(), Some(next));

    let delete = PointerWrite::Delete {
        id: record.id.clone(),
        expected_version: Some(2),
    };
    assert_eq!(
        store.write_audited(delete, b"delete".to_vec()).await,
        Ok(kept)
    );
    assert_eq!(store.get(&record.id).await.unwrap(), None);

    let entries: Vec<Vec<u8>> = waiting(&store).await.into_iter().map(|e| e.entry).collect();
    match kept {
        AuditKept::WithTheChange => assert_eq!(
            entries,
            vec![b"create".to_vec(), b"update".to_vec(), b"delete".to_vec()]
        ),
        AuditKept::NotKept => assert!(entries.is_empty(), "{entries:?}"),
    }
}

/// A rejected audited write changes nothing and keeps no record: the
/// caller audits the refusal itself.
pub async fn audit_outbox_keeps_nothing_for_a_rejected_write(store: SharedStore) {
    let record = pointer(CUSTODIAN, "once", 1);
    create(&store, &record).await;
    let again = PointerWrite::Create {
        record: record.clone(),
        supersedes: Vec::new(),
    };
    assert_eq!(
        store.write_audited(again, b"duplicate".to_vec()).await,
        Err(StoreError::DuplicateId(record.id.clone()))
    );
    let stale = PointerWrite::Update {
        record: next_version(&record),
        expected_version: 7,
    };
    assert!(matches!(
        store.write_audited(stale, b"stale".to_vec()).await,
        Err(StoreError::VersionConflict { .. })
    ));
    assert!(waiting(&store).await.is_empty());
}

/// Removal forgets exactly the records named, a second removal is
/// harmless, and ids only grow.
pub async fn audit_outbox_removal_is_by_id_idempotent_and_ids_only_grow(store: SharedStore) {
    for n in 0..3 {
        let record = pointer(CUSTODIAN, &format!("r{n}"), 1);
        if audited_create(&store, &record, &[n]).await == AuditKept::NotKept {
            return;
        }
    }
    let entries = waiting(&store).await;
    assert_eq!(entries.len(), 3);
    assert!(entries.windows(2).all(|w| w[0].id < w[1].id), "{entries:?}");
    let first_two = [entries[0].id, entries[1].id];
    store.remove_audit_outbox(&first_two).await.unwrap();
    assert_eq!(waiting(&store).await, vec![entries[2].clone()]);
    store.remove_audit_outbox(&first_two).await.unwrap();
    store.remove_audit_outbox(&[entries[2].id]).await.unwrap();
    assert!(waiting(&store).await.is_empty());
    for n in 3..5 {
        let record = pointer(CUSTODIAN, &format!("r{n}"), 1);
        audited_create(&store, &record, &[n]).await;
    }
    let after = waiting(&store).await;
    assert_eq!(after.len(), 2);
    assert!(
        after[0].id > entries[2].id && after[1].id > after[0].id,
        "{after:?}"
    );
}
