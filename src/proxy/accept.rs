//! Accepting connections: the TCP accept, the connection limit, the TLS handshake with its
//! timeout, the connection's identity (once), and handing the stream to hyper.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt as _;
use futures_util::future::Either;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::idle::{BoxError, ClientIo, Drain, InFlight, serve_h1, serve_h2};
use super::tcp::ClientTcp;
use super::{ClientCert, Connection, Proxy, balancer};
use crate::identity::client_cert_chain;
use crate::tls::{HandshakeOutcome, Listener, ReloadableTls};

/// Per-connection limits from `[server]`.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    /// `handshake_timeout`.
    pub handshake_timeout: Duration,
    /// `max_connections`: beyond it, new connections wait in the kernel's backlog.
    pub max_connections: usize,
    /// `max_connections_per_ip`: connections from one address (IPv6: /64) in their handshake,
    /// and, counted apart, connections from it without a certificate.
    pub max_connections_per_ip: usize,
    /// `max_anonymous_connections`: connections without a certificate, from everywhere.
    pub max_anonymous_connections: usize,
    /// `idle_timeout`: no request in flight for this long closes the connection.
    pub idle_timeout: Duration,
    /// `anonymous_idle_timeout`: the same for a connection without a certificate.
    pub anonymous_idle_timeout: Duration,
    /// `proxy_protocol`: the balancers whose connections start with a PROXY header.
    pub balancers: Arc<[ipnet::IpNet]>,
}

impl ConnectionLimits {
    /// The limits of `[server]`.
    pub fn from_config(server: &crate::config::ServerConfig) -> Self {
        Self {
            handshake_timeout: server.handshake_timeout,
            max_connections: server.max_connections,
            max_connections_per_ip: server.max_connections_per_ip,
            max_anonymous_connections: server.max_anonymous_connections,
            idle_timeout: server.idle_timeout,
            anonymous_idle_timeout: server.anonymous_idle_timeout,
            balancers: server.proxy_protocol.clone().into(),
        }
    }
}

/// Accepts on `listener` until `shutdown` completes, then returns the tracker of open
/// connections so that the caller can drain them.
pub async fn serve_tls(
    listener: TcpListener,
    tls: Arc<ReloadableTls>,
    proxy: Arc<Proxy>,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) -> GracefulShutdown {
    let graceful = GracefulShutdown::new();
    // HTTP/1.1 connections are drained through this (see `serve_h1`); h2 ones through `graceful`.
    let (drain_tx, drain_rx) = watch::channel(false);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let handshaking = Arc::new(PerIp::new(limits.max_connections_per_ip));
    let anonymous = Anonymous {
        per_ip: Arc::new(PerIp::new(limits.max_connections_per_ip)),
        everywhere: Arc::new(Semaphore::new(limits.max_anonymous_connections)),
    };
    let http = Arc::new(Http::new(&limits));
    let nodelay_inherited = nodelay_for_accepted(&listener);
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            biased;
            () = &mut shutdown => break,
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
        };
        let (tcp, peer) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        if !nodelay_inherited {
            let _ = tcp.set_nodelay(true);
        }
        let listener_tls = tls.current();
        let acceptor = TlsAcceptor::from(listener_tls.config.clone());
        let drain = Drain {
            watcher: graceful.watcher(),
            signal: drain_rx.clone(),
        };
        let peer_ip = peer.ip().to_canonical();
        if limits.balancers.iter().any(|net| net.contains(&peer_ip)) {
            // The real client comes first, in the PROXY header; its handshake slot is taken by
            // its own address, not the balancer's.
            let (proxy, http, handshaking, anonymous, limits) = (
                proxy.clone(),
                http.clone(),
                handshaking.clone(),
                anonymous.clone(),
                limits.clone(),
            );
            tokio::spawn(async move {
                let mut tcp = tcp;
                let client = match balancer::real_client(&mut tcp, peer, limits.handshake_timeout)
                    .await
                {
                    Ok(client) => client,
                    Err(err) => {
                        tracing::warn!(balancer = %peer, error = %err, "connection from a balancer refused");
                        proxy.metrics().handshake(HandshakeOutcome::Other.label());
                        return;
                    }
                };
                let Some(handshake_slot) = handshaking.acquire(client.ip()) else {
                    tracing::debug!(peer = %client, "too many handshakes from this address; closed");
                    proxy.metrics().handshake(HandshakeOutcome::Other.label());
                    return;
                };
                connection(
                    tcp,
                    client,
                    acceptor,
                    listener_tls,
                    proxy,
                    http,
                    drain,
                    (slot, handshake_slot, anonymous),
                    limits,
                )
                .await;
            });
            continue;
        }
        // During its handshake a connection counts against its address's limit, so that one
        // address cannot fill the server with handshakes that never end; the connections that
        // end up without a certificate are counted apart (see `connection`), so that those
        // cannot keep a certificate holder behind the same address from its handshake.
        let Some(handshake_slot) = handshaking.acquire(peer.ip()) else {
            tracing::debug!(%peer, "too many handshakes from this address; closed");
            proxy.metrics().handshake(HandshakeOutcome::Other.label());
            continue;
        };
        tokio::spawn(connection(
            tcp,
            peer,
            acceptor,
            listener_tls,
            proxy.clone(),
            http.clone(),
            drain,
            (slot, handshake_slot, anonymous.clone()),
            limits.clone(),
        ));
    }
    // The caller drains next (`graceful.shutdown()`), which waits for every `Watcher`, held by
    // HTTP/1.1 connections too; tell those to finish their request in flight and close.
    let _ = drain_tx.send(true);
    graceful
}

