//! Per-address limits of this replica, kept in memory (replicas count independently):
//! refused secrets ([`FailureGuard`]: join-token guessing on `POST /v1/agent/enroll`,
//! and bearer tokens that fail authentication on every customer/admin route) and
//! concurrent connections in the accept loop ([`ConnLimiter`]).
//!
//! Addresses are counted by [`addr_key`]: an IPv4 address, or the /64 prefix of an
//! IPv6 address (one host usually holds a whole /64; counting single IPv6 addresses
//! would let it rotate through them). Both maps are bounded: the guard keeps at most
//! [`MAX_TRACKED_ADDRESSES`] entries, and the connection map only holds addresses with
//! an open connection.

use super::error::problem_response;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Most addresses the enrollment guard remembers at once.
pub const MAX_TRACKED_ADDRESSES: usize = 16_384;

/// The client's TCP address, inserted by the accept loop into every request.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

/// Operator settings (`Config::limits`).
#[derive(Debug, Clone)]
pub struct LimitSettings {
    /// Enrollments with an unknown join token one address may make per window before
    /// it is refused with 429 until the window ends; 0 turns the guard off.
    pub enroll_max_failures: u32,
    /// The window of `enroll_max_failures`, starting at an address's first failure.
    pub enroll_failure_window: Duration,
    /// Concurrent connections one address may hold; 0 means no limit.
    pub max_connections_per_address: u32,
    /// Apply `max_connections_per_address` to loopback clients too (off by default:
    /// local reverse proxies and benchmarks connect from 127.0.0.1).
    pub limit_loopback_connections: bool,
    /// A request body must arrive whole within this time after its headers (408).
    pub body_read_timeout: Duration,
    /// A connection with no request in flight for this long is closed (HTTP/1.1 and
    /// HTTP/2; a held long-poll is a request in flight).
    pub idle_connection_timeout: Duration,
    /// Bearer tokens that fail authentication (unknown, revoked or expired) one address
    /// may present per window before every request from it is refused with 429 until
    /// the window ends, whatever token it carries; 0 turns the limit off.
    pub auth_max_failures: u32,
    /// The window of `auth_max_failures`, starting at an address's first failure.
    pub auth_failure_window: Duration,
    /// Do not count loopback clients' failed tokens (off by default: only an operator
    /// whose reverse proxy connects from 127.0.0.1 turns it on).
    pub exempt_loopback_auth: bool,
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self {
            enroll_max_failures: 10,
            enroll_failure_window: Duration::from_secs(60),
            max_connections_per_address: 10_000,
            limit_loopback_connections: false,
            body_read_timeout: Duration::from_secs(30),
            idle_connection_timeout: Duration::from_secs(120),
            auth_max_failures: 20,
            auth_failure_window: Duration::from_secs(60),
            exempt_loopback_auth: false,
        }
    }
}

/// The unit an address is counted in: IPv4 as is (also when IPv4-mapped), IPv6 by /64.
pub fn addr_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    since: Instant,
    count: u32,
    audited: bool,
}

/// Counts refused secrets per address: after `max_failures` in a window the address is
/// refused until the window ends, before anything looks at the database.
#[derive(Debug)]
pub struct FailureGuard {
    max_failures: u32,
    window: Duration,
    exempt_loopback: bool,
    /// What was refused, for the 429's detail ("enrollments with unknown join tokens").
    what: &'static str,
    capacity: usize,
    entries: Mutex<HashMap<IpAddr, Failures>>,
}

/// The guard of `POST /v1/agent/enroll` (its name from before bearer tokens had one).
pub type EnrollGuard = FailureGuard;

/// An address that used up its failures: refused until `retry_after` has passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub retry_after: Duration,
    pub failures: u32,
    /// True for the first refusal of the window (the one worth an audit entry).
    pub first: bool,
    what: &'static str,
}

impl FailureGuard {
    /// The enrollment guard (unknown join tokens).
    pub fn new(settings: &LimitSettings) -> Self {
        Self::with_capacity(settings, MAX_TRACKED_ADDRESSES)
    }

