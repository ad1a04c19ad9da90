//! `certgate-load`: an mTLS load generator for certgate or any other server
//! that terminates TLS with client certificates. It shares no code with the
//! server.
//!
//! ```text
//! certgate-load --target 127.0.0.1:8443 --cert client.pem --key client.key \
//!     --ca ca.pem --sni localhost --mode full --concurrency 32 --duration 10s
//! ```
//!
//! Modes (one "operation" each):
//!
//! * `full`: TCP connect + full TLS handshake (resumption off) + one
//!   `GET <path> HTTP/1.1` with `Connection: close` + read the whole response
//!   + close_notify. Reports handshakes per second.
//! * `resume`: like `full`, but a shared in-memory session store lets later
//!   connections resume with tickets from earlier ones; `resumed` shows how
//!   many handshakes really did.
//! * `keepalive`: `--concurrency` connections, each sending requests one
//!   after another: HTTP/1.1 keep-alive, or with `--http2` one h2 connection
//!   per worker with one stream in flight, so concurrency = connections =
//!   requests in flight. Reports requests per second. A connection is
//!   reopened when the server closes it; setup time is not part of request
//!   latency, and a failed setup counts as one failed operation.
//! * `idle`: opens `--concurrency` connections (each: full handshake + one
//!   keep-alive `GET`), at most `--ramp-parallel` handshakes at a time, then
//!   holds them all open, idle, for `--duration` and closes them. One
//!   operation = one connection opened; `held` = connections still open at
//!   the end of the hold (one the server closes during the hold counts as a
//!   `closed` error). Meant for measuring the server's memory per idle
//!   connection: the line `certgate-load: holding N connections for D` goes
//!   to stderr (also with `--json`) when the ramp is over, so a script can
//!   sample the server then. `ops_per_sec` is connections opened per second
//!   of ramp; `elapsed_secs` is the ramp plus the hold.
//!
//! `--count N` stops after N operations, otherwise `--duration` (default
//! 10s); `--rate R` caps total operations per second across all workers;
//! `--warmup D` runs unmeasured operations for D first (`--count` and
//! `--warmup` do not apply to `idle`). Ctrl-C stops early and still prints
//! the report.
//!
//! Every connection needs a file descriptor: the soft `RLIMIT_NOFILE` is
//! raised to the hard limit at start, and a `--concurrency` that still does
//! not fit is refused up front (exit 2) with the `ulimit -n` to set.
//!
//! Report (`--json` prints the same as one object): `ops` = measured
//! operations, `ok` + `failed`; `ops_per_sec` and `latency_ms`
//! (`p50`/`p90`/`p99`/`max`, null if nothing succeeded) cover successful
//! operations only, i.e. a 2xx response. Latency runs from connect start
//! (`full`/`resume`) or request write (`keepalive`) to the end of the
//! response. `handshakes`/`resumed` count connections whose first response
//! arrived, since in TLS 1.3 a server refuses a client certificate only after
//! the client considers the handshake done. `errors` maps kind to count and
//! `error_examples` gives one message per kind.
//!
//! Error kinds: `connect`, `timeout` (`--timeout`, per operation), `closed`
//! (peer closed early), `reset`, `io`, `bad_response`, `http_<status>`,
//! `no_h2` (server did not pick h2 via ALPN), `http2`; `tls_alert_<name>` when
//! the server sent a fatal alert (`tls_alert_certificate_required`,
//! `tls_alert_bad_certificate`, `tls_alert_unknown_ca` usually mean it refused
//! our client certificate; rejected h2 connections can also show up as
//! `reset` when a write loses the race with the alert); `tls_unknown_ca`,
//! `tls_name_mismatch`, `tls_cert_expired`, `tls_bad_server_cert` when we
//! refused the server certificate; `tls_incompatible`, `tls_handshake`, `tls`.
//!
//! `--groups` limits the key exchange offered (e.g. `x25519` where the server
//! lacks X25519MLKEM768). Under TLS 1.2 it also limits the curves the
//! server's ECDSA certificate may use, so `--groups x25519` alone fails with
//! `tls_alert_handshake_failure` against a P-256 certificate on a TLS
//! 1.2-only server (nginx 1.22 defaults); add `secp256r1`.
//!
//! Exit status: 0 if it ran (even with errors), 1 if no operation succeeded,
//! 2 for bad command-line input or unusable certificate files.
//!
//! In a benchmark the tool runs on one core next to the server under test,
//! so per-operation client CPU is kept low: one shared `Arc<ClientConfig>`,
//! the target resolved once, a pre-rendered request sent in the same write as
//! the client Finished, a small HTTP/1.1 response reader on a per-worker
//! buffer, per-worker latency vectors merged only at the end, the server
//! chain verification memoised (see [`CachingVerifier`]), and AES-128-GCM
//! offered first as browsers do.

#![forbid(unsafe_code)]

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::{Parser, ValueEnum};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{Resumption, WebPkiServerVerifier};
use rustls::crypto::{SupportedKxGroup, aws_lc_rs};
use rustls::{
    AlertDescription, CertificateError, ClientConfig, DigitallySignedStruct, HandshakeKind,
    RootCertStore,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// mTLS load generator: handshakes/s (full, resume) or requests/s (keepalive).
#[derive(Parser, Debug)]
#[command(name = "certgate-load", version, about, long_about = None)]
struct Cli {
    /// Server address, host:port (resolved once at start-up).
    #[arg(long, value_name = "HOST:PORT")]
    target: String,
    /// Client certificate PEM; may hold the chain (leaf first).
    #[arg(long, requires = "key", value_name = "PEM")]
    cert: Option<PathBuf>,
    /// Client private key PEM (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, requires = "cert", value_name = "PEM")]
    key: Option<PathBuf>,
    /// CA certificate(s) PEM used to verify the server.
    #[arg(long, value_name = "PEM")]
    ca: PathBuf,
    /// TLS server name; default: host part of --target, or "localhost" for an IP.
    #[arg(long)]
    sni: Option<String>,
    /// What one operation is.
    #[arg(long, value_enum, default_value_t = Mode::Full)]
    mode: Mode,
    /// Use HTTP/2 (ALPN h2) in keepalive mode.
    #[arg(long)]
    http2: bool,
    /// Concurrent workers (= connections in keepalive mode).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    concurrency: u32,
    /// Run for this long, e.g. 10s, 1m [default: 10s].
    #[arg(long, value_parser = humantime::parse_duration, conflicts_with = "count")]
    duration: Option<Duration>,
    /// Stop after this many operations in total.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    count: Option<u64>,
    /// Cap on total operations per second across all workers.
    #[arg(long, value_name = "OPS_PER_SEC", value_parser = parse_rate)]
    rate: Option<f64>,
    /// Request path (and query).
    #[arg(long, default_value = "/")]
    path: String,
    /// Key-exchange groups to offer, in preference order [default: rustls default].
    #[arg(long, value_enum, value_delimiter = ',', value_name = "GROUP,...")]
    groups: Vec<Group>,
    /// Offer TLS 1.3 only (default: TLS 1.3 and 1.2).
    #[arg(long)]
    tls13_only: bool,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
    /// Run unmeasured for this long first, e.g. 1s.
    #[arg(long, value_parser = humantime::parse_duration)]
    warmup: Option<Duration>,
    /// Per-operation timeout.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// idle mode: handshakes in flight at once while opening connections.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    ramp_parallel: u32,
    /// Runtime worker threads; keep 1 when pinning the tool to one core.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1024))]
    threads: u16,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// New connection, full handshake, one GET, close.
    Full,
    /// Like full, resuming with TLS session tickets.
    Resume,
    /// Requests one after another on open connections.
    Keepalive,
    /// Open --concurrency connections, hold them idle for --duration.
    Idle,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Full => "full",
            Mode::Resume => "resume",
            Mode::Keepalive => "keepalive",
            Mode::Idle => "idle",
        }
    }
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Group {
    #[value(name = "x25519")]
    X25519,
    #[value(name = "secp256r1", alias = "p256")]
    Secp256r1,
    #[value(name = "secp384r1", alias = "p384")]
    Secp384r1,
    #[value(name = "x25519mlkem768")]
    X25519Mlkem768,
}

