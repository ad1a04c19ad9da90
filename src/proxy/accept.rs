//! Accepting connections: the TCP accept, the connection limit, the TLS handshake with its
//! timeout, the connection's identity (once), and handing the stream to hyper.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt as _;
use futures_util::future::Either;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use prometheus_client::metrics::gauge::Gauge;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

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
        let _ = tcp.set_nodelay(true);
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
    h1: http1::Builder,
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
            h1,
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

/// How a connection learns that the server is draining: `watcher` keeps
/// `GracefulShutdown::shutdown` waiting until the connection is gone, `signal` turns true when it
/// starts.
struct Drain {
    watcher: Watcher,
    signal: watch::Receiver<bool>,
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
    stream: TlsStream<TcpStream>,
    peer: SocketAddr,
    listener_tls: &Listener,
    proxy: &Arc<Proxy>,
    http: &Arc<Http>,
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
    let connection = Arc::new(Connection::new(
        peer,
        cert,
        if anonymous {
            http.idle_anonymous
        } else {
            http.idle
        },
    ));
    let drain = Drain {
        signal: proxy.closing_signal(&connection, drain.signal),
        watcher: drain.watcher,
    };
    let parked = proxy.metrics().parked_connections.clone();
    let proxy = proxy.clone();
    let in_flight = Arc::new(InFlight::default());
    let counting = in_flight.clone();
    let service = service_fn(move |request| {
        let started = counting.start();
        // Boxed per request: hyper keeps a slot for the service's future in every connection for
        // its whole life, and a forwarded request's future is about a KiB. `handle` checks the
        // request before it returns.
        Box::pin(
            proxy
                .clone()
                .handle(connection.clone(), request)
                .map(move |mut response| {
                    // The application's answer streams on after its head: the request stays in
                    // flight until the body's end, or the idle watch of an h2 connection
                    // (`serve_h2`) would close the connection under a long download. certgate's
                    // own bodies are written whole.
                    use http_body_util::Either::{Left, Right};
                    if let Left(Right(streamed)) = response.body_mut() {
                        streamed.hold(Box::new(started));
                    } else {
                        drop(started);
                    }
                    Ok::<_, Infallible>(response)
                }),
        )
    });
    let idle = if anonymous {
        http.idle_anonymous
    } else {
        http.idle
    };
    match alpn {
        Alpn::Http11 => {
            let io = ClientIo {
                tls: stream,
                in_flight: in_flight.clone(),
                unread: Bytes::new(),
            };
            Either::Left(serve_h1(
                http.clone(),
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

type BoxError = Box<dyn std::error::Error + Send + Sync>;
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
) -> Option<TlsStream<TcpStream>> {
    let metrics = proxy.metrics();
    match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
        Err(_) => {
            metrics.handshake(HandshakeOutcome::Other.label());
            tracing::debug!(%peer, "TLS handshake timed out");
            None
        }
        Ok(Err(err)) => {
            let outcome = HandshakeOutcome::of_error(&err);
            metrics.handshake(outcome.label());
            tracing::info!(%peer, result = outcome.label(), error = %err, "TLS handshake refused");
            None
        }
        Ok(Ok(stream)) => Some(stream),
    }
}

/// Serves an HTTP/1.1 connection (upgrades included) until it ends. A connection that has
/// started no request, has none in flight and has had nothing written to it for `idle` is
/// closed: whether it sent nothing, or a request head that never finishes (slowloris). So is
/// one whose client has not read any of its answer for `idle`, in flight or not (as nginx's
/// `send_timeout`): it would otherwise hold its connection, and the application's, for good. A
/// slow reader still receiving its answer is not idle. The watch looks every [`PARK_AFTER`]
/// (every quarter of `idle` if that is shorter), so such a connection ends at most two looks
/// after `idle` has passed since its last activity (hyper's header read timeout, which this
/// replaces, allocated and armed a timer for every request).
///
/// A connection found waiting for its next request is parked, as nginx does at keep-alive:
/// hyper's connection, with its read and write buffers (8 KiB each), is dropped, and the TLS
/// stream alone waits for the client's next bytes, with no timer but its idle deadline. Its
/// next request gets a new hyper connection. Most of a bank's connections are such waiting
/// browsers (10,000 held idle: 12.9 KiB each instead of 22.5); a busy connection pays a timer
/// every half second for it.
///
/// When the server starts draining, the request in flight finishes and the connection closes.
/// (hyper-util's `Watcher` cannot watch hyper's upgradeable HTTP/1.1 connection, hence the
/// second signal; the watcher is held all the same, so the drain waits for this connection.)
fn serve_h1<S, B>(
    http: Arc<Http>,
    mut io: ClientIo,
    mut service: S,
    drain: Drain,
    (in_flight, parked): (Arc<InFlight>, Gauge),
    idle: Duration,
) -> impl Future<Output = Result<(), BoxError>> + Send
where
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = B> + Send + Unpin + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let Drain { watcher, signal } = drain;
    let mut signal = signal;
    async move {
        let _watcher = watcher;
        // `io` and `service` are used where they were captured: moved into a local, they would
        // take a second slot in the connection's task.
        let mut watch = in_flight.h1_watch_start();
        loop {
            // Boxed: a parked connection gives its room back.
            let mut conn = Box::pin(
                http.h1
                    .serve_connection(TokioIo::new(io), service)
                    .with_upgrades(),
            );
            watch.served(&in_flight);
            let mut may_park = true;
            loop {
                let look = tokio::select! {
                    biased;
                    served = conn.as_mut() => {
                        return served.map_err(|err| Box::new(err) as BoxError);
                    }
                    // Drain signalled, or the accept loop is gone without a word: both mean
                    // shutting down.
                    _ = signal.wait_for(|draining| *draining) => None,
                    look = in_flight.h1_watch(idle, &mut watch, may_park) => Some(look),
                };
                match look {
                    None => {
                        conn.as_mut().graceful_shutdown();
                        return conn.await.map_err(|err| Box::new(err) as BoxError);
                    }
                    Some(H1Look::Close) => {
                        conn.as_mut().graceful_shutdown();
                        // An idle keep-alive connection closes at once (its close_notify
                        // written); one holding an unfinished head would wait for its client,
                        // and gets its close_notify from here. One whose client does not read
                        // is dropped.
                        if let Ok(served) =
                            tokio::time::timeout(close_grace(idle), conn.as_mut()).await
                        {
                            return served.map_err(|err| Box::new(err) as BoxError);
                        }
                        if in_flight.write_blocked() {
                            return Ok(());
                        }
                        // Into `io`, whose room the task has anyway, and `parts` gone before
                        // the wait: held across it, either would take a second slot for the
                        // stream in every connection's task.
                        {
                            let Some(parts) = Pin::into_inner(conn).into_parts() else {
                                return Ok(());
                            };
                            io = parts.io.into_inner();
                        }
                        return io.close(idle).await;
                    }
                    Some(H1Look::Park) => {}
                }
                // hyper ends a connection between two requests at once when told to shut down;
                // the shutdown of the stream itself is skipped while `parking`.
                in_flight.parking(true);
                conn.as_mut().graceful_shutdown();
                let served = tokio::time::timeout(close_grace(idle), conn.as_mut()).await;
                in_flight.parking(false);
                match served {
                    Ok(Ok(())) => break,
                    Ok(Err(err)) => return Err(Box::new(err) as BoxError),
                    // Not between two requests after all: a request body still coming after its
                    // answer went out. Keep-alive is off now, so hyper closes the connection
                    // (with its close_notify) once that body ends; until then it is watched as
                    // before, and not parked again.
                    Err(_) => may_park = false,
                }
            }
            // `None`: the connection was upgraded and is the tunnel's now. (A block: `parts`
            // must not live on across the wait below, taking room in the task.)
            {
                let Some(parts) = Pin::into_inner(conn).into_parts() else {
                    return Ok(());
                };
                service = parts.service;
                io = parts.io.into_inner();
                if !parts.read_buf.is_empty() {
                    // The start of a head: copied, so the 8 KiB buffer it sits in is freed.
                    io.unread = Bytes::copy_from_slice(&parts.read_buf);
                }
            }
            let deadline = watch.deadline(idle);
            let woken = {
                let _parked = Parked::new(&parked);
                tokio::select! {
                    biased;
                    _ = signal.wait_for(|draining| *draining) => false,
                    readable = io.tls.get_ref().0.readable() => readable.is_ok(),
                    () = tokio::time::sleep_until(deadline) => false,
                }
            };
            if !woken {
                return io.close(idle).await;
            }
        }
    }
}

/// Counts a parked connection in the gauge while it is parked, however its wait ends.
struct Parked<'a>(&'a Gauge);

impl<'a> Parked<'a> {
    fn new(gauge: &'a Gauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for Parked<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// How long an idle HTTP/1.1 connection gets to close cleanly (at most a quarter of its idle
/// timeout).
fn close_grace(idle: Duration) -> Duration {
    CLOSE_GRACE.min(idle / 4)
}

const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// How long an HTTP/1.1 connection waits for its next request before it is parked, and how
/// often its watch looks at it.
const PARK_AFTER: Duration = Duration::from_millis(500);

/// What the watch of an HTTP/1.1 connection found.
enum H1Look {
    /// Waiting for its next request: park it.
    Park,
    /// Quiet for its idle timeout: close it.
    Close,
}

/// What the watch of an HTTP/1.1 connection has seen, kept while it is parked: a client
/// trickling bytes that start no request is closed on time however often it wakes its
/// connection.
struct H1Watch {
    seen: (u64, u64),
    read: u64,
    since: tokio::time::Instant,
    /// Requests started and bytes read when the current hyper connection took over. hyper
    /// ends a connection at once when told to shut down only between two requests, or before
    /// its first byte: in the middle of its first head it would finish the exchange and close,
    /// so such a connection is not parked.
    served: (u64, u64),
}

impl H1Watch {
    /// A new hyper connection takes over.
    fn served(&mut self, in_flight: &InFlight) {
        self.served = (in_flight.started(), in_flight.bytes_read());
    }

    /// Whether hyper, told to shut down now, would end its connection at once.
    fn between_requests(&self, in_flight: &InFlight) -> bool {
        let (started, read) = self.served;
        in_flight.started() > started || in_flight.bytes_read() == read
    }

    fn deadline(&self, idle: Duration) -> tokio::time::Instant {
        self.since + idle
    }
}

/// The client's side of an HTTP/1.1 connection: the bytes written to it counted (the idle watch
/// tells an answer still going out to a slow reader from a connection only waiting), and the
/// bytes a parked connection had read of a head not yet complete given back first.
struct ClientIo {
    tls: TlsStream<TcpStream>,
    in_flight: Arc<InFlight>,
    unread: Bytes,
}

impl ClientIo {
    /// Closes a parked connection: its close_notify, if the client takes it. (By reference: a
    /// stream moved into this future would take a second slot in the connection's task.)
    async fn close(&mut self, idle: Duration) -> Result<(), BoxError> {
        use tokio::io::AsyncWriteExt as _;
        let _ = tokio::time::timeout(close_grace(idle), self.tls.shutdown()).await;
        Ok(())
    }
}

impl tokio::io::AsyncRead for ClientIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if !self.unread.is_empty() {
            let take = self.unread.len().min(buf.remaining());
            let unread = self.unread.split_to(take);
            buf.put_slice(&unread);
            self.in_flight.read_polled(take);
            return std::task::Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let read = Pin::new(&mut self.tls).poll_read(cx, buf);
        self.in_flight.read_polled(buf.filled().len() - before);
        read
    }
}

impl tokio::io::AsyncWrite for ClientIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let written = Pin::new(&mut self.tls).poll_write(cx, buf);
        self.in_flight.write_polled(&written);
        written
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let written = Pin::new(&mut self.tls).poll_write_vectored(cx, bufs);
        self.in_flight.write_polled(&written);
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.tls.is_write_vectored()
    }

