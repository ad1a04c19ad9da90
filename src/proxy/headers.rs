//! Header hygiene: the inbound identity headers nobody but certgate may set, the identity certgate
//! sets, hop-by-hop headers (RFC 9110 §7.6.1), and the `X-Forwarded-*` family.

use std::net::SocketAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use super::policy::Permit;
use crate::config::HeaderNames;

/// Inbound headers (lowercase names) removed whatever the configuration: the ways proxies, load
/// balancers and web servers pass a client certificate, a client address or the original scheme,
/// path or method, which an application may trust because it came from "the front end". certgate
/// is the front end: it sets `X-Forwarded-For`/`-Proto`/`-Host` itself, and no header may change
/// the path or method it decided on.
const ALWAYS_STRIPPED: [&str; 26] = [
    // Client certificates (RFC 9440, Envoy, IIS/ASP.NET, AWS, Traefik, Apache conventions).
    "client-cert",
    "client-cert-chain",
    "x-forwarded-client-cert",
    "x-arr-clientcert",
    "certificate",
    "x-client-cert",
    "x-client-certificate",
    "x-ssl-cert",
    // Client addresses.
    "forwarded",
    "x-real-ip",
    "true-client-ip",
    "cf-connecting-ip",
    "x-client-ip",
    "x-cluster-client-ip",
    "x-proxyuser-ip",
    "fastly-client-ip",
    // Scheme.
    "front-end-https",
    "x-url-scheme",
    // Path and method overrides (IIS, Symfony, Zend, Envoy; Rails, Spring, ASP.NET).
    "x-original-url",
    "x-rewrite-url",
    "x-original-uri",
    "x-override-url",
    "x-envoy-original-path",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// The families of [`ALWAYS_STRIPPED`], by the start of their names.
const ALWAYS_STRIPPED_PREFIXES: [&str; 4] = [
    "x-forwarded-",
    "x-ssl-client",
    "ssl-client-",
    "x-amzn-mtls-",
];

/// Whether an inbound header (lowercase name) is removed whatever the configuration.
fn is_always_stripped(name: &str) -> bool {
    ALWAYS_STRIPPED.contains(&name)
        || ALWAYS_STRIPPED_PREFIXES
            .iter()
            .any(|prefix| name.starts_with(prefix))
}

/// A quick first look at a header name: could it be one that only certgate may set, or one it
/// removes ([`is_protected`])? It answers from a few of the name's bytes and its length, so it
/// may say yes to a name that is not protected, never no to one that is. A request's usual
/// headers (`host`, `user-agent`, `accept`, `cookie`, `sec-fetch-*`, `x-requested-with`…) then
/// cost a few instructions each instead of a comparison with some forty names (BENCHMARKS.md, the
/// eighth round of issue 12).
pub(super) struct Screen {
    /// The lengths of the exact names, as bits, in one of 64 rows chosen by [`Screen::row`]
    /// (lengths of 64 and more: [`Self::long`]).
    exact: [u64; 64],
    /// Per first byte (its low five bits: every lowercase letter has its own), the third bytes
    /// of the prefixes starting with it, as bits; every bit when a prefix is shorter than three
    /// bytes.
    prefixed: [u32; 32],
    /// Whether some exact name is 64 bytes or longer.
    long: bool,
}

impl Screen {
    pub(super) fn new(names: &HeaderNames) -> Self {
        let mut screen = Self {
            exact: [0; 64],
            prefixed: [0; 32],
            long: false,
        };
        let configured = names
            .all()
            .into_iter()
            .chain(&names.strip)
            .map(HeaderName::as_str);
        for name in ALWAYS_STRIPPED.into_iter().chain(configured) {
            if name.len() < 64 {
                screen.exact[Self::row(name.as_bytes())] |= 1 << name.len();
            } else {
                screen.long = true;
            }
        }
        let own_prefix = Some(names.strip_prefix.as_str()).filter(|prefix| !prefix.is_empty());
        for prefix in ALWAYS_STRIPPED_PREFIXES.into_iter().chain(own_prefix) {
            match prefix.as_bytes() {
                [first, _, third, ..] => {
                    screen.prefixed[usize::from(first & 31)] |= 1 << (third & 31);
                }
                [first, ..] => screen.prefixed[usize::from(first & 31)] = u32::MAX,
                [] => {}
            }
        }
        screen
    }

    /// An exact name's row: from its first, third and last bytes, which tell apart most names
    /// of one length.
    fn row(name: &[u8]) -> usize {
        let byte = |at: Option<&u8>| usize::from(at.copied().unwrap_or(0));
        (byte(name.first()) * 3 + byte(name.get(2)) * 5 + byte(name.last())) & 63
    }

    /// Whether `name` (lowercase) may be protected: if not, it is not.
    fn may_be_protected(&self, name: &[u8]) -> bool {
        let Some(first) = name.first() else {
            return true;
        };
        let prefixes = self.prefixed[usize::from(first & 31)];
        let prefixed = match name.get(2) {
            Some(third) => prefixes & (1 << (third & 31)) != 0,
            None => prefixes != 0,
        };
        prefixed
            || match name.len() {
                length @ 0..64 => self.exact[Self::row(name)] & (1 << length) != 0,
                _ => self.long,
            }
    }
}

/// What one pass over a request's header fields found, so that the checks that follow need no
/// lookup in its `HeaderMap`: each lookup hashes the name (about 110 instructions), and a request
/// was looked up eight times on its way through certgate (BENCHMARKS.md, the eighth round of
/// issue 12).
#[derive(Default)]
pub struct Survey {
    /// The first `Host` value.
    pub(super) host: Option<HeaderValue>,
    /// How many `Host` fields there are.
    pub(super) hosts: usize,
    /// The first `Accept` value (how a refusal is written).
    pub(super) accept: Option<HeaderValue>,
    /// Whether there is a `Connection` field.
    pub(super) connection: bool,
    /// Whether there is an `Upgrade` field.
    pub(super) upgrade: bool,
    /// Whether some name may be one that only certgate may set or one it removes
    /// ([`Screen`]), or has a `_`: then [`strip_identity`] must look.
    pub(super) suspect: bool,
    /// How many `Cookie` and `Content-Length` fields there are (an h2 request's are joined).
    pub(super) cookies: usize,
    pub(super) content_lengths: usize,
}

impl Survey {
    pub(super) fn of(headers: &HeaderMap, screen: &Screen) -> Self {
        let mut survey = Self::default();
        for (name, value) in headers {
            // Every name is screened, these too: the configuration may name any header.
            let text = name.as_str().as_bytes();
            survey.suspect =
                survey.suspect || screen.may_be_protected(text) || text.contains(&b'_');
            if name == header::HOST {
                survey.hosts += 1;
                if survey.host.is_none() {
                    survey.host = Some(value.clone());
                }
            } else if name == header::ACCEPT {
                if survey.accept.is_none() {
                    survey.accept = Some(value.clone());
                }
            } else if name == header::CONNECTION {
                survey.connection = true;
            } else if name == header::UPGRADE {
                survey.upgrade = true;
            } else if name == header::COOKIE {
                survey.cookies += 1;
            } else if name == header::CONTENT_LENGTH {
                survey.content_lengths += 1;
            }
        }
        survey
    }
}

/// Hop-by-hop headers (RFC 9110 §7.6.1), by their lowercase text: compared as strings, which
/// is cheaper than comparing `HeaderName`s (and a `const` array of those is built and dropped
/// at every use).
const HOP_BY_HOP: [&str; 10] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    // RFC 9113 removed the h2c upgrade; its settings header belongs to the connection.
    "http2-settings",
];

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const FORWARDED: HeaderName = HeaderName::from_static("forwarded");