    /// The bearer-token guard (tokens that failed authentication).
    pub fn bearer(settings: &LimitSettings) -> Self {
        Self {
            max_failures: settings.auth_max_failures,
            window: settings.auth_failure_window,
            exempt_loopback: settings.exempt_loopback_auth,
            what: "requests with unknown or expired API tokens",
            capacity: MAX_TRACKED_ADDRESSES,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn with_capacity(settings: &LimitSettings, capacity: usize) -> Self {
        Self {
            max_failures: settings.enroll_max_failures,
            window: settings.enroll_failure_window,
            exempt_loopback: false,
            what: "enrollments with unknown join tokens",
            capacity: capacity.max(1),
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn counts(&self, ip: IpAddr) -> bool {
        self.max_failures > 0 && !(self.exempt_loopback && ip.to_canonical().is_loopback())
    }

    pub fn window(&self) -> Duration {
        self.window
    }

    /// `Err` while `ip` has no failures left in its current window.
    pub fn check(&self, ip: IpAddr, now: Instant) -> Result<(), Refusal> {
        if !self.counts(ip) {
            return Ok(());
        }
        let key = addr_key(ip);
        let mut entries = lock(&self.entries);
        let Some(e) = entries.get_mut(&key) else {
            return Ok(());
        };
        let elapsed = now.saturating_duration_since(e.since);
        if elapsed >= self.window {
            entries.remove(&key);
            return Ok(());
        }
        if e.count < self.max_failures {
            return Ok(());
        }
        let first = !e.audited;
        e.audited = true;
        Err(Refusal {
            retry_after: self.window - elapsed,
            failures: e.count,
            first,
            what: self.what,
        })
    }

    /// Counts one refused secret (an unknown join token, a bad bearer token) from `ip`.
    pub fn record_failure(&self, ip: IpAddr, now: Instant) {
        if !self.counts(ip) {
            return;
        }
        let key = addr_key(ip);
        let mut entries = lock(&self.entries);
        let fresh = Failures {
            since: now,
            count: 1,
            audited: false,
        };
        if let Some(e) = entries.get_mut(&key) {
            if now.saturating_duration_since(e.since) < self.window {
                e.count = e.count.saturating_add(1);
            } else {
                *e = fresh;
            }
            return;
        }
        if entries.len() >= self.capacity {
            let window = self.window;
            entries.retain(|_, e| now.saturating_duration_since(e.since) < window);
        }
        if entries.len() >= self.capacity {
            // Still full of live windows: forget the oldest one.
            let oldest = entries.iter().min_by_key(|(_, e)| e.since).map(|(k, _)| *k);
            if let Some(k) = oldest {
                entries.remove(&k);
            }
        }
        entries.insert(key, fresh);
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        lock(&self.entries).len()
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let secs = self.retry_after.as_secs() + u64::from(self.retry_after.subsec_nanos() > 0);
        let mut resp = problem_response(
            StatusCode::TOO_MANY_REQUESTS,
            "too-many-requests",
            Some(format!(
                "too many {} from this address; retry in {secs} s",
                self.what
            )),
        );
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        resp
    }
}

/// Open connections per address, for the accept loop.
#[derive(Debug)]
pub struct ConnLimiter {
    max: u32,
    limit_loopback: bool,
    open: Mutex<HashMap<IpAddr, u32>>,
}

/// One counted connection; dropping it frees the slot.
#[derive(Debug)]
pub struct ConnSlot {
    limiter: Arc<ConnLimiter>,
    key: IpAddr,
}

impl ConnLimiter {
    pub fn new(settings: &LimitSettings) -> Arc<Self> {
        Arc::new(Self {
            max: settings.max_connections_per_address,
            limit_loopback: settings.limit_loopback_connections,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// `None` when `ip` already holds the maximum; `Some(None)` when it is not limited.
    pub fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Option<Option<ConnSlot>> {
        if self.max == 0 || (ip.is_loopback() && !self.limit_loopback) {
            return Some(None);
        }
        let key = addr_key(ip);
        let mut open = lock(&self.open);
        let n = open.entry(key).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(Some(ConnSlot {
            limiter: self.clone(),
            key,
        }))
    }

    #[cfg(test)]
    fn open_addresses(&self) -> usize {
        lock(&self.open).len()
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        let mut open = lock(&self.limiter.open);
        if let Some(n) = open.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("address literal")
    }

    fn settings(max_failures: u32, window_secs: u64, max_conns: u32) -> LimitSettings {
        LimitSettings {
            enroll_max_failures: max_failures,
            enroll_failure_window: Duration::from_secs(window_secs),
            max_connections_per_address: max_conns,
            limit_loopback_connections: false,
            ..LimitSettings::default()
        }
    }

    #[test]
    fn bearer_failures_count_loopback_unless_exempt() {
        let (lo, lo6) = (ip("127.0.0.1"), ip("::ffff:127.0.0.1"));
        let t0 = Instant::now();
        let mut s = LimitSettings {
            auth_max_failures: 2,
            ..LimitSettings::default()
        };
        let counted = FailureGuard::bearer(&s);
        s.exempt_loopback_auth = true;
        let exempt = FailureGuard::bearer(&s);

        for _ in 0..3 {
            counted.record_failure(lo, t0);
            exempt.record_failure(lo6, t0);
        }

        assert!(
            counted.check(lo, t0).is_err(),
            "loopback is counted by default"
        );
        assert_eq!(exempt.check(lo6, t0), Ok(()), "the operator exempted it");
        assert_eq!(exempt.check(lo, t0), Ok(()));
    }

    #[test]
    fn failures_refuse_until_the_window_ends_and_audit_once() {
        let guard = EnrollGuard::new(&settings(3, 60, 0));
        let (addr, other) = (ip("192.0.2.7"), ip("192.0.2.8"));
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(guard.check(addr, t0), Ok(()));
            guard.record_failure(addr, t0);
        }

        let first = guard
            .check(addr, t0 + Duration::from_secs(10))
            .expect_err("refused");
        let second = guard
            .check(addr, t0 + Duration::from_secs(20))
            .expect_err("refused");

        assert!(first.first && !second.first, "audited once per window");
        assert_eq!(first.retry_after, Duration::from_secs(50));
        assert_eq!(
            guard.check(other, t0),
            Ok(()),
            "other addresses are not affected"
        );
        assert_eq!(guard.check(addr, t0 + Duration::from_secs(60)), Ok(()));
        guard.record_failure(addr, t0 + Duration::from_secs(61));
        assert_eq!(
            guard.check(addr, t0 + Duration::from_secs(61)),
            Ok(()),
            "a new window"
        );
    }

    #[test]
    fn ipv6_counts_per_64_and_the_map_stays_bounded() {
        let guard = EnrollGuard::with_capacity(&settings(2, 60, 0), 4);
        let t0 = Instant::now();
        guard.record_failure(ip("2001:db8::1"), t0);
        guard.record_failure(ip("2001:db8::2"), t0);
        assert!(guard.check(ip("2001:db8::99"), t0).is_err());

        for i in 0..100u8 {
            guard.record_failure(
                IpAddr::from([198, 51, 100, i]),
                t0 + Duration::from_millis(i.into()),
            );
        }

        assert!(guard.tracked() <= 4, "{} entries", guard.tracked());
    }

    #[test]
    fn connection_slots_are_capped_per_address_and_freed_on_drop() {
        let limiter = ConnLimiter::new(&settings(0, 60, 2));
        let addr = ip("203.0.113.5");
        let a = limiter.try_acquire(addr).expect("first");
        let b = limiter.try_acquire(addr).expect("second");

        assert!(limiter.try_acquire(addr).is_none(), "third is refused");
        assert!(matches!(limiter.try_acquire(ip("127.0.0.1")), Some(None)));
        drop(a);
        assert!(
            limiter.try_acquire(addr).is_some(),
            "a freed slot is reusable"
        );
        drop(b);
        assert_eq!(limiter.open_addresses(), 0, "idle addresses are forgotten");
    }
}
