//! Conformance cases for the transactional outbox (`crate::outbox`): one event
//! per committed write, none for a rejected one.

use crate::{PointerChange, PointerEvent};

use super::*;

async fn pending(store: &SharedStore) -> Vec<PointerEvent> {
    store.pending_events(1000).await.expect("pending events")
}

/// `(change, focus, additional context)` of each pending event, in order.
async fn summary(store: &SharedStore) -> Vec<(PointerChange, String, Vec<String>)> {
    pending(store)
        .await
        .into_iter()
        .map(|e| {
            let context = e
                .additional_context
                .iter()
                .map(|id| id.as_str().to_owned())
                .collect();
            (e.change, e.focus.as_str().to_owned(), context)
        })
        .collect()
}

fn id(record: &PointerRecord) -> String {
    record.id.as_str().to_owned()
}

/// A create records one event describing the new pointer.
pub async fn outbox_create_records_one_event(store: SharedStore) {
    assert!(pending(&store).await.is_empty());
    let mut record = pointer(CUSTODIAN, "p", 1);
    record.security_labels = vec!["R".into()];
    create(&store, &record).await;

    let events = pending(&store).await;
    assert_eq!(events.len(), 1);
    let event = &events[0];
    assert_eq!(event.change, PointerChange::Created);
    assert_eq!(event.focus, record.id);
    assert!(event.additional_context.is_empty());
    assert_eq!(event.nhs_number, record.nhs_number);
    assert_eq!(event.custodian, record.custodian);
    assert_eq!(event.type_key, record.type_key);
    assert_eq!(event.security_labels, vec!["R".to_owned()]);
    assert!(
        domain::clock::is_date_time(&event.recorded_at),
        "{}",
        event.recorded_at
    );
}

/// A supersede is ONE event: the new pointer as focus, every replaced pointer
/// as additional context, in request order.
pub async fn outbox_supersede_is_one_event(store: SharedStore) {
    let old_a = pointer(CUSTODIAN, "a", 1);
    let old_b = pointer(CUSTODIAN, "b", 1);
    create(&store, &old_a).await;
    create(&store, &old_b).await;
    let new = pointer(CUSTODIAN, "new", 1);
    store
        .create(new.clone(), vec![supersede(&old_b), supersede(&old_a)])
        .await
        .expect("supersede");

    let events = summary(&store).await;
    assert_eq!(events.len(), 3, "{events:?}");
    assert_eq!(
        events[2],
        (
            PointerChange::Superseded,
            id(&new),
            vec![id(&old_b), id(&old_a)]
        )
    );
}

/// An update and a delete each record one event; a delete's event describes
/// the pointer as it was (its labels decide who may hear of it).
pub async fn outbox_update_and_delete_record_events(store: SharedStore) {
    let v1 = pointer(CUSTODIAN, "p", 1);
    create(&store, &v1).await;
    let mut v2 = next_version(&v1);
    v2.security_labels = vec!["V".into()];
    store.update(v2.clone(), 1).await.expect("update");
    store.delete(&v1.id, Some(2)).await.expect("delete");

    let events = pending(&store).await;
    let changes: Vec<_> = events.iter().map(|e| (e.change, e.focus.clone())).collect();
    assert_eq!(
        changes,
        vec![
            (PointerChange::Created, v1.id.clone()),
            (PointerChange::Updated, v1.id.clone()),
            (PointerChange::Deleted, v1.id.clone()),
        ]
    );
    assert_eq!(events[1].security_labels, vec!["V".to_owned()]);
    assert_eq!(events[2].security_labels, vec!["V".to_owned()]);
    assert_eq!(events[2].nhs_number, v1.nhs_number);
    assert_eq!(events[2].type_key, v1.type_key);
}

/// Every rejected write rolls back its event with it.
pub async fn outbox_rejected_writes_record_nothing(store: SharedStore) {
    let mut first = pointer(CUSTODIAN, "p", 1);
    first.master_identifier = Some("sys|doc".into());
    create(&store, &first).await;
    let other_patient = pointer(CUSTODIAN, "q", 2);
    create(&store, &other_patient).await;
    let before = summary(&store).await;
    assert_eq!(before.len(), 2);

    let mut same_master = pointer(CUSTODIAN, "m", 1);
    same_master.master_identifier = first.master_identifier.clone();
    let rejected = [
        store.create(first.clone(), Vec::new()).await,
        store.create(same_master, Vec::new()).await,
        store
            .create(
                pointer(CUSTODIAN, "x", 1),
                vec![supersede(&pointer(CUSTODIAN, "gone", 1))],
            )
            .await,
        store
            .create(pointer(CUSTODIAN, "y", 1), vec![supersede(&other_patient)])
            .await,
        store.update(next_version(&first), 7).await,
        store.update(pointer(CUSTODIAN, "none", 1), 1).await,
        store.delete(&first.id, Some(9)).await,
        store.delete(&pointer(CUSTODIAN, "none", 1).id, None).await,
    ];
    for outcome in rejected {
        assert!(outcome.is_err(), "{outcome:?}");
    }
    assert_eq!(summary(&store).await, before);
}

/// Events come out in sequence order; dispatched ones are gone for good,
/// marking twice (or an unknown sequence) is harmless, and new events number
/// above dispatched ones.
pub async fn outbox_mark_dispatched_removes_events(store: SharedStore) {
    for n in 0..4 {
        create(&store, &pointer(CUSTODIAN, &format!("p{n}"), n)).await;
    }
    let events = pending(&store).await;
    let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    assert_eq!(store.pending_events(2).await.unwrap(), events[..2]);

    store.mark_dispatched(&seqs[..3]).await.expect("mark");
    store.mark_dispatched(&seqs[..3]).await.expect("mark again");
    store.mark_dispatched(&[]).await.expect("mark nothing");
    store
        .mark_dispatched(&[i64::MAX])
        .await
        .expect("mark unknown");
    assert_eq!(pending(&store).await, events[3..]);

    store.mark_dispatched(&seqs[3..]).await.expect("mark last");
    assert!(pending(&store).await.is_empty());
    let late = pointer(CUSTODIAN, "late", 1);
    create(&store, &late).await;
    let after = pending(&store).await;
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].focus, late.id);
    assert!(after[0].seq > seqs[3]);
}

/// Concurrent writes each record exactly one event, with distinct sequences.
pub async fn outbox_concurrent_writes_one_event_each(store: SharedStore) {
    let tasks: Vec<_> = (0..32u32)
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
    let events = pending(&store).await;
    assert_eq!(events.len(), 32);
    assert_eq!(distinct(events.iter().map(|e| e.seq)), 32);
    assert_eq!(distinct(events.iter().map(|e| e.focus.clone())), 32);
}
