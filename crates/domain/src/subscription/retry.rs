//! When a failed notification is tried again. Exponential-ish steps with
//! jitter (so a recovering endpoint is not hit by every node at once), up to
//! a retry window after which the subscription goes to `error`.

use std::time::Duration;

/// The retry schedule (`[subscriptions] retry_delays_ms`, `retry_window_ms`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySchedule {
    /// Wait before retry 1, 2, 3...; the last repeats.
    pub delays: Vec<Duration>,
    /// Total nominal wait after which nrls gives up.
    pub window: Duration,
}

impl Default for RetrySchedule {
    /// 10 s, 30 s, 1 min, 5 min, 15 min, 1 h, then hourly, for 24 h.
    fn default() -> Self {
        let secs = [10, 30, 60, 300, 900, 3600];
        RetrySchedule {
            delays: secs.into_iter().map(Duration::from_secs).collect(),
            window: Duration::from_secs(24 * 3600),
        }
    }
}

impl RetrySchedule {
    /// The wait before the next try after `failures` failed attempts (1 for
    /// the first failure), or `None` once the window is spent. `jitter` in
    /// [0, 1) adds up to a fifth of the step.
    pub fn next_delay(&self, failures: u32, jitter: f64) -> Option<Duration> {
        if failures == 0 || self.delays.is_empty() {
            return None;
        }
        let step = |n: u32| {
            let i = usize::try_from(n.saturating_sub(1)).unwrap_or(usize::MAX);
            self.delays[i.min(self.delays.len() - 1)]
        };
        let spent: Duration = (1..failures).map(step).sum();
        let delay = step(failures);
        if spent + delay > self.window {
            return None;
        }
        let extra = delay.mul_f64(jitter.clamp(0.0, 1.0) / 5.0);
        Some(delay + extra)
    }
}

/// Status codes that mean "do not try this again": the endpoint refuses the
/// request itself, so repeating it cannot help.
pub fn is_permanent(status: u16) -> bool {
    matches!(status, 400 | 401 | 403 | 404 | 410 | 413)
}
