//! The TOML file as written by an operator: plain serde structs that mirror the file.
//!
//! Every table denies unknown keys so that a typo (`listn = ...`) is an error, not a silently
//! ignored setting. Nothing here is interpreted; [`super::validate`] turns it into [`super::Config`].

use serde::Deserialize;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileConfig {
    #[serde(default)]
    pub server: ServerFile,
    #[serde(default)]
    pub trust: TrustFile,
    #[serde(default)]
    pub identity: IdentityFile,
    #[serde(default)]
    pub headers: HeadersFile,
    #[serde(default, rename = "route")]
    pub routes: Vec<RouteFile>,
    #[serde(default)]
    pub upstream: UpstreamFile,
    #[serde(default)]
    pub ops: OpsFile,
    #[serde(default)]
    pub log: LogFile,
    #[serde(default)]
    pub store: StoreFile,
    #[serde(default)]
    pub pki: PkiFile,
    #[serde(default)]
    pub lifecycle: LifecycleFile,
    #[serde(default)]
    pub login: LoginFile,
    #[serde(default)]
    pub pages: PagesFile,
    #[serde(default)]
    pub notice: NoticeFile,
    #[serde(default)]
    pub notify: NotifyFile,
    #[serde(default)]
    pub revocation: RevocationFile,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ServerFile {
    pub listen: Option<String>,
    pub cert: Option<String>,
    pub key: Option<String>,
    pub client_auth: Option<String>,
    pub handshake_timeout: Option<String>,
    pub max_connections: Option<i64>,
    pub max_connections_per_ip: Option<i64>,
    pub max_anonymous_connections: Option<i64>,
    pub proxy_protocol: Option<Vec<String>>,
    pub ticket_keys: Option<String>,
    pub ticket_lifetime: Option<String>,
    pub idle_timeout: Option<String>,
    pub anonymous_idle_timeout: Option<String>,
    pub shutdown_grace: Option<String>,
    pub dev_ca: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TrustFile {
    #[serde(default)]
    pub ca: Vec<TrustCaFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TrustCaFile {
    pub name: String,
    pub cert: String,
    pub lifecycle: Option<bool>,
    pub crl: Option<OneOrMany>,
}

/// A path, or a list of them.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct IdentityFile {
    pub cn: Option<String>,
    pub corp_id: Option<String>,
    pub user_id: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct HeadersFile {
    pub strip_prefix: Option<String>,
    pub strip: Option<Vec<String>>,
    pub verify: Option<String>,
    pub corp_id: Option<String>,
    pub user_id: Option<String>,
    pub role: Option<String>,
    pub serial: Option<String>,
    pub not_after: Option<String>,
    pub days_left: Option<String>,
    pub sha256: Option<String>,
    pub subject_dn: Option<String>,
    pub issuer_dn: Option<String>,
    pub rfc9440: Option<bool>,
    pub xfcc: Option<bool>,
    pub allow_underscores: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RouteFile {
    pub path: String,
    pub require_cert: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UpstreamFile {
    pub url: Option<String>,
    pub ca: Option<String>,
    pub connect_timeout: Option<String>,
    pub request_timeout: Option<String>,
    pub pool_max_idle_per_host: Option<i64>,
    pub pool_idle_timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct OpsFile {
    pub listen: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LogFile {
    pub format: Option<String>,
    pub level: Option<String>,
    pub access: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StoreFile {
    pub url: Option<String>,
    pub max_connections: Option<u32>,
    pub connect_timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PkiFile {
    pub dir: Option<String>,
    pub key_type: Option<String>,
    pub organization: Option<String>,
    pub unit: Option<String>,
    pub validity_days: Option<i64>,
    pub crl_validity: Option<String>,
    pub crl_refresh: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LifecycleFile {
    pub permit_ttl: Option<String>,
    pub max_pin_failures: Option<i64>,
    pub retry_window: Option<String>,
    pub renew_window_days: Option<i64>,
    pub revoke_old_on_renew: Option<bool>,
    pub enroll_attempts_per_minute: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NotifyFile {
    pub days: Option<Vec<i64>>,
    pub smtp_url: Option<String>,
    pub from: Option<String>,
    pub renew_url: Option<String>,
    pub interval: Option<String>,
    pub webhook: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NoticeFile {
    pub paths: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PagesFile {
    pub secret_file: Option<String>,
    pub templates: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LoginFile {
    pub path: Option<String>,
    pub corp_field: Option<String>,
    pub user_field: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RevocationFile {
    pub poll: Option<String>,
    pub max_staleness: Option<String>,
    pub on_stale: Option<String>,
    pub redis_url: Option<String>,
    pub resync: Option<String>,
    pub close_connections: Option<bool>,
}
