//! Which client certificates the handshake accepts, each refusal counted in `/metrics`, and real
//! clients (curl) on the same listener.

use crate::support::*;
use rcgen::ExtendedKeyUsagePurpose;
use time::{Duration, OffsetDateTime};

async fn refused(server: &Server, fixture: &Fixture, leaf: &Leaf) -> String {
    let config = client_config(&fixture.ca, Some(leaf), &[]);
    get_once(server.addr, config, "/", &[])
        .await
        .expect_err("the server accepted the certificate")
}

async fn counted(server: &Server, result: &str) -> f64 {
    server
        .metric(&format!(
            "certgate_tls_handshakes_total{{result=\"{result}\"}}"
        ))
        .await
}

#[tokio::test]
async fn certificate_from_a_trusted_ca_is_accepted_and_counted_ok() {
    let fixture = Fixture::new();
    let server = fixture.start("", "");
    let leaf = fixture.ca.client("12345678901234 taro");
    let (status, _, _) = get_once(
        server.addr,
        client_config(&fixture.ca, Some(&leaf), &[]),
        "/",
        &[],
    )
    .await
    .unwrap();
    assert_eq!(status, 200);
    assert_eq!(counted(&server, "ok").await, 1.0);
}

#[tokio::test]
async fn certificate_from_an_unknown_ca_is_refused() {
    let fixture = Fixture::new();
    let server = fixture.start("", "");
    let stranger = Ca::new("stranger").client("12345678901234 taro");
    refused(&server, &fixture, &stranger).await;
    assert_eq!(counted(&server, "unknown_ca").await, 1.0);
    assert_eq!(counted(&server, "ok").await, 0.0);
}

#[tokio::test]
async fn expired_and_not_yet_valid_certificates_are_refused() {
    let fixture = Fixture::new();
    let server = fixture.start("", "");
    let now = OffsetDateTime::now_utc();
    let mut spec = LeafSpec::client("12345678901234 taro");
    spec.not_before = now - Duration::days(30);
    spec.not_after = now - Duration::days(1);
    refused(&server, &fixture, &fixture.ca.leaf(spec)).await;
    let mut spec = LeafSpec::client("12345678901234 taro");
    spec.not_before = now + Duration::days(1);
    spec.not_after = now + Duration::days(30);
    refused(&server, &fixture, &fixture.ca.leaf(spec)).await;
    assert_eq!(counted(&server, "expired").await, 2.0);
}

#[tokio::test]
async fn server_auth_only_certificate_is_refused_but_no_eku_is_accepted() {
    let fixture = Fixture::new();
    let server = fixture.start("", "");
    let mut spec = LeafSpec::client("12345678901234 taro");
    spec.eku = vec![ExtendedKeyUsagePurpose::ServerAuth];
    refused(&server, &fixture, &fixture.ca.leaf(spec)).await;
    assert_eq!(counted(&server, "bad_eku").await, 1.0);

    let mut spec = LeafSpec::client("12345678901234 taro");
    spec.eku = vec![];
    let leaf = fixture.ca.leaf(spec);
    let (status, _, _) = get_once(
        server.addr,
        client_config(&fixture.ca, Some(&leaf), &[]),
        "/",
        &[],
    )
    .await
    .unwrap();
    assert_eq!(status, 200);
}

#[tokio::test]
async fn cn_outside_the_layout_is_refused_with_403_and_a_log_line() {
    let fixture = Fixture::new();
    let server = fixture.start("", "");
    let leaf = fixture.ca.client("alice@example.com");
    let config = client_config(&fixture.ca, Some(&leaf), &[]);
    let (status, _, body) = get_once(server.addr, config, "/", &[]).await.unwrap();
    assert_eq!(status, 403);
    assert!(String::from_utf8_lossy(&body).contains("certificate-identity-unknown"));
    assert_eq!(counted(&server, "bad_cn").await, 1.0);
    server.wait_for_log("alice@example.com");
    server.wait_for_log("client certificate refused");
}

#[tokio::test]
async fn cn_layout_comes_from_the_template() {
    let fixture = Fixture::new();
    let server = fixture.start(
        "",
        "[identity]\ncn = \"U:{user_id}/C:{corp_id}\"\ncorp_id = \"[0-9]{4}\"",
    );
    let accepted = fixture.ca.client("U:taro/C:0042");
    let (status, _, body) = get_once(
        server.addr,
        client_config(&fixture.ca, Some(&accepted), &[]),
        "/",
        &[],
    )
    .await
    .unwrap();
    assert_eq!(status, 200);
    assert_eq!(echoed(&body)["headers"]["x-client-user-id"], "taro");
    let default_layout = fixture.ca.client("12345678901234 taro");
    let (status, _, _) = get_once(
        server.addr,
        client_config(&fixture.ca, Some(&default_layout), &[]),
        "/",
        &[],
    )
    .await
    .unwrap();
    assert_eq!(status, 403);
}

