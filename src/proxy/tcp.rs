//! A client's TCP stream under its TLS connection, which holds back what the handshake writes
//! last (the session ticket, after the client's Finished) until the connection's first answer,
//! so that both leave in one system call.
//!
//! rustls queues the ticket as the handshake ends and tokio-rustls writes it at once: one more
//! system call, and one more delivery over the network, for every connection (BENCHMARKS.md,
//! the fifth round of issue 12). During the handshake every write is held, and whenever a read
//! would wait for the client, what is held goes out first: the handshake never waits for a
//! client that lacks what was written for it. When a TLS 1.3 handshake ends, what it wrote last
//! (the ticket: no TLS 1.3 client waits for one before it sends) stays until the next write
//! (the answer, h2's settings, close_notify), which sends it first, in the same `writev`; a
//! flush alone does not send it. After a TLS 1.2 handshake, whose last flight the client waits
//! for (the server's Finished), the stream behaves as a plain one: a flush or a read that would
//! wait sends what is held.
//!
//! The last answer of a connection its client asked to close (`Connection: close`: every
//! connection of a client that makes one request per handshake) is held as well, from its first
//! write to the shutdown that follows it, so that the answer and close_notify (and a ticket still
//! held) leave in one `writev` too. [`super::idle::ClientIo`] starts that hold and leaves out
//! the flush in between; a flush or a read that would wait still sends what is held, and so
//! does a write that would make it more than [`MAX_HELD`].

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// See the module's documentation.
pub(super) struct ClientTcp {
    tcp: TcpStream,
    /// Written by TLS, not yet sent.
    held: Vec<u8>,
    holding: Holding,
}

/// What is held, and until when.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Holding {
    /// During the handshake: every write, until a read would wait.
    Handshake,
    /// After a TLS 1.3 handshake: its tickets, until the next write.
    Tickets,
    /// The connection's last answer, until the shutdown after it (or a flush, or a read that
    /// would wait).
    LastAnswer,
    /// Nothing more is held; what is still held goes out at the next chance.
    Nothing,
}

/// The most a last answer holds back: a larger one goes out as it is written.
const MAX_HELD: usize = 16 * 1024;

impl ClientTcp {
    /// A stream whose writes are held until [`Self::release`].
    pub(super) fn new(tcp: TcpStream) -> Self {
        Self {
            tcp,
            held: Vec::new(),
            holding: Holding::Handshake,
        }
    }

    /// The TCP stream.
    pub(super) fn get_ref(&self) -> &TcpStream {
        &self.tcp
    }

    /// The handshake is over: writes go out again, the held bytes first. `tickets_only`: what
    /// is held is TLS 1.3 tickets, which the client does not wait for.
    pub(super) fn release(&mut self, tickets_only: bool) {
        self.holding = if tickets_only {
            Holding::Tickets
        } else {
            Holding::Nothing
        };
    }

    /// Whether what is written now is the connection's last answer, to be held until the
    /// shutdown.
    pub(super) fn hold_last_answer(&mut self, last: bool) {
        match (last, self.holding) {
            (_, Holding::Handshake) => {}
            (true, _) => self.holding = Holding::LastAnswer,
            (false, Holding::LastAnswer) => self.holding = Holding::Nothing,
            (false, Holding::Tickets | Holding::Nothing) => {}
        }
    }

    /// Sends what is held.
    fn send_held(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.held.is_empty() {
            let sent = ready!(Pin::new(&mut self.tcp).poll_write(cx, &self.held))?;
            if sent == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.held.drain(..sent);
        }
        // A connection's buffer is not kept for its whole life.
        self.held = Vec::new();
        Poll::Ready(Ok(()))
    }

    /// Writes the held bytes and `bufs` in one `writev` where it takes them all; returns how
    /// many bytes of `bufs` were written.
    fn poll_write_after_held(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        while !self.held.is_empty() {
            let held = self.held.len();
            let sent = {
                let mut slices = Vec::with_capacity(bufs.len() + 1);
                slices.push(IoSlice::new(&self.held));
                slices.extend(bufs.iter().map(|buf| IoSlice::new(buf)));
                ready!(Pin::new(&mut self.tcp).poll_write_vectored(cx, &slices))?
            };
            if sent == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            if sent < held {
                self.held.drain(..sent);
                continue;
            }
            self.held = Vec::new();
            if sent > held {
                return Poll::Ready(Ok(sent - held));
            }
        }
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }
}

impl Drop for ClientTcp {
    /// A stream dropped with bytes still held (a connection hyper hands over rather than shuts
    /// down, or one ended by an error) sends them if the socket takes them at once.
    fn drop(&mut self) {
        if !self.held.is_empty() {
            let _ = self.tcp.try_write(&self.held);
        }
    }
}

