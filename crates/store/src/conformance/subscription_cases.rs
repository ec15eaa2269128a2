//! Conformance cases for subscriptions (`crate::subscriptions`): fan-out
//! numbering, leases, delivery state and replay.

use crate::subscriptions::{
    DeliveryState, Matcher, Subscription, SubscriptionRecord, SubscriptionStatus, SubscriptionStore,
};
use crate::{PointerChange, PointerEvent};

use super::*;

fn subs(store: &SharedStore) -> &dyn SubscriptionStore {
    store
        .subscriptions()
        .expect("the backend keeps subscriptions")
}

/// A subscription `id` of app `owner` for patient `n`.
pub fn subscription(id: &str, owner: &str, patient_n: u32) -> SubscriptionRecord {
    SubscriptionRecord {
        id: id.to_owned(),
        owner_app: owner.to_owned(),
        nhs_number: patient(patient_n),
        heartbeat_ms: 0,
        spec: format!(r#"{{"id":"{id}"}}"#),
        created: "2025-01-01T00:00:00.000Z".to_owned(),
    }
}

fn everything() -> Matcher {
    Arc::new(|_: &Subscription, _: &PointerEvent| true)
}

async fn fan_out_all(store: &SharedStore, matcher: Matcher) -> usize {
    subs(store).fan_out(1000, matcher).await.expect("fan out")
}

async fn numbers(store: &SharedStore, id: &str) -> Vec<(i64, String)> {
    subs(store)
        .events(id, None, None, 1000)
        .await
        .expect("events")
        .into_iter()
        .map(|e| (e.number, e.event.focus.as_str().to_owned()))
        .collect()
}

async fn state(store: &SharedStore, id: &str) -> DeliveryState {
    subs(store)
        .subscription(id)
        .await
        .expect("read")
        .expect("subscription exists")
        .state
}

/// A new subscription is `requested`, readable, listed for its owner only,
/// and gone (with its events) once deleted.
pub async fn subscription_create_read_list_delete(store: SharedStore) {
    let s = subs(&store);
    let record = subscription("s1", "app-a", 1);
    s.create_subscription(record.clone()).await.expect("create");
    s.create_subscription(subscription("s2", "app-a", 2))
        .await
        .expect("create");
    s.create_subscription(subscription("s3", "app-b", 1))
        .await
        .expect("create");
    assert!(s.create_subscription(record.clone()).await.is_err());

    let read = s.subscription("s1").await.unwrap().unwrap();
    assert_eq!(read.record, record);
    assert_eq!(read.state, DeliveryState::requested());
    let listed: Vec<String> = s
        .subscriptions_of("app-a")
        .await
        .unwrap()
        .into_iter()
        .map(|x| x.record.id)
        .collect();
    assert_eq!(listed, vec!["s1".to_owned(), "s2".to_owned()]);

    create(&store, &pointer(CUSTODIAN, "p", 1)).await;
    fan_out_all(&store, everything()).await;
    assert_eq!(numbers(&store, "s1").await.len(), 1);
    assert!(s.delete_subscription("s1").await.unwrap());
    assert!(!s.delete_subscription("s1").await.unwrap());
    assert!(s.subscription("s1").await.unwrap().is_none());
    assert!(numbers(&store, "s1").await.is_empty());
    assert_eq!(numbers(&store, "s3").await.len(), 1);
}

/// Fan-out numbers each subscription's events 1, 2, 3... with no gaps, in
/// outbox order, only for the subscription's patient and only where the
/// matcher accepts; it empties the outbox.
pub async fn subscription_fan_out_numbers_without_gaps(store: SharedStore) {
    let s = subs(&store);
    s.create_subscription(subscription("all", "app", 1))
        .await
        .unwrap();
    s.create_subscription(subscription("creates", "app", 1))
        .await
        .unwrap();
    s.create_subscription(subscription("other", "app", 2))
        .await
        .unwrap();
    let a = pointer(CUSTODIAN, "a", 1);
    let b = pointer(CUSTODIAN, "b", 1);
    create(&store, &a).await;
    create(&store, &b).await;
    store.update(next_version(&a), 1).await.unwrap();
    create(&store, &pointer(CUSTODIAN, "c", 2)).await;

    let matcher: Matcher = Arc::new(|sub: &Subscription, event: &PointerEvent| {
        sub.record.id != "creates" || event.change == PointerChange::Created
    });
    // A page smaller than the outbox: numbering continues across rounds.
    assert_eq!(s.fan_out(2, Arc::clone(&matcher)).await.unwrap(), 2);
    assert_eq!(fan_out_all(&store, matcher).await, 2);
    assert!(store.pending_events(10).await.unwrap().is_empty());
    assert_eq!(fan_out_all(&store, everything()).await, 0);

    let focus = |r: &PointerRecord| r.id.as_str().to_owned();
    assert_eq!(
        numbers(&store, "all").await,
        vec![(1, focus(&a)), (2, focus(&b)), (3, focus(&a))]
    );
    assert_eq!(
        numbers(&store, "creates").await,
        vec![(1, focus(&a)), (2, focus(&b))]
    );
    assert_eq!(numbers(&store, "other").await.len(), 1);
    assert_eq!(state(&store, "all").await.events_total, 3);

    let window = s.events("all", Some(2), Some(3), 10).await.unwrap();
    assert_eq!(
        window.iter().map(|e| e.number).collect::<Vec<_>>(),
        vec![2, 3]
    );
    assert_eq!(window[1].event.change, PointerChange::Updated);
    assert_eq!(s.events("all", Some(2), None, 1).await.unwrap().len(), 1);
    assert!(
        s.events("all", Some(3), Some(2), 10)
            .await
            .unwrap()
            .is_empty()
    );
}

/// A supersede fans out as ONE event carrying the replaced pointers.
pub async fn subscription_supersede_is_one_event(store: SharedStore) {
    let s = subs(&store);
    s.create_subscription(subscription("s", "app", 1))
        .await
        .unwrap();
    let old = pointer(CUSTODIAN, "old", 1);
    create(&store, &old).await;
    let new = pointer(CUSTODIAN, "new", 1);
    store
        .create(new.clone(), vec![supersede(&old)])
        .await
        .unwrap();
    fan_out_all(&store, everything()).await;
    let events = s.events("s", None, None, 10).await.unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[1].number, 2);
    assert_eq!(events[1].event.change, PointerChange::Superseded);
    assert_eq!(events[1].event.focus, new.id);
    assert_eq!(events[1].event.additional_context, vec![old.id.clone()]);
}

