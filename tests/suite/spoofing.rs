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
