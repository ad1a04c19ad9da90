//! Configuration: the TOML schema ([`file`]), its defaults, and validation into [`Config`], a
//! runtime struct of typed values. Nothing downstream re-parses strings.
//!
//! Every error names the key, the bad value, why, and the fix, on one line:
//! `identity.cn: unknown field {corp}; known fields: {corp_id}, {user_id}`.
//! Relative paths in the file are relative to the working directory, as in nginx's prefix.

mod file;
mod template;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::{HeaderName, Uri};
use regex::Regex;

pub use template::{CnField, CnPart, CnTemplate};

use file::FileConfig;

/// The path `certgate serve` reads when `--config` is not given.
pub const DEFAULT_PATH: &str = "config/certgate.toml";

/// A configuration error: the key it concerns and a sentence saying what is wrong and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct ConfigError {
    /// The dotted TOML key, e.g. `server.listen` or `route[2].path`.
    pub key: String,
    /// What is wrong and the fix.
    pub message: String,
}

impl ConfigError {
    /// An error about `key`.
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// Who must present a client certificate during the TLS handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// The handshake fails without a valid client certificate (default).
    Required,
    /// A certificate is verified when offered; routes decide whether one is needed.
    Optional,
    /// No certificate is asked for.
    None,
}

/// `[server]`: the TLS listener.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// `listen`, default `0.0.0.0:8443`.
    pub listen: SocketAddr,
    /// `cert`: PEM chain, leaf first.
    pub cert: PathBuf,
    /// `key`: PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// `client_auth`, default `required`.
    pub client_auth: ClientAuth,
    /// `handshake_timeout`, default 10 s.
    pub handshake_timeout: Duration,
    /// `max_connections`, default 10 000.
    pub max_connections: usize,
    /// `shutdown_grace`, default 30 s.
    pub shutdown_grace: Duration,
    /// `dev_ca`: when set and `cert` is missing, a development CA is made in this directory.
    pub dev_ca: Option<PathBuf>,
}

/// One `[[trust.ca]]` entry: a CA generation whose certificates are accepted.
#[derive(Debug, Clone)]
pub struct TrustCa {
    /// `name`, shown in logs.
    pub name: String,
    /// `cert`: PEM with one or more CA certificates.
    pub cert: PathBuf,
}

/// `[identity]`: how a certificate's CN maps to a corporation and a user.
#[derive(Debug, Clone)]
pub struct IdentityConfig {
    /// `cn`, default `{corp_id} {user_id}`.
    pub template: CnTemplate,
    /// `corp_id`, default `^[0-9]{14}$`.
    pub corp_id: Regex,
    /// `user_id`, default `^[A-Za-z0-9]{1,30}$`.
    pub user_id: Regex,
}

/// `[headers]`: the names of the identity headers handed to the application.
#[derive(Debug, Clone)]
pub struct HeaderNames {
    /// `strip_prefix`, default `X-Client-` (stored lowercase).
    pub strip_prefix: String,
    /// `verify`, default `X-Client-Verify`.
    pub verify: HeaderName,
    /// `corp_id`, default `X-Client-Corp-Id`.
    pub corp_id: HeaderName,
    /// `user_id`, default `X-Client-User-Id`.
    pub user_id: HeaderName,
    /// `role`, default `X-Client-Role`.
    pub role: HeaderName,
    /// `serial`, default `X-Client-Cert-Serial`.
    pub serial: HeaderName,
    /// `not_after`, default `X-Client-Cert-Not-After`.
    pub not_after: HeaderName,
    /// `days_left`, default `X-Client-Cert-Days-Left`.
    pub days_left: HeaderName,
    /// `sha256`, default `X-Client-Cert-Sha256`.
    pub sha256: HeaderName,
    /// `subject_dn`, default `X-Client-Subject-DN`.
    pub subject_dn: HeaderName,
    /// `issuer_dn`, default `X-Client-Issuer-DN`.
    pub issuer_dn: HeaderName,
    /// `rfc9440`, default false: add `Client-Cert` / `Client-Cert-Chain`.
    pub rfc9440: bool,
    /// `xfcc`, default false: add Envoy's `X-Forwarded-Client-Cert`.
    pub xfcc: bool,
}

