//! The process: first start on the shipped config, bad configs, SIGHUP reload, SIGTERM drain,
//! ops endpoints, and the echo command.

use std::process::Stdio;
use std::time::Duration;

use crate::support::*;

fn shipped_config_on_free_ports() -> String {
    let shipped =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/certgate.toml"))
            .unwrap();
    let edited = shipped
        .replace("listen = \"0.0.0.0:8443\"", "listen = \"127.0.0.1:0\"")
        .replace("listen = \"127.0.0.1:9090\"", "listen = \"127.0.0.1:0\"")
        .replace("format = \"text\"", "format = \"json\"");
    assert_ne!(
        shipped, edited,
        "the shipped config's listen/format lines changed; update this test"
    );
    edited
}

#[tokio::test]
async fn first_start_on_the_shipped_config_makes_a_dev_ca_and_echoes_the_demo_identity() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("config")).unwrap();
    let config = dir.path().join("config/certgate.toml");
    std::fs::write(&config, shipped_config_on_free_ports()).unwrap();
    let server = Server::start_in(&config, Some(dir.path()));
    let dev = dir.path().join("certs/dev");
    for file in [
        "ca.pem",
        "ca.key",
        "server.pem",
        "server.key",
        "client.pem",
        "client.key",
    ] {
        assert!(dev.join(file).exists(), "{file} missing");
    }
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(dev.join("ca.key"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    server.wait_for_log("development CA — not for production");
    // After it, what a newcomer runs next, with the port it listens on.
    server.wait_for_log(&format!(
        "next: curl --cert certs/dev/client.pem --key certs/dev/client.key --cacert certs/dev/ca.pem https://localhost:{}/",
        server.addr.port()
    ));
    server.wait_for_log("next: cargo run --release -- corp add");
    // The README's curl line.
    let out = std::process::Command::new("curl")
        .args([
            "--silent",
            "--show-error",
            "--cert",
            "certs/dev/client.pem",
            "--key",
            "certs/dev/client.key",
        ])
        .args([
            "--cacert",
            "certs/dev/ca.pem",
            "--resolve",
            &format!("localhost:{}:127.0.0.1", server.addr.port()),
        ])
        .arg(format!("https://localhost:{}/", server.addr.port()))
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let echo: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(echo["headers"]["x-client-corp-id"], "12345678901234");
    assert_eq!(echo["headers"]["x-client-user-id"], "demo");
}

fn run_with_config(command: &str, text: &str) -> (Option<i32>, String) {
    let fixture = Fixture::new();
    let path = fixture.write("bad.toml", text);
    let out = certgate()
        .args([command, "--config"])
        .arg(path)
        .output()
        .unwrap();
    (out.status.code(), String::from_utf8(out.stderr).unwrap())
}

#[test]
fn each_bad_config_exits_2_with_one_line_naming_its_key() {
    let fixture = Fixture::new();
    let base = fixture.config("", "");
    let mismatched_key = fixture.write("other.key", &fixture.ca.client("x").key_pem);
    let cases: Vec<(String, &str)> = vec![
        (base.replace("[ops]", "[ops]\nlisn = \"x\""), "ops.lisn"),
        (
            format!("{base}\n[identity]\ncorp_id = \"([0-9\"\n"),
            "identity.corp_id",
        ),
        (
            format!("{base}\n[identity]\ncn = \"{{corp}} {{user_id}}\"\n"),
            "identity.cn: unknown field {corp}; known fields: {corp_id}, {user_id}",
        ),
        (
            base.replace(
                &fixture.server_cert.display().to_string(),
                "/nonexistent/server.pem",
            ),
            "server.cert: cannot read /nonexistent/server.pem",
        ),
        (
            base.replace(
                &fixture.server_key.display().to_string(),
                &mismatched_key.display().to_string(),
            ),
            "server.key",
        ),
        (
            base.replace(
                &fixture.ca_path.display().to_string(),
                &fixture.server_key.display().to_string(),
            ),
            "trust.ca[0].cert",
        ),
        (
            format!("{base}\n[upstream]\nurl = \"localhost:8080\"\n"),
            "upstream.url",
        ),
        ("this is not toml".to_owned(), "toml: not valid TOML"),
    ];
    for (text, key) in &cases {
        for command in ["serve", "check-config"] {
            let (code, stderr) = run_with_config(command, text);
            assert_eq!(code, Some(2), "{command} {key}: {stderr}");
            assert!(
                stderr.contains(key),
                "{command}: expected {key:?} in {stderr:?}"
            );
            assert_eq!(
                stderr.trim_end().lines().count(),
                1,
                "{command}: one line expected: {stderr:?}"
            );
        }
    }
}

#[test]
fn missing_config_file_exits_2_and_says_so() {
    let out = certgate()
        .args(["serve", "--config", "/nonexistent/certgate.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("--config: cannot read /nonexistent/certgate.toml"),
        "{stderr}"
    );
}

#[test]
fn check_config_accepts_a_good_file() {
    let fixture = Fixture::new();
    let path = fixture.write("good.toml", &fixture.config("", ""));
    let out = certgate()
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8(out.stdout).unwrap().ends_with(": OK\n"));
}

#[tokio::test]
async fn sighup_adds_a_trust_ca_while_an_open_connection_keeps_working() {
    let fixture = Fixture::new();
    let server = fixture.start("", "");
    let g1_leaf = fixture.ca.client("12345678901234 taro");
    let mut open = Conn::open(
        server.addr,
        client_config(&fixture.ca, Some(&g1_leaf), &[b"http/1.1"]),
    )
    .await
    .unwrap();
    assert_eq!(open.get("/", &[]).await.unwrap().0, 200);

    let g2 = Ca::new("g2");
    let g2_leaf = g2.client("12345678901234 hanako");
    let g2_client = client_config(&fixture.ca, Some(&g2_leaf), &[]);
    get_once(server.addr, g2_client.clone(), "/", &[])
        .await
        .unwrap_err();

    // A broken CA file is refused and the old state stays.
    std::fs::write(&fixture.ca_path, "not a certificate").unwrap();
    server.signal("HUP");
    server.wait_for_log("reload refused");
    assert_eq!(open.get("/", &[]).await.unwrap().0, 200);
    let (status, _, _) = get_once(
        server.addr,
        client_config(&fixture.ca, Some(&g1_leaf), &[]),
        "/",
        &[],
    )
    .await
    .unwrap();
    assert_eq!(status, 200);

    std::fs::write(
        &fixture.ca_path,
        format!("{}{}", fixture.ca.cert_pem, g2.cert_pem),
    )
    .unwrap();
    server.signal("HUP");
    server.wait_for_log("reloaded the server certificate");
    let (status, _, body) = get_once(server.addr, g2_client, "/", &[]).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(echoed(&body)["headers"]["x-client-user-id"], "hanako");
    // The connection opened before the reload still serves requests.
    assert_eq!(open.get("/", &[]).await.unwrap().0, 200);

    // Dropping g1 from trust: its certificate, verified (and cached) before, is refused now.
    std::fs::write(&fixture.ca_path, &g2.cert_pem).unwrap();
    server.signal("HUP");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while server
        .logs()
        .matches("reloaded the server certificate")
        .count()
        < 2
    {
        assert!(
            std::time::Instant::now() < deadline,
            "second reload not logged"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    get_once(
        server.addr,
        client_config(&fixture.ca, Some(&g1_leaf), &[]),
        "/",
        &[],
    )
    .await
    .unwrap_err();
}

#[tokio::test]
async fn sigterm_lets_the_in_flight_request_finish_then_exits_0() {
    let fixture = Fixture::new();
    let (upstream, mut arrived, release) = gated_upstream().await;
    let mut server = fixture.start("", &format!("[upstream]\nurl = \"http://{upstream}\""));
    let leaf = fixture.ca.client("12345678901234 taro");
    let config = client_config(&fixture.ca, Some(&leaf), &[]);
    let addr = server.addr;
    let in_flight = tokio::spawn(async move { get_once(addr, config, "/slow", &[]).await });
    // The request is at the application: now stop the server, then let the application answer.
    arrived.recv().await.unwrap();
    server.signal("TERM");
    server.wait_for_log("shutting down");
    release.notify_one();
    let (status, _, body) = in_flight.await.unwrap().unwrap();
    assert_eq!(status, 200);
    assert_eq!(&body[..], b"slow answer");
    let code = tokio::task::spawn_blocking(move || {
        let code = server.wait_exit(Duration::from_secs(10));
        (code, server.logs())
    })
    .await
    .unwrap();
    assert_eq!(code.0, Some(0), "{}", code.1);
    assert!(code.1.contains("all connections closed"));
}

#[tokio::test]
async fn ops_endpoints_answer() {
    let fixture = Fixture::new();
    let server = fixture.start("", "");
    assert_eq!(
        server.ops_get("/healthz").await,
        (http::StatusCode::OK, "ok\n".to_owned())
    );
    assert_eq!(server.ops_get("/readyz").await.0, 200);
    let leaf = fixture.ca.client("12345678901234 taro");
    let mut conn = Conn::open(server.addr, client_config(&fixture.ca, Some(&leaf), &[]))
        .await
        .unwrap();
    conn.get("/", &[]).await.unwrap();
    let (_, metrics) = server.ops_get("/metrics").await;
    assert!(metrics.contains("certgate_open_connections 1"), "{metrics}");
    assert!(
        metrics.contains("certgate_http_requests_total{route=\"/\",status=\"2xx\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("certgate_upstream_response_seconds_count 1"),
        "{metrics}"
    );
    assert_eq!(server.ops_get("/nope").await.0, 404);
    server.wait_for_log("\"corp_id\":\"12345678901234\"");
    server.wait_for_log("\"route\":\"/\"");
}

#[tokio::test]
async fn echo_command_shows_the_headers_it_received() {
    let port = closed_port().port();
    let mut child = certgate()
        .args(["echo", "--listen", &format!("127.0.0.1:{port}")])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut answer = None;
    for _ in 0..100 {
        if let Ok(stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            let (mut send, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                    .await
                    .unwrap();
            tokio::spawn(conn);
            let request = http::Request::post("/path?q=1")
                .header("host", "echo")
                .header("X-Mixed-Case", "Value As Sent")
                .body(http_body_util::Full::new(bytes::Bytes::from_static(
                    b"12345",
                )))
                .unwrap();
            let response = send.send_request(request).await.unwrap();
            use http_body_util::BodyExt as _;
            answer = Some(response.into_body().collect().await.unwrap().to_bytes());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    let echo = echoed(&answer.expect("echo never listened"));
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["path"], "/path?q=1");
    assert_eq!(echo["headers"]["x-mixed-case"], "Value As Sent");
    assert_eq!(echo["body_bytes"], 5);
}
