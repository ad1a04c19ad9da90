//! Replicas that act as one: two `certgate serve` on one PostgreSQL registry and one Redis. A
//! revocation made on one is refused by the other from the Redis stream (the registry is then
//! polled only every `revocation.resync`); a TLS session resumes on either with shared ticket keys
//! and is still refused once revoked; keep-alive and h2 connections are refused on their next
//! request, and closed with `close_connections`; Redis down, the registry brings the change within
//! `resync`; both down past `max_staleness`, certificate holders get 503.

use std::sync::Arc;
use std::time::Duration;

use crate::support::*;

/// Redis pushes; the registry is read every 30 s only, so what arrives sooner came through Redis.
fn with_redis(redis: &RedisServer) -> String {
    format!(
        "[revocation]\nredis_url = \"{}\"\npoll = \"1s\"\nresync = \"30s\"\n",
        redis.url()
    )
}

async fn revoke_taro_on_first(replicas: &Replicas) {
    let (status, json) = replicas
        .bank
        .admin_action(
            replicas.first(),
            "taro",
            "revoke",
            &with_confirmation(r#"{"reason": "keyCompromise"}"#),
        )
        .await;
    assert_eq!(status, 200, "{json}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_on_one_replica_reaches_the_other_through_redis() {
    let redis = RedisServer::start();
    let replicas = Replicas::open(&with_redis(&redis)).await;
    let second = replicas.second.addr;
    let taro = replicas.enroll_at(replicas.first(), "taro").await;
    assert_eq!(replicas.status_at(second, &taro).await, 200);
    // The second replica follows the stream before the revocation is made.
    replicas
        .second
        .wait_for_log("following the change stream in Redis");
    revoke_taro_on_first(&replicas).await;
    replicas
        .wait_status(
            second,
            &taro,
            403,
            "the second replica refuses the revoked certificate",
        )
        .await;
    wait_until("counted as applied from Redis, not from a poll", || async {
        replicas
            .second
            .metric("certgate_revocation_changes_applied_total{source=\"redis\"}")
            .await
            >= 1.0
    })
    .await;
    // The operator's CLI publishes too.
    let hana = replicas.enroll_at(second, "hana").await;
    let config = replicas.bank.fixture.dir.path().join("certgate.toml");
    let out = certgate()
        .args([
            "user",
            "suspend",
            "--corp-id",
            CORP_A,
            "--user-id",
            "hana",
            "--config",
        ])
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    replicas
        .wait_status(
            second,
            &hana,
            403,
            "the CLI's suspension reaches the replica",
        )
        .await;
}

/// `rediss://`: the stream over TLS, the Redis server's certificate verified against the
/// system's CAs (here the test CA, through `SSL_CERT_FILE`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_works_over_tls() {
    let fixture = Fixture::new();
    let redis_cert = fixture.ca.server();
    let redis = RedisServer::start_tls(&redis_cert.cert_pem, &redis_cert.key_pem);
    assert!(redis.url().starts_with("rediss://"));
    let config = fixture.write("certgate.toml", &fixture.config("", &with_redis(&redis)));
    let server = Server::start_with_env(
        &config,
        &[("SSL_CERT_FILE", fixture.ca_path.to_str().unwrap())],
    );
    server.wait_for_log("following the change stream in Redis");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_resume_on_either_replica_and_are_refused_once_revoked() {
    let redis = RedisServer::start();
    let fixture_dir = tempfile::tempdir().unwrap();
    let keys = ticket_key_file(fixture_dir.path());
    let replicas = Replicas::open_configured(
        &format!("ticket_keys = \"{}\"", keys.display()),
        &with_redis(&redis),
    )
    .await;
    let (first, second) = (replicas.first(), replicas.second.addr);
    let taro = replicas.enroll_at(first, "taro").await;

    // One client config: its session cache carries the session from one replica to the other.
    let client = replicas.bank.client(Some(&taro));
    let (status, resumed) = resumed_get(first, client.clone()).await;
    assert_eq!(
        (status, resumed),
        (200, false),
        "the first session is a full handshake"
    );
    let (status, resumed) = resumed_get(second, client.clone()).await;
    assert_eq!(
        (status, resumed),
        (200, true),
        "resumed on the other replica"
    );

    // Connections open on the second replica across the revocation: HTTP/1.1 and h2.
    let mut h1 = Conn::open(second, client.clone()).await.unwrap();
    let mut h2 = Conn::open(
        second,
        client_config(&replicas.bank.fixture.ca, Some(&taro), &[b"h2"]),
    )
    .await
    .unwrap();
    assert_eq!(h1.get("/app", &[]).await.unwrap().0, 200);
    assert_eq!(h2.get("/app", &[]).await.unwrap().0, 200);

    revoke_taro_on_first(&replicas).await;
    replicas
        .wait_status(
            second,
            &taro,
            403,
            "the second replica refuses the revoked certificate",
        )
        .await;
    let (status, resumed) = resumed_get(second, client.clone()).await;
    assert_eq!(
        (status, resumed),
        (403, true),
        "the TLS session resumes; the request is refused"
    );
    assert_eq!(h1.get("/app", &[]).await.unwrap().0, 403);
    assert_eq!(h2.get("/app", &[]).await.unwrap().0, 403);
}

/// One request on a new connection: its status and whether the TLS session was resumed.
async fn resumed_get(
    server: std::net::SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> (u16, bool) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let tcp = tokio::net::TcpStream::connect(server).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let Ok(mut tls) = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
    else {
        return (0, false);
    };
    if tls
        .write_all(b"GET /app HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .is_err()
    {
        return (0, false);
    }
    let mut answer = Vec::new();
    let _ = tls.read_to_end(&mut answer).await;
    let resumed = tls.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    (status, resumed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_connections_closes_a_revoked_certificates_connections() {
    let redis = RedisServer::start();
    let replicas =
        Replicas::open(&format!("{}close_connections = true\n", with_redis(&redis))).await;
    let second = replicas.second.addr;
    let taro = replicas.enroll_at(replicas.first(), "taro").await;
    let boss_like = replicas.enroll_at(replicas.first(), "hana").await;
    let mut taro_conn = Conn::open(second, replicas.bank.client(Some(&taro)))
        .await
        .unwrap();
    let mut other = Conn::open(second, replicas.bank.client(Some(&boss_like)))
        .await
        .unwrap();
    assert_eq!(taro_conn.get("/app", &[]).await.unwrap().0, 200);
    revoke_taro_on_first(&replicas).await;
    // Closed by the server: no request needed to find out, the connection ends on its own.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while taro_conn.get("/app", &[]).await.is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "the revoked certificate's connection stayed open"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Another user's connection stays open.
    assert_eq!(other.get("/app", &[]).await.unwrap().0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_down_a_revocation_arrives_through_the_registry_and_redis_resumes() {
    let mut redis = RedisServer::start();
    let replicas = Replicas::open(&format!(
        "[revocation]\nredis_url = \"{}\"\npoll = \"1s\"\nresync = \"3s\"\n",
        redis.url()
    ))
    .await;
    let second = replicas.second.addr;
    let taro = replicas.enroll_at(replicas.first(), "taro").await;
    let hana = replicas.enroll_at(replicas.first(), "hana").await;
    replicas
        .second
        .wait_for_log("following the change stream in Redis");
    redis.kill();
    wait_until("the second replica notices Redis is gone", || async {
        replicas
            .second
            .metric("certgate_revocation_sync_age_seconds{source=\"redis\"}")
            .await
            > 2.0
    })
    .await;
    revoke_taro_on_first(&replicas).await;
    replicas
        .wait_status(
            second,
            &taro,
            403,
            "the revocation made while Redis was down",
        )
        .await;
    redis.resume();
    wait_until("the second replica follows Redis again", || async {
        let age = replicas
            .second
            .metric("certgate_revocation_sync_age_seconds{source=\"redis\"}")
            .await;
        (0.0..2.0).contains(&age)
    })
    .await;
    let before = replicas
        .second
        .metric("certgate_revocation_changes_applied_total{source=\"redis\"}")
        .await;
    let (status, json) = replicas
        .bank
        .admin_action(replicas.first(), "hana", "suspend", "")
        .await;
    assert_eq!(status, 200, "{json}");
    replicas
        .wait_status(
            second,
            &hana,
            403,
            "the next change comes through Redis again",
        )
        .await;
    wait_until("counted as applied from Redis", || async {
        replicas
            .second
            .metric("certgate_revocation_changes_applied_total{source=\"redis\"}")
            .await
            > before
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_and_the_registry_down_certificate_holders_get_503_until_one_is_back() {
    let mut redis = RedisServer::start();
    let postgres = OwnPostgres::start("Right-pw-4821");
    let fixture = Fixture::new();
    *fixture.store_url.lock().unwrap() = Some(postgres.url("postgres", Some("Right-pw-4821")));
    let server = fixture.start(
        "",
        &format!(
            "[revocation]\nredis_url = \"{}\"\npoll = \"200ms\"\nresync = \"1s\"\nmax_staleness = \"2s\"\n",
            redis.url()
        ),
    );
    let leaf = fixture.ca.client("12345678901234 taro");
    let holder = client_config(&fixture.ca, Some(&leaf), &[b"http/1.1"]);
    let status = || async {
        get_once(server.addr, holder.clone(), "/app", &[])
            .await
            .unwrap()
            .0
            .as_u16()
    };
    assert_eq!(status().await, 200);
    // Both down: nothing can say what was revoked since.
    redis.kill();
    postgres.stop();
    wait_until("/readyz says not ready", || async {
        server.ops_get("/readyz").await.0 == 503
    })
    .await;
    assert_eq!(status().await, 503);
    assert_eq!(server.metric("certgate_revocation_stale").await, 1.0);
    // Redis back (the registry still down): a sign of life counts as a sync.
    redis.resume();
    wait_until("/readyz says ready again", || async {
        server.ops_get("/readyz").await.0 == 200
    })
    .await;
    assert_eq!(status().await, 200);
    postgres.resume();
}

#[tokio::test]
async fn a_replaced_external_crl_is_applied_and_a_forged_one_refused() {
    let fixture = Fixture::new();
    let revoked_later = fixture.ca.client("12345678901234 taro");
    let kept = fixture.ca.client("12345678901234 hana");
    let listed_first = fixture.ca.client("12345678901234 jiro");
    let crl_path = fixture.dir.path().join("g1.crl");
    let next_week = time::OffsetDateTime::now_utc() + time::Duration::days(7);
    std::fs::write(
        &crl_path,
        fixture.ca.crl(&[&listed_first.serial], 1, next_week),
    )
    .unwrap();
    // The test CA's own entry gets the CRL: the fixture's [[trust.ca]] is replaced.
    let config = fixture.config("", "").replace(
        &format!("cert = \"{}\"\n", fixture.ca_path.display()),
        &format!(
            "cert = \"{}\"\ncrl = \"{}\"\n",
            fixture.ca_path.display(),
            crl_path.display()
        ),
    );
    let path = fixture.write("certgate.toml", &config);
    let server = Server::start(&path);
    let status = |leaf: &Leaf| {
        let config = client_config(&fixture.ca, Some(leaf), &[b"http/1.1"]);
        async move {
            get_once(server.addr, config, "/app", &[])
                .await
                .unwrap()
                .0
                .as_u16()
        }
    };
    assert_eq!(status(&listed_first).await, 403, "listed at start");
    assert_eq!(status(&revoked_later).await, 200);

    // A new CRL, written in place (as a CA publishes it): applied without a restart.
    let replacement = fixture
        .ca
        .crl(&[&listed_first.serial, &revoked_later.serial], 2, next_week);
    std::fs::write(&crl_path, replacement).unwrap();
    wait_until("the new CRL is read", || async {
        status(&revoked_later).await == 403
    })
    .await;
    assert_eq!(status(&kept).await, 200);

    // A CRL signed by another CA: refused with a log line, the previous one stays.
    let impostor = Ca::new("g1");
    std::fs::write(&crl_path, impostor.crl(&[&kept.serial], 3, next_week)).unwrap();
    server.wait_for_log("CRL refused");
    assert_eq!(status(&kept).await, 200);
    assert_eq!(status(&revoked_later).await, 403);

    // A CRL past its nextUpdate is stale: on_stale = reject answers 503.
    let expired = fixture.ca.crl(
        &[],
        4,
        time::OffsetDateTime::now_utc() - time::Duration::minutes(1),
    );
    std::fs::write(&crl_path, expired).unwrap();
    wait_until("the stale CRL is read", || async {
        status(&kept).await == 503
    })
    .await;
}

#[tokio::test]
async fn a_broken_crl_at_start_is_a_configuration_error() {
    let fixture = Fixture::new();
    let crl_path = fixture.write("broken.crl", "not a CRL");
    let config = fixture.config("", "").replace(
        &format!("cert = \"{}\"\n", fixture.ca_path.display()),
        &format!(
            "cert = \"{}\"\ncrl = [\"{}\"]\n",
            fixture.ca_path.display(),
            crl_path.display()
        ),
    );
    let path = fixture.write("certgate.toml", &config);
    let out = certgate()
        .args(["serve", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("trust.ca[0].crl"), "{stderr}");
}

#[tokio::test]
async fn a_balancers_proxy_header_names_the_client_and_nobody_else_may_send_one() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let fixture = Fixture::new();
    let server = fixture.start(
        "client_auth = \"optional\"\nproxy_protocol = [\"127.0.0.1/32\"]",
        "[[route]]\npath = \"/\"\nrequire_cert = false\n",
    );
    let anonymous = client_config(&fixture.ca, None, &[b"http/1.1"]);
    let through = |source: &'static str, header: &'static [u8]| {
        let anonymous = anonymous.clone();
        async move {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
            let mut tcp = socket.connect(server.addr).await.unwrap();
            tcp.write_all(header).await.unwrap();
            let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
            let mut tls = tokio_rustls::TlsConnector::from(anonymous)
                .connect(name, tcp)
                .await
                .ok()?;
            tls.write_all(b"GET /x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .await
                .ok()?;
            let mut answer = Vec::new();
            let _ = tls.read_to_end(&mut answer).await;
            Some(String::from_utf8_lossy(&answer).into_owned())
        }
    };
    // v1 and v2 from the balancer: the application sees the client's address.
    let answer = through(
        "127.0.0.1",
        b"PROXY TCP4 198.51.100.7 127.0.0.1 40000 8443\r\n",
    )
    .await
    .expect("served");
    assert!(
        answer.contains("\"x-forwarded-for\":\"198.51.100.7\""),
        "{answer}"
    );
    let mut v2 = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    v2.extend_from_slice(&[
        0x21, 0x11, 0, 12, 203, 0, 113, 9, 127, 0, 0, 1, 0x9c, 0x40, 0x20, 0xfb,
    ]);
    let v2: &'static [u8] = Box::leak(v2.into_boxed_slice());
    let answer = through("127.0.0.1", v2).await.expect("served");
    assert!(
        answer.contains("\"x-forwarded-for\":\"203.0.113.9\""),
        "{answer}"
    );
    // The balancer without a header: refused, not served as the balancer.
    assert_eq!(through("127.0.0.1", b"").await, None);
    // Anyone else sending one: it is not read as a header, and the handshake fails.
    assert_eq!(
        through(
            "127.0.0.2",
            b"PROXY TCP4 198.51.100.7 127.0.0.1 40000 8443\r\n"
        )
        .await,
        None
    );
    let answer = through("127.0.0.2", b"").await.expect("served");
    assert!(
        answer.contains("\"x-forwarded-for\":\"127.0.0.2\""),
        "{answer}"
    );
    let _ = Duration::ZERO;
}

/// With shared ticket keys a session outlives a reload, so a resumed chain is checked against
/// the CAs trusted now: a CA dropped from `[[trust.ca]]` by SIGHUP no longer lets its
/// certificates resume. (Per-process keys gave that for free: a new key with each reload.)
#[tokio::test]
async fn a_session_of_a_ca_no_longer_trusted_does_not_resume_after_a_reload() {
    let fixture = Fixture::new();
    let keys = ticket_key_file(fixture.dir.path());
    let g2 = Ca::new("g2");
    std::fs::write(
        &fixture.ca_path,
        format!("{}{}", fixture.ca.cert_pem, g2.cert_pem),
    )
    .unwrap();
    let server = fixture.start(&format!("ticket_keys = \"{}\"", keys.display()), "");
    let g2_leaf = g2.client("12345678901234 hanako");
    let client = client_config(&fixture.ca, Some(&g2_leaf), &[b"http/1.1"]);
    assert_eq!(resumed_get(server.addr, client.clone()).await, (200, false));
    assert_eq!(resumed_get(server.addr, client.clone()).await, (200, true));

    // g2 leaves the trust list.
    std::fs::write(&fixture.ca_path, &fixture.ca.cert_pem).unwrap();
    server.signal("HUP");
    server.wait_for_log("reloaded the server certificate");
    assert_eq!(
        resumed_get(server.addr, client).await.0,
        0,
        "refused, not served"
    );
    // A CA still trusted resumes as before.
    let g1_leaf = fixture.ca.client("12345678901234 taro");
    let g1_client = client_config(&fixture.ca, Some(&g1_leaf), &[b"http/1.1"]);
    assert_eq!(
        resumed_get(server.addr, g1_client.clone()).await,
        (200, false)
    );
    assert_eq!(resumed_get(server.addr, g1_client).await, (200, true));
}

#[test]
fn tickets_rotate_makes_rotates_and_refuses_a_broken_file() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("tickets.keys");
    let rotate = || {
        certgate()
            .args(["tickets", "rotate", "--file"])
            .arg(&keys)
            .output()
            .unwrap()
    };
    let made = rotate();
    assert!(made.status.success());
    assert!(String::from_utf8_lossy(&made.stdout).starts_with("made"));
    let first = std::fs::read_to_string(&keys).unwrap();
    let rotated = rotate();
    assert!(String::from_utf8_lossy(&rotated.stdout).starts_with("rotated"));
    let second = std::fs::read_to_string(&keys).unwrap();
    // The next key of the first file is the current key of the second.
    let stage = |text: &str, stage: &str| {
        text.lines()
            .find(|line| line.starts_with(stage))
            .map(|line| line.split_whitespace().nth(1).unwrap().to_owned())
    };
    assert_eq!(stage(&first, "next "), stage(&second, "current "));
    assert_eq!(stage(&first, "current "), stage(&second, "previous "));
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&keys).unwrap().permissions().mode() & 0o777,
        0o600
    );
    std::fs::write(&keys, "current nonsense\n").unwrap();
    let broken = rotate();
    assert_eq!(broken.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&broken.stderr).contains("server.ticket_keys"));
    assert_eq!(
        std::fs::read_to_string(&keys).unwrap(),
        "current nonsense\n"
    );
}