impl HeaderNames {
    /// Every configured identity header name (the ones always stripped from requests).
    pub fn all(&self) -> [&HeaderName; 10] {
        [
            &self.verify,
            &self.corp_id,
            &self.user_id,
            &self.role,
            &self.serial,
            &self.not_after,
            &self.days_left,
            &self.sha256,
            &self.subject_dn,
            &self.issuer_dn,
        ]
    }
}

/// One `[[route]]`: a path prefix and what it demands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// `path`: a prefix matched on whole segments (`/api` matches `/api` and `/api/x`, not `/apix`).
    pub path: String,
    /// `require_cert`, default true.
    pub require_cert: bool,
}

/// Where requests go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamTarget {
    /// `builtin:echo`: answered in-process with the request's method, path and headers.
    Echo,
    /// `http://host:port` or `https://host:port`.
    Http(Uri),
}

/// `[upstream]`: the legacy application.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// `url`, default `builtin:echo`.
    pub target: UpstreamTarget,
    /// `ca`: PEM CA certificates for an `https://` upstream; default the system's roots.
    pub ca: Option<PathBuf>,
    /// `connect_timeout`, default 5 s.
    pub connect_timeout: Duration,
    /// `request_timeout`: time until the response head arrives, default 60 s.
    pub request_timeout: Duration,
    /// `pool_max_idle_per_host`, default 64.
    pub pool_max_idle_per_host: usize,
    /// `pool_idle_timeout`, default 90 s.
    pub pool_idle_timeout: Duration,
}

/// `[ops]`: the plain-HTTP operations listener.
#[derive(Debug, Clone)]
pub struct OpsConfig {
    /// `listen`, default `127.0.0.1:9090`; `""` turns the listener off.
    pub listen: Option<SocketAddr>,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines (default).
    Text,
    /// One JSON object per line.
    Json,
}

/// `[log]`.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// `format`, default `text`.
    pub format: LogFormat,
    /// `level`: a tracing filter such as `info` or `certgate=debug`, default `info`.
    pub level: String,
    /// `access`: one line per request, default true.
    pub access: bool,
}

/// `[store]`: the durable registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// `url`, default `sqlite://data/certgate.db`; `postgres://…` for replicas sharing one registry.
    pub url: String,
}

/// Key algorithm of the CAs and server-made keys certgate creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    /// `ecdsa-p256` (default).
    EcdsaP256,
    /// `rsa-2048`.
    Rsa2048,
}

/// `[pki]`: certgate's own issuing CA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PkiConfig {
    /// `dir`, default `data/pki`.
    pub dir: PathBuf,
    /// `key_type`, default `ecdsa-p256`.
    pub key_type: KeyType,
    /// `organization`: O of every CA and leaf, default `certgate development bank`.
    pub organization: String,
    /// `unit`: OU of the first issuing generation (later ones get `-G2`, `-G3`, …), default
    /// `Internet Banking CA`.
    pub unit: String,
    /// `validity_days` of issued client certificates, default 365.
    pub validity_days: u32,
}

/// `[lifecycle]`: the rules of enrollment and renewal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LifecycleConfig {
    /// `permit_ttl`: how long a temporary PIN stays usable, default 7 days.
    pub permit_ttl: Duration,
    /// `max_pin_failures` before a permit locks, default 5.
    pub max_pin_failures: u32,
    /// `retry_window`: an interrupted enrollment can be repeated with the same key, default 10 min.
    pub retry_window: Duration,
    /// `renew_window_days` before expiry in which renewal is allowed, default 30.
    pub renew_window_days: u32,
    /// `revoke_old_on_renew`, default false: the old certificate stays valid until it expires.
    pub revoke_old_on_renew: bool,
}

