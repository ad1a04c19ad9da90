//! Enrollment attempts per client address: each costs a PIN verification and registry work, so
//! one address (an IPv6 /64) gets `lifecycle.enroll_attempts_per_minute` of them, a burst of the
//! same size then one every 60/n seconds; beyond, 429 with `Retry-After`.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, Ordering};

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// How many checks pass between two sweeps of addresses whose allowance is full again.
const SWEEP_EVERY: u32 = 4096;

/// The per-address allowance of enrollment attempts.
pub(super) struct EnrollThrottle {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    clock: DefaultClock,
    checks: AtomicU32,
}

impl EnrollThrottle {
    /// `per_minute` attempts per address.
    pub(super) fn new(per_minute: u32) -> Self {
        let per_minute = NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN);
        Self {
            limiter: RateLimiter::keyed(Quota::per_minute(per_minute)),
            clock: DefaultClock::default(),
            checks: AtomicU32::new(0),
        }
    }

    /// Counts one attempt from `peer`: `Err(seconds)` to wait when it has none left.
    pub(super) fn check(&self, peer: IpAddr) -> Result<(), u64> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.limiter.retain_recent();
        }
        self.limiter
            .check_key(&crate::http::client_key(peer))
            .map_err(|not_until| {
                not_until
                    .wait_time_from(self.clock.now())
                    .as_secs()
                    .saturating_add(1)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_gets_its_burst_then_waits_and_others_are_not_affected() {
        let throttle = EnrollThrottle::new(3);
        let one: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..3 {
            assert_eq!(throttle.check(one), Ok(()));
        }
        let wait = throttle.check(one).unwrap_err();
        assert!((1..=21).contains(&wait), "{wait}");
        assert_eq!(throttle.check("192.0.2.2".parse().unwrap()), Ok(()));
        // The same IPv6 /64 is one client.
        for last in 1..=3 {
            let address: IpAddr = format!("2001:db8::{last}").parse().unwrap();
            assert_eq!(throttle.check(address), Ok(()));
        }
        assert!(throttle.check("2001:db8::99".parse().unwrap()).is_err());
    }
}
