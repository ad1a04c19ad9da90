//! Headers that look like identity never reach the application in any spelling, and requests
//! whose framing the application could read differently from certgate are refused.
//!
//! The application here is a real WSGI server (Python's wsgiref): like every CGI/WSGI server it
//! turns `X_Client_User_Id` and `X-Client-User-Id` into the same `HTTP_X_CLIENT_USER_ID`, joining
//! the two. Before underscore names were dropped, it read `attacker,taro`.

use crate::support::*;

#[tokio::test]
async fn underscore_spellings_of_identity_headers_never_reach_a_wsgi_application() {
    let fixture = Fixture::new();
    let wsgi = wsgi_echo();
    let server = fixture.start("", &format!("[upstream]\nurl = \"http://{}\"\n", wsgi.addr));
    let leaf = fixture.ca.client("12345678901234 taro");
    for alpn in [&b"http/1.1"[..], &b"h2"[..]] {
        let mut conn = Conn::open(
            server.addr,
            client_config(&fixture.ca, Some(&leaf), &[alpn]),
        )
        .await
        .unwrap();
        let (status, _, body) = conn
            .get(
                "/app",
                &[
                    ("x_client_user_id", "attacker"),
                    ("x-client_role", "admin"),
                    ("x_client_corp_id", "99999999999999"),
                    ("x_forwarded_for", "6.6.6.6"),
                    ("client_cert", ":AAAA:"),
                    ("x-original-url", "/admin"),
                    ("x-app-note", "kept"),
                ],
            )
            .await
            .unwrap();
        assert_eq!(status, 200);
        let seen = echoed(&body);
        assert_eq!(seen["HTTP_X_CLIENT_USER_ID"], "taro", "{seen}");
        assert_eq!(seen["HTTP_X_CLIENT_CORP_ID"], "12345678901234", "{seen}");
        assert_eq!(seen["HTTP_X_CLIENT_ROLE"], "general", "{seen}");
        assert_eq!(seen["HTTP_X_FORWARDED_FOR"], "127.0.0.1", "{seen}");
        assert!(seen.get("HTTP_CLIENT_CERT").is_none(), "{seen}");
        assert!(seen.get("HTTP_X_ORIGINAL_URL").is_none(), "{seen}");
        assert_eq!(
            seen["HTTP_X_APP_NOTE"], "kept",
            "ordinary headers pass: {seen}"
        );
    }
}

#[tokio::test]
async fn without_a_certificate_the_application_is_told_so_whatever_the_spelling() {
    let fixture = Fixture::new();
    let wsgi = wsgi_echo();
    let server = fixture.start(
        "client_auth = \"optional\"",
        &format!(
            "[[route]]\npath = \"/\"\nrequire_cert = false\n[upstream]\nurl = \"http://{}\"\n",
            wsgi.addr
        ),
    );
    let mut conn = Conn::open(
        server.addr,
        client_config(&fixture.ca, None, &[b"http/1.1"]),
    )
    .await
    .unwrap();
    let (_, _, body) = conn
        .get(
            "/",
            &[("x_client_verify", "SUCCESS"), ("x_client_user_id", "boss")],
        )
        .await
        .unwrap();
    let seen = echoed(&body);
    assert_eq!(seen["HTTP_X_CLIENT_VERIFY"], "NONE", "{seen}");
    assert!(seen.get("HTTP_X_CLIENT_USER_ID").is_none(), "{seen}");
}

#[tokio::test]
async fn allow_underscores_keeps_application_headers_but_never_identity_ones() {
    let fixture = Fixture::new();
    let wsgi = wsgi_echo();
    let server = fixture.start(
        "",
        &format!(
            "[headers]\nallow_underscores = true\n[upstream]\nurl = \"http://{}\"\n",
            wsgi.addr
        ),
    );
    let leaf = fixture.ca.client("12345678901234 taro");
    let mut conn = Conn::open(
        server.addr,
        client_config(&fixture.ca, Some(&leaf), &[b"http/1.1"]),
    )
    .await
    .unwrap();
    let (_, _, body) = conn
        .get(
            "/",
            &[("x_client_user_id", "attacker"), ("my_app_flag", "on")],
        )
        .await
        .unwrap();
    let seen = echoed(&body);
    assert_eq!(seen["HTTP_X_CLIENT_USER_ID"], "taro", "{seen}");
    assert_eq!(seen["HTTP_MY_APP_FLAG"], "on", "{seen}");
}