/// `[login]`: the application's ID + PIN login form, which certgate guards once a corporation
/// requires certificates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginConfig {
    /// `path` of the form's POST target, e.g. `/login`.
    pub path: String,
    /// `corp_field`: the form field holding the corporation ID.
    pub corp_field: String,
    /// `user_field`: the form field holding the user ID.
    pub user_field: String,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `[server]`.
    pub server: ServerConfig,
    /// `[[trust.ca]]`.
    pub trust: Vec<TrustCa>,
    /// `[identity]`.
    pub identity: IdentityConfig,
    /// `[headers]`.
    pub headers: HeaderNames,
    /// `[[route]]`, longest prefix first.
    pub routes: Vec<Route>,
    /// `[upstream]`.
    pub upstream: UpstreamConfig,
    /// `[ops]`.
    pub ops: OpsConfig,
    /// `[log]`.
    pub log: LogConfig,
    /// `[store]`.
    pub store: StoreConfig,
    /// `[pki]`.
    pub pki: PkiConfig,
    /// `[lifecycle]`.
    pub lifecycle: LifecycleConfig,
    /// `[login]`, when the application's login form is to be guarded.
    pub login: Option<LoginConfig>,
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|err| {
            ConfigError::new(
                "--config",
                format!(
                    "cannot read {}: {err}; pass an existing file with --config (default {DEFAULT_PATH})",
                    path.display()
                ),
            )
        })?;
        Self::parse(&text)
    }

    /// Parses and validates config text.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let deserializer = toml::Deserializer::parse(text).map_err(|err| {
            ConfigError::new(
                "toml",
                format!("not valid TOML: {}", one_line(err.message())),
            )
        })?;
        let file: FileConfig = serde_path_to_error::deserialize(deserializer).map_err(|err| {
            let key = err.path().to_string();
            let key = if key == "." { "toml".to_owned() } else { key };
            ConfigError::new(key, one_line(err.inner().message()))
        })?;
        validate(file)
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn validate(file: FileConfig) -> Result<Config, ConfigError> {
    let server = validate_server(file.server)?;
    let trust = validate_trust(file.trust)?;
    let identity = validate_identity(file.identity)?;
    let headers = validate_headers(file.headers)?;
    let routes = validate_routes(file.routes)?;
    let upstream = validate_upstream(file.upstream)?;
    let ops = OpsConfig {
        listen: match file.ops.listen.as_deref() {
            None => Some(SocketAddr::from(([127, 0, 0, 1], 9090))),
            Some("") => None,
            Some(text) => Some(parse_addr("ops.listen", text)?),
        },
    };
    let log = LogConfig {
        format: match file.log.format.as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(ConfigError::new(
                    "log.format",
                    format!("{other:?} is not a format; use \"text\" or \"json\""),
                ));
            }
        },
        level: {
            let level = file.log.level.unwrap_or_else(|| "info".to_owned());
            tracing_subscriber::EnvFilter::try_new(&level).map_err(|err| {
                ConfigError::new(
                    "log.level",
                    format!("{level:?} is not a log filter ({err}); use e.g. \"info\" or \"certgate=debug\""),
                )
            })?;
            level
        },
        access: file.log.access.unwrap_or(true),
    };
    Ok(Config {
        server,
        trust,
        identity,
        headers,
        routes,
        upstream,
        ops,
        log,
        store: validate_store(file.store)?,
        pki: validate_pki(file.pki)?,
        lifecycle: validate_lifecycle(file.lifecycle)?,
        login: validate_login(file.login)?,
    })
}

fn validate_server(file: file::ServerFile) -> Result<ServerConfig, ConfigError> {
    let client_auth = match file.client_auth.as_deref() {
        None | Some("required") => ClientAuth::Required,
        Some("optional") => ClientAuth::Optional,
        Some("none") => ClientAuth::None,
        Some(other) => {
            return Err(ConfigError::new(
                "server.client_auth",
                format!("{other:?} is not a mode; use \"required\", \"optional\" or \"none\""),
            ));
        }
    };
    let max_connections = match file.max_connections {
        None => 10_000,
        Some(n) if n >= 1 => usize::try_from(n).unwrap_or(usize::MAX),
        Some(n) => {
            return Err(ConfigError::new(
                "server.max_connections",
                format!("{n} is too small; use a positive number such as 10000"),
            ));
        }
    };
    Ok(ServerConfig {
        listen: parse_addr(
            "server.listen",
            file.listen.as_deref().unwrap_or("0.0.0.0:8443"),
        )?,
        cert: required_path(
            "server.cert",
            file.cert,
            "the server certificate chain (PEM)",
        )?,
        key: required_path("server.key", file.key, "the server private key (PEM)")?,
        client_auth,
        handshake_timeout: duration("server.handshake_timeout", file.handshake_timeout, "10s")?,
        max_connections,
        shutdown_grace: duration("server.shutdown_grace", file.shutdown_grace, "30s")?,
        dev_ca: file.dev_ca.filter(|dir| !dir.is_empty()).map(PathBuf::from),
    })
}