impl Group {
    fn kx(self) -> &'static dyn SupportedKxGroup {
        use aws_lc_rs::kx_group;
        match self {
            Group::X25519 => kx_group::X25519,
            Group::Secp256r1 => kx_group::SECP256R1,
            Group::Secp384r1 => kx_group::SECP384R1,
            Group::X25519Mlkem768 => kx_group::X25519MLKEM768,
        }
    }
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err(format!("'{s}' is not a positive number")),
    }
}

/// Problems found before any traffic is sent; all exit with status 2.
#[derive(Debug, thiserror::Error)]
enum SetupError {
    #[error("--{flag} {path}: {msg}")]
    File {
        flag: &'static str,
        path: String,
        msg: String,
    },
    #[error("--target {0}: expected host:port")]
    TargetSyntax(String),
    #[error("--target {target}: cannot resolve: {msg}")]
    Resolve { target: String, msg: String },
    #[error("--sni {0}: not a valid DNS name or IP address")]
    Sni(String),
    #[error("--path {0}: must start with '/' and contain no spaces or control characters")]
    Path(String),
    #[error("--http2 is only supported with --mode keepalive")]
    Http2Mode,
    #[error(
        "--{0} does not apply to --mode idle (it opens --concurrency connections and holds them for --duration)"
    )]
    IdleFlag(&'static str),
    #[error(
        "--concurrency {concurrency} needs about {needed} file descriptors but RLIMIT_NOFILE is {soft} (hard {hard}); raise it, e.g. `ulimit -n {needed}` (as root to go above the hard limit)"
    )]
    Fds {
        concurrency: u32,
        needed: u64,
        soft: u64,
        hard: u64,
    },
    #[error("TLS configuration: {0}")]
    Tls(String),
    #[error("cannot start runtime: {0}")]
    Runtime(io::Error),
}

fn file_err(flag: &'static str, path: &Path, msg: impl ToString) -> SetupError {
    SetupError::File {
        flag,
        path: path.display().to_string(),
        msg: msg.to_string(),
    }
}

fn load_certs(flag: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, SetupError> {
    // Read first so a missing file says "No such file" rather than a PEM error.
    let data = std::fs::read(path).map_err(|e| file_err(flag, path, e))?;
    let certs = CertificateDer::pem_slice_iter(&data)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_err(flag, path, format!("bad PEM: {e}")))?;
    if certs.is_empty() {
        return Err(file_err(flag, path, "no certificate found"));
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, SetupError> {
    let data = std::fs::read(path).map_err(|e| file_err("key", path, e))?;
    PrivateKeyDer::from_pem_slice(&data).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => file_err("key", path, "no private key found"),
        e => file_err("key", path, format!("bad PEM: {e}")),
    })
}

fn build_tls(cli: &Cli) -> Result<ClientConfig, SetupError> {
    let mut provider = aws_lc_rs::default_provider();
    if !cli.groups.is_empty() {
        let mut groups: Vec<&'static dyn SupportedKxGroup> = Vec::new();
        for g in &cli.groups {
            let kx = g.kx();
            if !groups.iter().any(|have| have.name() == kx.name()) {
                groups.push(kx);
            }
        }
        provider.kx_groups = groups;
    }
    // Browsers offer AES-128-GCM first and servers following the client's
    // order (rustls, OpenSSL by default) then pick it; rustls' own order puts
    // AES-256-GCM-SHA384 first, whose SHA-384 key schedule has no hardware
    // help on most x86 and costs both ends noticeably more per handshake.
    provider.cipher_suites.sort_by_key(|s| {
        use rustls::CipherSuite as C;
        let aes128 = matches!(
            s.suite(),
            C::TLS13_AES_128_GCM_SHA256
                | C::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
                | C::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
        );
        (s.version() != &rustls::version::TLS13, !aes128)
    });
    let mut roots = RootCertStore::empty();
    for cert in load_certs("ca", &cli.ca)? {
        roots
            .add(cert)
            .map_err(|e| file_err("ca", &cli.ca, format!("unusable CA certificate: {e}")))?;
    }
    let versions: &[&rustls::SupportedProtocolVersion] = if cli.tls13_only {
        &[&rustls::version::TLS13]
    } else {
        rustls::DEFAULT_VERSIONS
    };
    let provider = Arc::new(provider);
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| SetupError::Tls(e.to_string()))?;
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(|e| SetupError::Tls(e.to_string()))?
        // "dangerous" only because it is a custom verifier: it is the
        // standard WebPKI verifier with its chain result memoised.
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(CachingVerifier::new(webpki)));
    let mut config = match (&cli.cert, &cli.key) {
        (Some(cert), Some(key)) => {
            let chain = load_certs("cert", cert)?;
            let key_der = load_key(key)?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| file_err("key", key, format!("does not fit --cert: {e}")))?
        }
        _ => builder.with_no_client_auth(),
    };
    config.resumption = match cli.mode {
        // Tickets are single-use in TLS 1.3 and rustls keeps only a few per
        // server, so concurrent workers would starve each other; a store
        // sized to the concurrency keeps every worker supplied.
        Mode::Resume => Resumption::store(Arc::new(TicketStore::new(
            (cli.concurrency as usize).saturating_mul(4).max(8),
        ))),
        Mode::Full | Mode::Keepalive | Mode::Idle => Resumption::disabled(),
    };
    config.alpn_protocols = if cli.http2 {
        vec![b"h2".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Ok(config)
}

/// How long a memoised chain verification stays valid; bounds how late an
/// expiry or a changed trust decision during a long run is noticed.
const REVERIFY_AFTER: Duration = Duration::from_secs(60);

/// WebPKI server verification with the chain result memoised. Chain
/// building costs a signature verification plus X.509 parsing per
/// handshake, about a sixth of the client's CPU in `full` mode, while the
/// server presents the same bytes every time. The per-handshake
/// CertificateVerify signature, which proves the server holds the key, is
/// still checked every time, so this is as safe as a browser's
/// certificate-verification cache.
#[derive(Debug)]
struct CachingVerifier {
    inner: Arc<WebPkiServerVerifier>,
    last_ok: std::sync::Mutex<Option<VerifiedChain>>,
}

#[derive(Debug)]
struct VerifiedChain {
    end_entity: CertificateDer<'static>,
    intermediates: Vec<CertificateDer<'static>>,
    server_name: ServerName<'static>,
    at: Instant,
}

impl CachingVerifier {
    fn new(inner: Arc<WebPkiServerVerifier>) -> Self {
        Self {
            inner,
            last_ok: std::sync::Mutex::new(None),
        }
    }
}

impl ServerCertVerifier for CachingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        {
            let guard = self.last_ok.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(v) = guard.as_ref() {
                if v.at.elapsed() < REVERIFY_AFTER
                    && v.end_entity.as_ref() == end_entity.as_ref()
                    && v.intermediates.len() == intermediates.len()
                    && v.intermediates
                        .iter()
                        .zip(intermediates)
                        .all(|(a, b)| a.as_ref() == b.as_ref())
                    && v.server_name == *server_name
                {
                    return Ok(ServerCertVerified::assertion());
                }
            }
        }
        let verified = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        let chain = VerifiedChain {
            end_entity: end_entity.clone().into_owned(),
            intermediates: intermediates
                .iter()
                .map(|c| c.clone().into_owned())
                .collect(),
            server_name: server_name.to_owned(),
            at: Instant::now(),
        };
        *self.last_ok.lock().unwrap_or_else(|p| p.into_inner()) = Some(chain);
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }

    fn root_hint_subjects(&self) -> Option<&[rustls::DistinguishedName]> {
        self.inner.root_hint_subjects()
    }
}

