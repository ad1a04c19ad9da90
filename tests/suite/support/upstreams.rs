//! Upstreams in the test process: echo, big bodies, slow and silent ones.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

use super::*;

/// A plain-HTTP upstream in this process: `/big?bytes=N` streams N bytes, `/slow?ms=N` answers
/// after N ms, anything else echoes.
pub(crate) async fn test_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|request: Request<Incoming>| async move {
                    Ok::<_, Infallible>(upstream_answer(request).await)
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

fn query_number(request: &Request<Incoming>, key: &str) -> u64 {
    request
        .uri()
        .query()
        .and_then(|q| {
            q.split('&')
                .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

async fn upstream_answer(request: Request<Incoming>) -> Response<Body> {
    match request.uri().path() {
        "/big" => {
            let total = query_number(&request, "bytes");
            let chunk = Bytes::from(vec![b'x'; 1 << 20]);
            let chunks = total.div_ceil(1 << 20);
            let stream = futures_util::stream::iter((0..chunks).map(move |index| {
                let len = (total - index * (1 << 20)).min(1 << 20) as usize;
                Ok::<_, Infallible>(hyper::body::Frame::data(chunk.slice(..len)))
            }));
            Response::new(http_body_util::StreamBody::new(stream).boxed())
        }
        // `chunks` chunks of 1 KiB, `ms` apart: a download that takes a while.
        "/drip" => {
            let chunks = query_number(&request, "chunks");
            let pause = Duration::from_millis(query_number(&request, "ms"));
            let stream = futures_util::stream::unfold(0, move |sent| async move {
                if sent == chunks {
                    return None;
                }
                tokio::time::sleep(pause).await;
                let chunk = hyper::body::Frame::data(Bytes::from(vec![b'd'; 1024]));
                Some((Ok::<_, Infallible>(chunk), sent + 1))
            });
            Response::new(http_body_util::StreamBody::new(stream).boxed())
        }
        "/slow" => {
            tokio::time::sleep(Duration::from_millis(query_number(&request, "ms"))).await;
            Response::new(Full::new(Bytes::from_static(b"slow answer")).boxed())
        }
        _ => certgate::proxy::echo_response(request)
            .await
            .map(|body| body.boxed()),
    }
}

/// An upstream that accepts connections and never answers.
pub(crate) async fn silent_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    addr
}

/// An address where nothing listens.
pub(crate) fn closed_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// A streamed request body of `total` bytes in 1 MiB chunks.
pub(crate) fn big_body(total: u64) -> Body {
    let chunk = Bytes::from(vec![b'u'; 1 << 20]);
    let chunks = total.div_ceil(1 << 20);
    let stream = futures_util::stream::iter((0..chunks).map(move |index| {
        let len = (total - index * (1 << 20)).min(1 << 20) as usize;
        Ok::<_, Infallible>(hyper::body::Frame::data(chunk.slice(..len)))
    }));
    http_body_util::StreamBody::new(stream).boxed()
}

/// A WebSocket echo: every text or binary message comes back. The upgrade request must carry the
/// identity certgate injected (`x-client-user-id`).
pub(crate) async fn websocket_upstream() -> SocketAddr {
    use futures_util::{SinkExt as _, StreamExt as _};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut socket) = tokio_tungstenite::accept_hdr_async(
                    stream,
                    |request: &tokio_tungstenite::tungstenite::handshake::server::Request,
                     response| {
                        assert!(request.headers().contains_key("x-client-user-id"));
                        Ok(response)
                    },
                )
                .await
                else {
                    return;
                };
                while let Some(Ok(message)) = socket.next().await {
                    if (message.is_text() || message.is_binary())
                        && socket.send(message).await.is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    upstream
}

/// A WebSocket client over TLS to certgate at `server`, presenting `leaf`.
pub(crate) async fn websocket_client(
    server: SocketAddr,
    config: std::sync::Arc<rustls::ClientConfig>,
) -> tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let tcp = tokio::net::TcpStream::connect(server).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(
            rustls_pki_types::ServerName::try_from("localhost").unwrap(),
            tcp,
        )
        .await
        .unwrap();
    let (socket, response) = tokio_tungstenite::client_async("wss://localhost/ws", tls)
        .await
        .unwrap();
    assert_eq!(response.status(), 101);
    socket
}

/// An upstream that reports each request's arrival on the channel returned and answers
/// `slow answer` only when released: a test can act while a request is in flight, on an event.
pub(crate) async fn gated_upstream() -> (
    SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<()>,
    std::sync::Arc<tokio::sync::Notify>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (arrived_tx, arrived_rx) = tokio::sync::mpsc::unbounded_channel();
    let release = std::sync::Arc::new(tokio::sync::Notify::new());
    let gate = release.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (arrived, gate) = (arrived_tx.clone(), gate.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |_request: Request<Incoming>| {
                    let (arrived, gate) = (arrived.clone(), gate.clone());
                    async move {
                        let _ = arrived.send(());
                        gate.notified().await;
                        Ok::<_, Infallible>(Response::new(
                            Full::new(Bytes::from_static(b"slow answer")).boxed(),
                        ))
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, arrived_rx, release)
}

/// An application that answers every request `101 Switching Protocols` to h2c, asked or not.
pub(crate) async fn switching_upstream() -> SocketAddr {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut request = [0u8; 4096];
                let _ = stream.read(&mut request).await;
                let _ = stream
                    .write_all(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n")
                    .await;
                let mut rest = Vec::new();
                let _ = stream.read_to_end(&mut rest).await;
            });
        }
    });
    addr
}

/// Reads from an application's side of a connection until a whole request head has arrived;
/// false if the connection closed or failed first. What follows the head may have been read too.
pub(crate) async fn read_request_head(stream: &mut tokio::net::TcpStream) -> bool {
    use tokio::io::AsyncReadExt as _;
    let mut seen = Vec::new();
    let mut chunk = [0u8; 4096];
    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut chunk).await {
            Ok(read) if read > 0 => seen.extend_from_slice(&chunk[..read]),
            _ => return false,
        }
    }
    true
}
