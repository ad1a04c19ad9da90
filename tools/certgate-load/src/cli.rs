//! The command line: the flags (clap), their validation, and what a run is
//! prepared from them (the rendered request, the server name, the TLS
//! configuration). Everything here fails before any traffic is sent, and
//! every failure exits with status 2.

use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use rustls::ClientConfig;
use rustls::crypto::{SupportedKxGroup, aws_lc_rs};
use rustls_pki_types::ServerName;

pub(crate) const USER_AGENT: &str = concat!("certgate-load/", env!("CARGO_PKG_VERSION"));

/// mTLS load generator: handshakes/s (full, resume) or requests/s (keepalive).
#[derive(Parser, Debug)]
#[command(name = "certgate-load", version, about, long_about = None)]
pub(crate) struct Cli {
    /// Server address, host:port (resolved once at start-up).
    #[arg(long, value_name = "HOST:PORT")]
    pub(crate) target: String,
    /// Client certificate PEM; may hold the chain (leaf first).
    #[arg(long, requires = "key", value_name = "PEM")]
    pub(crate) cert: Option<PathBuf>,
    /// Client private key PEM (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, requires = "cert", value_name = "PEM")]
    pub(crate) key: Option<PathBuf>,
    /// CA certificate(s) PEM used to verify the server.
    #[arg(long, value_name = "PEM")]
    pub(crate) ca: PathBuf,
    /// TLS server name; default: host part of --target, or "localhost" for an IP.
    #[arg(long)]
    pub(crate) sni: Option<String>,
    /// What one operation is.
    #[arg(long, value_enum, default_value_t = Mode::Full)]
    pub(crate) mode: Mode,
    /// Use HTTP/2 (ALPN h2) in keepalive mode.
    #[arg(long)]
    pub(crate) http2: bool,
    /// Concurrent workers (= connections in keepalive mode).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub(crate) concurrency: u32,
    /// Run for this long, e.g. 10s, 1m [default: 10s].
    #[arg(long, value_parser = humantime::parse_duration, conflicts_with = "count")]
    pub(crate) duration: Option<Duration>,
    /// Stop after this many operations in total.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) count: Option<u64>,
    /// Cap on total operations per second across all workers.
    #[arg(long, value_name = "OPS_PER_SEC", value_parser = parse_rate)]
    pub(crate) rate: Option<f64>,
    /// Request path (and query).
    #[arg(long, default_value = "/")]
    pub(crate) path: String,
    /// Key-exchange groups to offer, in preference order [default: rustls default].
    #[arg(long, value_enum, value_delimiter = ',', value_name = "GROUP,...")]
    pub(crate) groups: Vec<Group>,
    /// Offer TLS 1.3 only (default: TLS 1.3 and 1.2).
    #[arg(long)]
    pub(crate) tls13_only: bool,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub(crate) json: bool,
    /// Run unmeasured for this long first, e.g. 1s.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub(crate) warmup: Option<Duration>,
    /// Per-operation timeout.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub(crate) timeout: Duration,
    /// idle mode: handshakes in flight at once while opening connections.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub(crate) ramp_parallel: u32,
    /// Runtime worker threads; keep 1 when pinning the tool to one core.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub(crate) threads: u16,
}

impl Cli {
    /// `--duration`, or its default when neither it nor `--count` was given.
    pub(crate) fn duration_or_default(&self) -> Duration {
        self.duration.unwrap_or(Duration::from_secs(10))
    }
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
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
    pub(crate) fn name(self) -> &'static str {
        match self {
            Mode::Full => "full",
            Mode::Resume => "resume",
            Mode::Keepalive => "keepalive",
            Mode::Idle => "idle",
        }
    }
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Group {
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
    pub(crate) fn kx(self) -> &'static dyn SupportedKxGroup {
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
pub(crate) enum SetupError {
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

impl SetupError {
    /// A certificate or key file named by `--flag` that cannot be used.
    pub(crate) fn file(flag: &'static str, path: &Path, msg: impl ToString) -> Self {
        SetupError::File {
            flag,
            path: path.display().to_string(),
            msg: msg.to_string(),
        }
    }
}

/// clap's messages span several lines (usage, tips); the contract here is
/// one line on stderr and exit status 2.
pub(crate) fn cli_error(e: &clap::Error) -> String {
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

/// A validated command line and everything prepared from it once, so that
/// no worker repeats the work per operation.
pub(crate) struct Setup {
    pub(crate) cli: Cli,
    pub(crate) target_host: String,
    pub(crate) sni: String,
    pub(crate) server_name: ServerName<'static>,
    pub(crate) config: Arc<ClientConfig>,
    /// The HTTP/1.1 request, rendered once and written as is.
    pub(crate) request: Vec<u8>,
    pub(crate) h2_uri: http::Uri,
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

pub(crate) fn setup(cli: Cli) -> Result<Setup, SetupError> {
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
    crate::fds::raise_fd_limit(cli.concurrency)?;
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
    let config = Arc::new(crate::tls::build_tls(&cli)?);
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

#[cfg(test)]
mod tests {
    use super::*;

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
