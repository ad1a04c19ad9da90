//! `idle`: opens `--concurrency` connections with at most `--ramp-parallel`
//! handshakes in flight, announces the hold on stderr (a script samples the
//! server's memory then), keeps every connection open and idle for
//! `--duration`, then closes them. One operation = one connection opened.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Notify, Semaphore, watch};
use tokio_rustls::client::TlsStream;

use crate::conn::{Connected, Shared, connect};
use crate::error::{ErrorKind, OpError, check_status};
use crate::http1::{RespBuf, exchange, read_response};
use crate::stats::Stats;

/// What `idle` measured: per-connection stats and how long opening took.
pub(crate) struct IdleOutcome {
    pub(crate) stats: Stats,
    pub(crate) ramp: Duration,
}

pub(crate) async fn run(
    shared: Arc<Shared>,
    total: u32,
    ramp_parallel: u32,
    hold: Duration,
) -> IdleOutcome {
    let ramp_slots = Arc::new(Semaphore::new(ramp_parallel as usize));
    let (hold_tx, hold_rx) = watch::channel::<Option<Instant>>(None);
    let ramp_left = Arc::new(AtomicU64::new(u64::from(total)));
    let opened = Arc::new(AtomicU64::new(0));
    let ramp_over = Arc::new(Notify::new());
    let started = Instant::now();
    let mut handles = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let shared = shared.clone();
        let ramp_slots = ramp_slots.clone();
        let hold_rx = hold_rx.clone();
        let ramp_left = ramp_left.clone();
        let opened = opened.clone();
        let ramp_over = ramp_over.clone();
        handles.push(tokio::spawn(async move {
            let mut stats = Stats::default();
            let conn = open_idle(&shared, &ramp_slots, &mut stats).await;
            if conn.is_some() {
                opened.fetch_add(1, Ordering::Relaxed);
            }
            if ramp_left.fetch_sub(1, Ordering::AcqRel) == 1 {
                ramp_over.notify_one();
            }
            if let Some(tls) = conn {
                hold_idle(tls, hold_rx, &mut stats).await;
            }
            stats
        }));
    }
    drop(hold_rx);
    // Wait for the ramp (or Ctrl-C, which the signal task flags).
    while ramp_left.load(Ordering::Acquire) > 0 && !shared.stopping() {
        tokio::select! {
            () = ramp_over.notified() => {}
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
    let ramp = started.elapsed();
    eprintln!(
        "certgate-load: holding {} connections for {} (opened in {:.2} s)",
        opened.load(Ordering::Relaxed),
        humantime::format_duration(hold),
        ramp.as_secs_f64()
    );
    let deadline = Instant::now() + hold;
    let _ = hold_tx.send(Some(deadline));
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(deadline.into()) => break,
            () = tokio::time::sleep(Duration::from_millis(100)) => {
                if shared.stopping() {
                    let _ = hold_tx.send(Some(Instant::now()));
                    break;
                }
            }
        }
    }
    let mut stats = Stats::default();
    for h in handles {
        match h.await {
            Ok(s) => stats.merge(s),
            Err(e) => eprintln!("certgate-load: worker failed: {e}"),
        }
    }
    IdleOutcome { stats, ramp }
}

/// One idle connection: TCP + full handshake + one keep-alive request whose
/// response must be 2xx; records the outcome.
async fn open_idle(
    shared: &Shared,
    ramp_slots: &Semaphore,
    stats: &mut Stats,
) -> Option<TlsStream<TcpStream>> {
    let Ok(_slot) = ramp_slots.acquire().await else {
        return None;
    };
    if shared.stopping() {
        return None;
    }
    if let Some(p) = &shared.pacer {
        p.wait().await;
    }
    let started = Instant::now();
    let attempt = async {
        let Connected {
            mut tls,
            resumed,
            request_sent,
        } = connect(shared, Some(&shared.request)).await?;
        // Small: the response is read once and the buffer dropped before the hold.
        let mut buf = RespBuf::with_capacity(2048);
        let head = if request_sent {
            read_response(&mut tls, &mut buf).await?
        } else {
            exchange(&mut tls, &shared.request, &mut buf).await?
        };
        stats.handshake(resumed);
        check_status(head.status)?;
        if !head.keep_alive || buf.has_unread() {
            return Err(OpError::new(
                ErrorKind::BadResponse,
                "the server will not keep the connection open (Connection: close or extra data)",
            ));
        }
        Ok(tls)
    };
    match shared.timed(attempt).await {
        Ok(tls) => {
            stats.ok(started.elapsed());
            Some(tls)
        }
        Err(e) => {
            stats.fail(e);
            None
        }
    }
}

/// Keeps `tls` open without sending anything until the hold deadline, and
/// notices a server closing it meanwhile.
async fn hold_idle(
    mut tls: TlsStream<TcpStream>,
    mut hold_rx: watch::Receiver<Option<Instant>>,
    stats: &mut Stats,
) {
    let mut scratch = [0u8; 64];
    loop {
        // None until the ramp is over; Ctrl-C moves it to now.
        let deadline = hold_rx.borrow_and_update().map(tokio::time::Instant::from);
        tokio::select! {
            () = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            } => break,
            changed = hold_rx.changed() => {
                if changed.is_err() {
                    // The coordinator is gone: the run is being torn down.
                    return;
                }
            }
            // rustls handles post-handshake messages (tickets) itself, so a
            // read only completes on application data, EOF or an error.
            read = tls.read(&mut scratch) => {
                if lost(read, stats) {
                    return;
                }
            }
        }
    }
    stats.held += 1;
    let _ = tokio::time::timeout(Duration::from_secs(1), tls.shutdown()).await;
}

/// Whether a read on an idle connection means the server dropped it; notes why.
fn lost(read: io::Result<usize>, stats: &mut Stats) -> bool {
    match read {
        Ok(0) => {
            stats.note(OpError::new(
                ErrorKind::Closed,
                "the server closed an idle connection during the hold",
            ));
            true
        }
        // Unsolicited data: ignore it, the connection is still open.
        Ok(_) => false,
        Err(e) => {
            stats.note(OpError::io(&e, false));
            true
        }
    }
}