/// Client session store for the single server we talk to: like rustls'
/// in-memory cache but with a TLS 1.3 ticket queue as deep as we need.
#[derive(Debug)]
struct TicketStore {
    max_tickets: usize,
    inner: std::sync::Mutex<TicketInner>,
}

#[derive(Debug, Default)]
struct TicketInner {
    kx_hint: Option<rustls::NamedGroup>,
    tls12: Option<rustls::client::Tls12ClientSessionValue>,
    tls13: std::collections::VecDeque<rustls::client::Tls13ClientSessionValue>,
}

impl TicketStore {
    fn new(max_tickets: usize) -> Self {
        Self {
            max_tickets,
            inner: std::sync::Mutex::new(TicketInner::default()),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut TicketInner) -> R) -> R {
        // A poisoned lock only means another worker panicked mid-update of a
        // cache; the data is still usable.
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }
}

impl rustls::client::ClientSessionStore for TicketStore {
    fn set_kx_hint(&self, _: ServerName<'static>, group: rustls::NamedGroup) {
        self.with(|i| i.kx_hint = Some(group));
    }
    fn kx_hint(&self, _: &ServerName<'_>) -> Option<rustls::NamedGroup> {
        self.with(|i| i.kx_hint)
    }
    fn set_tls12_session(
        &self,
        _: ServerName<'static>,
        v: rustls::client::Tls12ClientSessionValue,
    ) {
        self.with(|i| i.tls12 = Some(v));
    }
    fn tls12_session(&self, _: &ServerName<'_>) -> Option<rustls::client::Tls12ClientSessionValue> {
        self.with(|i| i.tls12.clone())
    }
    fn remove_tls12_session(&self, _: &ServerName<'static>) {
        self.with(|i| i.tls12 = None);
    }
    fn insert_tls13_ticket(
        &self,
        _: ServerName<'static>,
        v: rustls::client::Tls13ClientSessionValue,
    ) {
        let max = self.max_tickets;
        self.with(|i| {
            if i.tls13.len() >= max {
                i.tls13.pop_front();
            }
            i.tls13.push_back(v);
        });
    }
    fn take_tls13_ticket(
        &self,
        _: &ServerName<'static>,
    ) -> Option<rustls::client::Tls13ClientSessionValue> {
        // Newest first: the oldest tickets are the likeliest to have expired.
        self.with(|i| i.tls13.pop_back())
    }
}

/// Everything the workers share, fixed before the first operation.
struct Shared {
    mode: Mode,
    http2: bool,
    addr: SocketAddr,
    server_name: ServerName<'static>,
    connector: TlsConnector,
    /// Pre-rendered HTTP/1.1 request bytes.
    request: Vec<u8>,
    h2_uri: http::Uri,
    timeout: Duration,
    measure_start: Instant,
    limit: Limit,
    claimed: AtomicU64,
    stop: AtomicBool,
    pacer: Option<Pacer>,
}

enum Limit {
    Count(u64),
    Until(Instant),
}

impl Shared {
    /// Waits for the rate limiter, then decides whether another operation
    /// runs: `None` = stop, `Some(false)` = warm-up (not recorded),
    /// `Some(true)` = measured.
    async fn next_op(&self) -> Option<bool> {
        if let Some(p) = &self.pacer {
            p.wait().await;
        }
        if self.stop.load(Ordering::Relaxed) {
            return None;
        }
        let now = Instant::now();
        if now < self.measure_start {
            return Some(false);
        }
        let more = match self.limit {
            Limit::Count(n) => self.claimed.fetch_add(1, Ordering::Relaxed) < n,
            Limit::Until(deadline) => now < deadline,
        };
        more.then_some(true)
    }
}

/// Shared pacing: each operation takes the next free slot on a fixed grid,
/// so the total rate holds however many workers there are. A late worker
/// does not bank slots, so there is no burst after a stall.
struct Pacer {
    origin: Instant,
    interval_ns: u64,
    next_ns: AtomicU64,
}

impl Pacer {
    fn new(rate: f64) -> Self {
        Self {
            origin: Instant::now(),
            interval_ns: ((1e9 / rate) as u64).max(1),
            next_ns: AtomicU64::new(0),
        }
    }