    fn poll_flush(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        // TLS buffers what it accepted; a client not reading shows here as often as in writes.
        let flushed = Pin::new(&mut self.tls).poll_flush(cx);
        self.in_flight.flush_polled(&flushed);
        flushed
    }

    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        // hyper shuts down a connection it ends; one being parked stays open.
        if self.in_flight.is_parking() {
            return std::task::Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.tls).poll_shutdown(cx)
    }
}

/// Requests of one connection still waiting for their answer, or still streaming it.
#[derive(Default)]
struct InFlight {
    count: std::sync::atomic::AtomicUsize,
    /// Bumped when a request starts, so that the idle watch can tell a quiet connection from a
    /// busy one between two checks.
    started: std::sync::atomic::AtomicU64,
    /// Bytes written to the client (HTTP/1.1), for the same reason.
    written: std::sync::atomic::AtomicU64,
    /// Whether the last write to the client (HTTP/1.1) could not proceed: its client is not
    /// reading.
    blocked: std::sync::atomic::AtomicBool,
    /// Bytes read from the client (HTTP/1.1): a request body still coming keeps its connection
    /// from being parked.
    read: std::sync::atomic::AtomicU64,
    /// Set while an HTTP/1.1 connection is parked: hyper's shutdown of its stream is skipped.
    parking: std::sync::atomic::AtomicBool,
}

