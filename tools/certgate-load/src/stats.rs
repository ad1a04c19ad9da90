//! What a worker counts: latencies of successful operations, failures by
//! error kind, handshakes and resumptions, connections held. Each worker
//! keeps its own and they are merged once at the end, so workers never
//! contend on shared counters.

use std::collections::HashMap;
use std::time::Duration;

use crate::error::{ErrorKind, OpError};

#[derive(Default)]
pub(crate) struct Stats {
    pub(crate) latency_us: Vec<u32>,
    pub(crate) failed: u64,
    pub(crate) handshakes: u64,
    pub(crate) resumed: u64,
    /// idle mode: connections still open at the end of the hold.
    pub(crate) held: u64,
    /// Count and one example message per kind.
    pub(crate) errors: HashMap<ErrorKind, (u64, String)>,
}

impl Stats {
    pub(crate) fn ok(&mut self, took: Duration) {
        self.latency_us
            .push(u32::try_from(took.as_micros()).unwrap_or(u32::MAX));
    }

    pub(crate) fn fail(&mut self, e: OpError) {
        self.failed += 1;
        self.note(e);
    }

    /// Records an error kind without failing an operation (idle mode: a
    /// connection opened fine, then lost during the hold).
    pub(crate) fn note(&mut self, e: OpError) {
        self.errors
            .entry(e.kind)
            .and_modify(|(n, _)| *n += 1)
            .or_insert((1, e.detail));
    }

    pub(crate) fn handshake(&mut self, resumed: bool) {
        self.handshakes += 1;
        self.resumed += u64::from(resumed);
    }

    pub(crate) fn merge(&mut self, other: Stats) {
        self.latency_us.extend_from_slice(&other.latency_us);
        self.failed += other.failed;
        self.handshakes += other.handshakes;
        self.resumed += other.resumed;
        self.held += other.held;
        for (k, (n, detail)) in other.errors {
            self.errors
                .entry(k)
                .and_modify(|(m, _)| *m += n)
                .or_insert((n, detail));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_adds_counts_and_keeps_the_first_example() {
        let mut a = Stats::default();
        a.ok(Duration::from_millis(1));
        a.fail(OpError::new(ErrorKind::Reset, "first"));
        a.handshake(true);
        let mut b = Stats::default();
        b.fail(OpError::new(ErrorKind::Reset, "second"));
        b.note(OpError::new(ErrorKind::Closed, "lost"));
        b.handshake(false);
        b.held = 2;
        a.merge(b);
        assert_eq!(a.latency_us, [1000]);
        assert_eq!((a.failed, a.handshakes, a.resumed, a.held), (2, 2, 1, 2));
        assert_eq!(a.errors[&ErrorKind::Reset], (2, "first".to_string()));
        assert_eq!(a.errors[&ErrorKind::Closed], (1, "lost".to_string()));
    }
}
