//! The outbox dispatcher: reads the events each pointer write records
//! (`store::outbox`) and marks them dispatched.
//!
//! Subscription delivery (issue 15, items 2 and 3) is not built yet, so there
//! is nobody to tell: each event is logged at debug level and then marked
//! dispatched, so the outbox table does not grow without bound. This loop is
//! where fan-out to subscriptions plugs in: an event must only be marked once
//! every matching subscription's notification row is stored.

use std::sync::Weak;
use std::time::Duration;

use store::PointerStore;
use tokio::task::JoinHandle;

/// How often an idle dispatcher looks for new events. A full page is followed
/// at once by the next one, so a burst drains without waiting.
const POLL: Duration = Duration::from_millis(500);
/// Events read (and marked) per round trip.
const PAGE: usize = 1000;

/// Starts the dispatcher. It holds the store weakly, so it never keeps a
/// closing store open, and stops once the last other holder lets go.
pub fn spawn(store: Weak<dyn PointerStore>) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let Some(store) = store.upgrade() else {
                break;
            };
            let more = match dispatch_page(store.as_ref()).await {
                Ok(n) => n == PAGE,
                Err(error) => {
                    // A store outage passes; the events wait for the next round.
                    tracing::warn!(%error, "outbox dispatch failed; retrying");
                    false
                }
            };
            drop(store);
            if !more {
                tokio::time::sleep(POLL).await;
            }
        }
        tracing::debug!("outbox dispatcher stopped");
    })
}

/// Dispatches one page of pending events; returns how many there were.
async fn dispatch_page(store: &dyn PointerStore) -> Result<usize, store::StoreError> {
    let events = store.pending_events(PAGE).await?;
    for event in &events {
        tracing::debug!(
            seq = event.seq,
            change = event.change.as_str(),
            pointer = %event.focus,
            "outbox event: no subscriptions to notify"
        );
    }
    let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
    store.mark_dispatched(&seqs).await?;
    Ok(events.len())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use store::SharedStore;
    use store::memory::MemoryStore;

    use super::*;

    fn record() -> domain::PointerRecord {
        let custodian = domain::OdsCode::parse("Y05868").unwrap();
        domain::PointerRecord {
            id: domain::PointerId::generate(&custodian, "p").unwrap(),
            nhs_number: domain::NhsNumber::parse("9999999999").unwrap(),
            custodian,
            type_key: "http://snomed.info/sct|736253002".into(),
            master_identifier: None,
            security_labels: Vec::new(),
            version: 1,
            last_updated: "2025-01-01T00:00:00.000Z".into(),
            json: "{}".into(),
        }
    }

    #[tokio::test]
    async fn drains_the_outbox_and_stops_with_the_store() {
        let store: SharedStore = Arc::new(MemoryStore::new());
        store.create(record(), Vec::new()).await.unwrap();
        assert_eq!(store.pending_events(10).await.unwrap().len(), 1);

        let task = spawn(Arc::downgrade(&store));
        for _ in 0..100 {
            if store.pending_events(10).await.unwrap().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(store.pending_events(10).await.unwrap().is_empty());

        drop(store);
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
    }
}
