//! Shared test support: certificates made with rcgen at test time, the real `certgate` binary
//! started on port 0 with a temporary config, a rustls + hyper client, and small upstreams.
#![allow(dead_code, reason = "each test module uses its part of the support")]

use std::convert::Infallible;
use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use time::OffsetDateTime;
use tokio::net::{TcpListener, TcpStream};

// ---------------------------------------------------------------------------------------------
// Certificates

/// A CA made at test time.
pub struct Ca {
    pub name: String,
    issuer: Issuer<'static, KeyPair>,
    pub cert_pem: String,
}

/// A leaf certificate and its key.
#[derive(Clone)]
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: Vec<u8>,
    pub serial: Vec<u8>,
}

/// What a test wants in a client certificate.
pub struct LeafSpec {
    pub cn: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub eku: Vec<ExtendedKeyUsagePurpose>,
}

impl LeafSpec {
    pub fn client(cn: &str) -> Self {
        let now = OffsetDateTime::now_utc();
        Self {
            cn: cn.to_owned(),
            not_before: now - time::Duration::hours(1),
            not_after: now + time::Duration::days(30) + time::Duration::hours(1),
            eku: vec![ExtendedKeyUsagePurpose::ClientAuth],
        }
    }
}

impl Ca {
    pub fn new(name: &str) -> Self {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Test Bank");
        params.distinguished_name.push(
            DnType::OrganizationalUnitName,
            format!("Test Internet Banking CA {name}"),
        );
        params
            .distinguished_name
            .push(DnType::CommonName, format!("Test CA {name}"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).unwrap();
        Self {
            name: name.to_owned(),
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    pub fn leaf(&self, spec: LeafSpec) -> Leaf {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Test Bank");
        params.distinguished_name.push(DnType::CommonName, spec.cn);
        params.not_before = spec.not_before;
        params.not_after = spec.not_after;
        params.extended_key_usages = spec.eku;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let mut serial = rand_bytes(16);
        serial[0] &= 0x7f;
        serial[0] |= 0x01;
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
            serial,
        }
    }

    pub fn client(&self, cn: &str) -> Leaf {
        self.leaf(LeafSpec::client(cn))
    }

    pub fn server(&self) -> Leaf {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params
            .subject_alt_names
            .push(SanType::IpAddress([127, 0, 0, 1].into()));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
            serial: vec![],
        }
    }
}

fn rand_bytes(n: usize) -> Vec<u8> {
    let mut out = vec![0u8; n];
    aws_lc_rs::rand::fill(&mut out).unwrap();
    out
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn sha256_hex(der: &[u8]) -> String {
    hex(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der).as_ref())
}

// ---------------------------------------------------------------------------------------------
// A directory with the server's files

/// A temporary directory with a CA, a server certificate, and a config to start from.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub ca: Ca,
    pub ca_path: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

impl Fixture {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::new("g1");
        let server = ca.server();
        let fixture = Self {
            ca_path: dir.path().join("ca-g1.pem"),
            server_cert: dir.path().join("server.pem"),
            server_key: dir.path().join("server.key"),
            dir,
            ca,
        };
        std::fs::write(&fixture.ca_path, &fixture.ca.cert_pem).unwrap();
        std::fs::write(&fixture.server_cert, &server.cert_pem).unwrap();
        std::fs::write(&fixture.server_key, &server.key_pem).unwrap();
        fixture
    }

    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    /// A config: `server_extra` lines go under `[server]`; `rest` is appended (more tables).
    pub fn config(&self, server_extra: &str, rest: &str) -> String {
        format!(
            r#"
[server]
listen = "127.0.0.1:0"
cert = "{cert}"
key = "{key}"
shutdown_grace = "5s"
{server_extra}

[[trust.ca]]
name = "g1"
cert = "{ca}"

[ops]
listen = "127.0.0.1:0"

[log]
format = "json"
level = "info"

[store]
url = "sqlite://{dir}/certgate.db"

[pki]
dir = "{dir}/pki"

{rest}
"#,
            cert = self.server_cert.display(),
            key = self.server_key.display(),
            ca = self.ca_path.display(),
            dir = self.dir.path().display(),
        )
    }

    pub fn start(&self, server_extra: &str, rest: &str) -> Server {
        self.start_named("certgate.toml", server_extra, rest)
    }

