//! certgate's HTTP/1.1 client for the application: one request at a time on a kept-alive
//! connection, driven by the request's own task.
//!
//! Why not hyper's client: a proxied request went through two of hyper's HTTP/1.1 codecs and
//! dispatchers, the upstream one in a task of its own, joined to the request by a channel and a
//! oneshot. That task and its hand-offs were a quarter of every request's instructions
//! (BENCHMARKS.md, the fifth round of issue 12). Here the request's head is written straight
//! from its parsed form into one buffer, the answer's head is parsed by `httparse` (hyper's own
//! parser) into the `HeaderMap` the client side sends on, and the body is read in the task that
//! sends it to the client.
//!
//! What it holds to, since a proxy and its application must never read one message two ways
//! (RFC 9112 §6.3, §11.2): a request is framed by certgate alone (`Content-Length` from the
//! body's exact size, else chunked; the client's framing headers are never copied); an answer
//! with both `Transfer-Encoding` and `Content-Length` is read by the former, loses the latter,
//! and closes its connection; a `Content-Length` that is not one number is refused; a chunked
//! body wants CRLF everywhere; an answer whose length only its end tells, an answer with
//! `Connection: close`, an HTTP/1.0 answer, or one followed by bytes nobody asked for never
//! leaves its connection for another request.

use std::future::poll_fn;
use std::io::{self, Write as _};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker, ready};
use std::time::Duration;

