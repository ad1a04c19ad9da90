//! Upgraded connections (WebSocket and the like): the client's and the application's byte
//! streams joined. A tunnel has no next request to check, so it re-checks its certificate each
//! time the revocation snapshot changes, and closes as soon as a new request would be refused.
//! A tunnel over which nothing passes either way for `upstream.request_timeout` closes too (as
//! nginx's `proxy_read_timeout` closes one): a client or application gone without a word holds
//! no connection for ever.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use super::{Connection, policy};
use crate::config::Route;
use crate::http::client::Conn;
use crate::model::Clock;
use crate::revocation::Standing;

/// Joins the two upgraded sides in a task of their own, for as long as something passes within
/// each `quiet_limit`.
pub(super) fn tunnel(
    client: OnUpgrade,
    mut upstream: Box<Conn>,
    connection: Arc<Connection>,
    route: Route,
    standing: Standing,
    clock: Arc<dyn Clock>,
    quiet_limit: Duration,
) {
    tokio::spawn(async move {
        let client = match client.await {
            Ok(client) => client,
            Err(err) => {
                tracing::warn!(error = %err, "protocol upgrade failed");
                return;
            }
        };
        let moved = AtomicU64::new(0);
        let mut client = Counted {
            io: TokioIo::new(client),
            moved: &moved,
        };
        let mut upstream = Counted {
            io: &mut *upstream,
            moved: &moved,
        };
        let mut changes = standing.changes();
        let refused = async {
            loop {
                if changes.changed().await.is_err() {
                    // The snapshot is gone: the server is stopping.
                    return std::future::pending::<policy::Denied>().await;
                }
                let snapshot = standing.snapshot();
                if let Err(denied) =
                    policy::authorize(&connection.cert, &route, clock.unix(), &snapshot)
                {
                    return denied;
                }
            }
        };
        tokio::select! {
            copied = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {
                if let Err(err) = copied {
                    tracing::debug!(error = %err, "upgraded connection ended");
                }
            }
            denied = refused => {
                tracing::info!(peer = %connection.peer, reason = ?denied, "closing an upgraded connection: its certificate is refused now");
            }
            () = quiet(&moved, quiet_limit) => {
                tracing::info!(peer = %connection.peer, limit = ?quiet_limit, "closing an upgraded connection: nothing passed either way");
            }
        }
    });
}

/// Resolves once nothing has been read from either side for `limit`: it looks four times per
/// `limit` at the count of bytes read, rather than resetting a timer for each read.
async fn quiet(moved: &AtomicU64, limit: Duration) {
    let every = limit / 4;
    let mut seen = moved.load(Ordering::Relaxed);
    let mut since = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(every).await;
        let now = moved.load(Ordering::Relaxed);
        if now != seen {
            (seen, since) = (now, tokio::time::Instant::now());
        } else if since.elapsed() >= limit {
            return;
        }
    }
}

/// One side of a tunnel, counting the bytes read from it.
struct Counted<'a, T> {
    io: T,
    moved: &'a AtomicU64,
}

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Counted<'_, T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let read = Pin::new(&mut self.io).poll_read(cx, buf);
        let count = (buf.filled().len() - before) as u64;
        self.moved.fetch_add(count, Ordering::Relaxed);
        read
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Counted<'_, T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
