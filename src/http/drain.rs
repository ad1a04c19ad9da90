//! Reading a request body that certgate answers itself, and getting rid of one it refuses,
//! without breaking the client.
//!
//! A response sent while the client is still sending its body is legal, but clients handle it
//! badly: over HTTP/2 the server then resets the stream, and curl 7.88 drops the response it was
//! given (exit 92); over HTTP/1.1 closing a connection with unread data makes the kernel send a
//! TCP reset that can destroy the response in the client's buffers. So a refusal first reads a
//! small body to its end, and a body over an endpoint's limit is answered 413 while the rest is
//! read and thrown away in the background, up to a bound ("lingering close", as nginx does).

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;

/// The most of a refused request's body that is read (and thrown away) before answering.
pub const DISCARD_BEFORE_REFUSAL: usize = 64 * 1024;

/// How much of an oversized body is read and thrown away after the 413, and for how long, so
/// that the client sees the answer; past either bound the stream is closed.
const LINGER_BYTES: u64 = 8 << 20;
const LINGER_TIME: Duration = Duration::from_secs(10);

/// How long a refusal waits for a slow client's small body.
const DISCARD_TIME: Duration = Duration::from_secs(10);

/// Why a body could not be read.
#[derive(Debug)]
pub enum BodyError {
    /// Over the limit; the rest of the body, to [`linger`] on.
    TooLarge(Incoming),
    /// The client broke off or sent something unreadable.
    Broken(hyper::Error),
    /// The client stopped sending for longer than allowed.
    Stalled,
}

/// Reads a whole body of at most `limit` bytes, each piece within `stall` of the last: a client
/// that stops sending half-way does not hold its connection, and a task, for ever.
pub async fn read_to_limit(
    mut body: Incoming,
    limit: usize,
    stall: Duration,
) -> Result<Bytes, BodyError> {
    let mut collected = BytesMut::new();
    loop {
        let Ok(next) = tokio::time::timeout(stall, body.frame()).await else {
            return Err(BodyError::Stalled);
        };
        let Some(frame) = next else { break };
        let frame = frame.map_err(BodyError::Broken)?;
        if let Ok(data) = frame.into_data() {
            if collected.len() + data.len() > limit {
                return Err(BodyError::TooLarge(body));
            }
            collected.extend_from_slice(&data);
        }
    }
    Ok(collected.freeze())
}

/// Before a refusal: reads and throws away up to [`DISCARD_BEFORE_REFUSAL`] bytes, so that a
/// client whose small body is still on its way gets the answer cleanly. A larger body is closed
/// with the answer.
pub async fn discard_before_refusal(body: Incoming) {
    if http_body::Body::is_end_stream(&body) {
        return;
    }
    let _ = tokio::time::timeout(
        DISCARD_TIME,
        read_to_limit(body, DISCARD_BEFORE_REFUSAL, DISCARD_TIME),
    )
    .await;
}

/// After a 413: reads and throws away the rest of the body in the background, within bounds.
pub fn linger(mut body: Incoming) {
    tokio::spawn(async move {
        let drained = async {
            let mut seen: u64 = 0;
            while let Some(Ok(frame)) = body.frame().await {
                if let Some(data) = frame.data_ref() {
                    seen += data.len() as u64;
                    if seen > LINGER_BYTES {
                        break;
                    }
                }
            }
        };
        let _ = tokio::time::timeout(LINGER_TIME, drained).await;
    });
}
