//! Clients: rustls + hyper over HTTP/1.1 or h2, and raw bytes for requests no well-behaved client sends.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpStream;

use super::*;

pub(crate) type Body = BoxBody<Bytes, Infallible>;

pub(crate) fn empty() -> Body {
    Full::new(Bytes::new()).boxed()
}

/// A rustls client trusting `ca`, optionally presenting `identity`.
pub(crate) fn client_config(
    ca: &Ca,
    identity: Option<&Leaf>,
    alpn: &[&[u8]],
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca.cert_pem.as_bytes()).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match identity {
        Some(leaf) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(leaf.cert_pem.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// One open connection (HTTP/1.1 keep-alive or h2, by ALPN).
pub(crate) enum Conn {
    H1(hyper::client::conn::http1::SendRequest<Body>),
    H2(hyper::client::conn::http2::SendRequest<Body>),
}

impl Conn {
    pub(crate) async fn open(
        addr: SocketAddr,
        config: Arc<rustls::ClientConfig>,
    ) -> std::io::Result<Self> {
        let tcp = TcpStream::connect(addr).await?;
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await?;
        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
        let io = TokioIo::new(tls);
        if h2 {
            let (send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .map_err(std::io::Error::other)?;
            tokio::spawn(conn);
            Ok(Self::H2(send))
        } else {
            let (send, conn) = hyper::client::conn::http1::handshake(io)
                .await
                .map_err(std::io::Error::other)?;
            tokio::spawn(conn.with_upgrades());
            Ok(Self::H1(send))
        }
    }

    pub(crate) async fn send(
        &mut self,
        request: Request<Body>,
    ) -> Result<Response<Incoming>, hyper::Error> {
        match self {
            Self::H1(send) => {
                send.ready().await?;
                send.send_request(request).await
            }
            Self::H2(send) => {
                send.ready().await?;
                send.send_request(request).await
            }
        }
    }

    /// GET `path` with extra headers; returns status, headers and the whole body.
    pub(crate) async fn get(
        &mut self,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<(StatusCode, HeaderMap, Bytes), hyper::Error> {
        let mut request = Request::get(path).header("host", "localhost");
        if matches!(self, Self::H2(_)) {
            request = Request::get(format!("https://localhost{path}"));
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = self.send(request.body(empty()).unwrap()).await?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok((parts.status, parts.headers, body))
    }
}

/// One request on a fresh connection; `Err` with text when the connection or request failed.
pub(crate) async fn get_once(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<(StatusCode, HeaderMap, Bytes), String> {
    let mut conn = Conn::open(addr, config)
        .await
        .map_err(|err| err.to_string())?;
    conn.get(path, headers)
        .await
        .map_err(|err| format!("{err:?}"))
}

/// The JSON the echo upstream answered with.
pub(crate) fn echoed(body: &Bytes) -> serde_json::Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(body)))
}

/// A TLS connection to `addr` with ALPN http/1.1 and no HTTP client on it: the test writes
/// and reads the bytes itself.
pub(crate) async fn tls_http1(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let mut config = (*config).clone();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap()
}

/// Sends `request` byte for byte over TLS (ALPN http/1.1) and reads until the server closes:
/// for request lines and headers that well-behaved clients would not send. The request should
/// say `Connection: close`. Returns the status, the head and the body as text.
pub(crate) async fn raw_h1(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    request: &str,
) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut tls = tls_http1(addr, config).await;
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tls.read_to_end(&mut answer).await;
    let text = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    (status, head.to_owned(), body.to_owned())
}

/// A GET of `path` exactly as written (no client-side normalisation), over HTTP/1.1 or h2;
/// returns status and body.
pub(crate) async fn get_path(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    h2: bool,
    path: &str,
) -> (u16, String) {
    if h2 {
        let mut config = (*config).clone();
        config.alpn_protocols = vec![b"h2".to_vec()];
        let mut conn = Conn::open(addr, Arc::new(config)).await.unwrap();
        let uri: http::Uri = format!("https://localhost{path}").parse().unwrap();
        assert_eq!(
            uri.path(),
            path.split('?').next().unwrap(),
            "the client kept the path"
        );
        let response = conn
            .send(Request::get(uri).body(empty()).unwrap())
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    } else {
        let (status, _, body) = raw_h1(
            addr,
            config,
            &format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"),
        )
        .await;
        (status, body)
    }
}

/// Waits until `check` holds, checking every 50 ms, failing after a generous minute: for
/// something another process does in its own time (a poll, a background task).
pub(crate) async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !check().await {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