use bytes::{Buf as _, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Response, StatusCode, Version};
use http_body::{Body as _, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::Body;
use super::body::PauseLimit;

/// The largest answer head read (hyper's client allowed about as much by default).
const MAX_HEAD: usize = 64 * 1024;
/// The most header lines in an answer's head (hyper's default).
const MAX_HEADERS: usize = 100;
/// Room made in the read buffer before each read.
const READ_SIZE: usize = 8 * 1024;
/// The longest chunk-size line (the size and its extensions).
const MAX_CHUNK_LINE: usize = 4096;
/// The most bytes of trailer fields after a chunked body (read and dropped).
const MAX_TRAILERS: usize = 16 * 1024;

/// The byte stream to the application.
pub enum Io {
    /// `http://`.
    Plain(TcpStream),
    /// `https://` (boxed: a TLS stream is large, and a pool keeps many).
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            Io::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(tcp) => Pin::new(tcp).poll_write(cx, buf),
            Io::Tls(tls) => Pin::new(tls.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            Io::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(tcp) => Pin::new(tcp).poll_shutdown(cx),
            Io::Tls(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
        }
    }
}

/// A connection to the application, with what has been read from it and not yet used. After a
/// protocol switch (101) it is the tunnel's upstream side, the bytes read past the head first.
pub struct Conn {
    io: Io,
    read: BytesMut,
    spans: Spans,
    /// Bytes read over the connection's life: whether an exchange got anything at all.
    received: u64,
}

impl Conn {
    /// A new connection.
    pub fn new(io: Io) -> Box<Self> {
        Box::new(Self {
            io,
            read: BytesMut::new(),
            spans: Vec::new(),
            received: 0,
        })
    }

    /// Whether an idle connection can carry a request: the application has neither closed it
    /// nor sent anything unasked (a look at the socket, without waiting).
    pub fn is_usable(&mut self) -> bool {
        if !self.read.is_empty() {
            return false;
        }
        let mut probe = [0u8; 1];
        let mut buf = ReadBuf::new(&mut probe);
        let mut cx = Context::from_waker(Waker::noop());
        Pin::new(&mut self.io)
            .poll_read(&mut cx, &mut buf)
            .is_pending()
    }

    /// Reads more; `0` is the end of the stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<Result<usize, Error>> {
        if self.read.capacity() - self.read.len() < READ_SIZE / 8 {
            self.read.reserve(READ_SIZE);
        }
        let read = ready!(tokio_util::io::poll_read_buf(
            Pin::new(&mut self.io),
            cx,
            &mut self.read
        ))
        .map_err(Error::Read)?;
        self.received += read as u64;
        Poll::Ready(Ok(read))
    }

    /// Up to `left` bytes of a body (what has been read, else the next read); `left` counts
    /// them down. The stream's end first is an answer cut short.
    fn poll_take(&mut self, cx: &mut Context<'_>, left: &mut u64) -> Poll<Result<Bytes, Error>> {
        if self.read.is_empty() && ready!(self.poll_fill(cx))? == 0 {
            return Poll::Ready(Err(Error::Closed));
        }
        let take = self
            .read
            .len()
            .min(usize::try_from(*left).unwrap_or(usize::MAX));
        *left -= take as u64;
        Poll::Ready(Ok(self.read.split_to(take).freeze()))
    }

    /// Reads until an answer's head is complete; informational answers (1xx but 101) are
    /// read and dropped.
    fn poll_head(&mut self, cx: &mut Context<'_>) -> Poll<Result<Head, Error>> {
        loop {
            // Parsed only when there is something to parse: each parse sets up room for a
            // hundred header lines.
            if !self.read.is_empty() {
                match parse_head(&mut self.read, &mut self.spans)? {
                    Some(head)
                        if head.status.is_informational()
                            && head.status != StatusCode::SWITCHING_PROTOCOLS =>
                    {
                        continue;
                    }
                    Some(head) => return Poll::Ready(Ok(head)),
                    None => {}
                }
            }
            if ready!(self.poll_fill(cx))? == 0 {
                return Poll::Ready(Err(Error::Closed));
            }
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.read.is_empty() {
            return Pin::new(&mut this.io).poll_read(cx, buf);
        }
        let n = this.read.len().min(buf.remaining());
        buf.put_slice(&this.read[..n]);
        this.read.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// Why an exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Writing the request failed.
    #[error("writing to the application failed")]
    Write(#[source] io::Error),
    /// Reading the answer failed.
    #[error("reading from the application failed")]
    Read(#[source] io::Error),
    /// The stream ended before the answer did.
    #[error("the application closed the connection before its answer was complete")]
    Closed,
    /// The answer is not HTTP/1.1 certgate passes on.
    #[error("the application's answer is not valid HTTP/1.1: {0}")]
    Invalid(&'static str),
    /// The request body's own length and its framing disagree.
    #[error("the request body's length differs from its Content-Length")]
    BodyLength,
    /// The client's body failed (it may have stalled).
    #[error("the request body failed")]
    Body(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The application sent nothing more of its answer's body for the request timeout.
    #[error("the application sent nothing of its answer for {0:?}")]
    Stalled(Duration),
}

impl Error {
    /// Whether the connection failed before the application answered anything: on a reused
    /// connection, that is an application that closed it while it was idle.
    fn is_connection_lost(&self) -> bool {
        matches!(self, Error::Write(_) | Error::Read(_) | Error::Closed)
    }
}

/// How a request's body goes on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// No body and no length header.
    None,
    /// `Content-Length`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

impl Framing {
    /// certgate's framing for a request: the body's exact size when known, else chunked. An
    /// empty body is announced (`Content-Length: 0`) when the client announced it or the
    /// method carries a body by nature.
    pub fn of(method: &Method, headers: &HeaderMap, body: &Body) -> Self {
        let exact = if body.is_end_stream() {
            Some(0)
        } else {
            body.size_hint().exact()
        };
        match exact {
            Some(0)
                if !headers.contains_key(header::CONTENT_LENGTH)
                    && !matches!(*method, Method::POST | Method::PUT | Method::PATCH) =>
            {
                Framing::None
            }
            Some(length) => Framing::Length(length),
            None => Framing::Chunked,
        }
    }
}

/// Writes a request head: the request line (origin form), every header but the client's
/// framing (`Content-Length`, `Transfer-Encoding`: certgate frames the body itself), the header
/// lines `extra` (`name: value\r\n` each), then certgate's framing.
pub fn encode_head(
    method: &Method,
    target: &str,
    headers: &HeaderMap,
    extra: &[u8],
    framing: Framing,
) -> Vec<u8> {
    let mut size = method.as_str().len() + target.len() + extra.len() + 16 + 40;
    for (name, value) in headers {
        size += name.as_str().len() + value.len() + 4;
    }
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    // An h2 `:path` may be a bare query; an origin-form target starts with the path.
    if target.starts_with('?') {
        out.push(b'/');
    }
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in headers {
        if name == header::CONTENT_LENGTH || name == header::TRANSFER_ENCODING {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(extra);
    match framing {
        Framing::None => {}
        Framing::Length(length) => {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(itoa::Buffer::new().format(length).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        Framing::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// A request being written: its head, then its body in certgate's framing.
struct Upload {
    out: Vec<u8>,
    written: usize,
    flushed: bool,
    body: Option<Body>,
    framing: Framing,
    /// How long the rest may take once the answer has been read.
    after_answer: Duration,
}

impl Upload {
    fn new(head: Vec<u8>, body: Body, framing: Framing, after_answer: Duration) -> Self {
        Self {
            out: head,
            written: 0,
            flushed: false,
            body: (framing != Framing::None).then_some(body),
            framing,
            after_answer,
        }
    }

    /// Writes what there is; ready once the whole request is written and flushed.
    fn poll(&mut self, io: &mut Io, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        loop {
            while self.written < self.out.len() {
                let n = ready!(Pin::new(&mut *io).poll_write(cx, &self.out[self.written..]))
                    .map_err(Error::Write)?;
                if n == 0 {
                    return Poll::Ready(Err(Error::Write(io::ErrorKind::WriteZero.into())));
                }
                self.written += n;
            }
            if !self.out.is_empty() {
                self.out.clear();
                self.written = 0;
                self.flushed = false;
            }
            if !self.flushed {
                ready!(Pin::new(&mut *io).poll_flush(cx)).map_err(Error::Write)?;
                self.flushed = true;
            }
            let Some(body) = self.body.as_mut() else {
                return Poll::Ready(Ok(()));
            };
            match ready!(Pin::new(body).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    // Trailers are not passed on.
                    if let Ok(data) = frame.into_data() {
                        self.frame(&data)?;
                    }
                }
                Some(Err(err)) => return Poll::Ready(Err(Error::Body(err))),
                None => {
                    self.body = None;
                    match self.framing {
                        Framing::Length(0) | Framing::None => {}
                        Framing::Length(_) => return Poll::Ready(Err(Error::BodyLength)),
                        Framing::Chunked => self.out.extend_from_slice(b"0\r\n\r\n"),
                    }
                }
            }
        }
    }

    fn frame(&mut self, data: &[u8]) -> Result<(), Error> {
        if data.is_empty() {
            return Ok(());
        }
        match &mut self.framing {
            Framing::Length(left) => {
                *left = left
                    .checked_sub(data.len() as u64)
                    .ok_or(Error::BodyLength)?;
                self.out.extend_from_slice(data);
            }
            Framing::Chunked => {
                let _ = write!(self.out, "{:x}\r\n", data.len());
                self.out.extend_from_slice(data);
                self.out.extend_from_slice(b"\r\n");
            }
            Framing::None => return Err(Error::BodyLength),
        }
        Ok(())
    }
}

/// An answer's head.
struct Head {
    status: StatusCode,
    version: Version,
    headers: HeaderMap,
    framing: Framed,
}

/// Where each header line of a head lies in it (name and value: offset, length), kept with the
/// connection: the values share the head's bytes once it is frozen, and a parse sets up no room
/// for lines it does not have.
type Spans = Vec<[u32; 4]>;

/// Parses an answer's head from the start of `read` and takes it out, or `None` while it is
/// incomplete.
fn parse_head(read: &mut BytesMut, spans: &mut Spans) -> Result<Option<Head>, Error> {
    spans.clear();
    let mut framing = Framed::default();
    let (length, code, minor) = {
        let mut lines = [const { std::mem::MaybeUninit::uninit() }; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut []);
        let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
            &mut response,
            read,
            &mut lines,
        );
        let length = match parsed {
            Ok(httparse::Status::Complete(length)) => length,
            Ok(httparse::Status::Partial) if read.len() > MAX_HEAD => {
                return Err(Error::Invalid("its head is too large"));
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => {
                return Err(Error::Invalid("its head has too many header lines"));
            }
            Err(_) => return Err(Error::Invalid("its head cannot be parsed")),
        };
        if length > MAX_HEAD {
            return Err(Error::Invalid("its head is too large"));
        }
        let base = read.as_ptr() as usize;
        // Within the head, which is at most MAX_HEAD (< 4 GiB) long.
        let offset = |part: &[u8]| u32::try_from(part.as_ptr() as usize - base).unwrap_or(0);
        let length_of = |part: &[u8]| u32::try_from(part.len()).unwrap_or(0);
        for line in response.headers.iter() {
            let name = line.name.as_bytes();
            framing.note(name);
            spans.push([
                offset(name),
                length_of(name),
                offset(line.value),
                length_of(line.value),
            ]);
        }
        (
            length,
            response.code.unwrap_or(0),
            response.version.unwrap_or(0),
        )
    };
    let head = read.split_to(length).freeze();
    let status = StatusCode::from_u16(code).map_err(|_| Error::Invalid("its status code"))?;
    let version = match minor {
        1 => Version::HTTP_11,
        _ => Version::HTTP_10,
    };
    let mut headers = HeaderMap::with_capacity(spans.len());
    for &[name_at, name_len, value_at, value_len] in spans.iter() {
        let (name_at, name_len) = (name_at as usize, name_len as usize);
        let (value_at, value_len) = (value_at as usize, value_len as usize);
        let name = HeaderName::from_bytes(&head[name_at..name_at + name_len])
            .map_err(|_| Error::Invalid("a header name"))?;
        let value = HeaderValue::from_maybe_shared(head.slice(value_at..value_at + value_len))
            .map_err(|_| Error::Invalid("a header value"))?;
        headers.append(name, value);
    }
    Ok(Some(Head {
        status,
        version,
        headers,
        framing,
    }))
}

/// Which of the headers that decide an answer's framing and keep-alive it has: the others are
/// not looked up.
#[derive(Default)]
struct Framed {
    connection: bool,
    transfer_encoding: bool,
}

impl Framed {
    fn note(&mut self, name: &[u8]) {
        if name.eq_ignore_ascii_case(b"connection") {
            self.connection = true;
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            self.transfer_encoding = true;
        }
    }
}

/// How an answer's body ends.
#[derive(Debug, PartialEq, Eq)]
enum Reading {
    /// After so many more bytes (0: no body).
    Length(u64),
    /// Chunked.
    Chunked(Chunk),
    /// At the end of the stream.
    UntilClose,
    /// A protocol switch: the connection is the tunnel's.
    Switched,
    /// Read to its end.
    Done,
}

#[derive(Debug, PartialEq, Eq)]
enum Chunk {
    Size,
    Data(u64),
    DataEnd,
    Trailers(usize),
}

/// RFC 9112 §6.3: how the answer to `request_method` with this head is framed, and whether its
/// connection can carry another request afterwards. Removes a `Content-Length` that
/// `Transfer-Encoding` overrides, so that nobody downstream reads the body by it.
fn reading(request_method: &Method, head: &mut Head) -> Result<(Reading, bool), Error> {
    let status = head.status;
    let mut keep_alive = head.version == Version::HTTP_11
        && !(head.framing.connection
            && head
                .headers
                .get_all(header::CONNECTION)
                .iter()
                .any(|value| has_token(value.as_bytes(), b"close")));
    if status == StatusCode::SWITCHING_PROTOCOLS {
        return Ok((Reading::Switched, false));
    }
    if *request_method == Method::HEAD
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Ok((Reading::Length(0), keep_alive));
    }
    if head.framing.transfer_encoding {
        let chunked_last = head
            .headers
            .get_all(header::TRANSFER_ENCODING)
            .iter()
            .next_back()
            .and_then(|value| value.as_bytes().rsplit(|b| *b == b',').next())
            .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        // RFC 9112 §6.1: an HTTP/1.0 message with Transfer-Encoding is faulty framing.
        if head.version != Version::HTTP_11 {
            return Err(Error::Invalid("an HTTP/1.0 answer with Transfer-Encoding"));
        }
        if head.headers.remove(header::CONTENT_LENGTH).is_some() {
            keep_alive = false;
        }
        return Ok(if chunked_last {
            (Reading::Chunked(Chunk::Size), keep_alive)
        } else {
            (Reading::UntilClose, false)
        });
    }
    let mut length = None;
    for value in head.headers.get_all(header::CONTENT_LENGTH) {
        for part in value.as_bytes().split(|b| *b == b',') {
            let part = part.trim_ascii();
            let parsed = std::str::from_utf8(part)
                .ok()
                .filter(|text| !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|text| text.parse::<u64>().ok())
                .ok_or(Error::Invalid("its Content-Length is not a number"))?;
            if length.is_some_and(|seen| seen != parsed) {
                return Err(Error::Invalid("it has two different Content-Lengths"));
            }
            length = Some(parsed);
        }
    }
    Ok(match length {
        Some(length) => (Reading::Length(length), keep_alive),
        None => (Reading::UntilClose, false),
    })
}

/// Whether a comma-separated header value lists `token` (case-insensitively).
fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|b| *b == b',')
        .any(|part| part.trim_ascii().eq_ignore_ascii_case(token))
}

/// A chunk-size line without its CRLF: hexadecimal digits, then nothing or extensions.
fn chunk_size(line: &[u8]) -> Option<u64> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 16 {
        return None;
    }
    let size = u64::from_str_radix(std::str::from_utf8(&line[..digits]).ok()?, 16).ok()?;
    let rest = &line[digits..];
    // Only blanks (RFC 9112 BWS) may stand between the size and its extensions.
    let blanks = rest
        .iter()
        .take_while(|b| **b == b' ' || **b == b'\t')
        .count();
    let rest = &rest[blanks..];
    let clean = rest
        .iter()
        .all(|b| *b == b'\t' || (*b >= 0x20 && *b != 0x7f));
    (clean && (rest.is_empty() || rest[0] == b';')).then_some(size)
}

/// One CRLF-ended line at the start of `read`, without its CRLF; `Ok(None)` while incomplete.
fn line(read: &BytesMut, limit: usize) -> Result<Option<usize>, Error> {
    match read.iter().take(limit + 2).position(|b| *b == b'\n') {
        Some(end) if end > 0 && read[end - 1] == b'\r' => Ok(Some(end - 1)),
        Some(_) => Err(Error::Invalid("a bare line feed in its chunked body")),
        None if read.len() >= limit + 2 => Err(Error::Invalid("a chunk line too long")),
        None => Ok(None),
    }
}

/// Where a connection goes back when its answer has been read to its end (the pool).
pub trait ConnectionHome: Send + Sync {
    /// Takes the connection back for the next request.
    fn checkin(&self, conn: Box<Conn>);
}

/// Sends a request on `conn` and reads its answer's head; the body streams on from the
/// returned response. `head` is the encoded head ([`encode_head`]), `method` the request's.
///
/// A failure on a connection that had already carried requests and where nothing of an answer
/// arrived comes back as [`Failure::Lost`]: the application closed the idle connection, and the
/// caller may send the request again on another.
pub async fn exchange(
    mut conn: Box<Conn>,
    request: Outgoing,
    home: Arc<dyn ConnectionHome>,
) -> Result<Response<UpstreamBody>, Failure> {
    let Outgoing {
        head,
        body,
        framing,
        method,
        upload_after_answer,
    } = request;
    let received_before = conn.received;
    let mut upload = Upload::new(head, body, framing, upload_after_answer);
    let mut uploaded = false;
    let mut write_failed = None;
    let answered = poll_fn(|cx| {
        if !uploaded && write_failed.is_none() {
            match upload.poll(&mut conn.io, cx) {
                Poll::Ready(Ok(())) => uploaded = true,
                // The client's fault, not the application's: said at once.
                Poll::Ready(Err(err @ (Error::Body(_) | Error::BodyLength))) => {
                    return Poll::Ready(Err(err));
                }
                // The application may have answered and closed (413, say): read its answer.
                Poll::Ready(Err(err)) => write_failed = Some(err),
                Poll::Pending => {}
            }
        }
        conn.poll_head(cx)
    })
    .await;
    let mut head = match answered {
        Ok(head) => head,
        Err(err) => {
            // Informational answers count: the application did answer something.
            let received_nothing = conn.received == received_before;
            let err = match (err, write_failed) {
                (Error::Closed | Error::Read(_), Some(write)) => write,
                (err, _) => err,
            };
            return Err(if received_nothing && err.is_connection_lost() {
                Failure::Lost(err)
            } else {
                Failure::Failed(err)
            });
        }
    };
    let (reading, keep_alive) = reading(&method, &mut head).map_err(Failure::Failed)?;
    let unfinished = (!uploaded && write_failed.is_none()).then(|| Box::new(upload));
    let mut response = Response::new(UpstreamBody {
        conn: Some(conn),
        reading,
        keep_alive: keep_alive && write_failed.is_none(),
        upload: unfinished,
        home: Some(home),
        held: None,
        stall: PauseLimit::new(upload_after_answer),
    });
    *response.status_mut() = head.status;
    *response.version_mut() = head.version;
    *response.headers_mut() = head.headers;
    Ok(response)
}

/// A request as [`exchange`] sends it.
pub struct Outgoing {
    /// The encoded head ([`encode_head`]).
    pub head: Vec<u8>,
    /// The body, sent in `framing`.
    pub body: Body,
    /// How the body is framed.
    pub framing: Framing,
    /// The request's method (the answer to a `HEAD` has no body).
    pub method: Method,
    /// How long the rest of an upload the application answered before reading it may take to
    /// send; then the connection is closed.
    pub upload_after_answer: Duration,
}

/// Why [`exchange`] gave no answer.
#[derive(Debug)]
pub enum Failure {
    /// The connection was lost before anything of an answer arrived.
    Lost(Error),
    /// Anything else.
    Failed(Error),
}

impl Failure {
    /// The error.
    pub fn into_error(self) -> Error {
        match self {
            Failure::Lost(err) | Failure::Failed(err) => err,
        }
    }
}

/// An answer's body, read from the application as the client side sends it on. Its connection
/// goes home once the body has been read to its end; a body abandoned half-way closes its
/// connection, which could not carry another request anyway.
pub struct UpstreamBody {
    conn: Option<Box<Conn>>,
    reading: Reading,
    keep_alive: bool,
    /// The rest of a request body the application answered before reading (rare).
    upload: Option<Box<Upload>>,
    home: Option<Arc<dyn ConnectionHome>>,
    /// Told when the body has been sent to its end or dropped (the client connection's count of
    /// requests in flight).
    held: Option<Arc<dyn InFlight>>,
    /// How long the application may keep certgate waiting for more of the body (the request
    /// timeout, as nginx's `proxy_read_timeout`): a stalled application holds neither the
    /// client's connection nor its own for ever.
    stall: PauseLimit,
}

/// A count of requests in flight that a streamed answer keeps up until its last byte.
pub trait InFlight: Send + Sync {
    /// The answer counted has been sent to its end, or dropped.
    fn ended(&self);
}

impl UpstreamBody {
    /// Tells `count` when the body has been sent to its end or dropped: a streamed answer is in
    /// flight until its last byte, not only until its head. (An `Arc` the connection already
    /// has: no allocation per request.)
    pub fn hold(&mut self, count: Arc<dyn InFlight>) {
        self.held = Some(count);
    }

    /// The application keeps certgate waiting for more of the body: once it has for the limit,
    /// the body fails and its connection closes.
    fn poll_stall(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        ready!(self.stall.poll_exceeded(cx));
        let limit = self.stall.limit();
        tracing::warn!(
            timeout = ?limit,
            "the application stopped sending its answer; the answer is cut off"
        );
        self.conn = None;
        self.upload = None;
        self.reading = Reading::Done;
        Poll::Ready(Some(Err(Error::Stalled(limit))))
    }

    /// After a protocol switch (101): the connection, now the application's side of a tunnel.
    pub fn take_switched(&mut self) -> Option<Box<Conn>> {
        if self.reading != Reading::Switched {
            return None;
        }
        self.reading = Reading::Done;
        self.conn.take()
    }

    /// The body has been read to its end: the connection goes home when it can carry another
    /// request, or finishes an upload the application answered early, or closes.
    fn finish(&mut self) {
        self.reading = Reading::Done;
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        if let Some(mut upload) = self.upload.take() {
            // The application answered before reading the whole request; it gets the rest, for
            // as long as a request may take, and the connection closes after it (an application
            // that neither reads nor closes holds nothing for longer).
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                let limit = upload.after_answer;
                runtime.spawn(async move {
                    let sending = poll_fn(|cx| upload.poll(&mut conn.io, cx));
                    match tokio::time::timeout(limit, sending).await {
                        Ok(Ok(())) => {}
                        Ok(Err(err)) => {
                            tracing::debug!(error = %err, "the rest of an answered upload failed");
                        }
                        Err(_) => tracing::debug!(
                            "the rest of an answered upload did not go out in time; connection closed"
                        ),
                    }
                });
            }
            return;
        }
        if self.keep_alive && conn.read.is_empty() {
            if let Some(home) = self.home.take() {
                home.checkin(conn);
            }
        }
    }

    fn poll_data(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, Error>>> {
        let Some(conn) = self.conn.as_mut() else {
            return Poll::Ready(None);
        };
        if let Some(upload) = self.upload.as_mut() {
            match upload.poll(&mut conn.io, cx) {
                Poll::Ready(Ok(())) => self.upload = None,
                Poll::Ready(Err(err)) => {
                    tracing::debug!(error = %err, "the rest of an answered upload failed");
                    self.upload = None;
                    self.keep_alive = false;
                }
                Poll::Pending => {}
            }
        }
        loop {
            match &mut self.reading {
                Reading::Done | Reading::Switched | Reading::Length(0) => {
                    return Poll::Ready(None);
                }
                Reading::Length(left) => {
                    let data = ready!(conn.poll_take(cx, left))?;
                    return Poll::Ready(Some(Ok(data)));
                }
                Reading::UntilClose => {
                    if conn.read.is_empty() && ready!(conn.poll_fill(cx))? == 0 {
                        self.keep_alive = false;
                        return Poll::Ready(None);
                    }
                    return Poll::Ready(Some(Ok(conn.read.split().freeze())));
                }
                Reading::Chunked(chunk) => match chunk {
                    Chunk::Size => match line(&conn.read, MAX_CHUNK_LINE)? {
                        Some(end) => {
                            let size = chunk_size(&conn.read[..end])
                                .ok_or(Error::Invalid("a chunk size"))?;
                            conn.read.advance(end + 2);
                            *chunk = if size == 0 {
                                Chunk::Trailers(0)
                            } else {
                                Chunk::Data(size)
                            };
                        }
                        None => {
                            if ready!(conn.poll_fill(cx))? == 0 {
                                return Poll::Ready(Some(Err(Error::Closed)));
                            }
                        }
                    },
                    Chunk::Data(left) => {
                        let data = ready!(conn.poll_take(cx, left))?;
                        if *left == 0 {
                            *chunk = Chunk::DataEnd;
                        }
                        return Poll::Ready(Some(Ok(data)));
                    }
                    Chunk::DataEnd => {
                        if conn.read.len() < 2 {
                            if ready!(conn.poll_fill(cx))? == 0 {
                                return Poll::Ready(Some(Err(Error::Closed)));
                            }
                            continue;
                        }
                        if &conn.read[..2] != b"\r\n" {
                            return Poll::Ready(Some(Err(Error::Invalid(
                                "a chunk not ended by CRLF",
                            ))));
                        }
                        conn.read.advance(2);
                        *chunk = Chunk::Size;
                    }
                    Chunk::Trailers(seen) => {
                        let limit = MAX_TRAILERS.saturating_sub(*seen);
                        match line(&conn.read, limit)? {
                            Some(0) => {
                                conn.read.advance(2);
                                self.reading = Reading::Done;
                                return Poll::Ready(None);
                            }
                            Some(end) => {
                                *seen += end + 2;
                                conn.read.advance(end + 2);
                            }
                            None => {
                                if ready!(conn.poll_fill(cx))? == 0 {
                                    return Poll::Ready(Some(Err(Error::Closed)));
                                }
                            }
                        }
                    }
                },
            }
        }
    }
}

impl http_body::Body for UpstreamBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        let Poll::Ready(read) = this.poll_data(cx) else {
            return this.poll_stall(cx);
        };
        this.stall.frame();
        match read {
            Some(Ok(data)) => {
                if matches!(this.reading, Reading::Length(0)) {
                    this.finish();
                }
                Poll::Ready(Some(Ok(Frame::data(data))))
            }
            Some(Err(err)) => {
                // A broken body leaves its connection unusable.
                this.conn = None;
                this.upload = None;
                this.reading = Reading::Done;
                Poll::Ready(Some(Err(err)))
            }
            None => {
                if this.reading != Reading::Switched {
                    this.finish();
                }
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.reading, Reading::Done | Reading::Length(0))
    }

    fn size_hint(&self) -> SizeHint {
        match self.reading {
            Reading::Length(left) => SizeHint::with_exact(left),
            Reading::Done | Reading::Switched => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        if let Some(count) = self.held.take() {
            count.ended();
        }
        // An empty body may never be polled (its end is known from its head).
        if matches!(self.reading, Reading::Length(0)) {
            self.finish();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(text: &str) -> Result<Option<Head>, Error> {
        parse_head(&mut BytesMut::from(text.as_bytes()), &mut Vec::new())
    }

    fn framing_of(text: &str, method: Method) -> Result<(Reading, bool), Error> {
        let mut parsed = head(text)?.expect("a complete head");
        reading(&method, &mut parsed)
    }

    #[test]
    fn an_answer_head_is_parsed_and_taken_out_of_the_buffer() {
        let mut read = BytesMut::from(
            &b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-A: 1\r\nX-A: 2\r\n\r\nbody"[..],
        );
        let parsed = parse_head(&mut read, &mut Vec::new()).unwrap().unwrap();
        assert_eq!(parsed.status, 200);
        assert_eq!(parsed.headers["content-type"], "text/plain");
        assert_eq!(parsed.headers.get_all("x-a").iter().count(), 2);
        assert_eq!(&read[..], b"body");
        assert!(
            head("HTTP/1.1 200 OK\r\nContent-Type: te")
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn malformed_or_oversized_heads_are_refused() {
        for bad in [
            "HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
            "HTTP/1.1 2000 OK\r\n\r\n",
            "HTTP/2 200 OK\r\n\r\n",
            "HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n",
        ] {
            assert!(head(bad).is_err(), "{bad:?}");
        }
        let many: String = (0..=MAX_HEADERS).map(|i| format!("X-{i}: v\r\n")).collect();
        assert!(head(&format!("HTTP/1.1 200 OK\r\n{many}\r\n")).is_err());
        let huge = format!("HTTP/1.1 200 OK\r\nX: {}", "a".repeat(MAX_HEAD + 1));
        assert!(head(&huge).is_err());
    }

    #[test]
    fn answers_are_framed_as_rfc_9112_says() {
        let get = || Method::GET;
        assert_eq!(
            framing_of("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", get()).unwrap(),
            (Reading::Length(5), true)
        );
        assert_eq!(
            framing_of("HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n", get()).unwrap(),
            (Reading::Length(5), true)
        );
        assert_eq!(
            framing_of("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", Method::HEAD).unwrap(),
            (Reading::Length(0), true)
        );
        assert_eq!(
            framing_of(
                "HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n",
                get()
            )
            .unwrap(),
            (Reading::Length(0), true)
        );
        assert_eq!(
            framing_of(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                get()
            )
            .unwrap(),
            (Reading::Chunked(Chunk::Size), true)
        );
        assert_eq!(
            framing_of("HTTP/1.1 200 OK\r\n\r\n", get()).unwrap(),
            (Reading::UntilClose, false)
        );
        assert_eq!(
            framing_of("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", get()).unwrap(),
            (Reading::UntilClose, false)
        );
        assert_eq!(
            framing_of(
                "HTTP/1.1 200 OK\r\nConnection: keep-alive, close\r\nContent-Length: 0\r\n\r\n",
                get()
            )
            .unwrap(),
            (Reading::Length(0), false)
        );
        assert_eq!(
            framing_of("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", get()).unwrap(),
            (Reading::Length(0), false)
        );
        assert!(
            framing_of(
                "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                get()
            )
            .is_err()
        );
    }

    #[test]
    fn transfer_encoding_overrides_content_length_removes_it_and_closes() {
        let mut parsed =
            head("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n")
                .unwrap()
                .unwrap();
        let (read, keep_alive) = reading(&Method::GET, &mut parsed).unwrap();
        assert_eq!(read, Reading::Chunked(Chunk::Size));
        assert!(!keep_alive);
        assert!(!parsed.headers.contains_key(header::CONTENT_LENGTH));
    }

    #[test]
    fn content_lengths_that_are_not_one_number_are_refused() {
        for bad in [
            "5, 6",
            "-1",
            "+5",
            "0x10",
            "",
            "5 5",
            "99999999999999999999999",
        ] {
            let text = format!("HTTP/1.1 200 OK\r\nContent-Length: {bad}\r\n\r\n");
            assert!(framing_of(&text, Method::GET).is_err(), "{bad:?}");
        }
        assert!(
            framing_of(
                "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
                Method::GET
            )
            .is_err()
        );
    }

    #[test]
    fn chunk_size_lines_are_read_strictly() {
        assert_eq!(chunk_size(b"1a"), Some(26));
        assert_eq!(chunk_size(b"0"), Some(0));
        assert_eq!(chunk_size(b"5;name=value"), Some(5));
        assert_eq!(chunk_size(b"5 ;ext"), Some(5));
        for bad in [
            &b""[..],
            b"g",
            b"5 6",
            b"-5",
            b"0x5",
            b"11111111111111111",
            b"5;a\x00",
            b"5\r",
            b"5\x0c;x",
        ] {
            assert_eq!(chunk_size(bad), None, "{bad:?}");
        }
        assert!(line(&BytesMut::from(&b"5\n"[..]), MAX_CHUNK_LINE).is_err());
        assert_eq!(
            line(&BytesMut::from(&b"5\r\nab"[..]), MAX_CHUNK_LINE).unwrap(),
            Some(1)
        );
        assert_eq!(
            line(&BytesMut::from(&b"5"[..]), MAX_CHUNK_LINE).unwrap(),
            None
        );
        let long = BytesMut::from(vec![b'1'; MAX_CHUNK_LINE + 2].as_slice());
        assert!(line(&long, MAX_CHUNK_LINE).is_err());
    }

    #[test]
    fn the_request_head_is_framed_by_certgate_alone() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("app"));
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("999"));
        headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        headers.append("x-a", HeaderValue::from_static("1"));
        headers.append("x-a", HeaderValue::from_static("2"));
        let head = encode_head(
            &Method::POST,
            "/p?q=1",
            &headers,
            b"x-client-verify: NONE\r\n",
            Framing::Length(3),
        );
        assert_eq!(
            String::from_utf8(head).unwrap(),
            "POST /p?q=1 HTTP/1.1\r\nhost: app\r\nx-a: 1\r\nx-a: 2\r\nx-client-verify: NONE\r\ncontent-length: 3\r\n\r\n"
        );
        let chunked = encode_head(&Method::PUT, "/", &HeaderMap::new(), b"", Framing::Chunked);
        assert!(
            String::from_utf8(chunked)
                .unwrap()
                .ends_with("\r\ntransfer-encoding: chunked\r\n\r\n")
        );
        let get = encode_head(&Method::GET, "/", &HeaderMap::new(), b"", Framing::None);
        assert_eq!(get, b"GET / HTTP/1.1\r\n\r\n");
        let query = encode_head(&Method::GET, "?q=1", &HeaderMap::new(), b"", Framing::None);
        assert_eq!(query, b"GET /?q=1 HTTP/1.1\r\n\r\n");
    }

    /// Mutated answers (bytes flipped, cut, repeated) never panic the head parser, the framing
    /// decision or the chunk-line reader: each is parsed, refused, or waits for more. A cheap
    /// stand-in for a fuzzer, deterministic so that a failure repeats.
    #[test]
    fn mutated_answers_are_parsed_or_refused_never_a_panic() {
        let seeds: [&[u8]; 4] = [
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\nhello",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 3\r\n\r\n5;x=y\r\nhello\r\n0\r\nT: 1\r\n\r\n",
            b"HTTP/1.0 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
            b"HTTP/1.1 304 Not Modified\r\nContent-Length: 1, 1\r\n\r\n",
        ];
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        // xorshift64, and a number below `n` from it.
        let mut pick = move |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            usize::try_from(state % n as u64).unwrap_or(0)
        };
        let specials = [
            b'\r', b'\n', b':', b' ', b'\t', b';', b',', b'0', b'f', 0, 0x7f, 0xff,
        ];
        for round in 0..20_000 {
            let seed = seeds[round % seeds.len()];
            let mut bytes = seed.to_vec();
            for _ in 0..pick(4) + 1 {
                let at = pick(bytes.len());
                match pick(4) {
                    0 => bytes[at] = specials[pick(specials.len())],
                    1 => bytes[at] = u8::try_from(pick(256)).unwrap_or(0),
                    2 => bytes.truncate(at.max(1)),
                    _ => {
                        let piece = bytes[at..].to_vec();
                        bytes.extend_from_slice(&piece);
                    }
                }
            }
            let mut read = BytesMut::from(bytes.as_slice());
            let mut spans = Vec::new();
            for method in [Method::GET, Method::HEAD] {
                if let Ok(Some(mut head)) = parse_head(&mut read.clone(), &mut spans) {
                    let _ = reading(&method, &mut head);
                }
            }
            while let Ok(Some(end)) = line(&read, MAX_CHUNK_LINE) {
                let _ = chunk_size(&read[..end]);
                read.advance(end + 2);
            }
        }
    }

    #[test]
    fn an_empty_body_is_announced_only_where_one_is_expected() {
        let empty = crate::http::empty();
        let mut with_length = HeaderMap::new();
        with_length.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        assert_eq!(
            Framing::of(&Method::GET, &HeaderMap::new(), &empty),
            Framing::None
        );
        assert_eq!(
            Framing::of(&Method::GET, &with_length, &empty),
            Framing::Length(0)
        );
        assert_eq!(
            Framing::of(&Method::POST, &HeaderMap::new(), &empty),
            Framing::Length(0)
        );
        let some = crate::http::full("abc");
        assert_eq!(
            Framing::of(&Method::GET, &HeaderMap::new(), &some),
            Framing::Length(3)
        );
    }
}