/// Removes every inbound header that could pose as certgate's identity; returns the names removed
/// (empty, without allocating, in the normal case).
///
/// CGI and WSGI servers turn `X-Client_User-Id` and `X-Client-User-Id` into the same variable
/// (`HTTP_X_CLIENT_USER_ID`), so a name is compared with `_` read as `-`, and, unless
/// `headers.allow_underscores`, every name with a `_` is dropped (as nginx does by default).
pub(super) fn strip_identity(headers: &mut HeaderMap, names: &HeaderNames) -> Vec<HeaderName> {
    let spoofed: Vec<HeaderName> = headers
        .keys()
        .filter(|name| {
            let text = name.as_str();
            if text.contains('_') {
                if !names.allow_underscores {
                    return true;
                }
                let dashed = text.replace('_', "-");
                return is_protected(&dashed, names);
            }
            is_protected(text, names)
        })
        .cloned()
        .collect();
    for name in &spoofed {
        headers.remove(name);
    }
    spoofed
}

/// Whether a (lowercase) header name is one that only certgate may set, or one it removes.
fn is_protected(name: &str, names: &HeaderNames) -> bool {
    (!names.strip_prefix.is_empty() && name.starts_with(names.strip_prefix.as_str()))
        || names.all().iter().any(|own| own.as_str() == name)
        || is_always_stripped(name)
        || names.strip.iter().any(|extra| extra.as_str() == name)
}

