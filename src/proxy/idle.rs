//! An accepted connection's HTTP, served until it ends: idleness watched (HTTP/1.1 and h2),
//! an HTTP/1.1 connection waiting for its next request parked without hyper's buffers, every
//! connection drained when the server stops.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::TokioIo;
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::Watcher;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::watch;
use tokio_rustls::server::TlsStream;

use super::tcp::ClientTcp;

pub(super) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How a connection learns that the server is draining: `watcher` keeps
/// `GracefulShutdown::shutdown` waiting until the connection is gone, `signal` turns true when it
/// starts.
pub(super) struct Drain {
    pub(super) watcher: Watcher,
    pub(super) signal: watch::Receiver<bool>,
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
pub(super) fn serve_h1<S, B>(
    h1: Arc<http1::Builder>,
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
                h1.serve_connection(TokioIo::new(io), service)
                    .with_upgrades(),
            );
            watch.served(&in_flight);
            let mut may_park = true;
            loop {
                let watched = async {
                    tokio::select! {
                        biased;
                        // Drain signalled, or the accept loop is gone without a word: both mean
                        // shutting down.
                        _ = signal.wait_for(|draining| *draining) => None,
                        look = in_flight.h1_watch(idle, &mut watch, may_park) => Some(look),
                    }
                };
                let look = match beside(turns(&in_flight, conn.as_mut()), watched).await {
                    First::Main(served) => {
                        return served.map_err(|err| Box::new(err) as BoxError);
                    }
                    First::Side(look) => look,
                };
                match look {
                    None => {
                        conn.as_mut().graceful_shutdown();
                        return turns(&in_flight, conn.as_mut())
                            .await
                            .map_err(|err| Box::new(err) as BoxError);
                    }
                    Some(H1Look::Close) => {
                        conn.as_mut().graceful_shutdown();
                        // An idle keep-alive connection closes at once (its close_notify
                        // written); one holding an unfinished head would wait for its client,
                        // and gets its close_notify from here. One whose client does not read
                        // is dropped.
                        if let Ok(served) = tokio::time::timeout(
                            close_grace(idle),
                            turns(&in_flight, conn.as_mut()),
                        )
                        .await
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
                let served =
                    tokio::time::timeout(close_grace(idle), turns(&in_flight, conn.as_mut())).await;
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
                    readable = io.tls.get_ref().0.get_ref().readable() => readable.is_ok(),
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

/// Which of [`beside`]'s two futures finished first.
enum First<M, S> {
    Main(M),
    Side(S),
}

/// Runs `main` (a connection) and `side` (what watches it: the drain signal, its idle timer)
/// until one finishes, `main` first. `side` is polled only when its own waker was woken: a
/// connection's task is woken a few times per request by its sockets, and polling the watch
/// channel and the timer each time (as `select!` does) cost about 500 instructions per
/// HTTP/1.1 request (BENCHMARKS.md, the eighth round of issue 12).
async fn beside<M: Future, S: Future>(main: M, side: S) -> First<M::Output, S::Output> {
    let mut main = std::pin::pin!(main);
    let mut side = std::pin::pin!(side);
    let woken = Arc::new(SideWaker::default());
    let side_waker = std::task::Waker::from(woken.clone());
    std::future::poll_fn(move |cx| {
        if let std::task::Poll::Ready(out) = main.as_mut().poll(cx) {
            return std::task::Poll::Ready(First::Main(out));
        }
        // Registered before the flag is read: a wake-up after the read finds this task.
        woken.task.register(cx.waker());
        if woken.woken.swap(false, std::sync::atomic::Ordering::AcqRel) {
            let mut side_cx = std::task::Context::from_waker(&side_waker);
            if let std::task::Poll::Ready(out) = side.as_mut().poll(&mut side_cx) {
                return std::task::Poll::Ready(First::Side(out));
            }
        }
        std::task::Poll::Pending
    })
    .await
}

/// [`beside`]'s waker for its side future: notes the wake-up, then wakes the task.
struct SideWaker {
    /// Set when the side future was woken (and at first, so that it is polled once).
    woken: std::sync::atomic::AtomicBool,
    task: futures_util::task::AtomicWaker,
}

impl Default for SideWaker {
    fn default() -> Self {
        Self {
            woken: std::sync::atomic::AtomicBool::new(true),
            task: futures_util::task::AtomicWaker::new(),
        }
    }
}

impl std::task::Wake for SideWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, std::sync::atomic::Ordering::Release);
        self.task.wake();
    }
}

/// Polls hyper's connection, counting each poll as a turn of the connection's task: the last
/// answer's flush is left out only in the turn that completed the answer
/// ([`ClientIo::poll_flush`]).
fn turns<'a, F: Future + ?Sized>(
    in_flight: &'a InFlight,
    mut connection: Pin<&'a mut F>,
) -> impl Future<Output = F::Output> + 'a {
    std::future::poll_fn(move |cx| {
        in_flight.next_turn();
        connection.as_mut().poll(cx)
    })
}