    async fn wait(&self) {
        let now = u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let mut cur = self.next_ns.load(Ordering::Relaxed);
        loop {
            let slot = cur.max(now);
            match self.next_ns.compare_exchange_weak(
                cur,
                slot.saturating_add(self.interval_ns),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    if slot > now {
                        let at = self.origin + Duration::from_nanos(slot);
                        tokio::time::sleep_until(at.into()).await;
                    }
                    return;
                }
                Err(actual) => cur = actual,
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum ErrorKind {
    Connect,
    Timeout,
    Closed,
    Reset,
    Io,
    BadResponse,
    NoH2,
    Http2,
    Http(u16),
    TlsAlert(u8),
    TlsUnknownCa,
    TlsNameMismatch,
    TlsCertExpired,
    TlsBadServerCert,
    TlsIncompatible,
    TlsHandshake,
    Tls,
}

impl ErrorKind {
    fn is_tls(self) -> bool {
        matches!(
            self,
            ErrorKind::TlsAlert(_)
                | ErrorKind::TlsUnknownCa
                | ErrorKind::TlsNameMismatch
                | ErrorKind::TlsCertExpired
                | ErrorKind::TlsBadServerCert
                | ErrorKind::TlsIncompatible
                | ErrorKind::TlsHandshake
                | ErrorKind::Tls
        )
    }

    fn name(self) -> String {
        match self {
            ErrorKind::Connect => "connect".into(),
            ErrorKind::Timeout => "timeout".into(),
            ErrorKind::Closed => "closed".into(),
            ErrorKind::Reset => "reset".into(),
            ErrorKind::Io => "io".into(),
            ErrorKind::BadResponse => "bad_response".into(),
            ErrorKind::NoH2 => "no_h2".into(),
            ErrorKind::Http2 => "http2".into(),
            ErrorKind::Http(s) => format!("http_{s}"),
            ErrorKind::TlsAlert(a) => format!("tls_alert_{}", alert_name(a)),
            ErrorKind::TlsUnknownCa => "tls_unknown_ca".into(),
            ErrorKind::TlsNameMismatch => "tls_name_mismatch".into(),
            ErrorKind::TlsCertExpired => "tls_cert_expired".into(),
            ErrorKind::TlsBadServerCert => "tls_bad_server_cert".into(),
            ErrorKind::TlsIncompatible => "tls_incompatible".into(),
            ErrorKind::TlsHandshake => "tls_handshake".into(),
            ErrorKind::Tls => "tls".into(),
        }
    }
}

/// RFC 8446 / IANA alert names, which is what server logs and other tools
/// print, rather than rustls' CamelCase Debug names.
fn alert_name(code: u8) -> String {
    let name = match AlertDescription::from(code) {
        AlertDescription::CloseNotify => "close_notify",
        AlertDescription::UnexpectedMessage => "unexpected_message",
        AlertDescription::BadRecordMac => "bad_record_mac",
        AlertDescription::DecryptionFailed => "decryption_failed",
        AlertDescription::RecordOverflow => "record_overflow",
        AlertDescription::DecompressionFailure => "decompression_failure",
        AlertDescription::HandshakeFailure => "handshake_failure",
        AlertDescription::NoCertificate => "no_certificate",
        AlertDescription::BadCertificate => "bad_certificate",
        AlertDescription::UnsupportedCertificate => "unsupported_certificate",
        AlertDescription::CertificateRevoked => "certificate_revoked",
        AlertDescription::CertificateExpired => "certificate_expired",
        AlertDescription::CertificateUnknown => "certificate_unknown",
        AlertDescription::IllegalParameter => "illegal_parameter",
        AlertDescription::UnknownCA => "unknown_ca",
        AlertDescription::AccessDenied => "access_denied",
        AlertDescription::DecodeError => "decode_error",
        AlertDescription::DecryptError => "decrypt_error",
        AlertDescription::ExportRestriction => "export_restriction",
        AlertDescription::ProtocolVersion => "protocol_version",
        AlertDescription::InsufficientSecurity => "insufficient_security",
        AlertDescription::InternalError => "internal_error",
        AlertDescription::InappropriateFallback => "inappropriate_fallback",
        AlertDescription::UserCanceled => "user_canceled",
        AlertDescription::NoRenegotiation => "no_renegotiation",
        AlertDescription::MissingExtension => "missing_extension",
        AlertDescription::UnsupportedExtension => "unsupported_extension",
        AlertDescription::CertificateUnobtainable => "certificate_unobtainable",
        AlertDescription::UnrecognisedName => "unrecognized_name",
        AlertDescription::BadCertificateStatusResponse => "bad_certificate_status_response",
        AlertDescription::BadCertificateHashValue => "bad_certificate_hash_value",
        AlertDescription::UnknownPSKIdentity => "unknown_psk_identity",
        AlertDescription::CertificateRequired => "certificate_required",
        AlertDescription::NoApplicationProtocol => "no_application_protocol",
        AlertDescription::EncryptedClientHelloRequired => "encrypted_client_hello_required",
        _ => return code.to_string(),
    };
    name.to_string()
}

/// A failed operation: the kind is what gets counted, the detail is kept
/// once per kind so the report can show an example.
#[derive(Debug)]
struct OpError {
    kind: ErrorKind,
    detail: String,
}

impl OpError {
    fn new(kind: ErrorKind, detail: impl Into<String>) -> Self {
        Self {
            kind,
            detail: detail.into(),
        }
    }

    fn tls(e: &rustls::Error, handshaking: bool) -> Self {
        let kind = match e {
            rustls::Error::AlertReceived(a) => ErrorKind::TlsAlert(u8::from(*a)),
            rustls::Error::InvalidCertificate(c) => match c {
                CertificateError::UnknownIssuer => ErrorKind::TlsUnknownCa,
                CertificateError::NotValidForName
                | CertificateError::NotValidForNameContext { .. } => ErrorKind::TlsNameMismatch,
                CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                    ErrorKind::TlsCertExpired
                }
                _ => ErrorKind::TlsBadServerCert,
            },
            rustls::Error::PeerIncompatible(_) => ErrorKind::TlsIncompatible,
            _ if handshaking => ErrorKind::TlsHandshake,
            _ => ErrorKind::Tls,
        };
        Self::new(kind, e.to_string())
    }

    /// tokio-rustls reports TLS failures as `io::Error`s wrapping the
    /// `rustls::Error`; unwrap them so alerts get their own kind.
    fn io(e: &io::Error, handshaking: bool) -> Self {
        if let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
            return Self::tls(tls, handshaking);
        }
        let kind = match e.kind() {
            io::ErrorKind::UnexpectedEof => ErrorKind::Closed,
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe => ErrorKind::Reset,
            io::ErrorKind::TimedOut => ErrorKind::Timeout,
            _ => ErrorKind::Io,
        };
        Self::new(kind, e.to_string())
    }

    fn hyper(e: &hyper::Error) -> Self {
        let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
        while let Some(err) = cur {
            if let Some(tls) = err.downcast_ref::<rustls::Error>() {
                return Self::tls(tls, false);
            }
            if let Some(io_err) = err.downcast_ref::<io::Error>() {
                let mut op = Self::io(io_err, false);
                op.detail = e.to_string() + ": " + &op.detail;
                return op;
            }
            cur = err.source();
        }
        let kind = if e.is_incomplete_message() || e.is_closed() || e.is_canceled() {
            ErrorKind::Closed
        } else if e.is_parse() {
            ErrorKind::BadResponse
        } else {
            ErrorKind::Http2
        };
        let mut detail = e.to_string();
        if let Some(src) = std::error::Error::source(e) {
            detail = format!("{detail}: {src}");
        }
        Self::new(kind, detail)
    }

    fn timeout(limit: Duration) -> Self {
        Self::new(
            ErrorKind::Timeout,
            format!(
                "no complete response within {}",
                humantime::format_duration(limit)
            ),
        )
    }

    fn bad(msg: &'static str) -> Self {
        Self::new(ErrorKind::BadResponse, msg)
    }
}

/// Per-worker results; merged once at the end so workers never contend.
#[derive(Default)]
struct Stats {
    latency_us: Vec<u32>,
    failed: u64,
    handshakes: u64,
    resumed: u64,
    /// idle mode: connections still open at the end of the hold.
    held: u64,
    errors: HashMap<ErrorKind, (u64, String)>,
}

impl Stats {
    fn ok(&mut self, took: Duration) {
        self.latency_us
            .push(u32::try_from(took.as_micros()).unwrap_or(u32::MAX));
    }

    fn fail(&mut self, e: OpError) {
        self.failed += 1;
        self.note(e);
    }

    /// Records an error kind without failing an operation (idle mode: a
    /// connection opened fine, then lost during the hold).
    fn note(&mut self, e: OpError) {
        self.errors
            .entry(e.kind)
            .and_modify(|(n, _)| *n += 1)
            .or_insert((1, e.detail));
    }

    fn handshake(&mut self, resumed: bool) {
        self.handshakes += 1;
        self.resumed += u64::from(resumed);
    }

    fn merge(&mut self, other: Stats) {
        self.latency_us.extend_from_slice(&other.latency_us);
        self.failed += other.failed;
        self.handshakes += other.handshakes;
        self.resumed += other.resumed;
        self.held += other.held;
        for (k, (n, detail)) in other.errors {
            self.errors
                .entry(k)
                .and_modify(|(m, _)| *m += n)
                .or_insert((n, detail));
        }
    }
}

/// A fresh TLS connection and whether its handshake resumed a session.
struct Connected {
    tls: TlsStream<TcpStream>,
    resumed: bool,
    /// The request went out with the handshake's final flight.
    request_sent: bool,
}

/// TCP connect + TLS handshake. With `early`, the request is queued in
/// rustls before the handshake so it leaves in the same write as the
/// client Finished (as browsers do in TLS 1.3): one syscall and one server
/// wake-up fewer per operation. It is not 0-RTT data; the server sees it
/// only after the handshake completes.
async fn connect(shared: &Shared, early: Option<&[u8]>) -> Result<Connected, OpError> {
    let tcp = TcpStream::connect(shared.addr)
        .await
        .map_err(|e| OpError::new(ErrorKind::Connect, format!("connect {}: {e}", shared.addr)))?;
    // The request follows the handshake immediately; Nagle would hold it
    // back waiting for the ACK of the client Finished.
    let _ = tcp.set_nodelay(true);
    let mut request_sent = false;
    let tls = shared
        .connector
        .connect_with(shared.server_name.clone(), tcp, |conn| {
            if let Some(req) = early {
                request_sent = io::Write::write_all(&mut conn.writer(), req).is_ok();
            }
        })
        .await
        .map_err(|e| OpError::io(&e, true))?;
    let resumed = tls.get_ref().1.handshake_kind() == Some(HandshakeKind::Resumed);
    Ok(Connected {
        tls,
        resumed,
        request_sent,
    })
}

/// full / resume: one connection per operation.
async fn one_shot(
    shared: &Shared,
    buf: &mut RespBuf,
    stats: &mut Stats,
    record: bool,
) -> Result<Duration, OpError> {
    let started = Instant::now();
    let Connected {
        mut tls,
        resumed,
        request_sent,
    } = connect(shared, Some(&shared.request)).await?;
    buf.clear();
    let head = if request_sent {
        read_response(&mut tls, buf).await?
    } else {
        exchange(&mut tls, &shared.request, buf).await?
    };
    // Only an answer proves the server accepted the handshake: in TLS 1.3 a
    // refused client certificate is reported after the client's side is done.
    if record {
        stats.handshake(resumed);
    }
    let took = started.elapsed();
    // Polite close (close_notify) so the server sees a clean shutdown rather
    // than a reset; not part of the measured latency.
    let _ = tls.shutdown().await;
    check_status(head.status)?;
    Ok(took)
}

fn check_status(status: u16) -> Result<(), OpError> {
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(OpError::new(
            ErrorKind::Http(status),
            format!("server answered {status}"),
        ))
    }
}

