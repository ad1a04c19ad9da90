//! The load tool's own CPU time, so that a report can say when the tool, not the server, was
//! the bottleneck: on a 2-core machine the tool has one core, and a run that keeps it busy
//! measures the tool.

use std::time::Duration;

/// CPU time (user + system, every thread) this process has used so far; `None` where
/// `/proc/self/stat` cannot be read.
pub(crate) fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count after it.
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of the line (utime, stime) are the 12th and 13th after the name.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let ticks_per_second = ticks_per_second();
    let ticks = utime + stime;
    Some(Duration::from_micros(
        ticks.saturating_mul(1_000_000) / ticks_per_second,
    ))
}

#[cfg(target_os = "linux")]
fn ticks_per_second() -> u64 {
    rustix::param::clock_ticks_per_second().max(1)
}

#[cfg(not(target_os = "linux"))]
fn ticks_per_second() -> u64 {
    100
}

#[cfg(test)]
mod tests {
    use super::process_cpu;

    #[test]
    fn busy_work_shows_up() {
        let Some(before) = process_cpu() else { return };
        let mut x = 0u64;
        let start = std::time::Instant::now();
        while start.elapsed() < std::time::Duration::from_millis(50) {
            x = x.wrapping_mul(31).wrapping_add(7);
        }
        std::hint::black_box(x);
        let after = process_cpu().unwrap();
        assert!(after >= before);
    }
}
