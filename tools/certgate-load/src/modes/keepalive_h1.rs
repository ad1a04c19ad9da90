//! `keepalive` over HTTP/1.1: each worker keeps one connection and sends
//! requests on it one after another, reopening it when the server closes
//! it. Setup time is not request latency; a failed setup is one failed
//! operation.

use std::sync::Arc;
use std::time::Instant;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::conn::{Shared, connect, open};
use crate::error::check_status;
use crate::http1::{RespBuf, exchange};
use crate::stats::Stats;

pub(super) async fn run(shared: Arc<Shared>) -> Stats {
    let mut stats = Stats::default();
    let mut buf = RespBuf::new();
    let mut conn: Option<TlsStream<TcpStream>> = None;
    // Resumed flag of a connection that has not answered yet: in TLS 1.3 a
    // server refusing our certificate says so only after our handshake has
    // "completed", so a handshake counts once the first response arrives.
    let mut unconfirmed: Option<bool> = None;
    while let Some(record) = shared.next_op().await {
        let tls = match conn.as_mut() {
            Some(tls) => tls,
            None => {
                let Some(c) = open(&shared, &mut stats, record, connect(&shared, None)).await
                else {
                    continue;
                };
                buf.clear();
                unconfirmed = Some(c.resumed);
                conn.insert(c.tls)
            }
        };
        let started = Instant::now();
        let res = shared.timed(exchange(tls, &shared.request, &mut buf)).await;
        let took = started.elapsed();
        let res = match res {
            Ok(head) => {
                if let Some(resumed) = unconfirmed.take() {
                    if record {
                        stats.handshake(resumed);
                    }
                }
                if !head.keep_alive {
                    conn = None;
                }
                check_status(head.status)
            }
            Err(e) => {
                // State of the stream is unknown after a failure.
                conn = None;
                Err(e)
            }
        };
        if record {
            match res {
                Ok(()) => stats.ok(took),
                Err(e) => stats.fail(e),
            }
        }
    }
    if let Some(mut tls) = conn {
        let _ = tls.shutdown().await;
    }
    stats
}