/// Whether `name` is one of [`HOP_BY_HOP`].
fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(&name.as_str())
}

/// Headers certgate sets on every forwarded request, which no `Connection` header may name.
static SET_BY_CERTGATE: [HeaderName; 4] = [
    X_FORWARDED_FOR,
    X_FORWARDED_PROTO,
    X_FORWARDED_HOST,
    FORWARDED,
];

/// RFC 9112 §3.2 and RFC 9110 §7.6.1: refuses a request whose framing certgate and the
/// application could read differently: two `Host` headers, a `Host` that disagrees with the
/// target's authority (`:authority` in h2), or a `Connection` header naming `Host`,
/// `Content-Length` or a header certgate sets (its removal as hop-by-hop would change what the
/// application sees).
pub(super) fn check_framing<B>(
    request: &http::Request<B>,
    survey: &Survey,
    names: &HeaderNames,
) -> Result<(), &'static str> {
    if survey.hosts > 1 {
        return Err("The request has two Host headers.");
    }
    let host = survey.host.as_ref();
    match host {
        // RFC 9112 §3.2: an HTTP/1.1 request without Host is answered 400.
        None if request.version() == http::Version::HTTP_11 => {
            return Err("The request has no Host header.");
        }
        Some(host)
            if host.is_empty() || http::uri::Authority::try_from(host.as_bytes()).is_err() =>
        {
            return Err("The Host header is not a host name (and port).");
        }
        _ => {}
    }
    if let (Some(host), Some(authority)) = (host, request.uri().authority()) {
        if !host
            .as_bytes()
            .eq_ignore_ascii_case(authority.as_str().as_bytes())
        {
            return Err("The Host header does not match the request's authority.");
        }
    }
    if !survey.connection {
        return Ok(());
    }
    let headers = request.headers();
    for token in connection_tokens(headers) {
        let lower = token.to_ascii_lowercase();
        let protected = lower == "host"
            || lower == "content-length"
            || SET_BY_CERTGATE.iter().any(|name| name.as_str() == lower)
            || is_protected(&lower.replace('_', "-"), names);
        if protected {
            return Err(
                "The Connection header names a header that must reach the application as certgate sets it.",
            );
        }
    }
    Ok(())
}

