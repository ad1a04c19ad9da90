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

/// A client's request body on its way to the application, which fails if the client stops
/// sending for longer than its connection may stay idle: a stalled upload holds neither the
/// client's connection nor an upstream connection for ever. The timer is made only when the
/// client keeps the proxy waiting, so a request without a body costs nothing.
pub struct ClientBody {
    body: Incoming,
    stall: std::time::Duration,
    waiting: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl ClientBody {
    /// `body`, allowed to pause at most `stall` between two frames.
    pub fn new(body: Incoming, stall: std::time::Duration) -> Self {
        Self {
            body,
            stall,
            waiting: None,
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
                this.waiting = None;
                Poll::Ready(frame.map(|frame| frame.map_err(Into::into)))
            }
            Poll::Pending => {
                let stall = this.stall;
                let waiting = this
                    .waiting
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(stall)));
                match waiting.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyStalled)))),
                    Poll::Pending => Poll::Pending,
                }
            }
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
