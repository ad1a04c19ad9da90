//! The report of a run: the JSON object (`--json`, what benches/compare.sh
//! reads, so its field names are an interface) and the human table, both
//! from the merged statistics.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::cli::Cli;
use crate::stats::Stats;

#[derive(Serialize)]
pub(crate) struct Report {
    pub(crate) mode: &'static str,
    pub(crate) http2: bool,
    pub(crate) target: String,
    pub(crate) sni: String,
    pub(crate) concurrency: u32,
    pub(crate) threads: u16,
    pub(crate) elapsed_secs: f64,
    pub(crate) ops: u64,
    pub(crate) ok: u64,
    pub(crate) failed: u64,
    pub(crate) ops_per_sec: f64,
    pub(crate) handshakes: u64,
    pub(crate) resumed: u64,
    /// idle mode only: connections still open at the end of the hold.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) held: Option<u64>,
    pub(crate) latency_ms: Option<Latency>,
    pub(crate) errors: BTreeMap<String, u64>,
    pub(crate) error_examples: BTreeMap<String, String>,
    /// The tool's own CPU over the measurement, seconds (all threads).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) client_cpu_secs: Option<f64>,
    /// The tool's own CPU per successful operation, microseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) client_cpu_us_per_op: Option<f64>,
    /// How busy the tool's threads were (1.0 = every thread all the time): near 1, the tool,
    /// not the server, set the pace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) client_busy: Option<f64>,
}

/// Above this, the report warns that the tool may be the bottleneck.
pub(crate) const BUSY_WARNING: f64 = 0.9;

#[derive(Serialize)]
pub(crate) struct Latency {
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
}

impl Report {
    /// `elapsed` runs from the start of measurement; `ramp` is given in
    /// idle mode only, where the rate is connections opened per second of
    /// ramp rather than per second of the whole run.
    /// Adds the tool's own CPU use over the measurement.
    pub(crate) fn with_own_cpu(mut self, cpu: Option<Duration>) -> Self {
        if let Some(cpu) = cpu {
            let secs = cpu.as_secs_f64();
            self.client_cpu_secs = Some(secs);
            if self.ok > 0 {
                self.client_cpu_us_per_op = Some(secs * 1e6 / self.ok as f64);
            }
            let capacity = self.elapsed_secs * f64::from(self.threads.max(1));
            if capacity > 0.0 {
                self.client_busy = Some(secs / capacity);
            }
        }
        self
    }

    pub(crate) fn new(
        cli: &Cli,
        sni: &str,
        mut total: Stats,
        elapsed: Duration,
        ramp: Option<Duration>,
    ) -> Self {
        total.latency_us.sort_unstable();
        let ok = total.latency_us.len() as u64;
        let elapsed_secs = elapsed.as_secs_f64();
        let ramp_secs = ramp.map(|r| r.as_secs_f64());
        let mut errors = BTreeMap::new();
        let mut error_examples = BTreeMap::new();
        for (kind, (n, detail)) in total.errors {
            errors.insert(kind.name(), n);
            error_examples.insert(kind.name(), detail);
        }
        Report {
            mode: cli.mode.name(),
            http2: cli.http2,
            target: cli.target.clone(),
            sni: sni.to_string(),
            concurrency: cli.concurrency,
            threads: cli.threads,
            elapsed_secs,
            ops: ok + total.failed,
            ok,
            failed: total.failed,
            ops_per_sec: match ramp_secs {
                Some(ramp) if ramp > 0.0 => ok as f64 / ramp,
                None if elapsed_secs > 0.0 => ok as f64 / elapsed_secs,
                _ => 0.0,
            },
            held: ramp_secs.map(|_| total.held),
            handshakes: total.handshakes,
            resumed: total.resumed,
            latency_ms: latency(&total.latency_us),
            errors,
            error_examples,
            client_cpu_secs: None,
            client_cpu_us_per_op: None,
            client_busy: None,
        }
    }
}

fn latency(sorted_us: &[u32]) -> Option<Latency> {
    let last = *sorted_us.last()?;
    // Nearest-rank percentile.
    let pct = |p: f64| {
        #[expect(
            clippy::cast_possible_truncation,
            reason = "the ceiling is a whole number; there is no try_from for floats, `as` saturates and the clamp bounds it to a rank"
        )]
        let rank = ((p * sorted_us.len() as f64).ceil() as usize).clamp(1, sorted_us.len());
        f64::from(sorted_us[rank - 1]) / 1000.0
    };
    Some(Latency {
        p50: pct(0.50),
        p90: pct(0.90),
        p99: pct(0.99),
        max: f64::from(last) / 1000.0,
    })
}

pub(crate) fn print_table(r: &Report) {
    let what = if r.mode == "keepalive" {
        "requests/s"
    } else if r.mode == "idle" {
        "opened/s"
    } else {
        "handshakes/s"
    };
    let proto = if r.http2 { "HTTP/2" } else { "HTTP/1.1" };
    println!("mode          {} ({proto})", r.mode);
    println!("target        {} (sni {})", r.target, r.sni);
    println!("concurrency   {} on {} thread(s)", r.concurrency, r.threads);
    println!("elapsed       {:.2} s", r.elapsed_secs);
    println!("ops           {} ({} ok, {} failed)", r.ops, r.ok, r.failed);
    println!("{what:<14}{:.1}", r.ops_per_sec);
    println!("handshakes    {} ({} resumed)", r.handshakes, r.resumed);
    if let Some(held) = r.held {
        println!("held          {held} connections until the end of the hold");
    }
    match &r.latency_ms {
        Some(l) => println!(
            "latency ms    p50 {:.3}  p90 {:.3}  p99 {:.3}  max {:.3}",
            l.p50, l.p90, l.p99, l.max
        ),
        None => println!("latency ms    -"),
    }
    if let (Some(secs), Some(busy)) = (r.client_cpu_secs, r.client_busy) {
        let per_op = r
            .client_cpu_us_per_op
            .map_or_else(|| "-".to_owned(), |us| format!("{us:.1} µs"));
        println!(
            "load tool CPU {secs:.2} s ({per_op} per op, {:.0}% of its {} thread(s))",
            busy * 100.0,
            r.threads
        );
        if busy > BUSY_WARNING {
            println!(
                "warning       the load tool was busy {:.0}% of the time: it, not the server, may have set the pace",
                busy * 100.0
            );
        }
    }
    if r.errors.is_empty() {
        println!("errors        none");
    } else {
        println!("errors");
        let width = r.errors.keys().map(String::len).max().unwrap_or(0);
        for (kind, n) in &r.errors {
            let example = r.error_examples.get(kind).map_or("", String::as_str);
            println!("  {kind:<width$}  {n:>9}  e.g. {example}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        assert!(latency(&[]).is_none());
        let sorted: Vec<u32> = (1..=100).map(|ms| ms * 1000).collect();
        let l = latency(&sorted).expect("some");
        assert_eq!((l.p50, l.p90, l.p99, l.max), (50.0, 90.0, 99.0, 100.0));
        let one = latency(&[1500]).expect("some");
        assert_eq!((one.p50, one.p99, one.max), (1.5, 1.5, 1.5));
    }
}
