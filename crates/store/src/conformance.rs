//! The storage conformance suite: what every [`PointerStore`] backend must do,
//! written once. The in-memory backend is the reference; each backend runs the
//! same cases with one macro call:
//!
//! ```ignore
//! #[cfg(test)]
//! mod tests {
//!     store::conformance_tests!(|| async { MyStore::new() });
//! }
//! ```
//!
//! The expression must be a closure (or function) returning a future that
//! yields a fresh, empty store: a [`PointerStore`], a [`SharedStore`], or a
//! [`Fixture`] when something (a temporary directory, a scratch database) must
//! live as long as the store. The calling crate needs `tokio` (with `macros`
//! and `rt-multi-thread`) as a dev-dependency; another crate reaches this
//! module through the `conformance` feature.
//!
//! Every case is a `pub async fn` taking the store, so a backend can also call
//! a case directly (say, against a store it prepared differently).

// The cases are assertions: a panic is how a case reports a failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::any::Any;
use std::collections::HashSet;
use std::sync::Arc;

use domain::{NhsNumber, OdsCode, PointerId, PointerRecord, Supersede};

use crate::{PointerStore, SharedStore, StoreError};

mod audit_outbox_cases;
mod cases;
mod outbox_cases;
mod subscription_cases;
pub use audit_outbox_cases::*;
pub use cases::*;
pub use outbox_cases::*;
pub use subscription_cases::*;

/// A fresh store for one case, plus whatever must outlive it.
pub struct Fixture {
    /// The store under test.
    pub store: SharedStore,
    /// Dropped after `store` (fields drop in order), e.g. a `TempDir`.
    _guard: Box<dyn Any>,
}

impl Fixture {
    /// A store that needs nothing kept alive beside it.
    pub fn new(store: impl PointerStore) -> Self {
        Fixture {
            store: Arc::new(store),
            _guard: Box::new(()),
        }
    }

    /// A store whose files or database `guard` owns; `guard` is dropped after
    /// the store.
    pub fn with_guard(store: impl PointerStore, guard: impl Any) -> Self {
        Fixture {
            store: Arc::new(store),
            _guard: Box::new(guard),
        }
    }
}

impl<S: PointerStore> From<S> for Fixture {
    fn from(store: S) -> Self {
        Fixture::new(store)
    }
}

impl From<SharedStore> for Fixture {
    fn from(store: SharedStore) -> Self {
        Fixture {
            store,
            _guard: Box::new(()),
        }
    }
}

/// The producer most cases write as.
pub const CUSTODIAN: &str = "Y05868";
/// A second producer, for rules that are per custodian.
pub const OTHER_CUSTODIAN: &str = "RX898";
/// Mental health crisis plan.
pub const CARE_PLAN: &str = "http://snomed.info/sct|736253002";
/// End of life care coordination summary.
pub const OTHER_TYPE: &str = "http://snomed.info/sct|861421000000109";

/// The `n`th test patient: a valid NHS number in the never-issued 999 range,
/// distinct for each `n` below 500 000 (larger `n` wrap around).
pub fn patient(n: u32) -> NhsNumber {
    // Two stems per patient: one of two consecutive stems always has a valid
    // check digit (their check values differ by 2 mod 11, so never both 10).
    let stem = 999_000_000 + 2 * (n % 500_000);
    NhsNumber::from_stem(stem)
        .or_else(|| NhsNumber::from_stem(stem + 1))
        .expect("one of two consecutive stems is valid")
}

/// A valid version-1 pointer `<custodian>-<local>` for patient `n`, of type
/// [`CARE_PLAN`], with no masterIdentifier and no security labels.
pub fn pointer(custodian: &str, local: &str, patient_n: u32) -> PointerRecord {
    let custodian = OdsCode::parse(custodian).expect("test custodian is a valid ODS code");
    let id = PointerId::generate(&custodian, local).expect("test pointer id is valid");
    let nhs_number = patient(patient_n);
    let type_key = CARE_PLAN.to_owned();
    let last_updated = "2025-01-01T00:00:00.000Z".to_owned();
    let json = document_reference(&id, nhs_number, &custodian, &type_key, &last_updated, 1);
    PointerRecord {
        id,
        nhs_number,
        custodian,
        type_key,
        master_identifier: None,
        security_labels: Vec::new(),
        version: 1,
        last_updated,
        json,
    }
}

/// What a row written before its backend compressed pointer JSON must still
/// do, `old` being the only pointer of its patient: read by id and by
/// patient, re-import as already present (compared by content), and export
/// first beside a row written now.
pub async fn row_from_before_compression_reads_as_before(
    store: &dyn PointerStore,
    old: &PointerRecord,
) {
    assert_eq!(store.get(&old.id).await.unwrap().as_ref(), Some(old));
    let found = store.patient_pointers(old.nhs_number).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].record, *old);
    let again = store.import(vec![old.clone()]).await.unwrap();
    assert_eq!((again.imported, again.already_present), (0, 1));
    store
        .create(pointer(old.custodian.as_str(), "new", 1), Vec::new())
        .await
        .unwrap();
    let page = store.pointers_after(0, 10, None).await.unwrap();
    assert_eq!(page.len(), 2);
    assert_eq!(page[0].record, *old);
}