/// The headers certgate adds to a forwarded request, as HTTP/1.1 header lines (`name: value\r\n`
/// each), written after the client's own: `X-Forwarded-For`/`-Proto`/`-Host` from what certgate
/// saw, and the caller's identity (or `verify: NONE` when there is none).
///
/// Every inbound header of these names was removed first ([`strip_identity`]: the identity
/// names, `X-Forwarded-*` and `Forwarded`), so they are written without looking at the
/// client's headers, and appear once. Written rather than inserted into the request's
/// `HeaderMap`: a dozen hashed inserts and a grown map per request cost more than the rest of
/// certgate's decisions together (BENCHMARKS.md, the fifth round of issue 12).
pub(super) struct Injected(Vec<u8>);

impl Injected {
    /// What `permit` says about the caller, from a client at `forwarded_for` that asked for
    /// `host`.
    pub(super) fn new(
        permit: &Permit<'_>,
        names: &HeaderNames,
        now_unix: i64,
        forwarded_for: &HeaderValue,
        host: Option<&[u8]>,
    ) -> Self {
        let fixed: &[u8] = permit
            .identity
            .map_or(&[], |resolved| &resolved.headers.wire);
        let mut injected = Self(Vec::with_capacity(fixed.len() + 320));
        injected.line("x-forwarded-for", forwarded_for.as_bytes());
        injected.line("x-forwarded-proto", b"https");
        if let Some(host) = host {
            injected.line("x-forwarded-host", host);
        }
        let Some(resolved) = permit.identity else {
            injected.line(names.verify.as_str(), b"NONE");
            return injected;
        };
        injected.line(names.verify.as_str(), b"SUCCESS");
        injected.line(names.role.as_str(), permit.role.as_str().as_bytes());
        let mut days = itoa::Buffer::new();
        injected.line(
            names.days_left.as_str(),
            days.format(resolved.identity.days_left(now_unix))
                .as_bytes(),
        );
        injected.0.extend_from_slice(fixed);
        if let Some(chain) = permit.chain_header {
            injected.line(
                crate::identity::headers_consts::CLIENT_CERT_CHAIN.as_str(),
                chain.as_bytes(),
            );
        }
        injected
    }

    /// Adds `host` when the client's request has none (an h2 request carries it as
    /// `:authority`).
    pub(super) fn host(&mut self, host: &[u8]) {
        self.line(header::HOST.as_str(), host);
    }

    fn line(&mut self, name: &str, value: &[u8]) {
        self.0.extend_from_slice(name.as_bytes());
        self.0.extend_from_slice(b": ");
        self.0.extend_from_slice(value);
        self.0.extend_from_slice(b"\r\n");
    }

    /// The header lines.
    pub(super) fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Adds the headers to `headers` (for the built-in echo, which shows a `HeaderMap`).
    pub(super) fn insert_into(&self, headers: &mut HeaderMap) {
        for line in self
            .0
            .split(|b| *b == b'\n')
            .filter(|line| !line.is_empty())
        {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let Some(colon) = line.iter().position(|b| *b == b':') else {
                continue;
            };
            let (name, value) = (&line[..colon], &line[colon + 1..]);
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name),
                HeaderValue::from_bytes(value.trim_ascii_start()),
            ) {
                headers.append(name, value);
            }
        }
    }
}

/// Whether this is an HTTP/1.1 WebSocket upgrade, the one protocol upgrade certgate passes
/// through. Any other (`h2c` above all: the application would then read HTTP/2 requests that
/// certgate never sees, with whatever path and headers the client likes) is ignored, as RFC 9110
/// §7.8 lets a server do: `Upgrade` is removed and the request is forwarded as plain HTTP/1.1.
pub(super) fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    connection_tokens(headers).any(|token| token.eq_ignore_ascii_case("upgrade"))
        && headers
            .get_all(header::UPGRADE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .any(|protocol| protocol.trim().eq_ignore_ascii_case("websocket"))
}

/// The tokens the `Connection` header lists, as hyper reads them: a value that is not visible
/// ASCII lists none.
pub(super) fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|token| !token.is_empty())
}