/// Claims: a requested subscription is due at once; a lease keeps others
/// off until it expires; only the holder may record the result; an active
/// subscription is due when an event waits or its heartbeat is due; one in
/// `error` never is.
pub async fn subscription_claims_and_leases(store: SharedStore) {
    let s = subs(&store);
    let mut record = subscription("s", "app", 1);
    record.heartbeat_ms = 10_000;
    s.create_subscription(record).await.unwrap();

    let claims = s.claim_due("node-a", 1_000, 500, 10).await.unwrap();
    assert_eq!(claims.len(), 1);
    assert!(claims[0].next_event.is_none());
    assert!(
        s.claim_due("node-b", 1_200, 500, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // node-a died: its lease expires and node-b takes over.
    let taken = s.claim_due("node-b", 1_600, 500, 10).await.unwrap();
    assert_eq!(taken.len(), 1);
    let active = DeliveryState {
        status: SubscriptionStatus::Active,
        last_sent_ms: 1_600,
        ..DeliveryState::requested()
    };
    assert!(!s.finish_attempt("s", "node-a", &active).await.unwrap());
    assert!(s.finish_attempt("s", "node-b", &active).await.unwrap());
    assert_eq!(state(&store, "s").await.status, SubscriptionStatus::Active);

    // Nothing waits and the heartbeat is not yet due.
    assert!(
        s.claim_due("node-a", 2_000, 500, 10)
            .await
            .unwrap()
            .is_empty()
    );
    create(&store, &pointer(CUSTODIAN, "p", 1)).await;
    fan_out_all(&store, everything()).await;
    let claims = s.claim_due("node-a", 2_000, 500, 10).await.unwrap();
    assert_eq!(claims.len(), 1);
    let event = claims[0].next_event.clone().expect("event 1 is due");
    assert_eq!(event.number, 1);
    let delivered = DeliveryState {
        delivered_through: 1,
        last_sent_ms: 2_000,
        ..active.clone()
    };
    assert!(s.finish_attempt("s", "node-a", &delivered).await.unwrap());
    let after = state(&store, "s").await;
    assert_eq!((after.delivered_through, after.events_total), (1, 1));

    // The heartbeat falls due 10 s after the last send.
    assert!(
        s.claim_due("node-a", 11_999, 500, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let beat = s.claim_due("node-a", 12_000, 500, 10).await.unwrap();
    assert_eq!(beat.len(), 1);
    assert!(beat[0].next_event.is_none());

    // A retry waits for its time; an error is never due.
    let retry = DeliveryState {
        attempts: 1,
        next_attempt_ms: 50_000,
        ..delivered.clone()
    };
    assert!(s.finish_attempt("s", "node-a", &retry).await.unwrap());
    assert!(
        s.claim_due("node-a", 49_999, 500, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        s.claim_due("node-a", 50_000, 500, 10).await.unwrap().len(),
        1
    );
    let failed = DeliveryState {
        status: SubscriptionStatus::Error,
        error: Some("endpoint answered 410".into()),
        ..delivered
    };
    assert!(s.finish_attempt("s", "node-a", &failed).await.unwrap());
    assert!(
        s.claim_due("node-a", 99_000, 500, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let stopped = state(&store, "s").await;
    assert_eq!(stopped.error.as_deref(), Some("endpoint answered 410"));
}

/// Reactivation asks for a new handshake and resumes after the last
/// acknowledged event, keeping the numbers.
pub async fn subscription_reactivate_resumes_after_last_ack(store: SharedStore) {
    let s = subs(&store);
    s.create_subscription(subscription("s", "app", 1))
        .await
        .unwrap();
    for n in 0..3 {
        create(&store, &pointer(CUSTODIAN, &format!("p{n}"), 1)).await;
    }
    fan_out_all(&store, everything()).await;
    s.claim_due("node", 0, 100, 1).await.unwrap();
    let failed = DeliveryState {
        status: SubscriptionStatus::Error,
        error: Some("gave up".into()),
        delivered_through: 1,
        ..DeliveryState::requested()
    };
    assert!(s.finish_attempt("s", "node", &failed).await.unwrap());
    // Events keep coming while in error.
    create(&store, &pointer(CUSTODIAN, "p3", 1)).await;
    fan_out_all(&store, everything()).await;
    assert_eq!(state(&store, "s").await.events_total, 4);

    assert!(s.reactivate("s").await.unwrap());
    assert!(!s.reactivate("missing").await.unwrap());
    let again = state(&store, "s").await;
    assert_eq!(again.status, SubscriptionStatus::Requested);
    assert_eq!(again.error, None);
    assert_eq!((again.delivered_through, again.events_total), (1, 4));
    let claims = s.claim_due("node", 0, 100, 1).await.unwrap();
    assert_eq!(claims.len(), 1);
    assert_eq!(claims[0].next_event.as_ref().map(|e| e.number), Some(2));
}

/// Two nodes claiming at once never get the same subscription.
pub async fn subscription_concurrent_claims_are_disjoint(store: SharedStore) {
    let s = subs(&store);
    for n in 0..20 {
        s.create_subscription(subscription(&format!("s{n}"), "app", n))
            .await
            .unwrap();
    }
    let tasks: Vec<_> = (0..4)
        .map(|node| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let mut got = Vec::new();
                for _ in 0..5 {
                    let claims = subs(&store)
                        .claim_due(&format!("node-{node}"), 0, 60_000, 2)
                        .await
                        .expect("claim");
                    got.extend(claims.into_iter().map(|c| c.subscription.record.id));
                }
                got
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("task ran"));
    }
    assert_eq!(all.len(), 20, "{all:?}");
    assert_eq!(distinct(all), 20);
}

/// Acknowledged events older than the cut-off are purged; unacknowledged
/// ones stay whatever their age.
pub async fn subscription_purge_keeps_unacknowledged(store: SharedStore) {
    let s = subs(&store);
    s.create_subscription(subscription("s", "app", 1))
        .await
        .unwrap();
    for n in 0..3 {
        create(&store, &pointer(CUSTODIAN, &format!("p{n}"), 1)).await;
    }
    fan_out_all(&store, everything()).await;
    s.claim_due("node", 0, 100, 1).await.unwrap();
    let acked = DeliveryState {
        status: SubscriptionStatus::Active,
        delivered_through: 2,
        ..DeliveryState::requested()
    };
    assert!(s.finish_attempt("s", "node", &acked).await.unwrap());
    assert_eq!(s.purge_events("2000-01-01T00:00:00.000Z").await.unwrap(), 0);
    assert_eq!(s.purge_events("9999-01-01T00:00:00.000Z").await.unwrap(), 2);
    let left: Vec<i64> = numbers(&store, "s")
        .await
        .into_iter()
        .map(|e| e.0)
        .collect();
    assert_eq!(left, vec![3]);
}