/// `record` as its next version, with new JSON and timestamp.
pub fn next_version(record: &PointerRecord) -> PointerRecord {
    let version = record.version + 1;
    let last_updated = format!("2025-01-0{}T00:00:00.000Z", version.min(9));
    let json = document_reference(
        &record.id,
        record.nhs_number,
        &record.custodian,
        &record.type_key,
        &last_updated,
        version,
    );
    PointerRecord {
        version,
        last_updated,
        json,
        ..record.clone()
    }
}

/// A supersede of `target`, as named by a request's first `relatesTo`.
pub fn supersede(target: &PointerRecord) -> Supersede {
    Supersede {
        target: target.id.clone(),
        expression: "DocumentReference.relatesTo[0].target".into(),
    }
}

fn document_reference(
    id: &PointerId,
    nhs_number: NhsNumber,
    custodian: &OdsCode,
    type_key: &str,
    last_updated: &str,
    version: u32,
) -> String {
    let (system, code) = type_key.split_once('|').unwrap_or(("", type_key));
    format!(
        r#"{{"resourceType":"DocumentReference","id":"{id}","meta":{{"versionId":"{version}","lastUpdated":"{last_updated}"}},"status":"current","type":{{"coding":[{{"system":"{system}","code":"{code}"}}]}},"subject":{{"identifier":{{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"{nhs_number}"}}}},"custodian":{{"identifier":{{"system":"https://fhir.nhs.uk/Id/ods-organization-code","value":"{custodian}"}}}},"content":[{{"attachment":{{"contentType":"application/pdf","url":"https://example.org/{id}.pdf"}}}}]}}"#
    )
}

async fn create(store: &SharedStore, record: &PointerRecord) {
    store
        .create(record.clone(), Vec::new())
        .await
        .expect("create a fresh pointer");
}

async fn get(store: &SharedStore, record: &PointerRecord) -> Option<PointerRecord> {
    store.get(&record.id).await.expect("get")
}

/// The ids of patient `n`'s pointers, in the order the store returns them.
async fn patient_ids(store: &SharedStore, n: u32) -> Vec<String> {
    let stored = store
        .patient_pointers(patient(n))
        .await
        .expect("patient pointers");
    stored
        .into_iter()
        .map(|s| s.record.id.as_str().to_owned())
        .collect()
}

async fn seq_of(store: &SharedStore, record: &PointerRecord) -> i64 {
    let stored = store
        .patient_pointers(record.nhs_number)
        .await
        .expect("patient pointers");
    stored
        .iter()
        .find(|s| s.record.id == record.id)
        .map(|s| s.seq)
        .expect("pointer is stored")
}

fn ids(records: &[&PointerRecord]) -> Vec<String> {
    records.iter().map(|r| r.id.as_str().to_owned()).collect()
}

fn distinct<T: std::hash::Hash + Eq>(items: impl IntoIterator<Item = T>) -> usize {
    items.into_iter().collect::<HashSet<_>>().len()
}

fn expect_err<T: std::fmt::Debug>(result: Result<T, StoreError>) -> StoreError {
    match result {
        Ok(value) => panic!("expected an error, got Ok({value:?})"),
        Err(error) => error,
    }
}

/// Expands to one `#[tokio::test]` per conformance case, each on a fresh store
/// from `$make` (see the [module documentation](crate::conformance)).
#[macro_export]
macro_rules! conformance_tests {
    ($make:expr) => {
        $crate::conformance_tests!(@cases $make;
            create_then_get_round_trips,
            get_missing_is_none,
            duplicate_id_is_rejected,
            duplicate_master_identifier_is_rejected_for_same_custodian,
            same_master_identifier_is_allowed_for_other_custodian,
            master_identifier_is_free_after_delete,
            supersede_deletes_target,
            supersede_of_missing_target_creates_nothing,
            supersede_subject_mismatch_leaves_both,
            supersede_custodian_mismatch_leaves_both,
            supersede_type_mismatch_leaves_both,
            supersede_with_last_target_bad_leaves_all,
            supersede_takes_over_master_identifier,
            update_at_current_version_replaces,
            update_at_stale_version_conflicts,
            update_missing_is_not_found,
            update_keeps_sequence,
            update_cannot_take_another_master_identifier,
            delete_checks_version,
            delete_without_version,
            delete_missing_is_not_found,
            patient_pointers_newest_first_for_that_patient_only,
            sequences_never_reused_after_delete,
            count_follows_creates_and_deletes,
            concurrent_creates_all_land,
            concurrent_updates_at_same_version_one_wins,
            health_and_backend,
            outbox_create_records_one_event,
            outbox_supersede_is_one_event,
            outbox_update_and_delete_record_events,
            outbox_rejected_writes_record_nothing,
            outbox_mark_dispatched_removes_events,
            outbox_concurrent_writes_one_event_each,
            audit_outbox_keeps_each_committed_writes_record,
            audit_outbox_keeps_nothing_for_a_rejected_write,
            audit_outbox_removal_is_by_id_idempotent_and_ids_only_grow,
            subscription_create_read_list_delete,
            subscription_fan_out_numbers_without_gaps,
            subscription_supersede_is_one_event,
            subscription_claims_and_leases,
            subscription_reactivate_resumes_after_last_ack,
            subscription_concurrent_claims_are_disjoint,
            subscription_purge_keeps_unacknowledged,
        );
    };
    (@cases $make:expr; $($case:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let fixture = $crate::conformance::Fixture::from(($make)().await);
                $crate::conformance::$case(::std::sync::Arc::clone(&fixture.store)).await;
            }
        )+
    };
}