/// The client's side of an HTTP/1.1 connection: the bytes written to it counted (the idle watch
/// tells an answer still going out to a slow reader from a connection only waiting), and the
/// bytes a parked connection had read of a head not yet complete given back first.
pub(super) struct ClientIo {
    tls: TlsStream<ClientTcp>,
    in_flight: Arc<InFlight>,
    unread: Bytes,
    /// The turn in which the last answer's flush was first left out: later turns flush.
    left_out_in: Option<u64>,
}

impl ClientIo {
    pub(super) fn new(tls: TlsStream<ClientTcp>, in_flight: Arc<InFlight>) -> Self {
        Self {
            tls,
            in_flight,
            unread: Bytes::new(),
            left_out_in: None,
        }
    }

    /// The client asked to close after its last request: what is written now is that
    /// request's answer, held for close_notify.
    fn hold_if_last(&mut self) {
        let last = self.in_flight.client_closes();
        self.tls.get_mut().0.hold_last_answer(last);
    }

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
        self.hold_if_last();
        let written = Pin::new(&mut self.tls).poll_write(cx, buf);
        self.in_flight.write_polled(&written);
        written
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.hold_if_last();
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
        if self.in_flight.client_closes() && self.in_flight.idle() {
            // The last answer is whole, and hyper shuts the connection down next, in this same
            // turn: the answer leaves with close_notify ([`ClientTcp`]). In this turn only:
            // should hyper not shut down (a request body still coming), the task is polled
            // again, and a flush in that turn sends the answer, waiting on the socket as any
            // flush does.
            let turn = self.in_flight.turn();
            match self.left_out_in {
                None => {
                    self.left_out_in = Some(turn);
                    cx.waker().wake_by_ref();
                    return std::task::Poll::Ready(Ok(()));
                }
                Some(left_out_in) if left_out_in == turn => {
                    return std::task::Poll::Ready(Ok(()));
                }
                Some(_) => {}
            }
        }
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
pub(super) struct InFlight {
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
    /// The client asked to close the connection after the request it sent (HTTP/1.1): hyper
    /// ends it once that request is answered.
    closes: std::sync::atomic::AtomicBool,
    /// Polls of the HTTP/1.1 connection so far (written only by its own task).
    turn: std::sync::atomic::AtomicU64,
}

impl InFlight {
    pub(super) fn start(self: &Arc<Self>) -> Started {
        use std::sync::atomic::Ordering;
        self.count.fetch_add(1, Ordering::AcqRel);
        self.started.fetch_add(1, Ordering::AcqRel);
        Started(Some(self.clone()))
    }

    /// hyper's own rule for when an HTTP/1.x connection ends after this request's answer:
    /// HTTP/1.1 with `Connection: close`, HTTP/1.0 without `Connection: keep-alive`, unless the
    /// request may switch protocols.
    pub(super) fn note_closing<B>(
        &self,
        request: &hyper::Request<B>,
        survey: &super::headers::Survey,
    ) {
        let token = match request.version() {
            hyper::Version::HTTP_11 => "close",
            hyper::Version::HTTP_10 => "keep-alive",
            _ => return,
        };
        // As hyper reads it: a value that is not visible ASCII names no token.
        let named = survey.connection
            && super::headers::connection_tokens(request.headers())
                .any(|part| part.eq_ignore_ascii_case(token));
        // After the answer to CONNECT or to an `Upgrade` request, hyper may hand the stream
        // over instead of shutting it down: that answer is not held.
        let closes = named == (request.version() == hyper::Version::HTTP_11)
            && request.method() != hyper::Method::CONNECT
            && !survey.upgrade;
        self.closes
            .store(closes, std::sync::atomic::Ordering::Relaxed);
    }

