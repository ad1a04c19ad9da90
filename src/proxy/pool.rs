//! Keep-alive HTTP/1.1 connections to the application, reused request after request.
//!
//! certgate has one upstream, so the pool is a stack of idle connections rather than hyper-util's
//! general client (a map of pools keyed by scheme and authority, a lazily built connect future
//! and a spawned task per request that waits for the connection to become idle again). The
//! exchange on a connection is certgate's own HTTP/1.1 client ([`crate::http::client`]). A
//! connection goes back on the stack when its response body has been read to the end; a response
//! abandoned half-way closes its connection, which could not carry another request anyway.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex};

use std::time::{Duration, Instant};

use http::{Request, Response};
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::headers::Injected;
use crate::http::client::{self, Conn, ConnectionHome, Failure, Framing, Io, Outgoing};
use crate::http::{Body, UpstreamBody};

/// How new connections reach the application.
pub(super) enum Transport {
    /// `http://`.
    Plain,
    /// `https://`, verified for `server_name`.
    Tls {
        connector: TlsConnector,
        server_name: ServerName<'static>,
    },
}

/// Why a request could not be sent.
#[derive(Debug, thiserror::Error)]
pub(super) enum SendError {
    /// TCP connect (or TLS) did not finish within `upstream.connect_timeout`.
    #[error("connect to {0} timed out")]
    ConnectTimeout(String),
    /// Refused, unresolvable, TLS failure.
    #[error("connect to {address}: {reason}")]
    Connect { address: String, reason: String },
    /// The connection failed while the request was on it (its cause kept: it may be the
    /// client's body that failed, not the application).
    #[error("the request failed on the connection to the application")]
    Http(#[source] client::Error),
}

struct Idle {
    conn: Box<Conn>,
    since: Instant,
}

/// The pool of one upstream.
pub(super) struct Pool {
    /// `host:port`, for connecting and for messages.
    address: String,
    transport: Transport,
    connect_timeout: Duration,
    max_idle: usize,
    idle_timeout: Duration,
    /// How long the rest of an upload may take after the application answered it early (the
    /// request timeout).
    upload_after_answer: Duration,
    /// Most recently used at the back: reused first, while the oldest age out at the front.
    idle: Mutex<VecDeque<Idle>>,
}

impl Pool {
    /// A pool of connections to `address` (`host:port`).
    pub(super) fn new(
        address: String,
        transport: Transport,
        connect_timeout: Duration,
        max_idle: usize,
        idle_timeout: Duration,
        upload_after_answer: Duration,
    ) -> Self {
        Self {
            address,
            transport,
            connect_timeout,
            max_idle,
            idle_timeout,
            upload_after_answer,
            idle: Mutex::new(VecDeque::new()),
        }
    }

    /// Sends `request` on an idle connection, or a new one. A request without a body and of a
    /// method that may be repeated (RFC 9110 §9.2.2), that a reused connection lost before any
    /// of an answer arrived (the application closed the connection while it was idle), is sent
    /// again on the next connection; nothing else is retried.
    ///
    /// A plain function returning an `async` block that uses `request` where it was captured:
    /// an `async fn` would move its arguments once more inside its future, and this future is
    /// part of every forwarded request's, which is boxed and so copied whole per request.
    #[expect(
        clippy::manual_async_fn,
        reason = "an async fn would hold the request twice (see above)"
    )]
    pub(super) fn send(
        self: Arc<Self>,
        request: Request<Body>,
        injected: Injected,
    ) -> impl Future<Output = Result<Response<UpstreamBody>, SendError>> + Send + 'static {
        async move {
            let (parts, body) = request.into_parts();
            let framing = Framing::of(&parts.method, &parts.headers, &body);
            let target = parts.uri.path_and_query().map_or("/", |path| path.as_str());
            // Safe methods only (GET, HEAD, OPTIONS, TRACE): the application may have received
            // the request before the connection broke.
            let repeatable = framing == Framing::None && parts.method.is_safe();
            let mut body = Some(body);
            loop {
                let (conn, reused) = match self.checkout() {
                    Some(conn) => (conn, true),
                    // Boxed: connecting (resolver, TLS handshake) needs far more room than sending on
                    // a pooled connection, which is the common case and should not carry it.
                    None => (Box::pin(self.connect()).await?, false),
                };
                let head = client::encode_head(
                    &parts.method,
                    target,
                    &parts.headers,
                    injected.as_bytes(),
                    framing,
                );
                let sending = body.take().unwrap_or_else(crate::http::empty);
                let home: Arc<dyn ConnectionHome> = self.clone();
                let outgoing = Outgoing {
                    head,
                    body: sending,
                    framing,
                    method: parts.method.clone(),
                    upload_after_answer: self.upload_after_answer,
                };
                match client::exchange(conn, outgoing, home).await {
                    Ok(response) => return Ok(response),
                    Err(Failure::Lost(_)) if reused && repeatable => continue,
                    Err(failure) => return Err(SendError::Http(failure.into_error())),
                }
            }
        }
    }

    fn checkout(&self) -> Option<Box<Conn>> {
        loop {
            let mut entry = {
                let mut idle = self
                    .idle
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                self.expire(&mut idle, Instant::now());
                idle.pop_back()?
            };
            // Looked at outside the lock: with TLS, a look may process records.
            if entry.conn.is_usable() {
                return Some(entry.conn);
            }
        }
    }

    fn give_back(&self, conn: Box<Conn>) {
        let mut idle = self
            .idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = Instant::now();
        self.expire(&mut idle, now);
        if idle.len() >= self.max_idle {
            // Dropping a connection closes it; the freshest ones are kept.
            idle.pop_front();
        }
        if self.max_idle > 0 {
            idle.push_back(Idle { conn, since: now });
        }
    }

    /// Drops connections idle for longer than `upstream.pool_idle_timeout` (checked whenever the
    /// pool is used; an unused pool's connections are closed by the application's own timeout).
    fn expire(&self, idle: &mut VecDeque<Idle>, now: Instant) {
        while idle
            .front()
            .is_some_and(|entry| now.saturating_duration_since(entry.since) > self.idle_timeout)
        {
            idle.pop_front();
        }
    }

    async fn connect(&self) -> Result<Box<Conn>, SendError> {
        let connecting = async {
            let tcp = TcpStream::connect(self.address.as_str())
                .await
                .map_err(|err| self.connect_error(err.to_string()))?;
            let _ = tcp.set_nodelay(true);
            match &self.transport {
                Transport::Plain => Ok(Conn::new(Io::Plain(tcp))),
                Transport::Tls {
                    connector,
                    server_name,
                } => {
                    let tls = connector
                        .connect(server_name.clone(), tcp)
                        .await
                        .map_err(|err| self.connect_error(format!("TLS: {err}")))?;
                    Ok(Conn::new(Io::Tls(Box::new(tls))))
                }
            }
        };
        tokio::time::timeout(self.connect_timeout, connecting)
            .await
            .map_err(|_| SendError::ConnectTimeout(self.address.clone()))?
    }

    fn connect_error(&self, reason: String) -> SendError {
        SendError::Connect {
            address: self.address.clone(),
            reason,
        }
    }
}

impl ConnectionHome for Pool {
    fn checkin(&self, conn: Box<Conn>) {
        self.give_back(conn);
    }
}
