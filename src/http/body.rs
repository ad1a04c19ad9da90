//! The body of every response and forwarded request.

use std::future::Future as _;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};

pub use super::client::UpstreamBody;
use http_body_util::{Either, Full};
use hyper::body::Incoming;

/// Every body on certgate's paths: a client's request streamed on to the application, the
/// application's response streamed back ([`UpstreamBody`]), or a small one certgate made (a
/// refusal, an API answer, the login form it read ahead, the echo).
///
/// An enum of the three rather than a boxed body: the proxy's request path allocates nothing
/// for it and dispatches statically.
pub type Body = Either<Either<ClientBody, UpstreamBody>, Full<Bytes>>;

/// The longest a body's sender may keep certgate waiting between two frames. The timer is made
/// the first time it does (a body that is there at once needs none), and set again for each
/// later wait.
pub(super) struct PauseLimit {
    limit: std::time::Duration,
    waiting: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Whether `waiting` runs for the present wait: a frame since disarms it.
    armed: bool,
}

impl PauseLimit {
    pub(super) fn new(limit: std::time::Duration) -> Self {
        Self {
            limit,
            waiting: None,
            armed: false,
        }
    }

    pub(super) fn limit(&self) -> std::time::Duration {
        self.limit
    }

    /// A frame arrived: the next wait is timed from its own start.
    pub(super) fn frame(&mut self) {
        self.armed = false;
    }

    /// The sender keeps certgate waiting: ready once it has done so for the limit.
    pub(super) fn poll_exceeded(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if !self.armed {
            // Beyond the clock's range: no limit.
            let Some(deadline) = tokio::time::Instant::now().checked_add(self.limit) else {
                return Poll::Pending;
            };
            match self.waiting.as_mut() {
                Some(waiting) => waiting.as_mut().reset(deadline),
                None => self.waiting = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
            self.armed = true;
        }
        match self.waiting.as_mut() {
            Some(waiting) => waiting.as_mut().poll(cx),
            None => Poll::Pending,
        }
    }
}

/// A client's request body on its way to the application, which fails if the client stops
/// sending for longer than its connection may stay idle: a stalled upload holds neither the
/// client's connection nor an upstream connection for ever.
pub struct ClientBody {
    body: Incoming,
    stall: PauseLimit,
}

impl ClientBody {
    /// `body`, allowed to pause at most `stall` between two frames.
    pub fn new(body: Incoming, stall: std::time::Duration) -> Self {
        Self {
            body,
            stall: PauseLimit::new(stall),
        }
    }
}

/// The client stopped sending its request body.
#[derive(Debug)]
pub struct BodyStalled;

impl std::fmt::Display for BodyStalled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the client stopped sending its request body")
    }
}

impl std::error::Error for BodyStalled {}

impl http_body::Body for ClientBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.body).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.stall.frame();
                Poll::Ready(frame.map(|frame| frame.map_err(Into::into)))
            }
            Poll::Pending => match this.stall.poll_exceeded(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyStalled)))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A body certgate made.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Either::Right(Full::new(bytes.into()))
}

/// An empty body.
pub fn empty() -> Body {
    full(Bytes::new())
}