/// Removes hop-by-hop headers and those the `Connection` header lists. For a WebSocket upgrade,
/// `Upgrade: websocket` (and nothing else it offered) and `Connection: upgrade` are set: they are
/// the point of the message.
pub(super) fn remove_hop_by_hop(headers: &mut HeaderMap, websocket: bool) {
    // Most messages carry none: one pass over the names they have is cheaper than a hashed
    // removal per hop-by-hop name. (Headers listed in `Connection` only count when it is there.)
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    let listed: Vec<HeaderName> = connection_tokens(headers)
        .filter_map(|token| HeaderName::from_bytes(token.as_bytes()).ok())
        .collect();
    for name in &listed {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    if websocket {
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// An h2 request as one HTTP/1.1 message: `cookie` fields joined into one header with `; `
/// (RFC 9113 §8.2.3; HTTP/1.1 allows one `Cookie` line), and a `content-length` repeated with the
/// same value (h2 resets a stream where they differ) sent once.
pub(super) fn for_http1(headers: &mut HeaderMap, survey: &Survey) {
    if survey.cookies > 1 {
        let joined: Vec<u8> = headers
            .get_all(header::COOKIE)
            .iter()
            .map(HeaderValue::as_bytes)
            .collect::<Vec<_>>()
            .join(&b"; "[..]);
        if let Ok(value) = HeaderValue::from_bytes(&joined) {
            headers.insert(header::COOKIE, value);
        }
    }
    if survey.content_lengths > 1 {
        if let Some(first) = headers.get(header::CONTENT_LENGTH).cloned() {
            headers.insert(header::CONTENT_LENGTH, first);
        }
    }
}

/// The client's address as `X-Forwarded-For` carries it.
pub(super) fn peer_ip(peer: SocketAddr) -> HeaderValue {
    let ip = peer.ip().to_canonical();
    HeaderValue::try_from(ip.to_string()).unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn names() -> HeaderNames {
        Config::parse(
            "[server]\ncert=\"a\"\nkey=\"b\"\nclient_auth=\"none\"\n[headers]\nrole=\"X-Role\"",
        )
        .unwrap()
        .headers
    }

    /// [`check_framing`] as a request meets it.
    fn framing<B>(request: &http::Request<B>) -> Result<(), &'static str> {
        let names = names();
        let survey = Survey::of(request.headers(), &Screen::new(&names));
        check_framing(request, &survey, &names)
    }

    /// Whether a request with one header of this name would go through [`strip_identity`].
    fn suspected(name: &str, names: &HeaderNames) -> bool {
        let mut headers = HeaderMap::new();
        headers.insert(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_static("v"),
        );
        Survey::of(&headers, &Screen::new(names)).suspect
    }

    #[test]
    fn every_name_certgate_removes_is_suspected() {
        let mut names = names();
        let long = format!("x-{}", "long".repeat(20));
        names.strip = ["a", "ab", "9-to-5", "cookie", "host", long.as_str()]
            .into_iter()
            .map(|name| HeaderName::from_bytes(name.as_bytes()).unwrap())
            .collect();
        let configured = names.all().into_iter().chain(&names.strip).cloned();
        let mut removed: Vec<String> = ALWAYS_STRIPPED
            .into_iter()
            .map(str::to_owned)
            .chain(configured.map(|name| name.as_str().to_owned()))
            .collect();
        for prefix in ALWAYS_STRIPPED_PREFIXES.into_iter().chain(["x-client-"]) {
            removed.push(prefix.to_owned());
            removed.push(format!("{prefix}z"));
            removed.push(format!("{prefix}{}", "z".repeat(70)));
        }
        for name in &removed {
            assert!(is_protected(name, &names), "{name}");
            assert!(suspected(name, &names), "{name}");
            assert!(suspected(&name.replacen('-', "_", 1), &names), "{name}");
        }
        // Prefixes of one and two bytes screen whatever follows them.
        for prefix in ["q", "qz"] {
            let mut short = names.clone();
            short.strip_prefix = prefix.to_owned();
            for name in ["q", "qz", "qzzz", "qzy-anything"] {
                if name.starts_with(prefix) {
                    assert!(is_protected(name, &short), "{prefix} {name}");
                    assert!(suspected(name, &short), "{prefix} {name}");
                }
            }
        }
    }

    #[test]
    fn a_browser_s_usual_headers_are_not_suspected() {
        let names = names();
        for name in [
            "host",
            "user-agent",
            "accept",
            "accept-encoding",
            "accept-language",
            "cookie",
            "content-type",
            "content-length",
            "authorization",
            "referer",
            "origin",
            "cache-control",
            "sec-fetch-mode",
            "sec-ch-ua-platform",
            "x-requested-with",
            "x-request-id",
            "traceparent",
            "if-none-match",
        ] {
            assert!(!is_protected(name, &names), "{name}");
            assert!(!suspected(name, &names), "{name}");
        }
    }

    #[test]
    fn a_survey_counts_what_the_checks_need() {
        let mut headers = HeaderMap::new();
        headers.append(header::HOST, HeaderValue::from_static("bank"));
        headers.append(header::HOST, HeaderValue::from_static("evil"));
        headers.append(header::ACCEPT, HeaderValue::from_static("text/html"));
        headers.append(header::COOKIE, HeaderValue::from_static("a=1"));
        headers.append(header::COOKIE, HeaderValue::from_static("b=2"));
        headers.append(header::CONTENT_LENGTH, HeaderValue::from_static("5"));
        let survey = Survey::of(&headers, &Screen::new(&names()));
        assert_eq!(survey.hosts, 2);
        assert_eq!(survey.host.unwrap(), "bank");
        assert_eq!(survey.accept.unwrap(), "text/html");
        assert_eq!((survey.cookies, survey.content_lengths), (2, 1));
        assert!(!survey.connection && !survey.upgrade && !survey.suspect);

        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        let survey = Survey::of(&headers, &Screen::new(&names()));
        assert!(survey.connection && survey.upgrade);
    }

    #[test]
    fn spoofed_identity_headers_are_removed() {
        let mut headers = HeaderMap::new();
        for name in [
            "x-client-verify",
            "X-Client-Anything",
            "x-role",
            "client-cert",
            "x-forwarded-client-cert",
            "accept",
        ] {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_static("v"),
            );
        }
        let removed = strip_identity(&mut headers, &names());
        assert_eq!(removed.len(), 5);
        assert_eq!(headers.len(), 1);
        assert!(headers.contains_key("accept"));
    }

    #[test]
    fn underscore_spellings_never_pass() {
        let mut headers = HeaderMap::new();
        for name in [
            "x_client_user_id",
            "x-client_role",
            "x_forwarded_for",
            "client_cert",
            "x-original-url",
        ] {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_static("attacker"),
            );
        }
        headers.insert("x-fine", HeaderValue::from_static("v"));
        assert_eq!(strip_identity(&mut headers, &names()).len(), 5);
        assert_eq!(headers.len(), 1);

        let mut allowing = names();
        allowing.allow_underscores = true;
        let mut headers = HeaderMap::new();
        for name in ["x_client_user_id", "client_cert", "my_app_header"] {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_static("v"),
            );
        }
        assert_eq!(strip_identity(&mut headers, &allowing).len(), 2);
        assert!(headers.contains_key("my_app_header"));
    }

    #[test]
    fn framing_that_could_be_read_two_ways_is_refused() {
        let ok = http::Request::get("/")
            .header("host", "bank")
            .body(())
            .unwrap();
        assert!(framing(&ok).is_ok());
        let two = http::Request::get("/")
            .header("host", "bank")
            .header("host", "evil")
            .body(())
            .unwrap();
        assert!(framing(&two).is_err());
        let disagree = http::Request::get("https://bank/")
            .header("host", "evil")
            .body(())
            .unwrap();
        assert!(framing(&disagree).is_err());
        let agree = http::Request::get("https://bank/")
            .header("host", "BANK")
            .body(())
            .unwrap();
        assert!(framing(&agree).is_ok());
        for listed in [
            "Host, X-Forwarded-Host",
            "x-client-user-id",
            "content-length",
            "X-Role",
            "keep-alive, x-forwarded-for",
        ] {
            let request = http::Request::get("/")
                .header("host", "bank")
                .header("connection", listed)
                .body(())
                .unwrap();
            assert!(framing(&request).is_err(), "{listed}");
        }
        let harmless = http::Request::get("/")
            .header("host", "bank")
            .header("connection", "keep-alive, x-private-hop")
            .body(())
            .unwrap();
        assert!(framing(&harmless).is_ok());
    }

    #[test]
    fn http11_needs_one_well_formed_host() {
        let bare = http::Request::get("/").body(()).unwrap();
        assert_eq!(framing(&bare), Err("The request has no Host header."));
        let old = http::Request::get("/")
            .version(http::Version::HTTP_10)
            .body(())
            .unwrap();
        assert!(framing(&old).is_ok());
        for bad in ["local host", "", "bank/x", "a b:443"] {
            let request = http::Request::get("/")
                .header("host", bad)
                .body(())
                .unwrap();
            assert!(framing(&request).is_err(), "{bad:?}");
        }
        for good in [
            "bank.example",
            "bank.example:8443",
            "[::1]:8443",
            "127.0.0.1",
        ] {
            let request = http::Request::get("/")
                .header("host", good)
                .body(())
                .unwrap();
            assert!(framing(&request).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn h2_cookies_become_one_header_and_a_repeated_length_one() {
        let mut headers = HeaderMap::new();
        headers.append(header::COOKIE, HeaderValue::from_static("a=1"));
        headers.append(header::COOKIE, HeaderValue::from_static("b=2"));
        headers.append(header::CONTENT_LENGTH, HeaderValue::from_static("5"));
        headers.append(header::CONTENT_LENGTH, HeaderValue::from_static("5"));
        let survey = Survey::of(&headers, &Screen::new(&names()));
        for_http1(&mut headers, &survey);
        assert_eq!(headers.get_all(header::COOKIE).iter().count(), 1);
        assert_eq!(headers[header::COOKIE], "a=1; b=2");
        assert_eq!(headers.get_all(header::CONTENT_LENGTH).iter().count(), 1);
    }

    #[test]
    fn nothing_to_strip_allocates_nothing() {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        assert_eq!(strip_identity(&mut headers, &names()).capacity(), 0);
    }

    #[test]
    fn hop_by_hop_and_connection_listed_headers_go() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, X-Secret"),
        );
        headers.insert("x-secret", HeaderValue::from_static("1"));
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
        headers.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        remove_hop_by_hop(&mut headers, false);
        assert_eq!(headers.len(), 1);
    }

    #[test]
    fn only_a_websocket_upgrade_keeps_its_two_headers() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("h2c, WebSocket"));
        assert!(is_websocket_upgrade(&headers));
        remove_hop_by_hop(&mut headers, true);
        assert_eq!(headers[header::UPGRADE], "websocket");
        assert_eq!(headers[header::CONNECTION], "upgrade");

        for offered in ["h2c", "TLS/1.2", "websocketx"] {
            let mut headers = HeaderMap::new();
            headers.insert(
                header::CONNECTION,
                HeaderValue::from_static("Upgrade, HTTP2-Settings"),
            );
            headers.insert(header::UPGRADE, HeaderValue::from_str(offered).unwrap());
            headers.insert(
                "http2-settings",
                HeaderValue::from_static("AAMAAABkAARAAAAA"),
            );
            assert!(!is_websocket_upgrade(&headers), "{offered}");
            remove_hop_by_hop(&mut headers, false);
            assert!(headers.is_empty(), "{offered}: {headers:?}");
        }
        let mut without_connection = HeaderMap::new();
        without_connection.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert!(!is_websocket_upgrade(&without_connection));
    }

    #[test]
    fn forwarding_client_certificate_and_override_headers_are_removed() {
        let mut names = names();
        names.strip = vec![HeaderName::from_static("x-legacy-user")];
        let removed_names = [
            "x-real-ip",
            "true-client-ip",
            "cf-connecting-ip",
            "x-proxyuser-ip",
            "x-forwarded-port",
            "x-forwarded-prefix",
            "x-forwarded-server",
            "x-forwarded-scheme",
            "x-forwarded-ssl",
            "x-forwarded-uri",
            "x-forwarded-tls-client-cert",
            "front-end-https",
            "x-url-scheme",
            "x-arr-clientcert",
            "x-ssl-client-cert",
            "x-ssl-client-verify",
            "x-ssl-client-dn",
            "ssl-client-cert",
            "ssl-client-verify",
            "x-amzn-mtls-clientcert",
            "certificate",
            "x-http-method-override",
            "x-http-method",
            "x-method-override",
            "x-envoy-original-path",
            "x-override-url",
            "x-legacy-user",
        ];
        let mut headers = HeaderMap::new();
        for name in removed_names {
            headers.insert(
                HeaderName::from_static(name),
                HeaderValue::from_static("forged"),
            );
        }
        headers.insert("x-request-id", HeaderValue::from_static("kept"));
        headers.insert(
            "x-forwarded",
            HeaderValue::from_static("kept: not the family"),
        );
        let removed = strip_identity(&mut headers, &names);
        assert_eq!(removed.len(), removed_names.len(), "{removed:?}");
        assert_eq!(headers.len(), 2, "{headers:?}");
    }

    #[test]
    fn hop_by_hop_names_are_matched_exactly() {
        for name in HOP_BY_HOP {
            assert!(is_hop_by_hop(&HeaderName::from_static(name)), "{name}");
        }
        for name in ["content-length", "host", "x-connection", "tee"] {
            assert!(!is_hop_by_hop(&HeaderName::from_static(name)), "{name}");
        }
    }

    #[test]
    fn forwarded_headers_are_certgate_s_alone() {
        let mut headers = HeaderMap::new();
        headers.insert(X_FORWARDED_FOR, HeaderValue::from_static("6.6.6.6"));
        headers.insert(FORWARDED, HeaderValue::from_static("for=6.6.6.6"));
        headers.insert("x-forwarded-host", HeaderValue::from_static("evil"));
        let names = names();
        strip_identity(&mut headers, &names);
        let permit = Permit {
            identity: None,
            role: crate::model::Role::General,
            renewed: false,
            chain_header: None,
            lifecycle_ca: false,
        };
        let injected = Injected::new(
            &permit,
            &names,
            0,
            &peer_ip("[::ffff:10.0.0.1]:5000".parse().unwrap()),
            Some(&b"bank"[..]),
        );
        injected.insert_into(&mut headers);
        assert_eq!(headers[X_FORWARDED_FOR], "10.0.0.1");
        assert_eq!(headers.get_all(X_FORWARDED_FOR).iter().count(), 1);
        assert_eq!(headers[X_FORWARDED_PROTO], "https");
        assert_eq!(headers[X_FORWARDED_HOST], "bank");
        assert_eq!(headers["x-client-verify"], "NONE");
        assert!(!headers.contains_key(FORWARDED));
        assert_eq!(
            String::from_utf8_lossy(injected.as_bytes()),
            "x-forwarded-for: 10.0.0.1\r\nx-forwarded-proto: https\r\nx-forwarded-host: bank\r\nx-client-verify: NONE\r\n"
        );
    }
}
