//! Every config error names its key.

use std::time::Duration;

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
        ("[headers]\nrole = \"Content-Length\"", "headers.role"),
        (
            "[headers]\nverify = \"transfer-encoding\"",
            "headers.verify",
        ),
        ("[headers]\ncorp_id = \"Host\"", "headers.corp_id"),
        (
            "[headers]\nuser_id = \"X-Forwarded-For\"",
            "headers.user_id",
        ),
        (
            "[headers]\nserial = \"Proxy-Authorization\"",
            "headers.serial",
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
fn store_urls_and_pool_are_checked_without_showing_a_password() {
    let config = Config::parse(MINIMAL).unwrap();
    assert_eq!(config.store.max_connections, 16);
    assert_eq!(config.store.connect_timeout, Duration::from_secs(5));
    let config = Config::parse(&format!(
        "{MINIMAL}\n[store]\nurl = \"postgres://certgate@db.example:5432/certgate\"\nmax_connections = 4\nconnect_timeout = \"2s\""
    ))
    .unwrap();
    assert_eq!(config.store.max_connections, 4);
    assert_eq!(config.store.connect_timeout, Duration::from_secs(2));
    for (url, key, says) in [
        ("mysql://u:hunter2@db/x", "store.url", "\"mysql\""),
        ("hunter2", "store.url", "no scheme"),
        ("postgres://u:hunter2@/x", "store.url", "empty host"),
        (
            "postgres://u:hunter2@db.example:5432",
            "store.url",
            "no database",
        ),
        (
            "postgres://u:hunter2@db.example:99999/x",
            "store.url",
            "does not parse",
        ),
    ] {
        let error = err(&format!("[store]\nurl = \"{url}\""));
        assert_eq!(error.key, key, "{url}");
        assert!(error.message.contains(says), "{url}: {error}");
        assert!(!error.to_string().contains("hunter2"), "{url}: {error}");
    }
    for (extra, key) in [
        ("max_connections = 0", "store.max_connections"),
        ("max_connections = 100000", "store.max_connections"),
        ("max_connections = -1", "store"),
        ("connect_timeout = \"0s\"", "store.connect_timeout"),
        ("connect_timeout = \"soon\"", "store.connect_timeout"),
        ("pool = 3", "store"),
    ] {
        let error = err(&format!("[store]\n{extra}"));
        assert!(error.key.starts_with(key), "{extra}: {error}");
    }
}

#[test]
fn replica_keys_have_defaults_and_bad_values_are_named() {
    let config = Config::parse(MINIMAL).unwrap();
    assert_eq!(config.revocation.redis_url, None);
    assert_eq!(config.revocation.resync, Duration::from_secs(30));
    assert!(!config.revocation.close_connections);
    assert_eq!(config.server.ticket_keys, None);
    assert_eq!(
        config.server.ticket_lifetime,
        Duration::from_secs(12 * 3600)
    );
    assert!(config.server.proxy_protocol.is_empty());
    assert_eq!(config.server.max_anonymous_connections, 5000);
    assert_eq!(config.pki.crl_refresh, Duration::from_secs(60));
    let config = Config::parse(&format!(
        "{MINIMAL}\n[revocation]\nredis_url = \"rediss://:s3cret@cache.example:6380/2\"\nclose_connections = true"
    ))
    .unwrap();
    assert!(config.revocation.close_connections);
    let server = |extra: &str| {
        format!("[server]\ncert = \"a\"\nkey = \"b\"\nclient_auth = \"none\"\n{extra}")
    };
    let config = Config::parse(&server(
        "proxy_protocol = [\"10.0.0.0/8\", \"192.0.2.10\", \"2001:db8::/32\"]",
    ))
    .unwrap();
    assert_eq!(config.server.proxy_protocol.len(), 3);
    for (text, key) in [
        (server("proxy_protocol = [\"10.0.0.0/33\"]"), "server.proxy_protocol[0]"),
        (server("proxy_protocol = [\"lb.example\"]"), "server.proxy_protocol[0]"),
        (server("ticket_lifetime = \"25h\""), "server.ticket_lifetime"),
        (server("ticket_lifetime = \"0s\""), "server.ticket_lifetime"),
        (server("max_anonymous_connections = 0"), "server.max_anonymous_connections"),
        (
            server("max_connections = 10\nmax_anonymous_connections = 11"),
            "server.max_anonymous_connections",
        ),
        (
            format!("{MINIMAL}\n[revocation]\nredis_url = \"http://:s3cret@cache:6379\""),
            "revocation.redis_url",
        ),
        (
            format!("{MINIMAL}\n[revocation]\nredis_url = \"cache:6379\""),
            "revocation.redis_url",
        ),
        (
            format!("{MINIMAL}\n[revocation]\npoll = \"5s\"\nresync = \"2s\""),
            "revocation.resync",
        ),
        (format!("{MINIMAL}\n[pki]\ncrl_refresh = \"2h\""), "pki.crl_refresh"),
        (
            format!("{MINIMAL}\n[headers]\nstrip = [\"X Bad\"]"),
            "headers.strip[0]",
        ),
        (
            format!("{MINIMAL}\n[lifecycle]\nenroll_attempts_per_minute = 0"),
            "lifecycle.enroll_attempts_per_minute",
        ),
        (
            "[server]\ncert = \"a\"\nkey = \"b\"\n[[trust.ca]]\nname = \"x\"\ncert = \"c\"\ncrl = [\"\"]".to_owned(),
            "trust.ca[0].crl",
        ),
    ] {
        let error = Config::parse(&text).unwrap_err();
        assert_eq!(error.key, key, "{text}");
        assert!(!error.to_string().contains("s3cret"), "{error}");
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
    let config = Config::parse(&format!("{MINIMAL}\n[identity]\ncorp_id = \"[0-9]+\"")).unwrap();
    assert!(config.identity.corp_id.is_match("123"));
    assert!(!config.identity.corp_id.is_match("12ab"));
}
