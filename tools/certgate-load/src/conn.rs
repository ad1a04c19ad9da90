//! What every worker shares (fixed before the first operation) and opening
//! one TLS connection to the target, the step every mode starts with.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rustls::HandshakeKind;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::cli::Mode;
use crate::error::{ErrorKind, OpError};
use crate::pacing::{Limit, Pacer};
use crate::stats::Stats;

/// Everything the workers share, fixed before the first operation.
pub(crate) struct Shared {
    pub(crate) mode: Mode,
    pub(crate) http2: bool,
    pub(crate) addr: SocketAddr,
    pub(crate) server_name: ServerName<'static>,
    pub(crate) connector: TlsConnector,
    /// Pre-rendered HTTP/1.1 request bytes.
    pub(crate) request: Vec<u8>,
    pub(crate) h2_uri: http::Uri,
    pub(crate) timeout: Duration,
    pub(crate) measure_start: Instant,
    pub(crate) limit: Limit,
    pub(crate) claimed: AtomicU64,
    /// Set by Ctrl-C.
    pub(crate) stop: AtomicBool,
    pub(crate) pacer: Option<Pacer>,
}

impl Shared {
    /// Waits for the rate limiter, then decides whether another operation
    /// runs: `None` = stop, `Some(false)` = warm-up (not recorded),
    /// `Some(true)` = measured.
    pub(crate) async fn next_op(&self) -> Option<bool> {
        if let Some(p) = &self.pacer {
            p.wait().await;
        }
        if self.stop.load(Ordering::Relaxed) {
            return None;
        }
        let now = Instant::now();
        if now < self.measure_start {
            return Some(false);
        }
        self.limit.allows(&self.claimed, now).then_some(true)
    }

    pub(crate) fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Runs `fut` under the per-operation timeout.
    pub(crate) async fn timed<T>(
        &self,
        fut: impl Future<Output = Result<T, OpError>>,
    ) -> Result<T, OpError> {
        tokio::time::timeout(self.timeout, fut)
            .await
            .unwrap_or_else(|_| Err(OpError::timeout(self.timeout)))
    }
}

/// A fresh TLS connection and whether its handshake resumed a session.
pub(crate) struct Connected {
    pub(crate) tls: TlsStream<TcpStream>,
    pub(crate) resumed: bool,
    /// The request went out with the handshake's final flight.
    pub(crate) request_sent: bool,
}

/// TCP connect + TLS handshake. With `early`, the request is queued in
/// rustls before the handshake so it leaves in the same write as the
/// client Finished (as browsers do in TLS 1.3): one syscall and one server
/// wake-up fewer per operation. It is not 0-RTT data; the server sees it
/// only after the handshake completes.
pub(crate) async fn connect(shared: &Shared, early: Option<&[u8]>) -> Result<Connected, OpError> {
    let tcp = TcpStream::connect(shared.addr)
        .await
        .map_err(|e| OpError::new(ErrorKind::Connect, format!("connect {}: {e}", shared.addr)))?;
    // The request follows the handshake immediately; Nagle would hold it
    // back waiting for the ACK of the client Finished.
    let _ = tcp.set_nodelay(true);
    let mut request_sent = false;
    let tls = shared
        .connector
        .connect_with(shared.server_name.clone(), tcp, |conn| {
            if let Some(req) = early {
                request_sent = io::Write::write_all(&mut conn.writer(), req).is_ok();
            }
        })
        .await
        .map_err(|e| OpError::io(&e, true))?;
    let resumed = tls.get_ref().1.handshake_kind() == Some(HandshakeKind::Resumed);
    Ok(Connected {
        tls,
        resumed,
        request_sent,
    })
}

/// Opens a connection for a keepalive worker; a failure or timeout is
/// recorded as one failed operation.
pub(crate) async fn open<T>(
    shared: &Shared,
    stats: &mut Stats,
    record: bool,
    fut: impl Future<Output = Result<T, OpError>>,
) -> Option<T> {
    match shared.timed(fut).await {
        Ok(conn) => Some(conn),
        Err(e) => {
            if record {
                stats.fail(e);
            }
            None
        }
    }
}