async fn exchange(
    tls: &mut TlsStream<TcpStream>,
    request: &[u8],
    buf: &mut RespBuf,
) -> Result<Head, OpError> {
    tls.write_all(request)
        .await
        .map_err(|e| OpError::io(&e, false))?;
    tls.flush().await.map_err(|e| OpError::io(&e, false))?;
    read_response(tls, buf).await
}

async fn run_one_shot(shared: Arc<Shared>) -> Stats {
    let mut stats = Stats::default();
    let mut buf = RespBuf::new();
    while let Some(record) = shared.next_op().await {
        let res = tokio::time::timeout(
            shared.timeout,
            one_shot(&shared, &mut buf, &mut stats, record),
        )
        .await
        .unwrap_or_else(|_| Err(OpError::timeout(shared.timeout)));
        if record {
            match res {
                Ok(took) => stats.ok(took),
                Err(e) => stats.fail(e),
            }
        }
    }
    stats
}

/// Opens a connection for a keepalive worker; a failure or timeout is
/// recorded as one failed operation.
async fn open<T>(
    shared: &Shared,
    stats: &mut Stats,
    record: bool,
    fut: impl Future<Output = Result<T, OpError>>,
) -> Option<T> {
    let res = tokio::time::timeout(shared.timeout, fut)
        .await
        .unwrap_or_else(|_| Err(OpError::timeout(shared.timeout)));
    match res {
        Ok(conn) => Some(conn),
        Err(e) => {
            if record {
                stats.fail(e);
            }
            None
        }
    }
}

async fn run_keepalive_h1(shared: Arc<Shared>) -> Stats {
    let mut stats = Stats::default();
    let mut buf = RespBuf::new();
    let mut conn: Option<TlsStream<TcpStream>> = None;
    // Resumed flag of a connection that has not answered yet: in TLS 1.3 a
    // server refusing our certificate says so only after our handshake has
    // "completed", so a handshake counts once the first response arrives.
    let mut unconfirmed: Option<bool> = None;
    while let Some(record) = shared.next_op().await {
        let tls = match conn.as_mut() {
            Some(tls) => tls,
            None => {
                let Some(c) = open(&shared, &mut stats, record, connect(&shared, None)).await
                else {
                    continue;
                };
                buf.clear();
                unconfirmed = Some(c.resumed);
                conn.insert(c.tls)
            }
        };
        let started = Instant::now();
        let res = tokio::time::timeout(shared.timeout, exchange(tls, &shared.request, &mut buf))
            .await
            .unwrap_or_else(|_| Err(OpError::timeout(shared.timeout)));
        let took = started.elapsed();
        let res = match res {
            Ok(head) => {
                if let Some(resumed) = unconfirmed.take() {
                    if record {
                        stats.handshake(resumed);
                    }
                }
                if !head.keep_alive {
                    conn = None;
                }
                check_status(head.status)
            }
            Err(e) => {
                // State of the stream is unknown after a failure.
                conn = None;
                Err(e)
            }
        };
        if record {
            match res {
                Ok(()) => stats.ok(took),
                Err(e) => stats.fail(e),
            }
        }
    }
    if let Some(mut tls) = conn {
        let _ = tls.shutdown().await;
    }
    stats
}

/// Remembers the most telling I/O error seen on an h2 connection. h2
/// flattens I/O errors into strings, which would turn "the server sent
/// alert certificate_required" into a generic I/O error.
struct Tap {
    inner: TlsStream<TcpStream>,
    seen: Arc<std::sync::Mutex<Option<OpError>>>,
}

impl Tap {
    fn note<T>(&self, res: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if let Poll::Ready(Err(e)) = &res {
            let new = OpError::io(e, false);
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            // A TLS alert explains a later broken pipe, not the reverse.
            if seen
                .as_ref()
                .is_none_or(|old| !old.kind.is_tls() && new.kind.is_tls())
            {
                *seen = Some(new);
            }
        }
        res
    }
}

impl AsyncRead for Tap {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        self.note(res)
    }
}

impl AsyncWrite for Tap {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.note(res)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.note(res)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let res = Pin::new(&mut self.inner).poll_flush(cx);
        self.note(res)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let res = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.note(res)
    }
}

/// One h2 connection; a worker keeps one stream in flight on it.
struct H2Conn {
    sender: http2::SendRequest<Empty<Bytes>>,
    seen: Arc<std::sync::Mutex<Option<OpError>>>,
    unconfirmed: Option<bool>,
}

impl H2Conn {
    /// Prefers the error the transport saw over hyper's summary of it.
    fn error(&self, e: &hyper::Error) -> OpError {
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner()).take();
        seen.unwrap_or_else(|| OpError::hyper(e))
    }
}

async fn connect_h2(shared: &Shared) -> Result<H2Conn, OpError> {
    let Connected { tls, resumed, .. } = connect(shared, None).await?;
    if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
        return Err(OpError::new(
            ErrorKind::NoH2,
            "server did not select h2 via ALPN",
        ));
    }
    let seen = Arc::new(std::sync::Mutex::new(None));
    let tap = Tap {
        inner: tls,
        seen: seen.clone(),
    };
    let (sender, conn) = match http2::Builder::new(TokioExecutor::new())
        .handshake(TokioIo::new(tap))
        .await
    {
        Ok(pair) => pair,
        Err(e) => {
            let seen = seen.lock().unwrap_or_else(|p| p.into_inner()).take();
            return Err(seen.unwrap_or_else(|| OpError::hyper(&e)));
        }
    };
    // The connection future drives all I/O; it ends when the sender is dropped.
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(H2Conn {
        sender,
        seen,
        unconfirmed: Some(resumed),
    })
}

async fn h2_request(conn: &mut H2Conn, shared: &Shared) -> Result<u16, OpError> {
    if let Err(e) = conn.sender.ready().await {
        return Err(conn.error(&e));
    }
    let mut req = http::Request::new(Empty::<Bytes>::new());
    *req.uri_mut() = shared.h2_uri.clone();
    req.headers_mut().insert(
        http::header::USER_AGENT,
        http::HeaderValue::from_static(USER_AGENT),
    );
    let resp = match conn.sender.send_request(req).await {
        Ok(resp) => resp,
        Err(e) => return Err(conn.error(&e)),
    };
    let status = resp.status().as_u16();
    let mut body = resp.into_body();
    // Drain frame by frame: the body is discarded, so never buffer it whole.
    while let Some(frame) = body.frame().await {
        if let Err(e) = frame {
            return Err(conn.error(&e));
        }
    }
    Ok(status)
}

