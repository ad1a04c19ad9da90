//! `full` and `resume`: one new connection per operation (TCP, TLS
//! handshake, one `Connection: close` request, close_notify), so the
//! operation rate is the handshake rate. They differ only in the client
//! config (`tls.rs` turns resumption on for `resume`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;

use crate::conn::{Connected, Shared, connect};
use crate::error::{OpError, check_status};
use crate::http1::{RespBuf, exchange, read_response};
use crate::stats::Stats;

async fn one_shot(
    shared: &Shared,
    buf: &mut RespBuf,
    stats: &mut Stats,
    record: bool,
) -> Result<Duration, OpError> {
    let started = Instant::now();
    let Connected {
        mut tls,
        resumed,
        request_sent,
    } = connect(shared, Some(&shared.request)).await?;
    buf.clear();
    let head = if request_sent {
        read_response(&mut tls, buf).await?
    } else {
        exchange(&mut tls, &shared.request, buf).await?
    };
    // Only an answer proves the server accepted the handshake: in TLS 1.3 a
    // refused client certificate is reported after the client's side is done.
    if record {
        stats.handshake(resumed);
    }
    let took = started.elapsed();
    // Polite close (close_notify) so the server sees a clean shutdown rather
    // than a reset; not part of the measured latency.
    let _ = tls.shutdown().await;
    check_status(head.status)?;
    Ok(took)
}

pub(super) async fn run(shared: Arc<Shared>) -> Stats {
    let mut stats = Stats::default();
    let mut buf = RespBuf::new();
    while let Some(record) = shared.next_op().await {
        let res = shared
            .timed(one_shot(&shared, &mut buf, &mut stats, record))
            .await;
        if record {
            match res {
                Ok(took) => stats.ok(took),
                Err(e) => stats.fail(e),
            }
        }
    }
    stats
}