#[tokio::test]
async fn framing_the_application_could_read_differently_is_refused() {
    let fixture = Fixture::new();
    let server = fixture.start("", "");
    let leaf = fixture.ca.client("12345678901234 taro");
    let client = client_config(&fixture.ca, Some(&leaf), &[]);
    for (request, why) in [
        (
            "GET / HTTP/1.1\r\nHost: localhost\r\nHost: evil.example\r\nConnection: close\r\n\r\n",
            "two Host headers",
        ),
        (
            "GET https://bank.example/ HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n",
            "Host against the target's authority",
        ),
        (
            "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close, Host, X-Forwarded-Host\r\n\r\n",
            "Connection naming Host",
        ),
        (
            "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close, X-Client-User-Id\r\n\r\n",
            "Connection naming an identity header",
        ),
    ] {
        let (status, _, body) = raw_h1(server.addr, client.clone(), request).await;
        assert_eq!(status, 400, "{why}: {body}");
    }
    // The accept twin: an ordinary hop-by-hop header listed in Connection is just removed.
    let (status, _, body) = raw_h1(
        server.addr,
        client,
        "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close, X-Private-Hop\r\nX-Private-Hop: 1\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let seen = echoed(&body.into());
    assert!(seen["headers"].get("x-private-hop").is_none(), "{seen}");
    assert_eq!(seen["headers"]["host"], "localhost");
}

/// The headers with which proxies, load balancers and web servers pass a client's address,
/// certificate or original path and method: an application may trust them as set by "the front
/// end", which certgate is. None reaches it (the attack found them all passed through).
#[tokio::test]
async fn forwarding_client_certificate_and_override_headers_never_reach_the_application() {
    let fixture = Fixture::new();
    let wsgi = wsgi_echo();
    let server = fixture.start("", &format!("[upstream]\nurl = \"http://{}\"\n", wsgi.addr));
    let leaf = fixture.ca.client("12345678901234 taro");
    let forged = [
        "X-Real-IP",
        "True-Client-IP",
        "CF-Connecting-IP",
        "X-ProxyUser-Ip",
        "X-Forwarded-Port",
        "X-Forwarded-Prefix",
        "X-Forwarded-Server",
        "X-Forwarded-Scheme",
        "X-Forwarded-Ssl",
        "X-Forwarded-Uri",
        "X-Forwarded-Tls-Client-Cert",
        "Front-End-Https",
        "X-Url-Scheme",
        "X-ARR-ClientCert",
        "X-SSL-Client-Cert",
        "X-SSL-Client-Verify",
        "X-SSL-Client-DN",
        "SSL-Client-Cert",
        "SSL-Client-Verify",
        "X-Amzn-Mtls-Clientcert",
        "Certificate",
        "X-HTTP-Method-Override",
        "X-HTTP-Method",
        "X-Method-Override",
        "X-Envoy-Original-Path",
        "X-Override-URL",
    ];
    for alpn in [&b"http/1.1"[..], &b"h2"[..]] {
        let mut conn = Conn::open(
            server.addr,
            client_config(&fixture.ca, Some(&leaf), &[alpn]),
        )
        .await
        .unwrap();
        let mut headers: Vec<(&str, &str)> = forged.iter().map(|name| (*name, "forged")).collect();
        headers.push(("x-app-note", "kept"));
        let (status, _, body) = conn.get("/app", &headers).await.unwrap();
        assert_eq!(status, 200);
        let seen = echoed(&body);
        for name in forged {
            let variable = format!("HTTP_{}", name.to_uppercase().replace('-', "_"));
            assert!(
                seen.get(&variable).is_none(),
                "{variable} reached the application: {seen}"
            );
        }
        assert_eq!(seen["HTTP_X_APP_NOTE"], "kept", "{seen}");
        assert_eq!(seen["HTTP_X_FORWARDED_FOR"], "127.0.0.1", "{seen}");
    }
}

/// An HTTP/1.1 request without Host, or with one that is no host name, is refused (RFC 9112
/// §3.2), and CONNECT is never forwarded.
#[tokio::test]
async fn a_missing_or_malformed_host_and_connect_are_refused() {
    let fixture = Fixture::new();
    let server = fixture.start(
        "client_auth = \"optional\"",
        "[[route]]\npath = \"/\"\nrequire_cert = false\n",
    );
    let anonymous = client_config(&fixture.ca, None, &[b"http/1.1"]);
    for (request, expected) in [
        ("GET /x HTTP/1.1\r\nConnection: close\r\n\r\n", 400),
        (
            "GET /x HTTP/1.1\r\nHost: local host\r\nConnection: close\r\n\r\n",
            400,
        ),
        (
            "GET /x HTTP/1.1\r\nHost: bank/evil\r\nConnection: close\r\n\r\n",
            400,
        ),
        (
            "CONNECT bank.example:443 HTTP/1.1\r\nHost: bank.example:443\r\nConnection: close\r\n\r\n",
            405,
        ),
        // The twins.
        (
            "GET /x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
            200,
        ),
        ("GET /x HTTP/1.0\r\n\r\n", 200),
    ] {
        let (status, head, _) = raw_h1(server.addr, anonymous.clone(), request).await;
        assert_eq!(status, expected, "{request:?}: {head}");
    }
}

/// What a WSGI application behind certgate (`[headers]` set to `headers`) saw of one `GET /app`
/// carrying `sent`, over `alpn`; certgate answered it 200.
async fn seen_by_wsgi(headers: &str, alpn: &[u8], sent: &[(&str, &str)]) -> serde_json::Value {
    let fixture = Fixture::new();
    let wsgi = wsgi_echo();
    let server = fixture.start(
        "",
        &format!(
            "[upstream]\nurl = \"http://{}\"\n[headers]\n{headers}\n",
            wsgi.addr
        ),
    );
    let leaf = fixture.ca.client("12345678901234 taro");
    let mut conn = Conn::open(
        server.addr,
        client_config(&fixture.ca, Some(&leaf), &[alpn]),
    )
    .await
    .unwrap();
    let (status, _, body) = conn.get("/app", sent).await.unwrap();
    assert_eq!(status, 200);
    echoed(&body)
}

/// `headers.strip` removes the bank's own legacy headers too; the twin keeps the others.
#[tokio::test]
async fn headers_listed_in_strip_never_reach_the_application() {
    let seen = seen_by_wsgi(
        "strip = [\"X-Legacy-User\"]",
        b"http/1.1",
        &[("x-legacy-user", "admin"), ("x-legacy-other", "kept")],
    )
    .await;
    assert!(seen.get("HTTP_X_LEGACY_USER").is_none(), "{seen}");
    assert_eq!(seen["HTTP_X_LEGACY_OTHER"], "kept", "{seen}");
}

/// Any header can be listed in `headers.strip`, also those certgate itself reads on every
/// request (`Cookie`, `Accept`), and a one-letter `strip_prefix` takes every name starting with
/// it; the twin keeps a header that is listed nowhere.
#[tokio::test]
async fn headers_certgate_reads_itself_can_be_stripped_too() {
    let seen = seen_by_wsgi(
        "strip = [\"Cookie\", \"Accept\"]\nstrip_prefix = \"Q\"",
        b"http/1.1",
        &[
            ("cookie", "session=forged"),
            ("accept", "text/html"),
            ("q", "1"),
            ("qz-role", "admin"),
            ("x-legacy-other", "kept"),
        ],
    )
    .await;
    for stripped in ["HTTP_COOKIE", "HTTP_ACCEPT", "HTTP_Q", "HTTP_QZ_ROLE"] {
        assert!(seen.get(stripped).is_none(), "{stripped}: {seen}");
    }
    assert_eq!(seen["HTTP_X_LEGACY_OTHER"], "kept", "{seen}");
}

/// What `headers.strip` removes is gone before certgate reads the request further: with `Host`
/// listed, the application gets no `X-Forwarded-Host` made from the client's `Host`; with
/// `Cookie` listed, an h2 request's two cookie fields leave no empty `Cookie` behind. The twin
/// header, listed nowhere, arrives.
#[tokio::test]
async fn what_strip_removes_is_not_read_back_afterwards() {
    for alpn in [&b"h2"[..], &b"http/1.1"[..]] {
        let seen = seen_by_wsgi(
            "strip = [\"Host\", \"Cookie\"]",
            alpn,
            &[
                ("cookie", "a=1"),
                ("cookie", "b=2"),
                ("x-legacy-other", "kept"),
            ],
        )
        .await;
        let alpn = String::from_utf8_lossy(alpn);
        assert!(seen.get("HTTP_COOKIE").is_none(), "{alpn}: {seen}");
        assert_eq!(seen["HTTP_X_LEGACY_OTHER"], "kept", "{alpn}: {seen}");
        if alpn == "http/1.1" {
            assert!(seen.get("HTTP_X_FORWARDED_HOST").is_none(), "{seen}");
        }
    }
}