async fn run_keepalive_h2(shared: Arc<Shared>) -> Stats {
    let mut stats = Stats::default();
    let mut conn: Option<H2Conn> = None;
    while let Some(record) = shared.next_op().await {
        if conn.as_ref().is_some_and(|c| c.sender.is_closed()) {
            conn = None;
        }
        let h2 = match conn.as_mut() {
            Some(c) => c,
            None => {
                let Some(c) = open(&shared, &mut stats, record, connect_h2(&shared)).await else {
                    continue;
                };
                conn.insert(c)
            }
        };
        let started = Instant::now();
        let res = tokio::time::timeout(shared.timeout, h2_request(h2, &shared))
            .await
            .unwrap_or_else(|_| Err(OpError::timeout(shared.timeout)));
        let took = started.elapsed();
        let res = match res {
            Ok(status) => {
                if let Some(resumed) = h2.unconfirmed.take() {
                    if record {
                        stats.handshake(resumed);
                    }
                }
                check_status(status)
            }
            Err(e) => {
                conn = None;
                Err(e)
            }
        };
        if record {
            match res {
                Ok(()) => stats.ok(took),
                Err(e) => stats.fail(e),
            }
        }
    }
    stats
}

/// What `idle` measured: per-connection stats and how long opening took.
struct IdleOutcome {
    stats: Stats,
    ramp: Duration,
}

/// idle: opens `--concurrency` connections with at most `--ramp-parallel`
/// handshakes in flight, announces the hold on stderr, keeps every
/// connection open and idle for `--duration`, then closes them.
async fn run_idle(shared: Arc<Shared>, cli: &Cli) -> IdleOutcome {
    let total = cli.concurrency;
    let hold = cli.duration.unwrap_or(Duration::from_secs(10));
    let ramp_slots = Arc::new(tokio::sync::Semaphore::new(cli.ramp_parallel as usize));
    let (hold_tx, hold_rx) = tokio::sync::watch::channel::<Option<Instant>>(None);
    let ramp_left = Arc::new(AtomicU64::new(u64::from(total)));
    let opened = Arc::new(AtomicU64::new(0));
    let ramp_over = Arc::new(tokio::sync::Notify::new());
    let started = Instant::now();
    let mut handles = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let shared = shared.clone();
        let ramp_slots = ramp_slots.clone();
        let hold_rx = hold_rx.clone();
        let ramp_left = ramp_left.clone();
        let opened = opened.clone();
        let ramp_over = ramp_over.clone();
        handles.push(tokio::spawn(async move {
            let mut stats = Stats::default();
            let conn = open_idle(&shared, &ramp_slots, &mut stats).await;
            if conn.is_some() {
                opened.fetch_add(1, Ordering::Relaxed);
            }
            if ramp_left.fetch_sub(1, Ordering::AcqRel) == 1 {
                ramp_over.notify_one();
            }
            if let Some(tls) = conn {
                hold_idle(tls, hold_rx, &mut stats).await;
            }
            stats
        }));
    }
    drop(hold_rx);
    // Wait for the ramp (or Ctrl-C, which the signal task flags).
    while ramp_left.load(Ordering::Acquire) > 0 && !shared.stop.load(Ordering::Relaxed) {
        tokio::select! {
            () = ramp_over.notified() => {}
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
    let ramp = started.elapsed();
    eprintln!(
        "certgate-load: holding {} connections for {} (opened in {:.2} s)",
        opened.load(Ordering::Relaxed),
        humantime::format_duration(hold),
        ramp.as_secs_f64()
    );
    let deadline = Instant::now() + hold;
    let _ = hold_tx.send(Some(deadline));
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(deadline.into()) => break,
            () = tokio::time::sleep(Duration::from_millis(100)) => {
                if shared.stop.load(Ordering::Relaxed) {
                    let _ = hold_tx.send(Some(Instant::now()));
                    break;
                }
            }
        }
    }
    let mut stats = Stats::default();
    for h in handles {
        match h.await {
            Ok(s) => stats.merge(s),
            Err(e) => eprintln!("certgate-load: worker failed: {e}"),
        }
    }
    IdleOutcome { stats, ramp }
}

/// One idle connection: TCP + full handshake + one keep-alive request whose
/// response must be 2xx; records the outcome.
async fn open_idle(
    shared: &Shared,
    ramp_slots: &tokio::sync::Semaphore,
    stats: &mut Stats,
) -> Option<TlsStream<TcpStream>> {
    let Ok(_slot) = ramp_slots.acquire().await else {
        return None;
    };
    if shared.stop.load(Ordering::Relaxed) {
        return None;
    }
    if let Some(p) = &shared.pacer {
        p.wait().await;
    }
    let started = Instant::now();
    let attempt = async {
        let Connected {
            mut tls,
            resumed,
            request_sent,
        } = connect(shared, Some(&shared.request)).await?;
        // Small: the response is read once and the buffer dropped before the hold.
        let mut buf = RespBuf::with_capacity(2048);
        let head = if request_sent {
            read_response(&mut tls, &mut buf).await?
        } else {
            exchange(&mut tls, &shared.request, &mut buf).await?
        };
        stats.handshake(resumed);
        check_status(head.status)?;
        if !head.keep_alive || buf.start != buf.end {
            return Err(OpError::new(
                ErrorKind::BadResponse,
                "the server will not keep the connection open (Connection: close or extra data)",
            ));
        }
        Ok(tls)
    };
    let res = tokio::time::timeout(shared.timeout, attempt)
        .await
        .unwrap_or_else(|_| Err(OpError::timeout(shared.timeout)));
    match res {
        Ok(tls) => {
            stats.ok(started.elapsed());
            Some(tls)
        }
        Err(e) => {
            stats.fail(e);
            None
        }
    }
}

/// Keeps `tls` open without sending anything until the hold deadline, and
/// notices a server closing it meanwhile.
async fn hold_idle(
    mut tls: TlsStream<TcpStream>,
    mut hold_rx: tokio::sync::watch::Receiver<Option<Instant>>,
    stats: &mut Stats,
) {
    let mut scratch = [0u8; 64];
    loop {
        // None until the ramp is over; Ctrl-C moves it to now.
        let deadline = hold_rx.borrow_and_update().map(tokio::time::Instant::from);
        tokio::select! {
            () = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            } => break,
            changed = hold_rx.changed() => {
                if changed.is_err() {
                    // The coordinator is gone: the run is being torn down.
                    return;
                }
            }
            // rustls handles post-handshake messages (tickets) itself, so a
            // read only completes on application data, EOF or an error.
            read = tls.read(&mut scratch) => {
                if lost(read, stats) {
                    return;
                }
            }
        }
    }
    stats.held += 1;
    let _ = tokio::time::timeout(Duration::from_secs(1), tls.shutdown()).await;
}

/// Whether a read on an idle connection means the server dropped it; notes why.
fn lost(read: io::Result<usize>, stats: &mut Stats) -> bool {
    match read {
        Ok(0) => {
            stats.note(OpError::new(
                ErrorKind::Closed,
                "the server closed an idle connection during the hold",
            ));
            true
        }
        // Unsolicited data: ignore it, the connection is still open.
        Ok(_) => false,
        Err(e) => {
            stats.note(OpError::io(&e, false));
            true
        }
    }
}

const USER_AGENT: &str = concat!("certgate-load/", env!("CARGO_PKG_VERSION"));
/// Response heads and chunk-size lines beyond this are treated as garbage.
const MAX_HEAD: usize = 64 * 1024;
const MAX_LINE: usize = 8 * 1024;

/// Per-worker receive buffer; `start..end` is unread data. Body bytes are
/// consumed in place and never copied, so the buffer only grows for
/// unusually large response heads.
struct RespBuf {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

#[derive(Debug, PartialEq, Eq)]
struct Head {
    status: u16,
    /// Whether the connection may carry another request.
    keep_alive: bool,
}

impl RespBuf {
    fn new() -> Self {
        Self::with_capacity(16 * 1024)
    }

    fn with_capacity(bytes: usize) -> Self {
        Self {
            buf: vec![0; bytes],
            start: 0,
            end: 0,
        }
    }

    fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
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
    async fn line<S: AsyncRead + Unpin>(
        &mut self,
        s: &mut S,
    ) -> Result<std::ops::Range<usize>, OpError> {
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
            let avail = (self.end - self.start) as u64;
            let take = avail.min(n);
            // `take` <= avail, which is a usize.
            self.start += take as usize;
            n -= take;
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

/// Parses a response head (status line + headers, without the final CRLF
/// CRLF) into status, body framing and connection persistence.
fn parse_head(head: &[u8]) -> Result<(Head, Framing), OpError> {
    let mut lines = head
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, |&b| b == b' ');
    let version = parts.next().unwrap_or_default();
    let http10 = match version {
        b"HTTP/1.1" => false,
        b"HTTP/1.0" => true,
        _ => return Err(OpError::bad("not an HTTP/1.x status line")),
    };
    let status = parts
        .next()
        .filter(|c| c.len() == 3 && c.iter().all(u8::is_ascii_digit))
        .and_then(|c| std::str::from_utf8(c).ok())
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| OpError::bad("bad status code"))?;
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut close = http10;
    for line in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return Err(OpError::bad("header line without ':'"));
        };
        let name = &line[..colon];
        let value = line[colon + 1..].trim_ascii();
        if name.eq_ignore_ascii_case(b"content-length") {
            let n = std::str::from_utf8(value)
                .ok()
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| OpError::bad("bad Content-Length"))?;
            if length.is_some_and(|m| m != n) {
                return Err(OpError::bad("conflicting Content-Length headers"));
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            // Only the last coding decides whether the body is chunked.
            chunked = value
                .rsplit(|&b| b == b',')
                .next()
                .is_some_and(|c| c.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if name.eq_ignore_ascii_case(b"connection") {
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
    ))
}

/// Reads one complete response (skipping 1xx interim responses) and
/// discards the body.
async fn read_response<S: AsyncRead + Unpin>(
    s: &mut S,
    buf: &mut RespBuf,
) -> Result<Head, OpError> {
    loop {
        let mut scanned = 0;
        let head_end = loop {
            if let Some(i) = find(&buf.data()[scanned..], b"\r\n\r\n") {
                break buf.start + scanned + i;
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
        };
        let (head, framing) = parse_head(&buf.buf[buf.start..head_end])?;
        buf.start = head_end + 4;
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

#[derive(Serialize)]
struct Report {
    mode: &'static str,
    http2: bool,
    target: String,
    sni: String,
    concurrency: u32,
    threads: u16,
    elapsed_secs: f64,
    ops: u64,
    ok: u64,
    failed: u64,
    ops_per_sec: f64,
    handshakes: u64,
    resumed: u64,
    /// idle mode only: connections still open at the end of the hold.
    #[serde(skip_serializing_if = "Option::is_none")]
    held: Option<u64>,
    latency_ms: Option<Latency>,
    errors: BTreeMap<String, u64>,
    error_examples: BTreeMap<String, String>,
}

#[derive(Serialize)]
struct Latency {
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
}

fn latency(sorted_us: &[u32]) -> Option<Latency> {
    let last = *sorted_us.last()?;
    // Nearest-rank percentile.
    let pct = |p: f64| {
        let rank = ((p * sorted_us.len() as f64).ceil() as usize).clamp(1, sorted_us.len());
        f64::from(sorted_us[rank - 1]) / 1000.0
    };
    Some(Latency {
        p50: pct(0.50),
        p90: pct(0.90),
        p99: pct(0.99),
        max: f64::from(last) / 1000.0,
    })
}

fn print_table(r: &Report) {
    let what = if r.mode == "keepalive" {
        "requests/s"
    } else if r.mode == "idle" {
        "opened/s"
    } else {
        "handshakes/s"
    };
    let proto = if r.http2 { "HTTP/2" } else { "HTTP/1.1" };
    println!("mode          {} ({proto})", r.mode);
    println!("target        {} (sni {})", r.target, r.sni);
    println!("concurrency   {} on {} thread(s)", r.concurrency, r.threads);
    println!("elapsed       {:.2} s", r.elapsed_secs);
    println!("ops           {} ({} ok, {} failed)", r.ops, r.ok, r.failed);
    println!("{what:<14}{:.1}", r.ops_per_sec);
    println!("handshakes    {} ({} resumed)", r.handshakes, r.resumed);
    if let Some(held) = r.held {
        println!("held          {held} connections until the end of the hold");
    }
    match &r.latency_ms {
        Some(l) => println!(
            "latency ms    p50 {:.3}  p90 {:.3}  p99 {:.3}  max {:.3}",
            l.p50, l.p90, l.p99, l.max
        ),
        None => println!("latency ms    -"),
    }
    if r.errors.is_empty() {
        println!("errors        none");
    } else {
        println!("errors");
        let width = r.errors.keys().map(String::len).max().unwrap_or(0);
        for (kind, n) in &r.errors {
            let example = r.error_examples.get(kind).map_or("", String::as_str);
            println!("  {kind:<width$}  {n:>9}  e.g. {example}");
        }
    }
}

struct Setup {
    cli: Cli,
    target_host: String,
    sni: String,
    server_name: ServerName<'static>,
    config: Arc<ClientConfig>,
    request: Vec<u8>,
    h2_uri: http::Uri,
}

fn split_target(target: &str) -> Result<(String, u16), SetupError> {
    let bad = || SetupError::TargetSyntax(target.to_string());
    let (host, port) = target.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() || port == 0 {
        return Err(bad());
    }
    Ok((host.to_string(), port))
}

fn setup(cli: Cli) -> Result<Setup, SetupError> {
    if cli.http2 && cli.mode != Mode::Keepalive {
        return Err(SetupError::Http2Mode);
    }
    if cli.mode == Mode::Idle {
        if cli.count.is_some() {
            return Err(SetupError::IdleFlag("count"));
        }
        if cli.warmup.is_some() {
            return Err(SetupError::IdleFlag("warmup"));
        }
    }
    raise_fd_limit(cli.concurrency)?;
    if !cli.path.starts_with('/')
        || cli
            .path
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return Err(SetupError::Path(cli.path.clone()));
    }
    let (host, port) = split_target(&cli.target)?;
    let sni = match &cli.sni {
        Some(s) => s.clone(),
        None if host.parse::<IpAddr>().is_ok() => "localhost".to_string(),
        None => host.clone(),
    };
    let server_name =
        ServerName::try_from(sni.clone()).map_err(|_| SetupError::Sni(sni.clone()))?;
    // Host names the virtual host the certificate was issued for, so follow
    // the SNI; an IPv6 literal needs brackets.
    let host_name = if sni.contains(':') {
        format!("[{sni}]")
    } else {
        sni.clone()
    };
    let authority = if port == 443 {
        host_name
    } else {
        format!("{host_name}:{port}")
    };
    let connection = if matches!(cli.mode, Mode::Keepalive | Mode::Idle) {
        ""
    } else {
        "Connection: close\r\n"
    };
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: {USER_AGENT}\r\nAccept: */*\r\n{connection}\r\n",
        cli.path
    )
    .into_bytes();
    let h2_uri = http::Uri::builder()
        .scheme("https")
        .authority(authority.as_str())
        .path_and_query(cli.path.as_str())
        .build()
        .map_err(|_| SetupError::Path(cli.path.clone()))?;
    let config = Arc::new(build_tls(&cli)?);
    Ok(Setup {
        cli,
        target_host: host,
        sni,
        server_name,
        config,
        request,
        h2_uri,
    })
}

/// Descriptors beyond the connections: stdio, the runtime's epoll and
/// eventfd, and connections closing while others open.
const SPARE_FDS: u64 = 64;

/// Raises the soft RLIMIT_NOFILE to the hard limit and checks that
/// `concurrency` connections fit.
#[cfg(unix)]
fn raise_fd_limit(concurrency: u32) -> Result<(), SetupError> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let needed = u64::from(concurrency) + SPARE_FDS;
    let limit = getrlimit(Resource::Nofile);
    let hard = limit.maximum.unwrap_or(u64::MAX);
    let mut soft = limit.current.unwrap_or(u64::MAX);
    if soft < needed && soft < hard {
        let raised = Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        if setrlimit(Resource::Nofile, raised).is_ok() {
            soft = hard;
        }
    }
    if soft < needed {
        return Err(SetupError::Fds {
            concurrency,
            needed,
            soft,
            hard,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn raise_fd_limit(_concurrency: u32) -> Result<(), SetupError> {
    Ok(())
}

/// Every operation reuses one address, so when a name has several (say
/// `localhost` as ::1 and 127.0.0.1 with the server on only one) take the
/// first that accepts a connection; if none does, the first, and let the
/// run report the connect errors.
async fn pick_addr(addrs: &[SocketAddr], limit: Duration) -> Option<SocketAddr> {
    if addrs.len() > 1 {
        for &addr in addrs {
            if let Ok(Ok(_)) = tokio::time::timeout(limit, TcpStream::connect(addr)).await {
                return Some(addr);
            }
        }
    }
    addrs.first().copied()
}

async fn run(s: Setup) -> Result<Report, SetupError> {
    let cli = &s.cli;
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(&cli.target)
        .await
        .map_err(|e| SetupError::Resolve {
            target: cli.target.clone(),
            msg: e.to_string(),
        })?
        .collect();
    let addr = pick_addr(&addrs, cli.timeout)
        .await
        .ok_or_else(|| SetupError::Resolve {
            target: cli.target.clone(),
            msg: format!("no address for {}", s.target_host),
        })?;
    let warmup = cli.warmup.unwrap_or(Duration::ZERO);
    let measure_start = Instant::now() + warmup;
    let limit = match cli.count {
        Some(n) => Limit::Count(n),
        None => Limit::Until(measure_start + cli.duration.unwrap_or(Duration::from_secs(10))),
    };
    let shared = Arc::new(Shared {
        mode: cli.mode,
        http2: cli.http2,
        addr,
        server_name: s.server_name.clone(),
        connector: TlsConnector::from(s.config.clone()),
        request: s.request.clone(),
        h2_uri: s.h2_uri.clone(),
        timeout: cli.timeout,
        measure_start,
        limit,
        claimed: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        pacer: cli.rate.map(Pacer::new),
    });
    if !cli.json {
        let limit = match cli.count {
            Some(n) => format!("{n} ops"),
            None => humantime::format_duration(cli.duration.unwrap_or(Duration::from_secs(10)))
                .to_string(),
        };
        eprintln!(
            "certgate-load: {} against {addr} (sni {}), {} workers, {limit}{}",
            cli.mode.name(),
            s.sni,
            cli.concurrency,
            if warmup.is_zero() {
                String::new()
            } else {
                format!(" after {} warm-up", humantime::format_duration(warmup))
            }
        );
    }

    // Ctrl-C ends the run early but still prints what was measured; a
    // second one does not wait for operations still in flight.
    let stopper = shared.clone();
    tokio::spawn(async move {
        while tokio::signal::ctrl_c().await.is_ok() {
            if stopper.stop.swap(true, Ordering::Relaxed) {
                std::process::exit(130);
            }
        }
    });

    let mut ramp_secs = None;
    let mut total = Stats::default();
    if cli.mode == Mode::Idle {
        let idle = run_idle(shared.clone(), cli).await;
        total = idle.stats;
        ramp_secs = Some(idle.ramp.as_secs_f64());
    }
    let workers = if cli.mode == Mode::Idle {
        0
    } else {
        cli.concurrency
    };
    let mut handles = Vec::with_capacity(workers as usize);
    for _ in 0..workers {
        let shared = shared.clone();
        handles.push(tokio::spawn(async move {
            match (shared.mode, shared.http2) {
                (Mode::Keepalive, true) => run_keepalive_h2(shared).await,
                (Mode::Keepalive, false) => run_keepalive_h1(shared).await,
                (Mode::Full | Mode::Resume, _) => run_one_shot(shared).await,
                (Mode::Idle, _) => Stats::default(),
            }
        }));
    }
    for h in handles {
        match h.await {
            Ok(stats) => total.merge(stats),
            Err(e) => eprintln!("certgate-load: worker failed: {e}"),
        }
    }
    let elapsed = Instant::now().saturating_duration_since(measure_start);

    total.latency_us.sort_unstable();
    let ok = total.latency_us.len() as u64;
    let elapsed_secs = elapsed.as_secs_f64();
    let mut errors = BTreeMap::new();
    let mut error_examples = BTreeMap::new();
    for (kind, (n, detail)) in total.errors {
        errors.insert(kind.name(), n);
        error_examples.insert(kind.name(), detail);
    }
    Ok(Report {
        mode: cli.mode.name(),
        http2: cli.http2,
        target: cli.target.clone(),
        sni: s.sni.clone(),
        concurrency: cli.concurrency,
        threads: cli.threads,
        elapsed_secs,
        ops: ok + total.failed,
        ok,
        failed: total.failed,
        ops_per_sec: match ramp_secs {
            Some(ramp) if ramp > 0.0 => ok as f64 / ramp,
            None if elapsed_secs > 0.0 => ok as f64 / elapsed_secs,
            _ => 0.0,
        },
        held: ramp_secs.map(|_| total.held),
        handshakes: total.handshakes,
        resumed: total.resumed,
        latency_ms: latency(&total.latency_us),
        errors,
        error_examples,
    })
}

/// clap's messages span several lines (usage, tips); the contract here is
/// one line on stderr and exit status 2.
fn cli_error(e: &clap::Error) -> String {
    let rendered = e.render().to_string();
    let msg = rendered
        .lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .filter(|l| !l.is_empty() && !l.starts_with("tip:"))
        .collect::<Vec<_>>()
        .join(" ");
    msg.strip_prefix("error: ").unwrap_or(&msg).to_string()
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => match e.kind() {
            clap::error::ErrorKind::DisplayHelp
            | clap::error::ErrorKind::DisplayVersion
            | clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => e.exit(),
            _ => {
                eprintln!("certgate-load: {} (see --help)", cli_error(&e));
                return ExitCode::from(2);
            }
        },
    };
    let json = cli.json;
    let threads = usize::from(cli.threads);
    let result = setup(cli).and_then(|s| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
            .map_err(SetupError::Runtime)?
            .block_on(run(s))
    });
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("certgate-load: {e}");
            return ExitCode::from(2);
        }
    };
    if json {
        match serde_json::to_string(&report) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("certgate-load: cannot encode report: {e}");
                return ExitCode::from(1);
            }
        }
    } else {
        print_table(&report);
    }
    if report.ok == 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn alert_names() {
        let code = u8::from(AlertDescription::CertificateRequired);
        assert_eq!(
            ErrorKind::TlsAlert(code).name(),
            "tls_alert_certificate_required"
        );
        assert_eq!(ErrorKind::TlsAlert(0xfe).name(), "tls_alert_254");
    }

    #[tokio::test]
    async fn picks_the_address_that_listens() {
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind")
            .local_addr()
            .expect("addr");
        let open = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let open_addr = open.local_addr().expect("addr");
        let picked = pick_addr(&[closed, open_addr], Duration::from_secs(1)).await;
        assert_eq!(picked, Some(open_addr));
        assert_eq!(pick_addr(&[], Duration::from_secs(1)).await, None);
    }

    #[test]
    fn target_parsing() {
        assert_eq!(
            split_target("[::1]:8443").expect("v6"),
            ("::1".to_string(), 8443)
        );
        assert!(split_target("localhost").is_err());
        assert!(split_target("host:0").is_err());
    }
}
