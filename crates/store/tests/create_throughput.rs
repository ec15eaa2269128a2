//! A measurement, not a check (ignored): SQLite create throughput with
//! concurrent writers, to see what the subscriptions outbox costs the write
//! path. Uses only the public API so the same file runs on an older revision.
//!
//! `cargo test -p store --test create_throughput -- --ignored --nocapture`

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Instant;

use domain::{NhsNumber, OdsCode, PointerId, PointerRecord};
use store::PointerStore;
use store::sqlite::{SqliteOptions, SqliteStore};

const WRITERS: usize = 32;
const PER_WRITER: usize = 500;

fn record(n: usize) -> PointerRecord {
    let custodian = OdsCode::parse("Y05868").unwrap();
    let id = PointerId::generate(&custodian, &format!("p{n}")).unwrap();
    PointerRecord {
        json: format!(r#"{{"resourceType":"DocumentReference","id":"{id}"}}"#),
        id,
        nhs_number: NhsNumber::parse("9999999999").unwrap(),
        custodian,
        type_key: "http://snomed.info/sct|736253002".into(),
        master_identifier: None,
        security_labels: Vec::new(),
        version: 1,
        last_updated: "2025-01-01T00:00:00.000Z".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement"]
async fn sqlite_create_throughput() {
    for round in 0..7 {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(
            SqliteStore::open(&dir.path().join("nrls.db"), SqliteOptions::default()).unwrap(),
        );
        let started = Instant::now();
        let tasks: Vec<_> = (0..WRITERS)
            .map(|w| {
                let store = Arc::clone(&store);
                tokio::spawn(async move {
                    for i in 0..PER_WRITER {
                        store
                            .create(record(w * PER_WRITER + i), Vec::new())
                            .await
                            .unwrap();
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let elapsed = started.elapsed();
        let total = WRITERS * PER_WRITER;
        println!(
            "round {round}: {total} creates in {:.2} s = {:.0}/s",
            elapsed.as_secs_f64(),
            total as f64 / elapsed.as_secs_f64()
        );
    }
}
