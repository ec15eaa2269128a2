//! Circuit breakers, one per source: after `failure_threshold` consecutive
//! failures a source is not called for `cool_down`; then one trial request is
//! let through, and its result closes the circuit or opens it again.
//!
//! A refused source is reported as `refused` at once, so a region that is
//! down costs a request nothing instead of its whole time-out.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use domain::OdsCode;

/// Breaker tuning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerSettings {
    pub failure_threshold: u32,
    pub cool_down: Duration,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        BreakerSettings {
            failure_threshold: 3,
            cool_down: Duration::from_secs(30),
        }
    }
}

/// Whether a source may be called now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Closed circuit: call it.
    Allowed,
    /// The cool-down is over: this request is the one trial.
    Trial,
    /// Open circuit: do not call.
    Refused {
        consecutive_failures: u32,
        retry_in: Duration,
    },
}

#[derive(Debug, Default)]
struct State {
    consecutive_failures: u32,
    open_until: Option<Instant>,
    /// When the current trial was let through. A trial whose result never
    /// comes (its request was dropped) expires after one cool-down.
    trial_since: Option<Instant>,
}

/// The breakers of every source. State lives in memory on each node: a
/// breaker protects this node's requests, not the source's global health.
#[derive(Debug, Default)]
pub struct Breakers {
    settings: BreakerSettings,
    states: Mutex<HashMap<OdsCode, State>>,
}

impl Breakers {
    pub fn new(settings: BreakerSettings) -> Self {
        Breakers {
            settings,
            states: Mutex::new(HashMap::new()),
        }
    }

    fn with_state<T>(&self, ods: &OdsCode, f: impl FnOnce(&mut State) -> T) -> T {
        // A poisoned lock only means another request panicked mid-update; the
        // counters are still meaningful.
        let mut states = self
            .states
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(states.entry(ods.clone()).or_default())
    }

    /// Decides whether `ods` may be called at `now`.
    pub fn admit(&self, ods: &OdsCode, now: Instant) -> Admission {
        let cool_down = self.settings.cool_down;
        self.with_state(ods, |state| {
            let Some(until) = state.open_until else {
                return Admission::Allowed;
            };
            let trial_pending = state
                .trial_since
                .is_some_and(|since| now < since + cool_down);
            if now < until || trial_pending {
                let retry_at = state.trial_since.map_or(until, |since| since + cool_down);
                return Admission::Refused {
                    consecutive_failures: state.consecutive_failures,
                    retry_in: retry_at.max(until).saturating_duration_since(now),
                };
            }
            state.trial_since = Some(now);
            Admission::Trial
        })
    }

    /// Records the result of a call admitted at `now`.
    pub fn record(&self, ods: &OdsCode, success: bool, now: Instant) {
        let settings = self.settings;
        self.with_state(ods, |state| {
            state.trial_since = None;
            if success {
                *state = State::default();
                return;
            }
            state.consecutive_failures = state.consecutive_failures.saturating_add(1);
            if state.consecutive_failures >= settings.failure_threshold {
                state.open_until = Some(now + settings.cool_down);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_then_lets_one_trial_through() {
        let breakers = Breakers::new(BreakerSettings {
            failure_threshold: 3,
            cool_down: Duration::from_secs(30),
        });
        let ods = OdsCode::parse("QE1").unwrap();
        let t0 = Instant::now();
        for _ in 0..2 {
            assert_eq!(breakers.admit(&ods, t0), Admission::Allowed);
            breakers.record(&ods, false, t0);
        }
        assert_eq!(breakers.admit(&ods, t0), Admission::Allowed);
        breakers.record(&ods, false, t0);
        assert_eq!(
            breakers.admit(&ods, t0 + Duration::from_secs(10)),
            Admission::Refused {
                consecutive_failures: 3,
                retry_in: Duration::from_secs(20)
            }
        );
        let later = t0 + Duration::from_secs(31);
        assert_eq!(breakers.admit(&ods, later), Admission::Trial);
        // Only one trial at a time.
        assert!(matches!(
            breakers.admit(&ods, later),
            Admission::Refused { .. }
        ));
        // The trial fails: open again for a full cool-down.
        breakers.record(&ods, false, later);
        assert!(matches!(
            breakers.admit(&ods, later + Duration::from_secs(29)),
            Admission::Refused { .. }
        ));
        let much_later = later + Duration::from_secs(31);
        assert_eq!(breakers.admit(&ods, much_later), Admission::Trial);
        breakers.record(&ods, true, much_later);
        assert_eq!(breakers.admit(&ods, much_later), Admission::Allowed);
    }

    #[test]
    fn an_abandoned_trial_expires_after_one_cool_down() {
        let settings = BreakerSettings {
            failure_threshold: 1,
            cool_down: Duration::from_secs(30),
        };
        let breakers = Breakers::new(settings);
        let ods = OdsCode::parse("QRV").unwrap();
        let t0 = Instant::now();
        breakers.record(&ods, false, t0);
        let trial = t0 + Duration::from_secs(30);
        assert_eq!(breakers.admit(&ods, trial), Admission::Trial);
        // Its request was dropped: no result is ever recorded.
        assert!(matches!(
            breakers.admit(&ods, trial + Duration::from_secs(29)),
            Admission::Refused { .. }
        ));
        assert_eq!(
            breakers.admit(&ods, trial + Duration::from_secs(30)),
            Admission::Trial
        );
    }

    #[test]
    fn a_success_resets_the_count() {
        let breakers = Breakers::new(BreakerSettings::default());
        let ods = OdsCode::parse("QWO").unwrap();
        let now = Instant::now();
        breakers.record(&ods, false, now);
        breakers.record(&ods, false, now);
        breakers.record(&ods, true, now);
        breakers.record(&ods, false, now);
        breakers.record(&ods, false, now);
        assert_eq!(breakers.admit(&ods, now), Admission::Allowed);
        // Other sources are unaffected.
        assert_eq!(
            breakers.admit(&OdsCode::parse("QRV").unwrap(), now),
            Admission::Allowed
        );
    }
}
