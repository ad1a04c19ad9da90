//! Reading HTTP/1.1 responses: the per-worker receive buffer, the response
//! head (parsed by httparse) and the body, discarded as it is framed
//! (Content-Length, chunked, or until EOF). hyper's client is not used for
//! HTTP/1.1 because the tool shares a core with the server under test and a
//! request written in the same flight as the TLS Finished, read back into a
//! reused buffer, costs the client least.

use std::ops::Range;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::error::{ErrorKind, OpError};

/// Response heads and chunk-size lines beyond this are treated as garbage.
const MAX_HEAD: usize = 64 * 1024;
const MAX_LINE: usize = 8 * 1024;
/// Header slots tried first, on the stack; a head with more is parsed again
/// with as many slots as it has lines.
const HEADER_SLOTS: usize = 64;

/// Per-worker receive buffer; `start..end` is unread data. Body bytes are
/// consumed in place and never copied, so the buffer only grows for
/// unusually large response heads.
pub(crate) struct RespBuf {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Head {
    pub(crate) status: u16,
    /// Whether the connection may carry another request.
    pub(crate) keep_alive: bool,
}

impl RespBuf {
    pub(crate) fn new() -> Self {
        Self::with_capacity(16 * 1024)
    }

    pub(crate) fn with_capacity(bytes: usize) -> Self {
        Self {
            buf: vec![0; bytes],
            start: 0,
            end: 0,
        }
    }

    pub(crate) fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
    }

    /// Whether bytes beyond the last response are buffered (for idle mode, a
    /// server that sent more than it was asked for).
    pub(crate) fn has_unread(&self) -> bool {
        self.start != self.end
    }