fn validate_trust(file: file::TrustFile) -> Result<Vec<TrustCa>, ConfigError> {
    // An empty list is fine here: certgate's own CA generations (`[pki]`) are trusted
    // automatically, and the TLS room refuses to start when nothing at all is trusted.
    let mut trust: Vec<TrustCa> = Vec::with_capacity(file.ca.len());
    for (index, ca) in file.ca.into_iter().enumerate() {
        let key = format!("trust.ca[{index}]");
        if ca.name.trim().is_empty() {
            return Err(ConfigError::new(
                format!("{key}.name"),
                "is empty; name the CA generation, e.g. \"g1\"",
            ));
        }
        if trust.iter().any(|seen| seen.name == ca.name) {
            return Err(ConfigError::new(
                format!("{key}.name"),
                format!(
                    "{:?} is used twice; give each CA generation its own name",
                    ca.name
                ),
            ));
        }
        if ca.cert.is_empty() {
            return Err(ConfigError::new(
                format!("{key}.cert"),
                "is empty; give the path of a PEM file with the CA certificate(s)",
            ));
        }
        trust.push(TrustCa {
            name: ca.name,
            cert: PathBuf::from(ca.cert),
        });
    }
    Ok(trust)
}

fn validate_identity(file: file::IdentityFile) -> Result<IdentityConfig, ConfigError> {
    let template = CnTemplate::parse(file.cn.as_deref().unwrap_or("{corp_id} {user_id}"))
        .map_err(|message| ConfigError::new("identity.cn", message))?;
    Ok(IdentityConfig {
        template,
        corp_id: anchored_regex(
            "identity.corp_id",
            file.corp_id.as_deref().unwrap_or("^[0-9]{14}$"),
        )?,
        user_id: anchored_regex(
            "identity.user_id",
            file.user_id.as_deref().unwrap_or("^[A-Za-z0-9]{1,30}$"),
        )?,
    })
}

/// Field regexes are matched against a whole field, so an unanchored pattern is anchored here:
/// `[0-9]+` must not accept `12ab`.
fn anchored_regex(key: &str, pattern: &str) -> Result<Regex, ConfigError> {
    Regex::new(&format!("^(?:{pattern})$")).map_err(|err| {
        ConfigError::new(
            key,
            format!(
                "{pattern:?} is not a valid regex: {}",
                one_line(&err.to_string())
            ),
        )
    })
}

fn validate_headers(file: file::HeadersFile) -> Result<HeaderNames, ConfigError> {
    fn name(key: &str, value: Option<String>, default: &str) -> Result<HeaderName, ConfigError> {
        let value = value.unwrap_or_else(|| default.to_owned());
        HeaderName::from_bytes(value.as_bytes()).map_err(|_| {
            ConfigError::new(
                format!("headers.{key}"),
                format!("{value:?} is not a valid header name; use letters, digits and '-', e.g. {default:?}"),
            )
        })
    }
    let strip_prefix = file.strip_prefix.unwrap_or_else(|| "X-Client-".to_owned());
    if !strip_prefix.is_empty() && HeaderName::from_bytes(strip_prefix.as_bytes()).is_err() {
        return Err(ConfigError::new(
            "headers.strip_prefix",
            format!(
                "{strip_prefix:?} is not the start of a header name; use e.g. \"X-Client-\" or \"\" to strip only the named headers"
            ),
        ));
    }
    let headers = HeaderNames {
        strip_prefix: strip_prefix.to_ascii_lowercase(),
        verify: name("verify", file.verify, "X-Client-Verify")?,
        corp_id: name("corp_id", file.corp_id, "X-Client-Corp-Id")?,
        user_id: name("user_id", file.user_id, "X-Client-User-Id")?,
        role: name("role", file.role, "X-Client-Role")?,
        serial: name("serial", file.serial, "X-Client-Cert-Serial")?,
        not_after: name("not_after", file.not_after, "X-Client-Cert-Not-After")?,
        days_left: name("days_left", file.days_left, "X-Client-Cert-Days-Left")?,
        sha256: name("sha256", file.sha256, "X-Client-Cert-Sha256")?,
        subject_dn: name("subject_dn", file.subject_dn, "X-Client-Subject-DN")?,
        issuer_dn: name("issuer_dn", file.issuer_dn, "X-Client-Issuer-DN")?,
        rfc9440: file.rfc9440.unwrap_or(false),
        xfcc: file.xfcc.unwrap_or(false),
    };
    let names = headers.all();
    for (index, first) in names.iter().enumerate() {
        if names[index + 1..].contains(first) {
            return Err(ConfigError::new(
                "headers",
                format!("{first} is configured for two different headers; give each its own name"),
            ));
        }
    }
    Ok(headers)
}