#[tokio::test]
async fn no_certificate_is_refused_when_required_and_counted() {
    let fixture = Fixture::new();
    let server = fixture.start("", "");
    get_once(server.addr, client_config(&fixture.ca, None, &[]), "/", &[])
        .await
        .unwrap_err();
    assert_eq!(counted(&server, "no_cert").await, 1.0);
}

#[tokio::test]
async fn two_ca_generations_are_trusted_side_by_side() {
    let fixture = Fixture::new();
    let g2 = Ca::new("g2");
    let g2_path = fixture.write("ca-g2.pem", &g2.cert_pem);
    let server = fixture.start(
        "",
        &format!(
            "[[trust.ca]]\nname = \"g2\"\ncert = \"{}\"",
            g2_path.display()
        ),
    );
    for ca in [&fixture.ca, &g2] {
        let leaf = ca.client("12345678901234 taro");
        // The client trusts the server's CA (g1) whatever generation its own certificate is from.
        let (status, _, body) = get_once(
            server.addr,
            client_config(&fixture.ca, Some(&leaf), &[]),
            "/",
            &[],
        )
        .await
        .unwrap();
        assert_eq!(status, 200, "{}", ca.name);
        let issuer = echoed(&body)["headers"]["x-client-issuer-dn"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(issuer.contains(&format!("Test CA {}", ca.name)), "{issuer}");
    }
    // One PEM file holding both generations works as well.
    let both = fixture.write(
        "both.pem",
        &format!("{}{}", fixture.ca.cert_pem, g2.cert_pem),
    );
    let fixture2 = Fixture::new();
    std::fs::copy(&both, &fixture2.ca_path).unwrap();
    std::fs::write(
        &fixture2.server_cert,
        std::fs::read(&fixture.server_cert).unwrap(),
    )
    .unwrap();
    std::fs::write(
        &fixture2.server_key,
        std::fs::read(&fixture.server_key).unwrap(),
    )
    .unwrap();
    let server2 = fixture2.start("", "");
    let leaf = g2.client("12345678901234 taro");
    let (status, _, _) = get_once(
        server2.addr,
        client_config(&fixture.ca, Some(&leaf), &[]),
        "/",
        &[],
    )
    .await
    .unwrap();
    assert_eq!(status, 200);
}

fn curl(
    server: &Server,
    fixture: &Fixture,
    cert: Option<&Leaf>,
    extra: &[&str],
) -> std::process::Output {
    let mut command = std::process::Command::new("curl");
    command
        .args(["--silent", "--show-error", "--max-time", "10", "--cacert"])
        .arg(&fixture.ca_path)
        .args([
            "--resolve",
            &format!("localhost:{}:127.0.0.1", server.addr.port()),
        ]);
    if let Some(leaf) = cert {
        let cert_path = fixture.write("curl-client.pem", &leaf.cert_pem);
        let key_path = fixture.write("curl-client.key", &leaf.key_pem);
        command
            .arg("--cert")
            .arg(cert_path)
            .arg("--key")
            .arg(key_path);
    }
    command
        .args(extra)
        .arg(format!("https://localhost:{}/curl", server.addr.port()));
    command.output().unwrap()
}

#[tokio::test]
async fn real_curl_with_cert_and_key_sees_its_identity() {
    let fixture = Fixture::new();
    let server = fixture.start("", "");
    let leaf = fixture.ca.client("12345678901234 hanako");
    for version in ["--http1.1", "--http2"] {
        let out = curl(
            &server,
            &fixture,
            Some(&leaf),
            &[version, "-H", "X-Client-User-Id: mallory"],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let echo: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(echo["headers"]["x-client-user-id"], "hanako", "{version}");
        assert_eq!(echo["headers"]["x-client-corp-id"], "12345678901234");
    }
}

#[tokio::test]
async fn real_curl_without_a_certificate_is_refused() {
    let fixture = Fixture::new();
    let server = fixture.start("", "");
    let out = curl(&server, &fixture, None, &[]);
    assert!(!out.status.success());
    let stranger = Ca::new("stranger").client("12345678901234 taro");
    let out = curl(&server, &fixture, Some(&stranger), &[]);
    assert!(!out.status.success());
    assert_eq!(counted(&server, "unknown_ca").await, 1.0);
}

#[tokio::test]
async fn tls12_clients_are_served_too() {
    let fixture = Fixture::new();
    let server = fixture.start("", "");
    let leaf = fixture.ca.client("12345678901234 taro");
    let mut roots = rustls::RootCertStore::empty();
    use rustls_pki_types::pem::PemObject as _;
    roots
        .add(
            rustls_pki_types::CertificateDer::from_pem_slice(fixture.ca.cert_pem.as_bytes())
                .unwrap(),
        )
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS12])
    .unwrap()
    .with_root_certificates(roots)
    .with_client_auth_cert(
        vec![rustls_pki_types::CertificateDer::from_pem_slice(leaf.cert_pem.as_bytes()).unwrap()],
        rustls_pki_types::PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap(),
    )
    .unwrap();
    let (status, _, body) = get_once(server.addr, std::sync::Arc::new(config), "/", &[])
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(echoed(&body)["headers"]["x-client-user-id"], "taro");
}

