//! Where the service is in its life: starting, ready, or shutting down.
//! `/readyz` answers from it, so load balancers stop sending traffic before
//! the listener closes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

/// A phase of the service's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Opening the store, running migrations, binding listeners.
    Starting,
    /// Serving.
    Ready,
    /// A shutdown signal arrived: finishing in-flight requests.
    ShuttingDown,
}

impl Phase {
    /// How `/readyz` names it.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::Ready => "ready",
            Phase::ShuttingDown => "shutting_down",
        }
    }
}

/// Shared phase; clones see the same value.
#[derive(Debug, Clone, Default)]
pub struct Lifecycle(Arc<AtomicU8>);

impl Lifecycle {
    pub fn phase(&self) -> Phase {
        match self.0.load(Ordering::Acquire) {
            0 => Phase::Starting,
            1 => Phase::Ready,
            _ => Phase::ShuttingDown,
        }
    }

    /// Starting → Ready. Never leaves ShuttingDown.
    pub fn set_ready(&self) {
        let _ = self
            .0
            .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire);
    }

    /// Any phase → ShuttingDown, for good.
    pub fn begin_shutdown(&self) {
        self.0.store(2, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_only_move_forward() {
        let life = Lifecycle::default();
        assert_eq!(life.phase(), Phase::Starting);
        life.set_ready();
        assert_eq!(life.clone().phase(), Phase::Ready);
        life.begin_shutdown();
        life.set_ready();
        assert_eq!(life.phase(), Phase::ShuttingDown);
    }
}