/// Turns on `TCP_NODELAY` for the connections `listener` accepts from now on, and says whether
/// they get it from the listener. Linux starts an accepted socket with its listening socket's
/// `TCP_NODELAY`, so setting it there once saves every connection a system call (1 of 12 per
/// resumed handshake; BENCHMARKS.md, tenth round). Elsewhere, or if the listener refuses it, each
/// connection sets its own: Nagle's algorithm would hold a small answer back until the client's
/// delayed acknowledgement.
fn nodelay_for_accepted(listener: &TcpListener) -> bool {
    cfg!(target_os = "linux")
        && socket2::SockRef::from(listener)
            .set_tcp_nodelay(true)
            .is_ok()
}

/// The HTTP side of a connection, chosen by the protocol ALPN agreed on. HTTP/1.1 and h2 are
/// served by their own hyper connection types rather than hyper-util's `auto` one, which would
/// first sniff for the h2 preface and keeps room for both protocols in every connection (about
/// 900 bytes more per idle HTTP/1.1 connection); `auto` remains for a client that sent no ALPN
/// (strongSwan's EST client).
///
/// HTTP/1.1 header names go out title-cased (`Content-Type`): libest's EST client compares them
/// so. Idleness is watched per connection ([`serve_h1`], [`serve_h2`]), not by hyper's header
/// read timeout, which arms and drops a boxed timer for every request; the watch also closes a
/// connection whose request head never finishes (slowloris). A client without ALPN keeps hyper's
/// header read timeout under the watch.
struct Http {
    /// Shared with every HTTP/1.1 connection, which makes a new hyper connection when it
    /// comes back from parking.
    h1: Arc<http1::Builder>,
    h2: http2::Builder<TokioExecutor>,
    auto: auto::Builder<TokioExecutor>,
    idle: Duration,
    idle_anonymous: Duration,
}

impl Http {
    fn new(limits: &ConnectionLimits) -> Self {
        let mut h1 = http1::Builder::new();
        h1.timer(TokioTimer::new())
            .header_read_timeout(None)
            .title_case_headers(true);
        let mut h2 = http2::Builder::new(TokioExecutor::new());
        h2.timer(TokioTimer::new()).max_concurrent_streams(256);
        let mut auto = auto::Builder::new(TokioExecutor::new());
        auto.http1()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.anonymous_idle_timeout)
            .title_case_headers(true);
        auto.http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(256);
        Self {
            h1: Arc::new(h1),
            h2,
            auto,
            idle: limits.idle_timeout,
            idle_anonymous: limits.anonymous_idle_timeout,
        }
    }
}

/// Connections from each address (IPv6: each /64), up to a limit.
struct PerIp {
    limit: usize,
    counts: std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>,
}

