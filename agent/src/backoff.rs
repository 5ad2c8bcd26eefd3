//! Retry pacing: exponential backoff with full jitter, and the slow pace used while an
//! operator has to act.
//!
//! Full jitter (a uniform delay between zero and the exponential bound) spreads a fleet's
//! retries after a control-plane outage instead of synchronising them. The randomness only
//! needs to differ between nodes, not to be unpredictable, so it comes from a splitmix64
//! generator seeded with the clock and the process id: no crypto, no extra dependency.

use crate::config::RetryPolicy;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Delays for consecutive failures of one operation; [`Backoff::reset`] after a success.
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: RetryPolicy,
    attempt: u32,
    state: u64,
}

impl Backoff {
    pub fn new(policy: RetryPolicy) -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        // Truncation is fine: any bits of the clock make a usable seed.
        let seed = (nanos as u64) ^ (u64::from(std::process::id()) << 32);
        Self::with_seed(policy, seed)
    }

    pub fn with_seed(policy: RetryPolicy, seed: u64) -> Self {
        Self {
            policy,
            attempt: 0,
            state: seed,
        }
    }

    /// The delay before the next retry: uniform in `[0, min(cap, base * 2^attempt)]`.
    pub fn next_delay(&mut self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(31)).unwrap_or(u32::MAX);
        let bound = self.policy.base.saturating_mul(factor).min(self.policy.cap);
        self.attempt = self.attempt.saturating_add(1);
        self.uniform(bound)
    }

    /// The pace while waiting for an operator: uniform in `[cap / 2, cap]`.
    pub fn slow_delay(&mut self) -> Duration {
        let half = self.policy.cap / 2;
        half + self.uniform(self.policy.cap - half)
    }

    /// Call after a success, so the next failure starts from `base` again.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    fn uniform(&mut self, bound: Duration) -> Duration {
        let bound_ms = u64::try_from(bound.as_millis()).unwrap_or(u64::MAX);
        if bound_ms == 0 {
            return Duration::ZERO;
        }
        Duration::from_millis(self.next_u64() % bound_ms.saturating_add(1))
    }

    /// splitmix64 (Steele, Lea, Flood 2014).
    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(60),
        }
    }

    #[test]
    fn delays_stay_under_the_doubling_bound_and_the_cap() {
        let mut b = Backoff::with_seed(policy(), 7);
        for attempt in 0..40u32 {
            let bound = Duration::from_secs(1u64 << attempt.min(6)).min(Duration::from_secs(60));
            let d = b.next_delay();
            assert!(d <= bound, "attempt {attempt}: {d:?} > {bound:?}");
        }
    }

    #[test]
    fn delays_are_jittered_and_reach_the_cap_region() {
        let mut b = Backoff::with_seed(policy(), 42);
        for _ in 0..10 {
            b.next_delay();
        }
        let later: Vec<Duration> = (0..50).map(|_| b.next_delay()).collect();
        assert!(
            later.iter().any(|d| *d > Duration::from_secs(30)),
            "{later:?}"
        );
        assert!(later.iter().any(|d| *d != later[0]), "no jitter: {later:?}");
    }

    #[test]
    fn reset_starts_from_the_base_again() {
        let mut b = Backoff::with_seed(policy(), 1);
        for _ in 0..10 {
            b.next_delay();
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_secs(1));
    }

    #[test]
    fn slow_delays_are_between_half_the_cap_and_the_cap() {
        let mut b = Backoff::with_seed(policy(), 3);
        for _ in 0..100 {
            let d = b.slow_delay();
            assert!(
                d >= Duration::from_secs(30) && d <= Duration::from_secs(60),
                "{d:?}"
            );
        }
    }

    #[test]
    fn seeds_differ_between_generators() {
        let mut a = Backoff::with_seed(policy(), 1);
        let mut b = Backoff::with_seed(policy(), 2);
        let xs: Vec<u64> = (0..4).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..4).map(|_| b.next_u64()).collect();
        assert_ne!(xs, ys);
    }
}
