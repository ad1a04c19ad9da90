//! From the file's text to typed values, with errors that name the key, the value, why, and the
//! fix.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use http::{HeaderName, Uri};
use regex::Regex;

use super::file::{self, FileConfig};
use super::*;
use super::{ConfigError, one_line};

pub(super) fn validate(file: FileConfig) -> Result<Config, ConfigError> {
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
    let pki = validate_pki(file.pki)?;
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
        pages: validate_pages(file.pages, &pki)?,
        notice: validate_notice(file.notice)?,
        notify: validate_notify(file.notify)?,
        pki,
        lifecycle: validate_lifecycle(file.lifecycle)?,
        revocation: validate_revocation(file.revocation)?,
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
    let max_anonymous_connections = match file.max_anonymous_connections {
        None => (max_connections / 2).max(1),
        Some(n) if n >= 1 && usize::try_from(n).is_ok_and(|n| n <= max_connections) => {
            usize::try_from(n).unwrap_or(max_connections)
        }
        Some(n) => {
            return Err(ConfigError::new(
                "server.max_anonymous_connections",
                format!("{n} is out of range; use 1 to server.max_connections ({max_connections})"),
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
        max_connections_per_ip: match file.max_connections_per_ip {
            None => 64,
            Some(n) if n >= 1 => usize::try_from(n).unwrap_or(usize::MAX),
            Some(n) => {
                return Err(ConfigError::new(
                    "server.max_connections_per_ip",
                    format!("{n} is too small; use a positive number such as 64"),
                ));
            }
        },
        max_anonymous_connections,
        idle_timeout: duration("server.idle_timeout", file.idle_timeout, "30s")?,
        anonymous_idle_timeout: duration(
            "server.anonymous_idle_timeout",
            file.anonymous_idle_timeout,
            "10s",
        )?,
        shutdown_grace: duration("server.shutdown_grace", file.shutdown_grace, "30s")?,
        dev_ca: file.dev_ca.filter(|dir| !dir.is_empty()).map(PathBuf::from),
        ticket_keys: file
            .ticket_keys
            .filter(|path| !path.is_empty())
            .map(PathBuf::from),
        ticket_lifetime: {
            let lifetime = duration("server.ticket_lifetime", file.ticket_lifetime, "12h")?;
            if lifetime.is_zero() || lifetime > Duration::from_secs(24 * 3600) {
                return Err(ConfigError::new(
                    "server.ticket_lifetime",
                    format!("{lifetime:?} is out of range; use more than 0 and at most 24h (RFC 8446 §4.6.1)"),
                ));
            }
            lifetime
        },
        proxy_protocol: file
            .proxy_protocol
            .unwrap_or_default()
            .iter()
            .enumerate()
            .map(|(index, text)| {
                text.parse::<ipnet::IpNet>()
                    .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map(|net| net.trunc())
                    .map_err(|_| {
                        ConfigError::new(
                            format!("server.proxy_protocol[{index}]"),
                            format!("{text:?} is not an address or network; write e.g. \"10.0.0.0/8\" or \"192.0.2.10\""),
                        )
                    })
            })
            .collect::<Result<_, _>>()?,
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
        let crls = match ca.crl {
            None => Vec::new(),
            Some(file::OneOrMany::One(path)) => vec![path],
            Some(file::OneOrMany::Many(paths)) => paths,
        };
        if crls.iter().any(String::is_empty) {
            return Err(ConfigError::new(
                format!("{key}.crl"),
                "has an empty path; give the CRL file(s) the CA publishes (DER or PEM)",
            ));
        }
        trust.push(TrustCa {
            name: ca.name,
            cert: PathBuf::from(ca.cert),
            lifecycle: ca.lifecycle.unwrap_or(false),
            crls: crls.into_iter().map(PathBuf::from).collect(),
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
        let name = HeaderName::from_bytes(value.as_bytes()).map_err(|_| {
            ConfigError::new(
                format!("headers.{key}"),
                format!("{value:?} is not a valid header name; use letters, digits and '-', e.g. {default:?}"),
            )
        })?;
        // The identity is written as header lines of its own: a name that frames the message,
        // routes it or belongs to the connection would be a second one of those.
        let reserved = matches!(
            name.as_str(),
            "host"
                | "content-length"
                | "transfer-encoding"
                | "connection"
                | "keep-alive"
                | "proxy-connection"
                | "upgrade"
                | "te"
                | "trailer"
                | "expect"
                | "forwarded"
                | "x-forwarded-for"
                | "x-forwarded-proto"
                | "x-forwarded-host"
                | "client-cert-chain"
        ) || name.as_str().starts_with("proxy-");
        if reserved {
            return Err(ConfigError::new(
                format!("headers.{key}"),
                format!(
                    "{value:?} is a header HTTP or certgate itself sets; choose a name of your own, e.g. {default:?}"
                ),
            ));
        }
        Ok(name)
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
        allow_underscores: file.allow_underscores.unwrap_or(false),
        strip: file
            .strip
            .unwrap_or_default()
            .iter()
            .enumerate()
            .map(|(index, value)| {
                HeaderName::from_bytes(value.as_bytes()).map_err(|_| {
                    ConfigError::new(
                        format!("headers.strip[{index}]"),
                        format!("{value:?} is not a valid header name; use letters, digits and '-', e.g. \"X-Legacy-User\""),
                    )
                })
            })
            .collect::<Result<_, _>>()?,
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
    // Never the URL itself in a message: it may carry a password.
    let scheme = url.split_once(':').map_or("", |(scheme, _)| scheme);
    match scheme {
        "sqlite" => {}
        "postgres" | "postgresql" => match url::Url::parse(&url) {
            Ok(parsed) if parsed.host_str().is_some_and(|host| !host.is_empty()) => {
                if parsed.path().trim_start_matches('/').is_empty() {
                    return Err(ConfigError::new(
                        "store.url",
                        "the PostgreSQL URL names no database; write postgres://user@host:5432/certgate",
                    ));
                }
            }
            Ok(_) => {
                return Err(ConfigError::new(
                    "store.url",
                    "the PostgreSQL URL names no host; write postgres://user@host:5432/certgate",
                ));
            }
            Err(err) => {
                return Err(ConfigError::new(
                    "store.url",
                    format!(
                        "the PostgreSQL URL does not parse ({err}); write postgres://user@host:5432/certgate"
                    ),
                ));
            }
        },
        _ => {
            let shown = if scheme.is_empty() || scheme.contains('/') {
                "no scheme".to_owned()
            } else {
                format!("the scheme {scheme:?}")
            };
            return Err(ConfigError::new(
                "store.url",
                format!(
                    "{shown} is not a registry; use sqlite://path/to/certgate.db or postgres://user@host:5432/certgate"
                ),
            ));
        }
    }
    let max_connections = file.max_connections.unwrap_or(16);
    if !(1..=1000).contains(&max_connections) {
        return Err(ConfigError::new(
            "store.max_connections",
            format!("{max_connections} is out of range; use 1 to 1000"),
        ));
    }
    let connect_timeout = duration("store.connect_timeout", file.connect_timeout, "5s")?;
    if connect_timeout.is_zero() {
        return Err(ConfigError::new(
            "store.connect_timeout",
            "must be more than zero",
        ));
    }
    Ok(StoreConfig {
        url,
        max_connections,
        connect_timeout,
    })
}

fn validate_notify(file: file::NotifyFile) -> Result<NotifyConfig, ConfigError> {
    let mut days = Vec::new();
    for (index, day) in file
        .days
        .unwrap_or_else(|| vec![30, 10])
        .into_iter()
        .enumerate()
    {
        match u32::try_from(day) {
            Ok(day @ 1..=365) if !days.contains(&day) => days.push(day),
            _ => {
                return Err(ConfigError::new(
                    format!("notify.days[{index}]"),
                    format!(
                        "{day} is not a number of days from 1 to 365 given once; e.g. days = [30, 10]"
                    ),
                ));
            }
        }
    }
    days.sort_unstable_by(|a, b| b.cmp(a));
    let interval = duration("notify.interval", file.interval, "1h")?;
    if interval < Duration::from_secs(1) {
        return Err(ConfigError::new(
            "notify.interval",
            "must be at least 1s; e.g. \"1h\"",
        ));
    }
    let smtp_url = file.smtp_url.filter(|url| !url.trim().is_empty());
    if let Some(url) = &smtp_url {
        if !(url.starts_with("smtp://") || url.starts_with("smtps://")) {
            return Err(ConfigError::new(
                "notify.smtp_url",
                "must start with smtp:// (STARTTLS) or smtps:// (TLS); e.g. \"smtp://mail.bank.example:587\"",
            ));
        }
        if url::Url::parse(url).map_or(true, |parsed| parsed.host_str().is_none()) {
            return Err(ConfigError::new(
                "notify.smtp_url",
                "names no host; e.g. \"smtp://mail.bank.example:587\"",
            ));
        }
    }
    let from = file.from.unwrap_or_default();
    let renew_url = file.renew_url.unwrap_or_default();
    if smtp_url.is_some() {
        if !from.contains('@') {
            return Err(ConfigError::new(
                "notify.from",
                "the sender's address is needed with smtp_url; e.g. \"Bank <certs@bank.example>\"",
            ));
        }
        if !renew_url.starts_with("https://") {
            return Err(ConfigError::new(
                "notify.renew_url",
                "the renewal page as customers reach it is needed with smtp_url; e.g. \"https://ib.bank.example/certgate/renew\"",
            ));
        }
    }
    let webhook = file.webhook.filter(|url| !url.trim().is_empty());
    if let Some(url) = &webhook {
        let parsed = url::Url::parse(url).map_err(|err| {
            ConfigError::new(
                "notify.webhook",
                format!("not a URL ({err}); e.g. \"https://hooks.bank.example/certgate\""),
            )
        })?;
        let loopback = matches!(parsed.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
        if !(parsed.scheme() == "https" || parsed.scheme() == "http" && loopback) {
            return Err(ConfigError::new(
                "notify.webhook",
                "must be https:// (http:// only to this machine); e.g. \"https://hooks.bank.example/certgate\"",
            ));
        }
        if smtp_url.is_none() {
            return Err(ConfigError::new(
                "notify.webhook",
                "goes with smtp_url: the webhook is told of each notice e-mailed",
            ));
        }
    }
    Ok(NotifyConfig {
        days,
        smtp_url,
        from,
        renew_url,
        interval,
        webhook,
    })
}

fn validate_notice(file: file::NoticeFile) -> Result<NoticeConfig, ConfigError> {
    let mut paths = Vec::new();
    for (index, path) in file.paths.unwrap_or_default().into_iter().enumerate() {
        let key = format!("notice.paths[{index}]");
        let fine = path.starts_with('/')
            && !path.starts_with("//")
            && !path.contains(['?', '#', '\\', ';'])
            && !path.chars().any(|c| c.is_whitespace() || c.is_control())
            && !path
                .split('/')
                .any(|segment| segment == "." || segment == "..");
        if !fine {
            return Err(ConfigError::new(
                key,
                format!(
                    "{path:?} is not a path; give the application page after login, e.g. \"/top\""
                ),
            ));
        }
        if path == "/certgate"
            || path.starts_with("/certgate/")
            || path.starts_with("/.well-known/")
        {
            return Err(ConfigError::new(
                key,
                format!("{path:?} is one of certgate's own paths; give a page of the application"),
            ));
        }
        paths.push(path);
    }
    Ok(NoticeConfig { paths })
}

fn validate_pages(file: file::PagesFile, pki: &PkiConfig) -> Result<PagesConfig, ConfigError> {
    let secret_file = match file.secret_file {
        None => pki.dir.join("pages.key"),
        Some(path) if path.trim().is_empty() => {
            return Err(ConfigError::new(
                "pages.secret_file",
                "an empty path; name the key file, e.g. \"data/pki/pages.key\", or leave the key out",
            ));
        }
        Some(path) => PathBuf::from(path),
    };
    let templates = match file.templates {
        None => None,
        Some(dir) => {
            let path = PathBuf::from(&dir);
            if !path.is_dir() {
                return Err(ConfigError::new(
                    "pages.templates",
                    format!(
                        "{dir:?} is not a directory; name the directory of the bank's *.html templates"
                    ),
                ));
            }
            Some(path)
        }
    };
    Ok(PagesConfig {
        secret_file,
        templates,
    })
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
        Some(days) => match u32::try_from(days) {
            Ok(days @ 1..=3650) => days,
            _ => {
                return Err(ConfigError::new(
                    "pki.validity_days",
                    format!("{days} is out of range; use 1 to 3650 (the seeds' banks use 365)"),
                ));
            }
        },
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
        crl_validity: {
            let validity = duration("pki.crl_validity", file.crl_validity, "7d")?;
            if validity < Duration::from_secs(3600) {
                return Err(ConfigError::new(
                    "pki.crl_validity",
                    "is shorter than an hour; relying parties need time to fetch a CRL, use e.g. \"7d\"",
                ));
            }
            validity
        },
        crl_refresh: {
            let refresh = duration("pki.crl_refresh", file.crl_refresh, "1m")?;
            if refresh.is_zero() || refresh > Duration::from_secs(3600) {
                return Err(ConfigError::new(
                    "pki.crl_refresh",
                    format!(
                        "{refresh:?} is out of range; use more than 0 and at most 1h, e.g. \"1m\""
                    ),
                ));
            }
            refresh
        },
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
            Some(n) => match u32::try_from(n) {
                Ok(bounded @ 1..) if bounded <= max => Ok(bounded),
                _ => Err(ConfigError::new(
                    format!("lifecycle.{key}"),
                    format!("{n} is out of range; use 1 to {max}, e.g. {example}"),
                )),
            },
        }
    };
    Ok(LifecycleConfig {
        permit_ttl: duration("lifecycle.permit_ttl", file.permit_ttl, "7d")?,
        max_pin_failures: bounded("max_pin_failures", file.max_pin_failures, 5, 100, "5")?,
        retry_window: duration("lifecycle.retry_window", file.retry_window, "10m")?,
        renew_window_days: bounded("renew_window_days", file.renew_window_days, 30, 3650, "30")?,
        revoke_old_on_renew: file.revoke_old_on_renew.unwrap_or(false),
        enroll_attempts_per_minute: bounded(
            "enroll_attempts_per_minute",
            file.enroll_attempts_per_minute,
            30,
            100_000,
            "30",
        )?,
    })
}

fn validate_revocation(file: file::RevocationFile) -> Result<RevocationConfig, ConfigError> {
    let poll = duration("revocation.poll", file.poll, "1s")?;
    let max_staleness = duration("revocation.max_staleness", file.max_staleness, "30s")?;
    if poll >= max_staleness {
        return Err(ConfigError::new(
            "revocation.poll",
            format!(
                "{poll:?} is not shorter than revocation.max_staleness ({max_staleness:?}); every read would come too late, poll more often"
            ),
        ));
    }
    Ok(RevocationConfig {
        poll,
        max_staleness,
        on_stale: match file.on_stale.as_deref() {
            None | Some("reject") => OnStale::Reject,
            Some("serve") => OnStale::Serve,
            Some(other) => {
                return Err(ConfigError::new(
                    "revocation.on_stale",
                    format!(
                        "{other:?} is not a choice; use \"reject\" (the safe default) or \"serve\""
                    ),
                ));
            }
        },
        redis_url: match file.redis_url.filter(|url| !url.is_empty()) {
            None => None,
            Some(url) => {
                // Never the URL itself in a message: it may carry a password.
                let scheme = url.split_once("://").map(|(scheme, _)| scheme);
                match scheme {
                    Some("redis" | "rediss" | "redis+unix" | "unix") => {}
                    Some(other) if !other.contains('/') => {
                        return Err(ConfigError::new(
                            "revocation.redis_url",
                            format!(
                                "the scheme {other:?} is not Redis; write redis://host:6379/0 or rediss://host:6380/0 (Sentinel and Cluster are not supported)"
                            ),
                        ));
                    }
                    _ => {
                        return Err(ConfigError::new(
                            "revocation.redis_url",
                            "is not a URL; write redis://host:6379/0",
                        ));
                    }
                }
                if url::Url::parse(&url).is_err() {
                    return Err(ConfigError::new(
                        "revocation.redis_url",
                        "does not parse as a URL; write redis://host:6379/0",
                    ));
                }
                Some(url)
            }
        },
        resync: {
            let resync = duration("revocation.resync", file.resync, "30s")?;
            if resync < poll {
                return Err(ConfigError::new(
                    "revocation.resync",
                    format!(
                        "{resync:?} is shorter than revocation.poll ({poll:?}); with Redis the registry is read less often, not more"
                    ),
                ));
            }
            resync
        },
        close_connections: file.close_connections.unwrap_or(false),
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