impl PerIp {
    fn new(limit: usize) -> Self {
        Self {
            limit,
            counts: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// A slot for one more connection from `ip`, or `None` at the limit.
    fn acquire(self: &Arc<Self>, ip: std::net::IpAddr) -> Option<AddressSlot> {
        let ip = crate::http::client_key(ip);
        let mut counts = self
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = counts.entry(ip).or_insert(0);
        if *count >= self.limit {
            return None;
        }
        *count += 1;
        Some(AddressSlot {
            per_ip: self.clone(),
            ip,
        })
    }
}

/// One connection counted against its address; given back when dropped.
struct AddressSlot {
    per_ip: Arc<PerIp>,
    ip: std::net::IpAddr,
}

/// The limits on connections without a certificate: per address, and from everywhere.
#[derive(Clone)]
struct Anonymous {
    per_ip: Arc<PerIp>,
    everywhere: Arc<Semaphore>,
}

impl Anonymous {
    /// Room for one more connection without a certificate from `ip`, or `None`.
    fn admit(&self, ip: std::net::IpAddr) -> Option<(AddressSlot, OwnedSemaphorePermit)> {
        let address = self.per_ip.acquire(ip)?;
        let everywhere = self.everywhere.clone().try_acquire_owned().ok()?;
        Some((address, everywhere))
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut counts = self
            .per_ip
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(count) = counts.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

/// One connection, from the handshake to the end. The task of an idle connection should hold the
/// HTTP connection and little else, so this is chained from parts rather than written as one
/// `async fn` (whose state machine keeps separate room for values that are moved from one
/// future into the next): the handshake's state (the rustls connection mid-handshake, its timer)
/// is boxed and freed when it ends, and `then` reuses its room for the HTTP side.
#[expect(
    clippy::too_many_arguments,
    reason = "the connection's parts, each moved into the stage that uses it; a struct would only rename the list"
)]
fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    listener_tls: Arc<Listener>,
    proxy: Arc<Proxy>,
    http: Arc<Http>,
    drain: Drain,
    (slot, handshake_slot, anonymous): (OwnedSemaphorePermit, AddressSlot, Anonymous),
    limits: ConnectionLimits,
) -> impl Future<Output = ()> + Send + 'static {
    let handshake = Box::pin(handshake(
        tcp,
        peer,
        acceptor,
        proxy.clone(),
        limits.handshake_timeout,
    ));
    handshake.then(move |stream| {
        drop(handshake_slot);
        let Some(stream) = stream else {
            return Either::Right(std::future::ready(()));
        };
        let session = stream.get_ref().1;
        if session.handshake_kind() == Some(rustls::HandshakeKind::Resumed) {
            if let Some([leaf, intermediates @ ..]) = session.peer_certificates() {
                if !listener_tls.accepts_now(leaf, intermediates) {
                    tracing::info!(%peer, "resumed session refused: its chain is no longer trusted");
                    proxy.metrics().handshake(HandshakeOutcome::UnknownCa.label());
                    return Either::Right(std::future::ready(()));
                }
            }
        }
        let has_certificate = session.peer_certificates().is_some();
        let anonymous = if has_certificate {
            None
        } else {
            match anonymous.admit(peer.ip()) {
                Some(admitted) => Some(admitted),
                None => {
                    tracing::debug!(%peer, "too many connections without a certificate; closed");
                    return Either::Right(std::future::ready(()));
                }
            }
        };
        {
            let open = OpenConnection::new(proxy.clone());
            let served = accepted(stream, peer, &listener_tls, &proxy, &http, drain);
            Either::Left(served.map(move |served| {
                drop((open, slot, anonymous));
                if let Err(err) = served {
                    tracing::debug!(%peer, error = %err, "connection ended with an error");
                }
            }))
        }
    })
}