    fn next_turn(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        self.turn
            .store(self.turn.load(Relaxed).wrapping_add(1), Relaxed);
    }

    fn turn(&self) -> u64 {
        self.turn.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn client_closes(&self) -> bool {
        self.closes.load(std::sync::atomic::Ordering::Relaxed)
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
    /// the last look, nothing in flight, hyper between two requests), or quiet for `idle`:
    /// nothing started or written, and nothing in flight but an answer its client does not
    /// read. Bytes read are no activity there, or a trickled head would keep its connection
    /// for good.
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

    /// Resolves once a look, `idle` after the previous one, finds no request started since and
    /// none in flight (h2: hyper's connection has no writes of ours to count).
    async fn quiet(&self, idle: Duration) {
        let mut seen = self.started();
        loop {
            tokio::time::sleep(idle).await;
            let now = self.started();
            if now == seen && self.idle() {
                return;
            }
            seen = now;
        }
    }
}

pub(super) struct Started(Option<Arc<InFlight>>);

impl Started {
    /// The count, for a streamed answer to end when its body does
    /// ([`crate::http::UpstreamBody::hold`]).
    pub(super) fn hand_over(mut self) -> Option<Arc<InFlight>> {
        self.0.take()
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        if let Some(count) = self.0.take() {
            crate::http::client::InFlight::ended(&*count);
        }
    }
}

impl crate::http::client::InFlight for InFlight {
    fn ended(&self) {
        self.count.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// Serves an h2 connection until it ends. hyper closes an h2 connection only when the client
/// does or a PING goes unanswered, and every h2 library answers PINGs: so a connection that has
/// started no request for `idle` (and has none waiting for its answer) is sent GOAWAY here, as
/// is every connection when the server starts draining. Streams already open finish.
pub(super) fn serve_h2<C, Failure>(
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
        let watched = async {
            tokio::select! {
                biased;
                _ = signal.wait_for(|draining| *draining) => true,
                () = in_flight.quiet(idle) => false,
            }
        };
        let draining = match beside(conn.as_mut(), watched).await {
            First::Main(served) => return served.map_err(Into::into),
            First::Side(draining) => draining,
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
pub(super) trait GracefulH2<Failure>: Future<Output = Result<(), Failure>> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Poll;

    /// A connection woken by its sockets again and again leaves its watch alone: the side
    /// future is polled once, to register, and not at each of the main future's wake-ups.
    #[tokio::test]
    async fn the_watch_is_polled_only_when_it_was_woken() {
        let side_polls = AtomicUsize::new(0);
        let mut wake_ups = 0;
        let main = std::future::poll_fn(|cx| {
            if wake_ups == 100 {
                return Poll::Ready("served");
            }
            wake_ups += 1;
            cx.waker().wake_by_ref();
            Poll::Pending
        });
        let side = std::future::poll_fn(|_| {
            side_polls.fetch_add(1, Ordering::Relaxed);
            Poll::<()>::Pending
        });
        assert!(matches!(beside(main, side).await, First::Main("served")));
        assert_eq!(side_polls.load(Ordering::Relaxed), 1);
    }

    /// The twin: a side future that is woken (the drain signal, the idle timer) ends the wait
    /// while the connection still waits for its client.
    #[tokio::test]
    async fn a_woken_watch_ends_the_wait() {
        let (drain, drained) = tokio::sync::oneshot::channel::<&str>();
        let main = std::future::pending::<()>();
        let waiting = tokio::spawn(async move {
            match beside(main, drained).await {
                First::Side(Ok(said)) => said,
                _ => "something else",
            }
        });
        tokio::task::yield_now().await;
        drain.send("drain").unwrap();
        assert_eq!(waiting.await.unwrap(), "drain");
    }
}
