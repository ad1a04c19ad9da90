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
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::{ClientCert, Connection, Proxy};
use crate::identity::client_cert_chain;
use crate::tls::{HandshakeOutcome, Listener, ReloadableTls};

/// Per-connection limits from `[server]`.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// `handshake_timeout`.
    pub handshake_timeout: Duration,
    /// `max_connections`: beyond it, new connections wait in the kernel's backlog.
    pub max_connections: usize,
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
    let http = Arc::new(Http::new());
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
        tokio::spawn(connection(
            tcp,
            peer,
            acceptor,
            listener_tls,
            proxy.clone(),
            http.clone(),
            drain,
            slot,
            limits,
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
/// 900 bytes more per idle HTTP/1.1 connection); `auto` remains for a client that sent no ALPN.
struct Http {
    h1: http1::Builder,
    h2: http2::Builder<TokioExecutor>,
    auto: auto::Builder<TokioExecutor>,
}

impl Http {
    fn new() -> Self {
        let mut h1 = http1::Builder::new();
        h1.timer(TokioTimer::new())
            .header_read_timeout(Duration::from_secs(30));
        let mut h2 = http2::Builder::new(TokioExecutor::new());
        h2.timer(TokioTimer::new()).max_concurrent_streams(256);
        let mut auto = auto::Builder::new(TokioExecutor::new());
        auto.http1()
            .timer(TokioTimer::new())
            .header_read_timeout(Duration::from_secs(30));
        auto.http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(256);
        Self { h1, h2, auto }
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
#[allow(clippy::too_many_arguments)]
fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    listener_tls: Arc<Listener>,
    proxy: Arc<Proxy>,
    http: Arc<Http>,
    drain: Drain,
    slot: OwnedSemaphorePermit,
    limits: ConnectionLimits,
) -> impl Future<Output = ()> + Send + 'static {
    let handshake = Box::pin(handshake(
        tcp,
        peer,
        acceptor,
        proxy.clone(),
        limits.handshake_timeout,
    ));
    handshake.then(move |stream| match stream {
        None => Either::Right(std::future::ready(())),
        Some(stream) => {
            let open = OpenConnection::new(proxy.clone());
            let served = accepted(stream, peer, &listener_tls, &proxy, &http, drain);
            Either::Left(served.map(move |served| {
                drop((open, slot));
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

    let connection = Arc::new(Connection { peer, cert });
    let proxy = proxy.clone();
    let service = service_fn(move |request| {
        let proxy = proxy.clone();
        let connection = connection.clone();
        // Boxed per request: hyper keeps a slot for the service's future in every connection for
        // its whole life, and certgate's request future is several KiB.
        Box::pin(async move { Ok::<_, Infallible>(proxy.handle(connection, request).await) })
    });
    let io = TokioIo::new(stream);
    match alpn {
        Alpn::Http11 => Either::Left(serve_h1(
            http.h1.serve_connection(io, service).with_upgrades(),
            drain,
        )),
        // h2 and the sniffing `auto` are boxed: an HTTP/1.1 connection does not pay for their size.
        Alpn::H2 => {
            let served = drain.watcher.watch(http.h2.serve_connection(io, service));
            let served: BoxedServe =
                Box::pin(async move { served.await.map_err(|err| Box::new(err) as BoxError) });
            Either::Right(served)
        }
        Alpn::None => {
            let served: BoxedServe = Box::pin(
                drain.watcher.watch(
                    http.auto
                        .serve_connection_with_upgrades(io, service)
                        .into_owned(),
                ),
            );
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

/// Serves an HTTP/1.1 connection (upgrades included) until it ends; when the server starts
/// draining, the request in flight finishes and the connection closes. (hyper-util's `Watcher`
/// cannot watch hyper's upgradeable HTTP/1.1 connection, hence the second signal; the watcher is
/// held all the same, so the drain waits for this connection.)
///
/// A plain function returning an `async` block that uses `conn` where it was captured: the
/// arguments of an `async fn` are moved once more inside its future, which would hold hyper's
/// connection twice.
fn serve_h1<C>(mut conn: C, drain: Drain) -> impl Future<Output = Result<(), BoxError>> + Send
where
    C: GracefulH1 + Unpin + Send,
{
    let Drain { watcher, signal } = drain;
    let mut signal = signal;
    async move {
        let _watcher = watcher;
        tokio::select! {
            biased;
            served = &mut conn => return served.map_err(|err| Box::new(err) as BoxError),
            // Drain signalled, or the accept loop is gone without a word: both mean shutting down.
            _ = signal.wait_for(|draining| *draining) => {}
        }
        Pin::new(&mut conn).graceful_shutdown();
        // By reference: awaiting `conn` itself would move it into a second slot of this future.
        (&mut conn).await.map_err(|err| Box::new(err) as BoxError)
    }
}

/// hyper's upgradeable HTTP/1.1 connection, named by what `serve_h1` needs of it.
trait GracefulH1: Future<Output = Result<(), hyper::Error>> {
    fn graceful_shutdown(self: Pin<&mut Self>);
}

impl<I, S, B> GracefulH1 for http1::UpgradeableConnection<I, S>
where
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = B>,
    S::Error: Into<BoxError>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    B: hyper::body::Body + 'static,
    B::Error: Into<BoxError>,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        http1::UpgradeableConnection::graceful_shutdown(self);
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