fn validate_routes(file: Vec<file::RouteFile>) -> Result<Vec<Route>, ConfigError> {
    let mut routes: Vec<Route> = Vec::with_capacity(file.len() + 1);
    for (index, route) in file.into_iter().enumerate() {
        let key = format!("route[{index}].path");
        if !route.path.starts_with('/') {
            return Err(ConfigError::new(
                key,
                format!("{:?} must start with '/', e.g. \"/api\"", route.path),
            ));
        }
        if route.path.contains(['?', '#', '*']) || route.path.chars().any(char::is_whitespace) {
            return Err(ConfigError::new(
                key,
                format!(
                    "{:?} is not a plain path prefix; write the prefix without '?', '#', '*' or spaces",
                    route.path
                ),
            ));
        }
        let path = if route.path.len() > 1 {
            route.path.trim_end_matches('/').to_owned()
        } else {
            route.path
        };
        if routes.iter().any(|seen| seen.path == path) {
            return Err(ConfigError::new(
                key,
                format!("{path:?} is listed twice; keep one [[route]] per prefix"),
            ));
        }
        routes.push(Route {
            path,
            require_cert: route.require_cert.unwrap_or(true),
        });
    }
    // Secure by default: a path no route covers still needs a certificate.
    if !routes.iter().any(|route| route.path == "/") {
        routes.push(Route {
            path: "/".to_owned(),
            require_cert: true,
        });
    }
    routes.sort_by_key(|route| std::cmp::Reverse(route.path.len()));
    Ok(routes)
}

fn validate_upstream(file: file::UpstreamFile) -> Result<UpstreamConfig, ConfigError> {
    let url = file.url.unwrap_or_else(|| "builtin:echo".to_owned());
    let target = if url == "builtin:echo" {
        UpstreamTarget::Echo
    } else {
        let bad = |why: &str| {
            ConfigError::new(
                "upstream.url",
                format!("{url:?} {why}; use http://host:port, https://host:port or builtin:echo"),
            )
        };
        let uri: Uri = url.parse().map_err(|_| bad("is not a URL"))?;
        match uri.scheme_str() {
            Some("http" | "https") => {}
            _ => return Err(bad("has no http or https scheme")),
        }
        if uri.authority().is_none() {
            return Err(bad("has no host"));
        }
        if uri
            .path_and_query()
            .is_some_and(|pq| pq.as_str() != "/" && !pq.as_str().is_empty())
        {
            return Err(bad(
                "has a path; requests keep their own path, so give only scheme, host and port",
            ));
        }
        UpstreamTarget::Http(uri)
    };
    let pool_max_idle_per_host = match file.pool_max_idle_per_host {
        None => 64,
        Some(n) if n >= 0 => usize::try_from(n).unwrap_or(usize::MAX),
        Some(n) => {
            return Err(ConfigError::new(
                "upstream.pool_max_idle_per_host",
                format!("{n} is negative; use 0 (no pooling) or more"),
            ));
        }
    };
    Ok(UpstreamConfig {
        target,
        ca: file.ca.filter(|ca| !ca.is_empty()).map(PathBuf::from),
        connect_timeout: duration("upstream.connect_timeout", file.connect_timeout, "5s")?,
        request_timeout: duration("upstream.request_timeout", file.request_timeout, "60s")?,
        pool_max_idle_per_host,
        pool_idle_timeout: duration("upstream.pool_idle_timeout", file.pool_idle_timeout, "90s")?,
    })
}

fn validate_store(file: file::StoreFile) -> Result<StoreConfig, ConfigError> {
    let url = file
        .url
        .unwrap_or_else(|| "sqlite://data/certgate.db".to_owned());
    if !(url.starts_with("sqlite:")
        || url.starts_with("postgres://")
        || url.starts_with("postgresql://"))
    {
        return Err(ConfigError::new(
            "store.url",
            format!(
                "{url:?} is not a registry URL; use sqlite://path/to/certgate.db or postgres://user@host/db"
            ),
        ));
    }
    Ok(StoreConfig { url })
}