#[tokio::test]
async fn a_client_that_never_finishes_the_handshake_is_dropped_after_handshake_timeout() {
    use tokio::io::AsyncReadExt as _;
    let fixture = Fixture::new();
    let server = fixture.start("handshake_timeout = \"300ms\"", "");
    let mut idle = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let mut buf = [0u8; 16];
    let closed = tokio::time::timeout(std::time::Duration::from_secs(5), idle.read(&mut buf)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "the connection was not closed: {closed:?}"
    );
    assert_eq!(counted(&server, "other").await, 1.0);
}

#[tokio::test]
async fn max_connections_holds_new_connections_until_one_closes() {
    let fixture = Fixture::new();
    let server = fixture.start("max_connections = 1", "");
    let leaf = fixture.ca.client("12345678901234 taro");
    let config = client_config(&fixture.ca, Some(&leaf), &[b"http/1.1"]);
    let mut first = Conn::open(server.addr, config.clone()).await.unwrap();
    assert_eq!(first.get("/", &[]).await.unwrap().0, 200);
    let second = tokio::spawn(get_once(server.addr, config, "/", &[]));
    // Round trips on the first connection give the server every chance to take the second:
    // it must not, and only one connection is open.
    for _ in 0..3 {
        assert_eq!(first.get("/", &[]).await.unwrap().0, 200);
        assert_eq!(server.metric("certgate_open_connections").await, 1.0);
    }
    assert!(
        !second.is_finished(),
        "a second connection was served beyond max_connections = 1"
    );
    drop(first);
    let (status, _, _) = tokio::time::timeout(std::time::Duration::from_secs(5), second)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(status, 200);
}

/// A session ticket says `server.ticket_lifetime`, with each process's own keys as with keys
/// shared between replicas (the process's own keys used to say rustls' 12 h whatever was set),
/// as `openssl s_client` reads it.
#[tokio::test]
async fn session_tickets_say_the_configured_lifetime() {
    let fixture = Fixture::new();
    let keys = ticket_key_file(fixture.dir.path());
    let leaf = fixture.ca.client("12345678901234 taro");
    let cert = fixture.write("s_client.pem", &leaf.cert_pem);
    let key = fixture.write("s_client.key", &leaf.key_pem);
    for (server_extra, seconds) in [
        ("ticket_lifetime = \"1h\"".to_owned(), 3600),
        (String::new(), 12 * 3600),
        (
            format!(
                "ticket_lifetime = \"2h\"\nticket_keys = \"{}\"",
                keys.display()
            ),
            7200,
        ),
    ] {
        let server = fixture.start(&server_extra, "");
        let mut client = std::process::Command::new("openssl")
            .args([
                "s_client",
                "-ign_eof",
                "-servername",
                "localhost",
                "-connect",
            ])
            .arg(server.addr.to_string())
            .arg("-CAfile")
            .arg(&fixture.ca_path)
            .arg("-cert")
            .arg(&cert)
            .arg("-key")
            .arg(&key)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        {
            use std::io::Write as _;
            let mut stdin = client.stdin.take().unwrap();
            stdin
                .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .unwrap();
        }
        let out = client.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("HTTP/1.1 200"), "{server_extra}: {text}");
        assert!(
            text.contains(&format!(
                "TLS session ticket lifetime hint: {seconds} (seconds)"
            )),
            "{server_extra}: {text}"
        );
    }
}

/// The TLS 1.3 session ticket leaves with the first answer rather than alone after the
/// handshake (one write fewer per connection): the client still has it when the answer has
/// arrived, and its next connection resumes.
#[tokio::test]
async fn the_session_ticket_arrives_with_the_first_answer_and_the_next_connection_resumes() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let fixture = Fixture::new();
    let server = fixture.start("", "");
    let leaf = fixture.ca.client("12345678901234 taro");
    let config = client_config(&fixture.ca, Some(&leaf), &[b"http/1.1"]);
    let mut kinds = Vec::new();
    for _ in 0..2 {
        let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = tokio_rustls::TlsConnector::from(config.clone())
            .connect(name, tcp)
            .await
            .unwrap();
        tls.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        tls.read_to_end(&mut answer).await.unwrap();
        assert!(
            answer.starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&answer)
        );
        let session = tls.get_ref().1;
        assert_eq!(
            session.protocol_version(),
            Some(rustls::ProtocolVersion::TLSv1_3)
        );
        kinds.push(session.handshake_kind());
    }
    assert_eq!(
        kinds,
        [
            Some(rustls::HandshakeKind::Full),
            Some(rustls::HandshakeKind::Resumed)
        ]
    );
}
