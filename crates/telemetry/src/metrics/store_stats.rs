//! Store counters read at scrape time: the store keeps them (group-commit
//! batches, pool use) and the registry asks for them on each scrape, so the
//! write path pays nothing for them.

use std::sync::RwLock;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// What a store reports about itself; `None` where the backend has no such thing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreSnapshot {
    /// Group commit: (transactions, writes they carried) since the store
    /// opened. `writes / transactions` is the average batch size.
    pub write_batches: Option<(u64, u64)>,
    /// Connection pool use.
    pub pool: Option<PoolSnapshot>,
    /// Audit records this node kept in the store's audit outbox with their
    /// writes that the trail has not taken yet (normally 0, for a moment).
    pub audit_outbox: Option<u64>,
}

/// A connection pool's use at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolSnapshot {
    /// Connections open now.
    pub open: u64,
    /// Of those, lent to a request now.
    pub in_use: u64,
    /// The most the pool will open.
    pub max: u64,
}

type Source = Box<dyn Fn() -> StoreSnapshot + Send + Sync>;

#[derive(Default)]
pub(super) struct StoreStatsCollector {
    source: RwLock<Option<Source>>,
}

impl std::fmt::Debug for StoreStatsCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreStatsCollector")
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

impl StoreStatsCollector {
    pub(super) fn watch(&self, source: Source) {
        let mut slot = self.source.write().unwrap_or_else(|e| e.into_inner());
        *slot = Some(source);
    }

    fn snapshot(&self) -> StoreSnapshot {
        let slot = self.source.read().unwrap_or_else(|e| e.into_inner());
        slot.as_ref().map(|source| source()).unwrap_or_default()
    }
}

impl Collector for StoreStatsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let snapshot = self.snapshot();
        if let Some((batches, ops)) = snapshot.write_batches {
            let counter = ConstCounter::new(batches);
            counter.encode(encoder.encode_descriptor(
                "store_write_batches",
                "Group-commit write transactions since the store opened",
                None,
                counter.metric_type(),
            )?)?;
            let counter = ConstCounter::new(ops);
            counter.encode(encoder.encode_descriptor(
                "store_write_batch_ops",
                "Writes carried by those transactions; divide by store_write_batches for the mean batch size",
                None,
                counter.metric_type(),
            )?)?;
        }
        if let Some(waiting) = snapshot.audit_outbox {
            let gauge = ConstGauge::new(i64::try_from(waiting).unwrap_or(i64::MAX));
            gauge.encode(encoder.encode_descriptor(
                "audit_outbox_events",
                "Audit records kept with their writes that the trail has not taken yet",
                None,
                gauge.metric_type(),
            )?)?;
        }
        if let Some(pool) = snapshot.pool {
            let gauge = ConstGauge::new(0i64);
            let mut family = encoder.encode_descriptor(
                "store_pool_connections",
                "Store connections, by state (in_use, idle)",
                None,
                gauge.metric_type(),
            )?;
            let idle = pool.open.saturating_sub(pool.in_use);
            for (state, value) in [("in_use", pool.in_use), ("idle", idle)] {
                let gauge = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
                gauge.encode(family.encode_family(&StateLabel { state })?)?;
            }
            let gauge = ConstGauge::new(i64::try_from(pool.max).unwrap_or(i64::MAX));
            gauge.encode(encoder.encode_descriptor(
                "store_pool_max_connections",
                "The most connections the store pool opens",
                None,
                gauge.metric_type(),
            )?)?;
        }
        Ok(())
    }
}
