//! Keep-alive HTTP/1.1 connections to the application, reused request after request.
//!
//! certgate has one upstream, so the pool is a stack of idle connections rather than hyper-util's
//! general client (a map of pools keyed by scheme and authority, a lazily built connect future
//! and a spawned task per request that waits for the connection to become idle again). A
//! connection goes back on the stack when its response body has been read to the end; a response
//! abandoned half-way closes its connection, which could not carry another request anyway.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex};

use std::time::{Duration, Instant};

use http::{Request, Response};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::http::{Body, ConnectionHome, UpstreamBody};

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
    Http(#[source] hyper::Error),
}

struct Idle {
    sender: http1::SendRequest<Body>,
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
    ) -> Self {
        Self {
            address,
            transport,
            connect_timeout,
            max_idle,
            idle_timeout,
            idle: Mutex::new(VecDeque::new()),
        }
    }

    /// Sends `request` on an idle connection, or a new one. A request that a reused connection
    /// turned away before writing any of it (the application closed the connection while it was
    /// idle) is sent again on the next connection; nothing else is retried.
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
        mut request: Request<Body>,
    ) -> impl Future<Output = Result<Response<UpstreamBody>, SendError>> + Send + 'static {
        async move {
            loop {
                let (mut sender, reused) = match self.checkout() {
                    Some(sender) => (sender, true),
                    // Boxed: connecting (resolver, TLS handshake) needs far more room than sending on
                    // a pooled connection, which is the common case and should not carry it.
                    None => (Box::pin(self.connect()).await?, false),
                };
                // A reused connection may still be finishing the previous exchange, or be closed.
                if reused && sender.ready().await.is_err() {
                    continue;
                }
                match sender.try_send_request(request).await {
                    Ok(response) => {
                        let home: Arc<dyn ConnectionHome> = self;
                        return Ok(response.map(|body| UpstreamBody::new(body, sender, home)));
                    }
                    Err(mut err) => match err.take_message() {
                        Some(unsent) if reused => request = unsent,
                        _ => {
                            return Err(SendError::Http(err.into_error()));
                        }
                    },
                }
            }
        }
    }

    fn checkout(&self) -> Option<http1::SendRequest<Body>> {
        let mut idle = self
            .idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        self.expire(&mut idle);
        while let Some(entry) = idle.pop_back() {
            if !entry.sender.is_closed() {
                return Some(entry.sender);
            }
        }
        None
    }

    fn give_back(&self, sender: http1::SendRequest<Body>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self
            .idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        self.expire(&mut idle);
        if idle.len() >= self.max_idle {
            // Dropping the sender ends its connection; the freshest ones are kept.
            idle.pop_front();
        }
        if self.max_idle > 0 {
            idle.push_back(Idle {
                sender,
                since: Instant::now(),
            });
        }
    }

    /// Drops connections idle for longer than `upstream.pool_idle_timeout` (checked whenever the
    /// pool is used; an unused pool's connections are closed by the application's own timeout).
    fn expire(&self, idle: &mut VecDeque<Idle>) {
        while idle
            .front()
            .is_some_and(|entry| entry.since.elapsed() > self.idle_timeout)
        {
            idle.pop_front();
        }
    }

    async fn connect(&self) -> Result<http1::SendRequest<Body>, SendError> {
        let connecting = async {
            let tcp = TcpStream::connect(self.address.as_str())
                .await
                .map_err(|err| self.connect_error(err.to_string()))?;
            let _ = tcp.set_nodelay(true);
            match &self.transport {
                Transport::Plain => self.handshake(tcp).await,
                Transport::Tls {
                    connector,
                    server_name,
                } => {
                    let tls = connector
                        .connect(server_name.clone(), tcp)
                        .await
                        .map_err(|err| self.connect_error(format!("TLS: {err}")))?;
                    self.handshake(tls).await
                }
            }
        };
        tokio::time::timeout(self.connect_timeout, connecting)
            .await
            .map_err(|_| SendError::ConnectTimeout(self.address.clone()))?
    }

    async fn handshake<T>(&self, io: T) -> Result<http1::SendRequest<Body>, SendError>
    where
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (sender, connection) = http1::Builder::new()
            .handshake(TokioIo::new(io))
            .await
            .map_err(|err| self.connect_error(err.to_string()))?;
        tokio::spawn(async move {
            if let Err(err) = connection.with_upgrades().await {
                tracing::debug!(error = %err, "upstream connection ended with an error");
            }
        });
        Ok(sender)
    }

    fn connect_error(&self, reason: String) -> SendError {
        SendError::Connect {
            address: self.address.clone(),
            reason,
        }
    }
}

impl ConnectionHome for Pool {
    fn checkin(&self, sender: http1::SendRequest<Body>) {
        self.give_back(sender);
    }
}
