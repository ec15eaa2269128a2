//! What a backend reports about itself for monitoring, read at scrape time
//! through [`crate::PointerStore::write_stats`] and
//! [`crate::PointerStore::pool_stats`].

pub use crate::sqlite::WriteStats;

/// A connection pool's use at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Connections open now.
    pub open: u64,
    /// Of those, lent to a caller now.
    pub in_use: u64,
    /// The most connections the pool will open.
    pub max: u64,
}
