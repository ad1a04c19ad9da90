//! When the next operation may start and whether it counts: the shared
//! rate pacer (`--rate`) and the run's end (`--count` or `--duration`).
//! Workers ask `Shared::next_op` in `conn.rs`, which combines these with the
//! warm-up and Ctrl-C.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// What ends the measured part of a run.
pub(crate) enum Limit {
    /// `--count`: this many operations in total, claimed one by one by the workers.
    Count(u64),
    /// `--duration`: no operation starts after this instant.
    Until(Instant),
}

impl Limit {
    /// Whether one more operation may run; with `Count` this claims it.
    pub(crate) fn allows(&self, claimed: &AtomicU64, now: Instant) -> bool {
        match *self {
            Limit::Count(n) => claimed.fetch_add(1, Ordering::Relaxed) < n,
            Limit::Until(deadline) => now < deadline,
        }
    }
}

/// Shared pacing: each operation takes the next free slot on a fixed grid,
/// so the total rate holds however many workers there are. A late worker
/// does not bank slots, so there is no burst after a stall.
pub(crate) struct Pacer {
    origin: Instant,
    interval_ns: u64,
    next_ns: AtomicU64,
}

impl Pacer {
    pub(crate) fn new(rate: f64) -> Self {
        #[expect(
            clippy::cast_possible_truncation,
            reason = "whole nanoseconds are meant; there is no try_from for floats, and `as` saturates (a rate too small for u64 nanoseconds waits u64::MAX)"
        )]
        let interval_ns = ((1e9 / rate) as u64).max(1);
        Self {
            origin: Instant::now(),
            interval_ns,
            next_ns: AtomicU64::new(0),
        }
    }

    pub(crate) async fn wait(&self) {
        let now = u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let mut cur = self.next_ns.load(Ordering::Relaxed);
        loop {
            let slot = cur.max(now);
            match self.next_ns.compare_exchange_weak(
                cur,
                slot.saturating_add(self.interval_ns),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    if slot > now {
                        let at = self.origin + Duration::from_nanos(slot);
                        tokio::time::sleep_until(at.into()).await;
                    }
                    return;
                }
                Err(actual) => cur = actual,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_count_is_shared_by_every_worker() {
        let claimed = AtomicU64::new(0);
        let limit = Limit::Count(2);
        let now = Instant::now();
        let runs: Vec<bool> = (0..4).map(|_| limit.allows(&claimed, now)).collect();
        assert_eq!(runs, [true, true, false, false]);
    }

    #[tokio::test]
    async fn the_pacer_spaces_operations_on_its_grid() {
        // 100/s: the fifth operation may start 40 ms after the first at the earliest.
        let pacer = Pacer::new(100.0);
        let started = Instant::now();
        for _ in 0..5 {
            pacer.wait().await;
        }
        assert!(
            started.elapsed() >= Duration::from_millis(39),
            "{:?}",
            started.elapsed()
        );
    }
}
