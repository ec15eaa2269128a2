//! A [`PointerStore`] decorator that times every call into
//! `nrls_store_operation_duration_seconds{operation, result}`, whatever the
//! backend. The service wraps its store in it once, at start-up.
//!
//! It forwards every trait method, defaults included, so a backend's own
//! `import` or `pointers_after` is the one that runs.

use std::time::Instant;

use async_trait::async_trait;
use domain::{NhsNumber, OdsCode, PointerId, PointerRecord, Supersede};
use telemetry::StoreMetrics;

use crate::{
    AuditKept, ImportOutcome, OutboxedAudit, PointerEvent, PointerStore, PointerWrite, PoolStats,
    SharedStore, StoreError, StoredPointer, WriteStats,
};

/// Times each call to the wrapped store.
pub struct InstrumentedStore {
    inner: SharedStore,
    metrics: StoreMetrics,
}

impl InstrumentedStore {
    pub fn new(inner: SharedStore, metrics: StoreMetrics) -> InstrumentedStore {
        InstrumentedStore { inner, metrics }
    }

    async fn timed<T>(
        &self,
        operation: &'static str,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        timed(&self.metrics, operation, call).await
    }
}

/// Runs `call`, recording its latency and result under `operation`: for every
/// store call, including those made outside a [`PointerStore`] (the access
/// facts' combined read of a patient's pointers).
pub async fn timed<T>(
    metrics: &StoreMetrics,
    operation: &'static str,
    call: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    let started = Instant::now();
    let result = call.await;
    let label = match &result {
        Ok(_) => "ok",
        Err(e) => result_label(e),
    };
    metrics.record(operation, label, started.elapsed());
    result
}

/// The `result` label of a failed call: a few stable kinds, never the message.
pub fn result_label(error: &StoreError) -> &'static str {
    match error {
        StoreError::NotFound(_) => "not_found",
        StoreError::DuplicateId(_) | StoreError::DuplicateMasterIdentifier(_) => "duplicate",
        StoreError::VersionConflict { .. } => "conflict",
        StoreError::SupersedeTargetMissing(_) | StoreError::SupersedeMismatch { .. } => "rejected",
        StoreError::Unavailable(_) => "unavailable",
        StoreError::Internal(_) => "internal",
    }
}

#[async_trait]
impl PointerStore for InstrumentedStore {
    async fn create(
        &self,
        record: PointerRecord,
        supersedes: Vec<Supersede>,
    ) -> Result<(), StoreError> {
        self.timed("create", self.inner.create(record, supersedes))
            .await
    }

    async fn update(&self, record: PointerRecord, expected_version: u32) -> Result<(), StoreError> {
        self.timed("update", self.inner.update(record, expected_version))
            .await
    }

    async fn delete(
        &self,
        id: &PointerId,
        expected_version: Option<u32>,
    ) -> Result<(), StoreError> {
        self.timed("delete", self.inner.delete(id, expected_version))
            .await
    }

    async fn get(&self, id: &PointerId) -> Result<Option<PointerRecord>, StoreError> {
        self.timed("get", self.inner.get(id)).await
    }

    async fn patient_pointers(
        &self,
        nhs_number: NhsNumber,
    ) -> Result<Vec<StoredPointer>, StoreError> {
        self.timed("patient_pointers", self.inner.patient_pointers(nhs_number))
            .await
    }

    async fn import(&self, records: Vec<PointerRecord>) -> Result<ImportOutcome, StoreError> {
        self.timed("import", self.inner.import(records)).await
    }

    async fn pointers_after(
        &self,
        after_seq: i64,
        limit: usize,
        custodian: Option<&OdsCode>,
    ) -> Result<Vec<StoredPointer>, StoreError> {
        self.timed(
            "pointers_after",
            self.inner.pointers_after(after_seq, limit, custodian),
        )
        .await
    }

    async fn pending_events(&self, limit: usize) -> Result<Vec<PointerEvent>, StoreError> {
        self.timed("pending_events", self.inner.pending_events(limit))
            .await
    }

    async fn mark_dispatched(&self, seqs: &[i64]) -> Result<(), StoreError> {
        self.timed("mark_dispatched", self.inner.mark_dispatched(seqs))
            .await
    }

    async fn write_audited(
        &self,
        write: PointerWrite,
        audit: Vec<u8>,
    ) -> Result<AuditKept, StoreError> {
        let operation = match &write {
            PointerWrite::Create { .. } => "create",
            PointerWrite::Update { .. } => "update",
            PointerWrite::Delete { .. } => "delete",
        };
        self.timed(operation, self.inner.write_audited(write, audit))
            .await
    }

    async fn audit_outbox(&self, limit: usize) -> Result<Vec<OutboxedAudit>, StoreError> {
        self.timed("audit_outbox", self.inner.audit_outbox(limit))
            .await
    }

    async fn remove_audit_outbox(&self, ids: &[u64]) -> Result<(), StoreError> {
        self.timed("remove_audit_outbox", self.inner.remove_audit_outbox(ids))
            .await
    }

    async fn count(&self) -> Result<u64, StoreError> {
        self.timed("count", self.inner.count()).await
    }

    async fn health(&self) -> Result<(), StoreError> {
        self.timed("health", self.inner.health()).await
    }

    fn subscriptions(&self) -> Option<&dyn crate::SubscriptionStore> {
        self.inner.subscriptions()
    }

    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    fn write_stats(&self) -> Option<WriteStats> {
        self.inner.write_stats()
    }

    fn pool_stats(&self) -> Option<PoolStats> {
        self.inner.pool_stats()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use telemetry::Metrics;

    use super::*;
    use crate::memory::MemoryStore;

    #[tokio::test]
    async fn records_each_call_and_forwards_stats() {
        let metrics = Metrics::new();
        let store = InstrumentedStore::new(Arc::new(MemoryStore::new()), metrics.store().clone());
        assert_eq!(store.count().await.unwrap(), 0);
        let missing = PointerId::parse("RR8-missing").unwrap();
        assert!(store.delete(&missing, None).await.is_err());
        assert_eq!(store.backend(), "memory");
        assert_eq!(store.write_stats(), None);
        let text = metrics.render();
        assert!(
            text.contains(
                r#"nrls_store_operation_duration_seconds_count{operation="count",result="ok"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"nrls_store_operation_duration_seconds_count{operation="delete",result="not_found"} 1"#),
            "{text}"
        );
    }
}