impl InFlight {
    fn start(self: &Arc<Self>) -> Started {
        use std::sync::atomic::Ordering;
        self.count.fetch_add(1, Ordering::AcqRel);
        self.started.fetch_add(1, Ordering::AcqRel);
        Started(self.clone())
    }

    fn idle(&self) -> bool {
        self.count.load(std::sync::atomic::Ordering::Acquire) == 0
    }

    fn started(&self) -> u64 {
        self.started.load(std::sync::atomic::Ordering::Acquire)
    }

    fn write_polled(&self, written: &std::task::Poll<std::io::Result<usize>>) {
        use std::sync::atomic::Ordering::Relaxed;
        match written {
            std::task::Poll::Ready(Ok(bytes)) => {
                self.written.fetch_add(*bytes as u64, Relaxed);
                self.blocked.store(false, Relaxed);
            }
            std::task::Poll::Pending => self.blocked.store(true, Relaxed),
            std::task::Poll::Ready(Err(_)) => {}
        }
    }

    /// Flushes are not activity (hyper flushes at every turn, also while a head trickles in),
    /// but one that cannot proceed means the client is not reading.
    fn flush_polled(&self, flushed: &std::task::Poll<std::io::Result<()>>) {
        use std::sync::atomic::Ordering::Relaxed;
        match flushed {
            std::task::Poll::Ready(Ok(())) => self.blocked.store(false, Relaxed),
            std::task::Poll::Pending => self.blocked.store(true, Relaxed),
            std::task::Poll::Ready(Err(_)) => {}
        }
    }