    /// Like `start`, with the config written under `name` (for a second server in one test).
    pub fn start_named(&self, name: &str, server_extra: &str, rest: &str) -> Server {
        let path = self.write(name, &self.config(server_extra, rest));
        Server::start(&path)
    }
}

// ---------------------------------------------------------------------------------------------
// The real binary

pub fn certgate() -> Command {
    Command::new(env!("CARGO_BIN_EXE_certgate"))
}

/// A running `certgate serve`; killed on drop.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    pub ops: SocketAddr,
    logs: Arc<Mutex<Vec<String>>>,
}

impl Server {
    pub fn start(config: &Path) -> Self {
        Self::start_in(config, None)
    }

    /// Starts in working directory `cwd` (where relative paths in the config resolve).
    pub fn start_in(config: &Path, cwd: Option<&Path>) -> Self {
        let mut command = certgate();
        if let Some(cwd) = cwd {
            command.current_dir(cwd);
        }
        let mut child = command
            .args(["serve", "--config"])
            .arg(config)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        let (mut addr, mut ops) = (None, None);
        while addr.is_none() || ops.is_none() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "certgate exited with {status}: {}",
                    logs.lock().unwrap().join("\n")
                );
            }
            assert!(
                Instant::now() < deadline,
                "certgate did not start: {}",
                logs.lock().unwrap().join("\n")
            );
            for line in logs.lock().unwrap().iter() {
                let Ok(json) = serde_json::from_str::<serde_json::Value>(line) else {
                    continue;
                };
                if json["message"] == "listening" {
                    let address = json["address"].as_str().unwrap().parse().unwrap();
                    match json["listener"].as_str() {
                        Some("https") => addr = Some(address),
                        Some("ops") => ops = Some(address),
                        _ => {}
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Self {
            child,
            addr: addr.unwrap(),
            ops: ops.unwrap(),
            logs,
        }
    }

    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    /// Waits until a log line contains `needle`.
    pub fn wait_for_log(&self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.logs().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "no log line with {needle:?}:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// `GET` on the ops listener.
    pub async fn ops_get(&self, path: &str) -> (StatusCode, String) {
        let stream = TcpStream::connect(self.ops).await.unwrap();
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        let response = send
            .send_request(
                Request::get(path)
                    .header("host", "ops")
                    .body(Full::new(Bytes::new()))
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    /// The value of one metric line, e.g. `certgate_tls_handshakes_total{result="ok"}`.
    pub async fn metric(&self, series: &str) -> f64 {
        let (_, text) = self.ops_get("/metrics").await;
        text.lines()
            .find_map(|line| {
                line.strip_prefix(series)
                    .and_then(|rest| rest.trim().parse().ok())
            })
            .unwrap_or(0.0)
    }

    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    /// Waits for the process to exit and returns its exit code.
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "certgate did not exit:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// Client

pub type Body = BoxBody<Bytes, Infallible>;

pub fn empty() -> Body {
    Full::new(Bytes::new()).boxed()
}

/// A rustls client trusting `ca`, optionally presenting `identity`.
pub fn client_config(
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
pub enum Conn {
    H1(hyper::client::conn::http1::SendRequest<Body>),
    H2(hyper::client::conn::http2::SendRequest<Body>),
}

impl Conn {
    pub async fn open(
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

    pub async fn send(
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
    pub async fn get(
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
pub async fn get_once(
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
pub fn echoed(body: &Bytes) -> serde_json::Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(body)))
}

// ---------------------------------------------------------------------------------------------
// Upstreams the tests control

/// A plain-HTTP upstream in this process: `/big?bytes=N` streams N bytes, `/slow?ms=N` answers
/// after N ms, anything else echoes.
pub async fn test_upstream() -> SocketAddr {
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
pub async fn silent_upstream() -> SocketAddr {
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
pub fn closed_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// A streamed request body of `total` bytes in 1 MiB chunks.
pub fn big_body(total: u64) -> Body {
    let chunk = Bytes::from(vec![b'u'; 1 << 20]);
    let chunks = total.div_ceil(1 << 20);
    let stream = futures_util::stream::iter((0..chunks).map(move |index| {
        let len = (total - index * (1 << 20)).min(1 << 20) as usize;
        Ok::<_, Infallible>(hyper::body::Frame::data(chunk.slice(..len)))
    }));
    http_body_util::StreamBody::new(stream).boxed()
}