fn validate_pki(file: file::PkiFile) -> Result<PkiConfig, ConfigError> {
    let key_type = match file.key_type.as_deref() {
        None | Some("ecdsa-p256") => KeyType::EcdsaP256,
        Some("rsa-2048") => KeyType::Rsa2048,
        Some(other) => {
            return Err(ConfigError::new(
                "pki.key_type",
                format!("{other:?} is not a key type; use \"ecdsa-p256\" or \"rsa-2048\""),
            ));
        }
    };
    let text = |key: &str, value: Option<String>, default: &str| -> Result<String, ConfigError> {
        let value = value.unwrap_or_else(|| default.to_owned());
        if value.trim().is_empty() || value.chars().any(char::is_control) {
            return Err(ConfigError::new(
                format!("pki.{key}"),
                format!("{value:?} cannot name a CA; use printable text such as {default:?}"),
            ));
        }
        Ok(value)
    };
    let validity_days = match file.validity_days {
        None => 365,
        Some(days @ 1..=3650) => days as u32,
        Some(days) => {
            return Err(ConfigError::new(
                "pki.validity_days",
                format!("{days} is out of range; use 1 to 3650 (the seeds' banks use 365)"),
            ));
        }
    };
    Ok(PkiConfig {
        dir: PathBuf::from(
            file.dir
                .filter(|dir| !dir.is_empty())
                .unwrap_or_else(|| "data/pki".to_owned()),
        ),
        key_type,
        organization: text(
            "organization",
            file.organization,
            "certgate development bank",
        )?,
        unit: text("unit", file.unit, "Internet Banking CA")?,
        validity_days,
    })
}

fn validate_lifecycle(file: file::LifecycleFile) -> Result<LifecycleConfig, ConfigError> {
    let bounded = |key: &str,
                   value: Option<i64>,
                   default: u32,
                   max: u32,
                   example: &str|
     -> Result<u32, ConfigError> {
        match value {
            None => Ok(default),
            Some(n) if n >= 1 && n <= i64::from(max) => Ok(n as u32),
            Some(n) => Err(ConfigError::new(
                format!("lifecycle.{key}"),
                format!("{n} is out of range; use 1 to {max}, e.g. {example}"),
            )),
        }
    };
    Ok(LifecycleConfig {
        permit_ttl: duration("lifecycle.permit_ttl", file.permit_ttl, "7d")?,
        max_pin_failures: bounded("max_pin_failures", file.max_pin_failures, 5, 100, "5")?,
        retry_window: duration("lifecycle.retry_window", file.retry_window, "10m")?,
        renew_window_days: bounded("renew_window_days", file.renew_window_days, 30, 3650, "30")?,
        revoke_old_on_renew: file.revoke_old_on_renew.unwrap_or(false),
    })
}

fn validate_login(file: file::LoginFile) -> Result<Option<LoginConfig>, ConfigError> {
    let Some(path) = file.path.filter(|path| !path.is_empty()) else {
        if file.corp_field.is_some() || file.user_field.is_some() {
            return Err(ConfigError::new(
                "login.path",
                "is missing while corp_field/user_field are set; give the login form's path, e.g. \"/login\"",
            ));
        }
        return Ok(None);
    };
    if !path.starts_with('/') {
        return Err(ConfigError::new(
            "login.path",
            format!("{path:?} must start with '/', e.g. \"/login\""),
        ));
    }
    let field = |key: &str, value: Option<String>| -> Result<String, ConfigError> {
        match value {
            Some(name) if !name.is_empty() => Ok(name),
            _ => Err(ConfigError::new(
                format!("login.{key}"),
                "is missing; give the name of the login form's field, e.g. \"corp_id\"",
            )),
        }
    };
    Ok(Some(LoginConfig {
        path,
        corp_field: field("corp_field", file.corp_field)?,
        user_field: field("user_field", file.user_field)?,
    }))
}

fn parse_addr(key: &str, text: &str) -> Result<SocketAddr, ConfigError> {
    text.parse().map_err(|_| {
        ConfigError::new(
            key,
            format!(
                "{text:?} is not an address; use IP:port such as \"0.0.0.0:8443\" or \"[::1]:8443\""
            ),
        )
    })
}