impl AsyncRead for ClientTcp {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let read = Pin::new(&mut this.tcp).poll_read(cx, buf);
        if read.is_pending() && this.holding != Holding::Tickets && !this.held.is_empty() {
            // The handshake waits for the client: it must have everything written for it.
            if let Poll::Ready(Err(err)) = this.send_held(cx) {
                return Poll::Ready(Err(err));
            }
        }
        read
    }
}

impl AsyncWrite for ClientTcp {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if matches!(this.holding, Holding::Handshake | Holding::LastAnswer) || !this.held.is_empty()
        {
            return Pin::new(this).poll_write_vectored(cx, &[IoSlice::new(buf)]);
        }
        Pin::new(&mut this.tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let holds = match this.holding {
            Holding::Handshake => true,
            Holding::LastAnswer => {
                this.held.len() + bufs.iter().map(|buf| buf.len()).sum::<usize>() <= MAX_HELD
            }
            Holding::Tickets | Holding::Nothing => false,
        };
        if holds {
            let mut taken = 0;
            for buf in bufs {
                this.held.extend_from_slice(buf);
                taken += buf.len();
            }
            return Poll::Ready(Ok(taken));
        }
        if this.held.is_empty() {
            return Pin::new(&mut this.tcp).poll_write_vectored(cx, bufs);
        }
        this.poll_write_after_held(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if matches!(this.holding, Holding::Nothing | Holding::LastAnswer) {
            ready!(this.send_held(cx))?;
        }
        Pin::new(&mut this.tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.send_held(cx))?;
        Pin::new(&mut this.tcp).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    async fn pair() -> (ClientTcp, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (accepted, client) = tokio::join!(listener.accept(), client);
        (ClientTcp::new(accepted.unwrap().0), client.unwrap())
    }

    #[tokio::test]
    async fn held_bytes_go_out_with_the_first_write_after_release_and_in_order() {
        let (mut server, mut client) = pair().await;
        server.write_all(b"ticket;").await.unwrap();
        server.flush().await.unwrap();
        server.release(true);
        // A flush alone does not send a ticket.
        server.flush().await.unwrap();
        server.write_all(b"answer").await.unwrap();
        let mut got = vec![0u8; 13];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ticket;answer");
    }

    #[tokio::test]
    async fn a_read_that_would_wait_sends_what_is_held_first() {
        let (mut server, mut client) = pair().await;
        server.write_all(b"flight").await.unwrap();
        let mut byte = [0u8; 1];
        // The server waits for the client, which answers only once it has the flight.
        let (read, ()) = tokio::join!(server.read_exact(&mut byte), async {
            let mut got = vec![0u8; 6];
            client.read_exact(&mut got).await.unwrap();
            assert_eq!(&got, b"flight");
            client.write_all(b"!").await.unwrap();
        });
        read.unwrap();
        assert_eq!(&byte, b"!");
        server.write_all(b"-held").await.unwrap();
        server.release(true);
        server.shutdown().await.unwrap();
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).await.unwrap();
        assert_eq!(&rest, b"-held");
    }

    #[tokio::test]
    async fn after_a_tls12_handshake_a_flush_sends_what_is_held() {
        let (mut server, mut client) = pair().await;
        server.write_all(b"finished").await.unwrap();
        server.release(false);
        server.flush().await.unwrap();
        let mut got = vec![0u8; 8];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"finished");
    }

    #[tokio::test]
    async fn a_last_answer_leaves_with_the_shutdown_unless_flushed_or_too_large() {
        let (mut server, mut client) = pair().await;
        server.release(true);
        server.write_all(b"ticket;").await.unwrap();
        server.hold_last_answer(true);
        server.write_all(b"answer;").await.unwrap();
        server.write_all(b"close_notify").await.unwrap();
        server.shutdown().await.unwrap();
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        assert_eq!(&got, b"ticket;answer;close_notify");

        let (mut server, mut client) = pair().await;
        server.release(true);
        server.hold_last_answer(true);
        server.write_all(b"streamed").await.unwrap();
        server.flush().await.unwrap();
        let mut got = vec![0u8; 8];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"streamed");
        let large = vec![7u8; MAX_HELD + 1];
        server.write_all(&large).await.unwrap();
        let mut got = vec![0u8; large.len()];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(got, large);
    }

    #[tokio::test]
    async fn a_stream_dropped_with_a_held_answer_sends_it() {
        let (mut server, mut client) = pair().await;
        server.release(true);
        server.hold_last_answer(true);
        server.write_all(b"answer").await.unwrap();
        drop(server);
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        assert_eq!(&got, b"answer");
    }
}
