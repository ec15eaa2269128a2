//! Per-app rate limits: a token bucket per client id, refilled continuously at
//! the app's `rate_limit_per_second` with a burst of the same size. Kept in
//! memory per node: with N nodes an app may reach N times its limit, which is
//! documented in docs/security.md.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Buckets of every app that has a limit.
#[derive(Default)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<Arc<str>, Bucket>>,
}

impl RateLimiter {
    /// Takes one token for `client_id`; `Err(seconds)` says when to retry.
    pub fn check(&self, client_id: &Arc<str>, per_second: u32) -> Result<(), u64> {
        self.check_at(client_id, per_second, Instant::now())
    }

    fn check_at(&self, client_id: &Arc<str>, per_second: u32, now: Instant) -> Result<(), u64> {
        let rate = f64::from(per_second.max(1));
        // A poisoned lock only means another request panicked mid-update; the
        // buckets are still usable, so carry on rather than refuse service.
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let bucket = buckets.entry(client_id.clone()).or_insert(Bucket {
            tokens: rate,
            updated: now,
        });
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(rate);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - bucket.tokens) / rate).ceil().max(1.0) as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn allows_the_burst_then_refuses_until_refilled() {
        let limiter = RateLimiter::default();
        let app: Arc<str> = Arc::from("app");
        let t0 = Instant::now();
        for _ in 0..5 {
            assert!(limiter.check_at(&app, 5, t0).is_ok());
        }
        assert_eq!(limiter.check_at(&app, 5, t0), Err(1));
        assert!(
            limiter
                .check_at(&app, 5, t0 + Duration::from_millis(250))
                .is_ok()
        );
        let other: Arc<str> = Arc::from("other");
        assert!(
            limiter.check_at(&other, 5, t0).is_ok(),
            "buckets are per app"
        );
    }
}
