//! `keepalive --http2`: each worker keeps one h2 connection (hyper's client)
//! with one stream in flight, so concurrency = connections = requests in
//! flight, as with HTTP/1.1. The transport is tapped so that a TLS alert
//! behind an h2 failure is still reported as that alert.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::cli::USER_AGENT;
use crate::conn::{Connected, Shared, connect, open};
use crate::error::{ErrorKind, OpError, check_status};
use crate::stats::Stats;

/// Remembers the most telling I/O error seen on an h2 connection. h2
/// flattens I/O errors into strings, which would turn "the server sent
/// alert certificate_required" into a generic I/O error.
struct Tap {
    inner: TlsStream<TcpStream>,
    seen: Arc<Mutex<Option<OpError>>>,
}

impl Tap {
    fn note<T>(&self, res: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if let Poll::Ready(Err(e)) = &res {
            let new = OpError::io(e, false);
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            // A TLS alert explains a later broken pipe, not the reverse.
            if seen
                .as_ref()
                .is_none_or(|old| !old.kind.is_tls() && new.kind.is_tls())
            {
                *seen = Some(new);
            }
        }
        res
    }
}

impl AsyncRead for Tap {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        self.note(res)
    }
}

impl AsyncWrite for Tap {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.note(res)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.note(res)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let res = Pin::new(&mut self.inner).poll_flush(cx);
        self.note(res)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let res = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.note(res)
    }
}

/// One h2 connection; a worker keeps one stream in flight on it.
struct H2Conn {
    sender: http2::SendRequest<Empty<Bytes>>,
    seen: Arc<Mutex<Option<OpError>>>,
    /// Resumed flag until the first response confirms the handshake.
    unconfirmed: Option<bool>,
}

impl H2Conn {
    /// Prefers the error the transport saw over hyper's summary of it.
    fn error(&self, e: &hyper::Error) -> OpError {
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner()).take();
        seen.unwrap_or_else(|| OpError::hyper(e))
    }
}

async fn connect_h2(shared: &Shared) -> Result<H2Conn, OpError> {
    let Connected { tls, resumed, .. } = connect(shared, None).await?;
    if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
        return Err(OpError::new(
            ErrorKind::NoH2,
            "server did not select h2 via ALPN",
        ));
    }
    let seen = Arc::new(Mutex::new(None));
    let tap = Tap {
        inner: tls,
        seen: seen.clone(),
    };
    let (sender, conn) = match http2::Builder::new(TokioExecutor::new())
        .handshake(TokioIo::new(tap))
        .await
    {
        Ok(pair) => pair,
        Err(e) => {
            let seen = seen.lock().unwrap_or_else(|p| p.into_inner()).take();
            return Err(seen.unwrap_or_else(|| OpError::hyper(&e)));
        }
    };
    // The connection future drives all I/O; it ends when the sender is dropped.
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(H2Conn {
        sender,
        seen,
        unconfirmed: Some(resumed),
    })
}

async fn h2_request(conn: &mut H2Conn, shared: &Shared) -> Result<u16, OpError> {
    if let Err(e) = conn.sender.ready().await {
        return Err(conn.error(&e));
    }
    let mut req = http::Request::new(Empty::<Bytes>::new());
    *req.uri_mut() = shared.h2_uri.clone();
    req.headers_mut().insert(
        http::header::USER_AGENT,
        http::HeaderValue::from_static(USER_AGENT),
    );
    let resp = match conn.sender.send_request(req).await {
        Ok(resp) => resp,
        Err(e) => return Err(conn.error(&e)),
    };
    let status = resp.status().as_u16();
    let mut body = resp.into_body();
    // Drain frame by frame: the body is discarded, so never buffer it whole.
    while let Some(frame) = body.frame().await {
        if let Err(e) = frame {
            return Err(conn.error(&e));
        }
    }
    Ok(status)
}

pub(super) async fn run(shared: Arc<Shared>) -> Stats {
    let mut stats = Stats::default();
    let mut conn: Option<H2Conn> = None;
    while let Some(record) = shared.next_op().await {
        if conn.as_ref().is_some_and(|c| c.sender.is_closed()) {
            conn = None;
        }
        let h2 = match conn.as_mut() {
            Some(c) => c,
            None => {
                let Some(c) = open(&shared, &mut stats, record, connect_h2(&shared)).await else {
                    continue;
                };
                conn.insert(c)
            }
        };
        let started = Instant::now();
        let res = shared.timed(h2_request(h2, &shared)).await;
        let took = started.elapsed();
        let res = match res {
            Ok(status) => {
                if let Some(resumed) = h2.unconfirmed.take() {
                    if record {
                        stats.handshake(resumed);
                    }
                }
                check_status(status)
            }
            Err(e) => {
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
    stats
}
