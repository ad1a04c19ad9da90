//! One run from start to report: resolve the target once, share the setup
//! with the workers, handle Ctrl-C, start the mode's workers, merge their
//! statistics into the report.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::cli::{Mode, Setup, SetupError};
use crate::conn::Shared;
use crate::modes;
use crate::pacing::{Limit, Pacer};
use crate::report::Report;
use crate::stats::Stats;

/// Every operation reuses one address, so when a name has several (say
/// `localhost` as ::1 and 127.0.0.1 with the server on only one) take the
/// first that accepts a connection; if none does, the first, and let the
/// run report the connect errors.
async fn pick_addr(addrs: &[SocketAddr], limit: Duration) -> Option<SocketAddr> {
    if addrs.len() > 1 {
        for &addr in addrs {
            if let Ok(Ok(_)) = tokio::time::timeout(limit, TcpStream::connect(addr)).await {
                return Some(addr);
            }
        }
    }
    addrs.first().copied()
}

pub(crate) async fn run(s: Setup) -> Result<Report, SetupError> {
    let cli = &s.cli;
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(&cli.target)
        .await
        .map_err(|e| SetupError::Resolve {
            target: cli.target.clone(),
            msg: e.to_string(),
        })?
        .collect();
    let addr = pick_addr(&addrs, cli.timeout)
        .await
        .ok_or_else(|| SetupError::Resolve {
            target: cli.target.clone(),
            msg: format!("no address for {}", s.target_host),
        })?;
    let warmup = cli.warmup.unwrap_or(Duration::ZERO);
    let measure_start = Instant::now() + warmup;
    let limit = match cli.count {
        Some(n) => Limit::Count(n),
        None => Limit::Until(measure_start + cli.duration_or_default()),
    };
    let shared = Arc::new(Shared {
        mode: cli.mode,
        http2: cli.http2,
        addr,
        server_name: s.server_name.clone(),
        connector: TlsConnector::from(s.config.clone()),
        request: s.request.clone(),
        h2_uri: s.h2_uri.clone(),
        timeout: cli.timeout,
        measure_start,
        limit,
        claimed: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        pacer: cli.rate.map(Pacer::new),
    });
    if !cli.json {
        let limit = match cli.count {
            Some(n) => format!("{n} ops"),
            None => humantime::format_duration(cli.duration_or_default()).to_string(),
        };
        eprintln!(
            "certgate-load: {} against {addr} (sni {}), {} workers, {limit}{}",
            cli.mode.name(),
            s.sni,
            cli.concurrency,
            if warmup.is_zero() {
                String::new()
            } else {
                format!(" after {} warm-up", humantime::format_duration(warmup))
            }
        );
    }

    // Ctrl-C ends the run early but still prints what was measured; a
    // second one does not wait for operations still in flight.
    let stopper = shared.clone();
    tokio::spawn(async move {
        while tokio::signal::ctrl_c().await.is_ok() {
            if stopper.stop.swap(true, Ordering::Relaxed) {
                std::process::exit(130);
            }
        }
    });

    // The tool's own CPU from the start of measurement (after the warm-up). The end of a
    // warm-up is announced on stderr (also with `--json`), so that a script measuring the
    // server's CPU can start its count there, leaving out the connections' set-up.
    let announce = !warmup.is_zero();
    let cpu_at_start = tokio::spawn(async move {
        tokio::time::sleep_until(measure_start.into()).await;
        if announce {
            eprintln!("certgate-load: measuring");
        }
        crate::cpu::process_cpu()
    });
    let mut ramp = None;
    let mut total = Stats::default();
    if cli.mode == Mode::Idle {
        let idle = modes::idle::run(
            shared.clone(),
            cli.concurrency,
            cli.ramp_parallel,
            cli.duration_or_default(),
        )
        .await;
        total = idle.stats;
        ramp = Some(idle.ramp);
    }
    let workers = if cli.mode == Mode::Idle {
        0
    } else {
        cli.concurrency
    };
    let mut handles = Vec::with_capacity(workers as usize);
    for _ in 0..workers {
        handles.push(tokio::spawn(modes::worker(shared.clone())));
    }
    for h in handles {
        match h.await {
            Ok(stats) => total.merge(stats),
            Err(e) => eprintln!("certgate-load: worker failed: {e}"),
        }
    }
    let elapsed = Instant::now().saturating_duration_since(measure_start);
    let own_cpu = match (cpu_at_start.await.ok().flatten(), crate::cpu::process_cpu()) {
        (Some(start), Some(end)) => Some(end.saturating_sub(start)),
        _ => None,
    };
    Ok(Report::new(cli, &s.sni, total, elapsed, ramp).with_own_cpu(own_cpu))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn picks_the_address_that_listens() {
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind")
            .local_addr()
            .expect("addr");
        let open = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let open_addr = open.local_addr().expect("addr");
        let picked = pick_addr(&[closed, open_addr], Duration::from_secs(1)).await;
        assert_eq!(picked, Some(open_addr));
        assert_eq!(pick_addr(&[], Duration::from_secs(1)).await, None);
    }
}
