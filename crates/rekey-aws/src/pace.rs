//! AWS's published request quotas, kept on the client side: a token
//! bucket per (operation, region) of one account's [`Clients`], shared by
//! every task of the process that calls that operation there. Concurrent
//! callers then go as fast as the quota allows and no faster, instead of
//! one after another (too slow) or all at once (throttled, then retried).
//! The SDK's adaptive retry still slows down on a throttle the bucket did
//! not foresee (another tool using the same account's quota).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// A quota: `per_second` requests a second on average, `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quota {
    pub per_second: f64,
    pub burst: u32,
}

/// Security Hub's `BatchUpdateFindings`: 10 a second, burst 30.
pub const SECURITY_HUB_UPDATE: Quota = Quota { per_second: 10.0, burst: 30 };
/// Security Hub's `GetFindings`: 3 a second, burst 6.
pub const SECURITY_HUB_READ: Quota = Quota { per_second: 3.0, burst: 6 };
/// CloudTrail's `LookupEvents`: 2 a second per account and region. A
/// little under it, one at a time, so no one-second window holds 3.
pub const CLOUDTRAIL_LOOKUP: Quota = Quota { per_second: 1.9, burst: 1 };

/// One token bucket.
#[derive(Debug)]
pub struct Pacer {
    quota: Quota,
    state: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Pacer {
    pub fn new(quota: Quota) -> Pacer {
        Pacer { quota, state: Mutex::new(Bucket { tokens: f64::from(quota.burst), at: Instant::now() }) }
    }

    /// Waits until one request may go. A waiter takes its token when it
    /// asks (the balance may go below zero), so the waiters are served in
    /// the order they asked and none is starved.
    pub async fn ready(&self) {
        let wait = {
            // invariant: no code panics while holding the lock
            let mut b = self.state.lock().expect("pacer lock");
            let now = Instant::now();
            let refill = now.duration_since(b.at).as_secs_f64() * self.quota.per_second;
            b.tokens = (b.tokens + refill).min(f64::from(self.quota.burst)) - 1.0;
            b.at = now;
            if b.tokens >= 0.0 { Duration::ZERO } else { Duration::from_secs_f64(-b.tokens / self.quota.per_second) }
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

/// The buckets of one account's clients, by operation and region.
#[derive(Debug, Default, Clone)]
pub struct Pacers(Arc<Mutex<HashMap<(&'static str, String), Arc<Pacer>>>>);

impl Pacers {
    /// The bucket of `operation` in `region`, made with `quota` the first
    /// time it is asked for.
    pub fn of(&self, operation: &'static str, region: &str, quota: Quota) -> Arc<Pacer> {
        // invariant: no code panics while holding the lock
        let mut map = self.0.lock().expect("pacers lock");
        map.entry((operation, region.to_owned())).or_insert_with(|| Arc::new(Pacer::new(quota))).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On tokio's paused clock: what the bucket lets through, exactly.
    #[tokio::test(start_paused = true)]
    async fn a_burst_goes_at_once_then_the_rate_holds() {
        let pacer = Arc::new(Pacer::new(SECURITY_HUB_UPDATE));
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let p = pacer.clone();
            tasks.push(tokio::spawn(async move {
                p.ready().await;
                Instant::now().duration_since(start)
            }));
        }
        let mut times = Vec::new();
        for t in tasks {
            times.push(t.await.unwrap());
        }
        times.sort();
        assert!(times[..30].iter().all(|t| t.is_zero()), "the burst of 30 goes at once: {times:?}");
        // The other 20 at 10 a second: the last 2 s after the start.
        let last = times[49].as_secs_f64();
        assert!((1.99..2.01).contains(&last), "{last}");
        // No one-second window holds more than the burst plus ten.
        for (i, t) in times.iter().enumerate() {
            let within = times[i..].iter().filter(|u| u.as_secs_f64() < t.as_secs_f64() + 1.0).count();
            assert!(within <= 40, "{within} requests within a second from {t:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_bucket_refills_to_its_burst_and_no_more() {
        let pacer = Pacer::new(Quota { per_second: 2.0, burst: 2 });
        for _ in 0..2 {
            pacer.ready().await;
        }
        tokio::time::sleep(Duration::from_secs(60)).await;
        let start = Instant::now();
        for _ in 0..4 {
            pacer.ready().await;
        }
        // Two from the refilled burst, then two at 2 a second.
        assert_eq!(Instant::now().duration_since(start), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn cloudtrail_never_gets_three_lookups_into_a_second() {
        let pacer = Pacer::new(CLOUDTRAIL_LOOKUP);
        let start = Instant::now();
        let mut times = Vec::new();
        for _ in 0..7 {
            pacer.ready().await;
            times.push(start.elapsed());
        }
        for three in times.windows(3) {
            assert!(three[2] - three[0] > Duration::from_secs(1), "{times:?}");
        }
        assert!(times[6] < Duration::from_millis(3300), "not much slower than 2 a second: {times:?}");
    }

    #[test]
    fn one_bucket_per_operation_and_region() {
        let pacers = Pacers::default();
        let a = pacers.of("securityhub:BatchUpdateFindings", "eu-west-1", SECURITY_HUB_UPDATE);
        let b = pacers.clone().of("securityhub:BatchUpdateFindings", "eu-west-1", SECURITY_HUB_UPDATE);
        let c = pacers.of("securityhub:BatchUpdateFindings", "us-east-1", SECURITY_HUB_UPDATE);
        assert!(Arc::ptr_eq(&a, &b) && !Arc::ptr_eq(&a, &c));
    }
}