    /// An answer is waiting for its client to read (with no byte written between two looks: a
    /// client that stopped reading, which no request in flight excuses).
    fn write_blocked(&self) -> bool {
        self.blocked.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Requests started and bytes written so far: unchanged between two looks, nothing happened.
    fn activity(&self) -> (u64, u64) {
        (
            self.started(),
            self.written.load(std::sync::atomic::Ordering::Relaxed),
        )
    }

    fn read_polled(&self, bytes: usize) {
        self.read
            .fetch_add(bytes as u64, std::sync::atomic::Ordering::Relaxed);
    }

    fn parking(&self, parking: bool) {
        self.parking
            .store(parking, std::sync::atomic::Ordering::Relaxed);
    }

    fn is_parking(&self) -> bool {
        self.parking.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn h1_watch_start(&self) -> H1Watch {
        H1Watch {
            seen: self.activity(),
            read: self.bytes_read(),
            since: tokio::time::Instant::now(),
            served: (self.started(), self.bytes_read()),
        }
    }

    fn bytes_read(&self) -> u64 {
        self.read.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Looks at an HTTP/1.1 connection every [`PARK_AFTER`] (or quarter of `idle`, if shorter)
    /// until it is found waiting for its next request (nothing started, written or read since
    /// the last look, nothing in flight, hyper between two requests), or quiet for `idle` (as `quiet` counts it: bytes
    /// read are no activity, or a trickled head would keep its connection for good).
    async fn h1_watch(&self, idle: Duration, watch: &mut H1Watch, may_park: bool) -> H1Look {
        let every = PARK_AFTER.min(idle / 4);
        loop {
            tokio::time::sleep(every).await;
            let now = self.activity();
            let read = self.bytes_read();
            if now != watch.seen {
                (watch.seen, watch.read, watch.since) = (now, read, tokio::time::Instant::now());
                continue;
            }
            let quiet_for = watch.since.elapsed();
            if quiet_for >= idle && (self.idle() || self.write_blocked()) {
                return H1Look::Close;
            }
            if may_park
                && read == watch.read
                && self.idle()
                && !self.write_blocked()
                && watch.between_requests(self)
            {
                return H1Look::Park;
            }
            watch.read = read;
        }
    }

    /// Resolves once `looks` looks in a row, `idle / looks` apart, found nothing started, nothing
    /// written, and no request in flight but one whose client is not reading its answer. (Only
    /// HTTP/1.1 connections count their writes; on h2 the written count stays 0.)
    async fn quiet(&self, idle: Duration, looks: u32) {
        let mut seen = self.activity();
        let mut quiet = 0;
        loop {
            tokio::time::sleep(idle / looks).await;
            let now = self.activity();
            if now == seen && (self.idle() || self.write_blocked()) {
                quiet += 1;
                if quiet == looks {
                    return;
                }
            } else {
                (seen, quiet) = (now, 0);
            }
        }
    }
}

struct Started(Arc<InFlight>);

impl Drop for Started {
    fn drop(&mut self) {
        self.0
            .count
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// Serves an h2 connection until it ends. hyper closes an h2 connection only when the client
/// does or a PING goes unanswered, and every h2 library answers PINGs: so a connection that has
/// started no request for `idle` (and has none waiting for its answer) is sent GOAWAY here, as
/// is every connection when the server starts draining. Streams already open finish.
fn serve_h2<C, Failure>(
    conn: C,
    drain: Drain,
    in_flight: Arc<InFlight>,
    idle: Duration,
) -> impl Future<Output = Result<(), BoxError>> + Send
where
    C: GracefulH2<Failure> + Send,
    Failure: Into<BoxError>,
{
    let Drain { watcher, signal } = drain;
    let mut signal = signal;
    async move {
        let _watcher = watcher;
        // Pinned here, inside the connection's (boxed) future: the sniffing connection is not
        // `Unpin`.
        let mut conn = std::pin::pin!(conn);
        let draining = tokio::select! {
            biased;
            served = conn.as_mut() => return served.map_err(Into::into),
            _ = signal.wait_for(|draining| *draining) => true,
            () = in_flight.quiet(idle, 1) => false,
        };
        conn.as_mut().graceful_shutdown();
        if draining {
            // `shutdown_grace` bounds the drain.
            return conn.as_mut().await.map_err(Into::into);
        }
        // The GOAWAY is followed by a PING whose answer ends the connection; a client that never
        // answers would keep it open, so it gets `idle` once more and is then dropped.
        match tokio::time::timeout(idle, conn.as_mut()).await {
            Ok(served) => served.map_err(Into::into),
            Err(_) => Ok(()),
        }
    }
}

/// hyper's h2 connection, or the sniffing one that serves a client without ALPN, named by what
/// `serve_h2` needs of it.
trait GracefulH2<Failure>: Future<Output = Result<(), Failure>> {
    fn graceful_shutdown(self: Pin<&mut Self>);
}

impl<I, S, B, E> GracefulH2<BoxError> for auto::UpgradeableConnection<'static, I, S, E>
where
    S: hyper::service::Service<http::Request<hyper::body::Incoming>, Response = http::Response<B>>,
    S::Future: 'static,
    S::Error: Into<BoxError>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Error: Into<BoxError>,
    E: hyper_util::server::conn::auto::HttpServerConnExec<S::Future, B>,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        auto::UpgradeableConnection::graceful_shutdown(self);
    }
}

impl<I, S, B, E> GracefulH2<hyper::Error> for http2::Connection<I, S, E>
where
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = B>,
    S::Error: Into<BoxError>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
    E: hyper::rt::bounds::Http2ServerConnExec<S::Future, B>,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        http2::Connection::graceful_shutdown(self);
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