fn required_path(key: &str, value: Option<String>, what: &str) -> Result<PathBuf, ConfigError> {
    match value {
        Some(path) if !path.is_empty() => Ok(PathBuf::from(path)),
        _ => Err(ConfigError::new(
            key,
            format!("is missing; give the path of {what}"),
        )),
    }
}

/// Parses `"10s"`, `"500ms"`, `"2m"`, `"7d"`; zero is refused because every duration here is a limit.
pub fn duration(key: &str, value: Option<String>, default: &str) -> Result<Duration, ConfigError> {
    let text = value.unwrap_or_else(|| default.to_owned());
    let parsed = humantime::parse_duration(&text).map_err(|_| {
        ConfigError::new(
            key,
            format!("{text:?} is not a duration; write e.g. \"{default}\", \"500ms\" or \"2m\""),
        )
    })?;
    if parsed.is_zero() {
        return Err(ConfigError::new(
            key,
            format!("{text:?} is zero; use a positive duration such as \"{default}\""),
        ));
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        [server]
        cert = "s.pem"
        key = "s.key"
        [[trust.ca]]
        name = "g1"
        cert = "ca.pem"
    "#;

    fn err(extra: &str) -> ConfigError {
        Config::parse(&format!("{MINIMAL}\n{extra}")).unwrap_err()
    }

    #[test]
    fn minimal_config_gets_secure_defaults() {
        let config = Config::parse(MINIMAL).unwrap();
        assert_eq!(config.server.client_auth, ClientAuth::Required);
        assert_eq!(
            config.routes,
            vec![Route {
                path: "/".into(),
                require_cert: true
            }]
        );
        assert_eq!(config.upstream.target, UpstreamTarget::Echo);
        assert_eq!(config.headers.strip_prefix, "x-client-");
        assert_eq!(config.ops.listen, Some("127.0.0.1:9090".parse().unwrap()));
    }

    #[test]
    fn unknown_key_is_named_with_its_table() {
        let error = Config::parse("[server]\nlistn = \"x\"").unwrap_err();
        assert_eq!(error.key, "server.listn");
        assert!(error.message.contains("unknown field"), "{error}");
    }

    #[test]
    fn routes_are_longest_first_and_a_root_route_is_added() {
        let config = Config::parse(&format!(
            "{MINIMAL}\n[[route]]\npath = \"/public/\"\nrequire_cert = false\n[[route]]\npath = \"/public/deep\""
        ))
        .unwrap();
        let paths: Vec<_> = config.routes.iter().map(|r| r.path.as_str()).collect();
        assert_eq!(paths, ["/public/deep", "/public", "/"]);
    }

    #[test]
    fn each_bad_value_names_its_key() {
        for (extra, key) in [
            ("[identity]\ncn = \"{corp} {user_id}\"", "identity.cn"),
            ("[identity]\ncorp_id = \"([0-9\"", "identity.corp_id"),
            ("[headers]\nrole = \"X Role\"", "headers.role"),
            ("[headers]\nrole = \"X-Client-Verify\"", "headers"),
            ("[upstream]\nurl = \"ftp://x\"", "upstream.url"),
            ("[upstream]\nurl = \"http://x:1/app\"", "upstream.url"),
            (
                "[upstream]\nconnect_timeout = \"soon\"",
                "upstream.connect_timeout",
            ),
            (
                "[upstream]\nrequest_timeout = \"0s\"",
                "upstream.request_timeout",
            ),
            ("[ops]\nlisten = \"nowhere\"", "ops.listen"),
            ("[log]\nformat = \"xml\"", "log.format"),
            ("[[route]]\npath = \"api\"", "route[0].path"),
        ] {
            assert_eq!(err(extra).key, key, "{extra}");
        }
    }

    #[test]
    fn server_values_are_checked() {
        for (server, key) in [
            (
                "listen = \"8443\"\ncert = \"a\"\nkey = \"b\"",
                "server.listen",
            ),
            ("cert = \"a\"", "server.key"),
            (
                "cert = \"a\"\nkey = \"b\"\nclient_auth = \"maybe\"",
                "server.client_auth",
            ),
            (
                "cert = \"a\"\nkey = \"b\"\nmax_connections = 0",
                "server.max_connections",
            ),
        ] {
            let text = format!("[server]\n{server}\n[[trust.ca]]\nname = \"g1\"\ncert = \"c\"");
            assert_eq!(Config::parse(&text).unwrap_err().key, key, "{server}");
        }
    }

    #[test]
    fn more_bad_values_name_their_keys() {
        for (extra, key) in [
            (
                "[[trust.ca]]\nname = \"g1\"\ncert = \"other.pem\"",
                "trust.ca[1].name",
            ),
            (
                "[[trust.ca]]\nname = \" \"\ncert = \"other.pem\"",
                "trust.ca[1].name",
            ),
            (
                "[[trust.ca]]\nname = \"g2\"\ncert = \"\"",
                "trust.ca[1].cert",
            ),
            (
                "[headers]\nstrip_prefix = \"X Client\"",
                "headers.strip_prefix",
            ),
            (
                "[[route]]\npath = \"/a\"\n[[route]]\npath = \"/a/\"",
                "route[1].path",
            ),
            ("[[route]]\npath = \"/a?b\"", "route[0].path"),
            (
                "[upstream]\npool_max_idle_per_host = -1",
                "upstream.pool_max_idle_per_host",
            ),
            (
                "[upstream]\npool_idle_timeout = \"forever\"",
                "upstream.pool_idle_timeout",
            ),
            ("[log]\nlevel = \"loud[\"", "log.level"),
            ("[route]\npath = \"/\"", "route"),
            ("[upstream]\nurl = 5", "upstream.url"),
        ] {
            assert_eq!(err(extra).key, key, "{extra}");
        }
        for (server, key) in [
            ("handshake_timeout = \"10\"", "server.handshake_timeout"),
            ("shutdown_grace = \"0s\"", "server.shutdown_grace"),
        ] {
            let text = format!(
                "[server]\ncert = \"a\"\nkey = \"b\"\n{server}\n[[trust.ca]]\nname = \"g1\"\ncert = \"c\""
            );
            assert_eq!(Config::parse(&text).unwrap_err().key, key, "{server}");
        }
    }

    #[test]
    fn lifecycle_sections_have_defaults_and_checked_values() {
        let config = Config::parse(MINIMAL).unwrap();
        assert_eq!(config.store.url, "sqlite://data/certgate.db");
        assert_eq!(config.pki.validity_days, 365);
        assert_eq!(config.pki.key_type, KeyType::EcdsaP256);
        assert_eq!(config.lifecycle.max_pin_failures, 5);
        assert_eq!(config.lifecycle.permit_ttl, Duration::from_secs(7 * 86_400));
        assert_eq!(config.lifecycle.retry_window, Duration::from_secs(600));
        assert_eq!(config.login, None);
        for (extra, key) in [
            ("[store]\nurl = \"mysql://x\"", "store.url"),
            ("[pki]\nkey_type = \"ed25519\"", "pki.key_type"),
            ("[pki]\nvalidity_days = 0", "pki.validity_days"),
            ("[pki]\nunit = \"\"", "pki.unit"),
            (
                "[lifecycle]\nmax_pin_failures = 0",
                "lifecycle.max_pin_failures",
            ),
            (
                "[lifecycle]\npermit_ttl = \"a week\"",
                "lifecycle.permit_ttl",
            ),
            (
                "[lifecycle]\nrenew_window_days = -3",
                "lifecycle.renew_window_days",
            ),
            ("[login]\ncorp_field = \"c\"", "login.path"),
            (
                "[login]\npath = \"/login\"\ncorp_field = \"c\"",
                "login.user_field",
            ),
            ("[login]\npath = \"login\"", "login.path"),
        ] {
            assert_eq!(err(extra).key, key, "{extra}");
        }
    }

    #[test]
    fn ops_listener_can_be_turned_off() {
        let config = Config::parse(&format!("{MINIMAL}\n[ops]\nlisten = \"\"")).unwrap();
        assert_eq!(config.ops.listen, None);
    }

    #[test]
    fn trust_list_may_be_empty_when_certgate_issues_its_own_certificates() {
        let config = Config::parse("[server]\ncert = \"a\"\nkey = \"b\"").unwrap();
        assert!(config.trust.is_empty());
    }

    #[test]
    fn unanchored_field_regex_still_matches_whole_fields() {
        let config =
            Config::parse(&format!("{MINIMAL}\n[identity]\ncorp_id = \"[0-9]+\"")).unwrap();
        assert!(config.identity.corp_id.is_match("123"));
        assert!(!config.identity.corp_id.is_match("12ab"));
    }
}