/// After the handshake: the connection's identity (once), the handshake counted, and the HTTP
/// connection that serves it, by the protocol ALPN agreed on.
fn accepted(
    stream: TlsStream<ClientTcp>,
    peer: SocketAddr,
    listener_tls: &Listener,
    proxy: &Arc<Proxy>,
    http: &Http,
    drain: Drain,
) -> impl Future<Output = Result<(), BoxError>> + Send + use<> {
    let (_, session) = stream.get_ref();
    let cert = match session.peer_certificates() {
        Some([leaf, intermediates @ ..]) => ClientCert::Verified {
            resolved: proxy.identities().resolve(leaf),
            chain_header: if proxy.identities().names().rfc9440 {
                client_cert_chain(intermediates.iter().map(|cert| cert.as_ref()))
            } else {
                None
            },
            lifecycle_ca: listener_tls.is_lifecycle_chain(leaf, intermediates),
        },
        _ => ClientCert::Absent,
    };
    let outcome = match &cert {
        ClientCert::Absent => HandshakeOutcome::NoCert,
        ClientCert::Verified { resolved, .. } => match resolved.as_ref() {
            Ok(_) => HandshakeOutcome::Ok,
            Err(err) => {
                tracing::warn!(%peer, reason = %err, "client certificate refused");
                HandshakeOutcome::BadCn
            }
        },
    };
    proxy.metrics().handshake(outcome.label());
    let alpn = match session.alpn_protocol() {
        Some(b"h2") => Alpn::H2,
        Some(_) => Alpn::Http11,
        None => Alpn::None,
    };

    let anonymous = matches!(cert, ClientCert::Absent);
    let idle = if anonymous {
        http.idle_anonymous
    } else {
        http.idle
    };
    let connection = Arc::new(Connection::new(peer, cert, idle));
    let drain = Drain {
        signal: proxy.closing_signal(&connection, drain.signal),
        watcher: drain.watcher,
    };
    let parked = proxy.metrics().parked_connections.clone();
    let proxy = proxy.clone();
    let in_flight = Arc::new(InFlight::default());
    let counting = in_flight.clone();
    let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
        let survey = proxy.survey(&request);
        counting.note_closing(&request, &survey);
        let started = counting.start();
        // Boxed per request: hyper keeps a slot for the service's future in every connection for
        // its whole life, and a forwarded request's future is about a KiB. `handle` checks the
        // request before it returns.
        Box::pin(
            proxy
                .clone()
                .handle(connection.clone(), request, survey)
                .map(move |mut response| {
                    // The application's answer streams on after its head: the request stays in
                    // flight until the body's end, or the idle watch of an h2 connection
                    // (`serve_h2`) would close the connection under a long download. certgate's
                    // own bodies are written whole.
                    use http_body_util::Either::{Left, Right};
                    if let Left(Right(streamed)) = response.body_mut() {
                        if let Some(count) = started.hand_over() {
                            streamed.hold(count);
                        }
                    } else {
                        drop(started);
                    }
                    Ok::<_, Infallible>(response)
                }),
        )
    });
    match alpn {
        Alpn::Http11 => {
            let io = ClientIo::new(stream, in_flight.clone());
            Either::Left(serve_h1(
                http.h1.clone(),
                io,
                service,
                drain,
                (in_flight, parked),
                idle,
            ))
        }
        // h2 and the sniffing `auto` are boxed: an HTTP/1.1 connection does not pay for their size.
        Alpn::H2 => {
            let served: BoxedServe = Box::pin(serve_h2(
                http.h2.serve_connection(TokioIo::new(stream), service),
                drain,
                in_flight,
                idle,
            ));
            Either::Right(served)
        }
        // Watched for idleness as h2 is: a client without ALPN may speak h2 by prior knowledge,
        // and hyper's header read timeout only covers HTTP/1.1.
        Alpn::None => {
            let served: BoxedServe = Box::pin(serve_h2(
                http.auto
                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                    .into_owned(),
                drain,
                in_flight,
                idle,
            ));
            Either::Right(served)
        }
    }
}

type BoxedServe = Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send>>;

#[derive(Clone, Copy)]
enum Alpn {
    Http11,
    H2,
    None,
}

/// The TLS handshake with its timeout; a failure is counted and logged here.
async fn handshake(
    tcp: TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    proxy: Arc<Proxy>,
    timeout: Duration,
) -> Option<TlsStream<ClientTcp>> {
    let metrics = proxy.metrics();
    let accepting = acceptor.accept(ClientTcp::new(tcp)).into_fallible();
    match tokio::time::timeout(timeout, accepting).await {
        Err(_) => {
            metrics.handshake(HandshakeOutcome::Other.label());
            tracing::debug!(%peer, "TLS handshake timed out");
            None
        }
        Ok(Err((err, mut tcp))) => {
            let outcome = HandshakeOutcome::of_error(&err);
            metrics.handshake(outcome.label());
            tracing::info!(%peer, result = outcome.label(), error = %err, "TLS handshake refused");
            // The alert that says why, once, without waiting for a client that does not read.
            tcp.release(false);
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            let _ = tokio::io::AsyncWrite::poll_flush(Pin::new(&mut tcp), &mut cx);
            None
        }
        Ok(Ok(mut stream)) => {
            let tls13 =
                stream.get_ref().1.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3);
            stream.get_mut().0.release(tls13);
            Some(stream)
        }
    }
}

/// Counts the connection in the open-connections gauge until it ends, however it ends.
struct OpenConnection(Arc<Proxy>);

impl OpenConnection {
    fn new(proxy: Arc<Proxy>) -> Self {
        proxy.metrics().open_connections.inc();
        Self(proxy)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.metrics().open_connections.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::nodelay_for_accepted;
    use tokio::net::{TcpListener, TcpStream};

    async fn accepted_one(listener: &TcpListener) -> TcpStream {
        let address = listener.local_addr().unwrap();
        let (client, accepted) = tokio::join!(TcpStream::connect(address), listener.accept());
        drop(client.unwrap());
        accepted.unwrap().0
    }

    #[tokio::test]
    async fn accepted_connections_start_without_nagle_when_the_listener_says_so() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let inherited = nodelay_for_accepted(&listener);
        assert_eq!(inherited, cfg!(target_os = "linux"));
        if inherited {
            assert!(accepted_one(&listener).await.nodelay().unwrap());
        }
    }

    /// The twin: without the listener's setting, an accepted connection has Nagle's algorithm
    /// on, so the test above sees the inheritance and not a default.
    #[tokio::test]
    async fn accepted_connections_keep_nagle_from_a_plain_listener() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        assert!(!accepted_one(&listener).await.nodelay().unwrap());
    }
}
