//! The validated configuration: typed values that nothing downstream re-parses.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use http::{HeaderName, Uri};
use regex::Regex;

use super::CnTemplate;

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
    /// `max_connections_per_ip`, default 64: connections from one address (an IPv6 /64) in
    /// their TLS handshake, and, apart, connections from it without a certificate.
    pub max_connections_per_ip: usize,
    /// `max_anonymous_connections`, default half of `max_connections`: connections without a
    /// certificate, from all addresses together, so that certificate holders always find room.
    pub max_anonymous_connections: usize,
    /// `idle_timeout`: a connection with no request in flight for this long is closed (HTTP/2
    /// with GOAWAY, even while it answers PINGs; a request head that never finishes is no
    /// request). HTTP/1.1 closes within a second (half of it, if shorter) after it has passed
    /// since the last request or byte written, h2 1 to 2 times it after the last
    /// request. An HTTP/1.1 client that reads nothing of an answer for this long is closed too,
    /// in flight or not. Default 30 s.
    pub idle_timeout: Duration,
    /// `anonymous_idle_timeout`: the same for a connection without a certificate, default 10 s.
    pub anonymous_idle_timeout: Duration,
    /// `shutdown_grace`, default 30 s.
    pub shutdown_grace: Duration,
    /// `dev_ca`: when set and `cert` is missing, a development CA is made in this directory.
    pub dev_ca: Option<PathBuf>,
    /// `ticket_keys`: a file of TLS session ticket keys shared by every replica (made and rotated
    /// by `certgate tickets rotate`); per-process keys when unset.
    pub ticket_keys: Option<PathBuf>,
    /// `ticket_lifetime`, default 12 h, at most 24 h: how long a client may resume a session.
    pub ticket_lifetime: Duration,
    /// `proxy_protocol`: the networks of the L4 load balancers whose connections start with a
    /// PROXY protocol header (v1 or v2) naming the real client; none by default.
    pub proxy_protocol: Vec<ipnet::IpNet>,
}

/// One `[[trust.ca]]` entry: a CA generation whose certificates are accepted.
#[derive(Debug, Clone)]
pub struct TrustCa {
    /// `name`, shown in logs.
    pub name: String,
    /// `cert`: PEM with one or more CA certificates.
    pub cert: PathBuf,
    /// `lifecycle`, default false: its certificates may use certgate's own operations (EST
    /// re-enrollment, renewal, the admin API), not only log in to the application.
    pub lifecycle: bool,
    /// `crl`: the CRL files (DER or PEM) this CA publishes, whose revocations are refused like
    /// certgate's own; none by default.
    pub crls: Vec<PathBuf>,
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
    /// `allow_underscores`, default false: inbound headers whose name has a `_` are dropped (as
    /// nginx does), since CGI/WSGI-style applications read `_` and `-` as the same character.
    pub allow_underscores: bool,
    /// `strip`: more inbound headers to remove (lowercase), besides the identity headers and the
    /// built-in list of forwarding, client-certificate and override headers.
    pub strip: Vec<HeaderName>,
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
    /// `request_timeout`: time until the response head arrives, the longest pause in the
    /// response body, and the longest a WebSocket tunnel may carry nothing (as nginx's
    /// `proxy_read_timeout`), default 60 s.
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
    /// A PostgreSQL password may be in the URL or, better, in `CERTGATE_STORE_PASSWORD`.
    pub url: String,
    /// `max_connections`, default 16: the PostgreSQL pool's size (SQLite keeps 8).
    pub max_connections: u32,
    /// `connect_timeout`, default 5s: how long to wait for a connection from the pool.
    pub connect_timeout: Duration,
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
    /// `crl_validity`: nextUpdate − thisUpdate of each CRL, default 7 days; CRLs are re-signed at
    /// half of it, at start and after revocations.
    pub crl_validity: Duration,
    /// `crl_refresh`: the shortest time between two signatures of one CRL while revocations
    /// come in, default 1 min (the proxy refuses a revoked certificate within a second anyway;
    /// this bounds the work of signing large CRLs).
    pub crl_refresh: Duration,
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
    /// `enroll_attempts_per_minute`, default 30: enrollments with a temporary PIN one address
    /// (an IPv6 /64) may attempt per minute; more get 429.
    pub enroll_attempts_per_minute: u32,
}

/// What certificate-authenticated requests get while certgate cannot tell who is revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnStale {
    /// 503 with a clear page; `/readyz` reports not ready (default).
    Reject,
    /// Serve from the last known revocation set; `/readyz` stays ready.
    Serve,
}

/// `[revocation]`: how current the hot path's revocation set must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationConfig {
    /// `max_staleness`: the longest time since the last successful read of the registry before
    /// `on_stale` applies, default 30 s.
    pub max_staleness: Duration,
    /// `on_stale`, default `reject`.
    pub on_stale: OnStale,
    /// `poll`: how often the registry is read for changes made elsewhere (the operator CLI,
    /// another replica), default 1 s; shorter than `max_staleness`.
    pub poll: Duration,
    /// `redis_url`: the Redis that pushes changes to every replica at once (`redis://…`,
    /// `rediss://…`); none by default. The password may be in `CERTGATE_REDIS_PASSWORD`.
    pub redis_url: Option<String>,
    /// `resync`: with Redis, how often the registry is still read, to repair anything Redis
    /// missed, default 30 s.
    pub resync: Duration,
    /// `close_connections`, default false: a revoked certificate's keep-alive and h2
    /// connections are closed too (its upgraded tunnels always are).
    pub close_connections: bool,
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
    /// `[revocation]`.
    pub revocation: RevocationConfig,
    /// `[login]`, when the application's login form is to be guarded.
    pub login: Option<LoginConfig>,
    /// `[pages]`.
    pub pages: PagesConfig,
    /// `[notice]`.
    pub notice: NoticeConfig,
    /// `[notify]`.
    pub notify: NotifyConfig,
}

/// `[notify]`: expiry e-mails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyConfig {
    /// `days` before expiry a notice goes out, largest first, default `[30, 10]`.
    pub days: Vec<u32>,
    /// `smtp_url`; no e-mails without it. `smtp://` requires STARTTLS unless it says
    /// `?tls=opportunistic` or `?tls=none`; `smtps://` is TLS from the start.
    pub smtp_url: Option<String>,
    /// `from`: the sender, e.g. `"Bank <certs@bank.example>"`.
    pub from: String,
    /// `renew_url`: the renewal page as customers reach it.
    pub renew_url: String,
    /// `interval` between two runs, default 1 hour.
    pub interval: std::time::Duration,
    /// `webhook`: an https URL (http only on loopback) that gets a signed JSON POST per notice.
    pub webhook: Option<String>,
}

/// `[notice]`: where a certificate inside its renewal window gets the renewal notice first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NoticeConfig {
    /// `paths`: the application's pages after login (exact paths, as normalised), e.g. `/top`.
    pub paths: Vec<String>,
}

/// `[pages]`: the pages for people in a browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PagesConfig {
    /// `secret_file`: the key that signs the pages' form tokens and cookies, default
    /// `<pki.dir>/pages.key` (made at first start or by `certgate init`; replicas share it, as
    /// they share the CA).
    pub secret_file: PathBuf,
    /// `templates`: a directory whose `*.html` files replace the built-in templates.
    pub templates: Option<PathBuf>,
}