    fn data(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Reads more bytes; returns 0 at EOF.
    async fn fill<S: AsyncRead + Unpin>(&mut self, s: &mut S) -> Result<usize, OpError> {
        if self.start == self.end {
            self.clear();
        }
        if self.end == self.buf.len() {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else if self.buf.len() < MAX_HEAD {
                self.buf.resize(self.buf.len() * 2, 0);
            } else {
                return Err(OpError::bad("response head too large"));
            }
        }
        let n = s
            .read(&mut self.buf[self.end..])
            .await
            .map_err(|e| OpError::io(&e, false))?;
        self.end += n;
        Ok(n)
    }

    async fn fill_or_closed<S: AsyncRead + Unpin>(
        &mut self,
        s: &mut S,
        what: &'static str,
    ) -> Result<(), OpError> {
        if self.fill(s).await? == 0 {
            return Err(OpError::new(ErrorKind::Closed, what));
        }
        Ok(())
    }

    /// Returns the next CRLF-terminated line (without CRLF) as a range into
    /// `buf` and consumes it.
    async fn line<S: AsyncRead + Unpin>(&mut self, s: &mut S) -> Result<Range<usize>, OpError> {
        let mut scanned = 0;
        loop {
            if let Some(i) = find(&self.data()[scanned..], b"\r\n") {
                let range = self.start..self.start + scanned + i;
                self.start = range.end + 2;
                return Ok(range);
            }
            scanned = (self.end - self.start).saturating_sub(1);
            if scanned > MAX_LINE {
                return Err(OpError::bad("chunk line too long"));
            }
            self.fill_or_closed(s, "connection closed inside chunked body")
                .await?;
        }
    }

    async fn skip<S: AsyncRead + Unpin>(&mut self, s: &mut S, mut n: u64) -> Result<(), OpError> {
        loop {
            let avail = self.end - self.start;
            // All that is buffered when `n` is more than a usize can count.
            let take = usize::try_from(n).map_or(avail, |n| n.min(avail));
            self.start += take;
            n -= take as u64;
            if n == 0 {
                return Ok(());
            }
            self.fill_or_closed(s, "connection closed before end of body")
                .await?;
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

enum Framing {
    None,
    Length(u64),
    Chunked,
    UntilEof,
}

/// Maps httparse's complaint to the message the report shows as the
/// `bad_response` example.
fn head_error(e: httparse::Error) -> OpError {
    OpError::bad(match e {
        httparse::Error::Version => "not an HTTP/1.x status line",
        httparse::Error::Status => "bad status code",
        httparse::Error::HeaderName | httparse::Error::Token => "bad header name",
        httparse::Error::HeaderValue => "bad header value",
        httparse::Error::NewLine => "bad line ending in response head",
        // Not reached: the head is parsed again with a slot per line.
        httparse::Error::TooManyHeaders => "too many headers",
    })
}

/// Parses the response head at the start of `data`, which holds the whole
/// head (its empty line included), into status, body framing, connection
/// persistence and the head's length.
fn parse_head(data: &[u8]) -> Result<(Head, Framing, usize), OpError> {
    let mut slots = [httparse::EMPTY_HEADER; HEADER_SLOTS];
    let mut response = httparse::Response::new(&mut slots);
    match response.parse(data) {
        Err(httparse::Error::TooManyHeaders) => {
            // Every header takes a line, so this many slots always suffice.
            let lines = data.iter().filter(|&&b| b == b'\n').count();
            let mut slots = vec![httparse::EMPTY_HEADER; lines];
            let mut response = httparse::Response::new(&mut slots);
            let parsed = response.parse(data).map_err(head_error)?;
            interpret(&response, parsed)
        }
        parsed => {
            let parsed = parsed.map_err(head_error)?;
            interpret(&response, parsed)
        }
    }
}

fn interpret(
    response: &httparse::Response<'_, '_>,
    parsed: httparse::Status<usize>,
) -> Result<(Head, Framing, usize), OpError> {
    let httparse::Status::Complete(head_len) = parsed else {
        // The caller found the empty line that ends the head, so httparse
        // stopping short means the head before it is malformed.
        return Err(OpError::bad("malformed response head"));
    };
    let (Some(minor), Some(status)) = (response.version, response.code) else {
        return Err(OpError::bad("not an HTTP/1.x status line"));
    };
    let http10 = minor == 0;
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut close = http10;
    for header in response.headers.iter() {
        let value = header.value.trim_ascii();
        if header.name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(value)
                .ok()
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| OpError::bad("bad Content-Length"))?;
            if length.is_some_and(|m| m != n) {
                return Err(OpError::bad("conflicting Content-Length headers"));
            }
            length = Some(n);
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            // Only the last coding decides whether the body is chunked.
            chunked = value
                .rsplit(|&b| b == b',')
                .next()
                .is_some_and(|c| c.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if header.name.eq_ignore_ascii_case("connection") {
            for token in value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") && http10 {
                    close = false;
                }
            }
        }
    }
    let framing = if status == 204 || status == 304 || (100..200).contains(&status) {
        Framing::None
    } else if chunked {
        Framing::Chunked
    } else if let Some(n) = length {
        Framing::Length(n)
    } else {
        close = true;
        Framing::UntilEof
    };
    Ok((
        Head {
            status,
            keep_alive: !close,
        },
        framing,
        head_len,
    ))
}

/// Writes `request` and reads the whole response to it.
pub(crate) async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    request: &[u8],
    buf: &mut RespBuf,
) -> Result<Head, OpError> {
    s.write_all(request)
        .await
        .map_err(|e| OpError::io(&e, false))?;
    s.flush().await.map_err(|e| OpError::io(&e, false))?;
    read_response(s, buf).await
}

/// Reads one complete response (skipping 1xx interim responses) and
/// discards the body.
pub(crate) async fn read_response<S: AsyncRead + Unpin>(
    s: &mut S,
    buf: &mut RespBuf,
) -> Result<Head, OpError> {
    loop {
        // Wait for the empty line that ends the head before parsing, so a
        // head arriving in pieces is scanned once, not re-parsed per read.
        let mut scanned = 0;
        loop {
            if find(&buf.data()[scanned..], b"\r\n\r\n").is_some() {
                break;
            }
            scanned = (buf.end - buf.start).saturating_sub(3);
            if buf.end - buf.start >= MAX_HEAD {
                return Err(OpError::bad("response head too large"));
            }
            if buf.fill(s).await? == 0 {
                let msg = if buf.start == buf.end {
                    "connection closed before response"
                } else {
                    "connection closed inside response head"
                };
                return Err(OpError::new(ErrorKind::Closed, msg));
            }
        }
        let (head, framing, head_len) = parse_head(buf.data())?;
        buf.start += head_len;
        if (100..200).contains(&head.status) && head.status != 101 {
            continue;
        }
        match framing {
            Framing::None => {}
            Framing::Length(n) => buf.skip(s, n).await?,
            Framing::Chunked => loop {
                let line = buf.line(s).await?;
                let size_hex = buf.buf[line]
                    .split(|&b| b == b';')
                    .next()
                    .unwrap_or_default()
                    .trim_ascii();
                let size = std::str::from_utf8(size_hex)
                    .ok()
                    .filter(|h| !h.is_empty())
                    .and_then(|h| u64::from_str_radix(h, 16).ok())
                    .ok_or_else(|| OpError::bad("bad chunk size"))?;
                if size == 0 {
                    // Trailer section ends with an empty line.
                    while !buf.line(s).await?.is_empty() {}
                    break;
                }
                buf.skip(s, size).await?;
                if !buf.line(s).await?.is_empty() {
                    return Err(OpError::bad("missing CRLF after chunk"));
                }
            },
            Framing::UntilEof => loop {
                buf.clear();
                match buf.fill(s).await {
                    Ok(0) => break,
                    Ok(_) => {}
                    // Many servers end such bodies without close_notify.
                    Err(e) if e.kind == ErrorKind::Closed => break,
                    Err(e) => return Err(e),
                }
            },
        }
        return Ok(head);
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use tokio::io::ReadBuf;

    use super::*;
    use crate::error::check_status;

    async fn parse(raw: &[u8]) -> (Result<Head, OpError>, usize) {
        let mut reader = raw;
        let mut buf = RespBuf::new();
        let res = read_response(&mut reader, &mut buf).await;
        (res, buf.end - buf.start)
    }

    /// Hands out one byte per read, so every parser state meets a buffer
    /// boundary.
    struct Trickle<'a>(&'a [u8]);

    impl AsyncRead for Trickle<'_> {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            if let Some((first, rest)) = self.0.split_first() {
                buf.put_slice(&[*first]);
                self.0 = rest;
            }
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn byte_at_a_time_sequence_on_one_buffer() {
        let big_header = format!("X-Big: {}\r\n", "a".repeat(40_000));
        let raw = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc\
             HTTP/1.1 404 Not Found\r\n{big_header}Transfer-Encoding: chunked\r\n\r\n\
             4\r\nwxyz\r\n0\r\n\r\n\
             HTTP/1.1 204 No Content\r\n\r\n\
             HTTP/1.1 200 OK\r\n\r\nrest-until-eof"
        );
        let mut reader = Trickle(raw.as_bytes());
        let mut buf = RespBuf::new();
        let mut statuses = Vec::new();
        for _ in 0..4 {
            let head = read_response(&mut reader, &mut buf).await.expect("parses");
            statuses.push((head.status, head.keep_alive));
        }
        assert_eq!(
            statuses,
            [(200, true), (404, true), (204, true), (200, false)]
        );
    }

    #[tokio::test]
    async fn content_length_keep_alive() {
        let (res, left) = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA").await;
        assert_eq!(
            res.expect("parses"),
            Head {
                status: 200,
                keep_alive: true
            }
        );
        assert_eq!(left, 5, "bytes after the body stay buffered");
    }

    #[tokio::test]
    async fn chunked_with_trailers_and_extensions() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n\
                    5;ext=1\r\nhello\r\n3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n";
        let (res, left) = parse(raw).await;
        assert_eq!(res.expect("parses").status, 200);
        assert_eq!(left, 0);
    }

    #[tokio::test]
    async fn until_eof_http10_and_interim() {
        let raw = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 200 ok\r\nContent-type: text/html\r\n\r\n<html>body</html>";
        let head = parse(raw).await.0.expect("parses");
        assert_eq!(
            head,
            Head {
                status: 200,
                keep_alive: false
            }
        );
    }

    #[tokio::test]
    async fn errors_are_classified() {
        let e = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort")
            .await
            .0
            .expect_err("truncated");
        assert_eq!(e.kind, ErrorKind::Closed);
        let e = parse(b"SSH-2.0-OpenSSH\r\n\r\n")
            .await
            .0
            .expect_err("garbage");
        assert_eq!(e.kind, ErrorKind::BadResponse);
        let e = parse(b"").await.0.expect_err("empty");
        assert_eq!(e.kind, ErrorKind::Closed);
        let head = parse(b"HTTP/1.1 503 Busy\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
            .await
            .0
            .expect("parses");
        assert!(!head.keep_alive);
        assert_eq!(
            check_status(head.status).expect_err("503").kind.name(),
            "http_503"
        );
    }

    #[tokio::test]
    async fn bad_framing_is_a_bad_response() {
        for (raw, why) in [
            (
                &b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok"[..],
                "conflicting Content-Length headers",
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
                "bad Content-Length",
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                "bad chunk size",
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nokX\r\n0\r\n\r\n",
                "missing CRLF after chunk",
            ),
            (b"HTTP/1.1 2x0 OK\r\n\r\n", "bad status code"),
            (b"HTTP/2.0 200 OK\r\n\r\n", "not an HTTP/1.x status line"),
            (b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n", "bad header name"),
        ] {
            let e = parse(raw).await.0.expect_err(why);
            assert_eq!((e.kind, e.detail.as_str()), (ErrorKind::BadResponse, why));
        }
    }

    #[tokio::test]
    async fn head_size_is_capped() {
        let huge = format!("HTTP/1.1 200 OK\r\nX-Big: {}\r\n\r\n", "a".repeat(MAX_HEAD));
        let e = parse(huge.as_bytes()).await.0.expect_err("too large");
        assert_eq!(
            (e.kind, e.detail.as_str()),
            (ErrorKind::BadResponse, "response head too large")
        );
        let endless_chunk_line = format!(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{}",
            "1".repeat(MAX_LINE + 2)
        );
        let e = parse(endless_chunk_line.as_bytes())
            .await
            .0
            .expect_err("too long");
        assert_eq!(e.detail, "chunk line too long");
    }

    #[tokio::test]
    async fn more_headers_than_slots() {
        let many: String = (0..HEADER_SLOTS * 2)
            .map(|i| format!("X-H{i}: {i}\r\n"))
            .collect();
        let raw = format!("HTTP/1.1 200 OK\r\n{many}Content-Length: 2\r\n\r\nok");
        let (res, left) = parse(raw.as_bytes()).await;
        assert_eq!(res.expect("parses").status, 200);
        assert_eq!(left, 0);
    }
}
