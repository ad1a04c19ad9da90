//! The time, to the second: what certificates and the registry record. Rooms that decide by
//! the time take a [`Clock`], so that tests can move it instead of waiting for it.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use time::OffsetDateTime;

/// Where "now" comes from.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current time in UTC, whole seconds.
    fn now(&self) -> OffsetDateTime;

    /// [`Self::now`] as Unix seconds.
    fn unix(&self) -> i64 {
        self.now().unix_timestamp()
    }
}

/// The system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        now()
    }

    /// Read straight from the system clock: the proxy asks for it on every request, and going
    /// through an [`OffsetDateTime`] added its calendar arithmetic, about 170 instructions.
    fn unix(&self) -> i64 {
        let secs =
            |duration: std::time::Duration| i64::try_from(duration.as_secs()).unwrap_or(i64::MAX);
        match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            Ok(since) => secs(since),
            // Before 1970 (a clock set wrong): whole seconds rounded down, as `now` truncates.
            Err(before) => {
                let before = before.duration();
                -secs(before) - i64::from(before.subsec_nanos() > 0)
            }
        }
    }
}

/// The system's time, to the second.
pub fn now() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(0).unwrap_or(now)
}

/// A clock that stands still until moved (tests). Cloning shares it.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    /// A clock showing `at`.
    pub fn at(at: OffsetDateTime) -> Self {
        Self(Arc::new(AtomicI64::new(at.unix_timestamp())))
    }

    /// A clock showing the system's time now.
    pub fn starting_now() -> Self {
        Self::at(now())
    }

    /// Moves the clock forward (or back, with a negative duration).
    pub fn advance(&self, by: time::Duration) {
        self.0.fetch_add(by.whole_seconds(), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        let secs = self.0.load(Ordering::SeqCst);
        OffsetDateTime::from_unix_timestamp(secs).unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_system_clock_gives_the_same_unix_seconds_both_ways() {
        let clock = SystemClock;
        let before = clock.now().unix_timestamp();
        let unix = clock.unix();
        let after = clock.now().unix_timestamp();
        assert!(
            before <= unix && unix <= after,
            "{before} <= {unix} <= {after}"
        );
    }

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let clock = ManualClock::starting_now();
        let before = clock.now();
        clock.advance(time::Duration::days(2));
        assert_eq!(clock.now() - before, time::Duration::days(2));
        assert_eq!(clock.now().nanosecond(), 0);
    }
}
