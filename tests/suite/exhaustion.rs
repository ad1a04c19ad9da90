//! Connections that never authenticate cannot crowd out the ones that do: h2 connections with no
//! request are closed with GOAWAY (answering PINGs does not keep them open), sooner when they
//! have no certificate; one address (an IPv6 /64) cannot hold more than `max_connections_per_ip`
//! of them, all addresses together no more than `max_anonymous_connections`, and neither keeps a
//! certificate holder behind the same address from connecting. A request body that stops
//! arriving is answered 408 and its connection closed. h2 by prior knowledge (no ALPN) is watched
//! for idleness as h2 with ALPN is, and a download in progress is not idleness.
//!
//! Before these limits, 50 preface-only h2 connections filled `max_connections = 50` for good
//! and legitimate clients timed out; an attack later held 64 anonymous connections from one
//! address, which then refused a certificate holder behind it, and stalled bodies for minutes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpSocket;

use crate::support::*;

/// A TLS connection from `source` (any 127.x address is this machine's loopback).
async fn tls_from(
    source: &str,
    server: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(format!("{source}:0").parse().unwrap())?;
    let tcp = socket.connect(server).await?;
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
}

/// An h2 client (the `h2` crate, which answers PINGs) that sends its preface and nothing else.
async fn preface_only(
    server: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> Option<tokio::task::JoinHandle<()>> {
    let tls = tls_from("127.0.0.1", server, config).await.ok()?;
    let (_send, connection) = h2::client::handshake(tls).await.ok()?;
    Some(tokio::spawn(async move {
        let _keep = _send;
        let _ = connection.await;
    }))
}

#[tokio::test]
async fn preface_only_h2_connections_are_limited_per_address_and_closed_when_idle() {
    let fixture = Fixture::new();
    let server = fixture.start(
        "client_auth = \"optional\"\nmax_connections = 20\nmax_connections_per_ip = 8\nanonymous_idle_timeout = \"2s\"",
        "",
    );
    let anonymous = client_config(&fixture.ca, None, &[b"h2"]);
    let mut held = Vec::new();
    for _ in 0..20 {
        if let Some(connection) = preface_only(server.addr, anonymous.clone()).await {
            held.push(connection);
        }
    }
    // Those over the limit are closed right after their handshake: the server serves 8.
    let open = server.metric("certgate_open_connections").await;
    assert!(open <= 8.0, "at most 8 from one address, got {open}");

    // While they are held, a client with a certificate from another address gets through.
    let leaf = fixture.ca.client("12345678901234 taro");
    let tls = tls_from(
        "127.0.0.2",
        server.addr,
        client_config(&fixture.ca, Some(&leaf), &[b"h2"]),
    )
    .await
    .unwrap();
    let (send, connection) = h2::client::handshake(tls).await.unwrap();
    tokio::spawn(connection);
    let mut send = send.ready().await.unwrap();
    let request = http::Request::get("https://localhost/app")
        .body(())
        .unwrap();
    let (response, _) = send.send_request(request, true).unwrap();
    assert_eq!(response.await.unwrap().status(), 200);

    // The idle ones are sent GOAWAY and closed, though they answer every PING.
    for connection in held {
        tokio::time::timeout(Duration::from_secs(60), connection)
            .await
            .expect("an idle connection without a certificate is closed")
            .unwrap();
    }
}

#[tokio::test]
async fn a_connection_with_a_certificate_is_not_counted_against_its_address() {
    let fixture = Fixture::new();
    let server = fixture.start("client_auth = \"optional\"\nmax_connections_per_ip = 2", "");
    let leaf = fixture.ca.client("12345678901234 taro");
    let with_cert = client_config(&fixture.ca, Some(&leaf), &[b"http/1.1"]);
    let mut open = Vec::new();
    for _ in 0..6 {
        let mut conn = Conn::open(server.addr, with_cert.clone()).await.unwrap();
        let (status, _, _) = conn.get("/app", &[]).await.unwrap();
        assert_eq!(status, 200);
        open.push(conn);
    }
    // Anonymous ones from the same address: two, not more.
    let anonymous = client_config(&fixture.ca, None, &[b"http/1.1"]);
    let mut anonymous_open = Vec::new();
    let mut refused = 0;
    for _ in 0..4 {
        match answered("127.0.0.1", server.addr, anonymous.clone()).await {
            Some(tls) => anonymous_open.push(tls),
            None => refused += 1,
        }
    }
    assert_eq!((anonymous_open.len(), refused), (2, 2));
    // While they are held, a certificate holder behind the same address still gets in.
    let mut conn = Conn::open(server.addr, with_cert).await.unwrap();
    assert_eq!(conn.get("/app", &[]).await.unwrap().0, 200);
}

/// A TLS connection from `source` that the server keeps open: it answers a request on it
/// (`None`: it closed the connection instead).
async fn answered(
    source: &str,
    server: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> Option<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut tls = tls_from(source, server, config).await.ok()?;
    tls.write_all(
        b"GET /certgate/ HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\n\r\n",
    )
    .await
    .ok()?;
    let mut head = [0u8; 12];
    tls.read_exact(&mut head).await.ok()?;
    assert!(
        head.starts_with(b"HTTP/1.1 "),
        "{:?}",
        String::from_utf8_lossy(&head)
    );
    Some(tls)
}

#[tokio::test]
async fn connections_without_a_certificate_from_all_addresses_leave_room_for_holders() {
    let fixture = Fixture::new();
    let server = fixture.start(
        "client_auth = \"optional\"\nmax_connections = 50\nmax_anonymous_connections = 3",
        "",
    );
    let anonymous = client_config(&fixture.ca, None, &[b"http/1.1"]);
    let mut open = Vec::new();
    let mut refused = 0;
    for source in [
        "127.0.0.3",
        "127.0.0.4",
        "127.0.0.5",
        "127.0.0.6",
        "127.0.0.7",
    ] {
        match answered(source, server.addr, anonymous.clone()).await {
            Some(tls) => open.push(tls),
            None => refused += 1,
        }
    }
    assert_eq!((open.len(), refused), (3, 2));
    let leaf = fixture.ca.client("12345678901234 taro");
    let with_cert = client_config(&fixture.ca, Some(&leaf), &[b"http/1.1"]);
    let mut conn = Conn::open(server.addr, with_cert).await.unwrap();
    assert_eq!(conn.get("/app", &[]).await.unwrap().0, 200);
}

#[tokio::test]
async fn a_request_body_that_stops_arriving_is_answered_408_and_closed() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let fixture = Fixture::new();
    let server = fixture.start(
        "client_auth = \"optional\"\nanonymous_idle_timeout = \"1s\"",
        "[[route]]\npath = \"/public\"\nrequire_cert = false\n\
         [login]\npath = \"/login\"\ncorp_field = \"corp\"\nuser_field = \"user\"\n\
         [[route]]\npath = \"/login\"\nrequire_cert = false\n",
    );
    let anonymous = client_config(&fixture.ca, None, &[b"http/1.1"]);
    // certgate's own API, the login form it reads, and a body forwarded to the application.
    for (path, kind) in [
        ("/certgate/api/enroll", "application/json"),
        ("/login", "application/x-www-form-urlencoded"),
        ("/public/upload", "application/octet-stream"),
    ] {
        let mut tls = tls_from("127.0.0.1", server.addr, anonymous.clone())
            .await
            .unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: {kind}\r\nContent-Length: 100\r\n\r\n0123456789"
        );
        tls.write_all(head.as_bytes()).await.unwrap();
        // Then nothing more: the answer comes (not after minutes), and the connection ends.
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(60), tls.read_to_end(&mut answer))
            .await
            .unwrap_or_else(|_| panic!("{path}: a stalled body held the connection"))
            .ok();
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 408"), "{path}: {answer}");
    }

    // The same through a real HTTP connection to an application that reads its body.
    let upstream = test_upstream().await;
    let relay = fixture.start_named(
        "relay.toml",
        "client_auth = \"optional\"\nanonymous_idle_timeout = \"1s\"",
        &format!(
            "[[route]]\npath = \"/\"\nrequire_cert = false\n[upstream]\nurl = \"http://{upstream}\"\n"
        ),
    );
    let mut tls = tls_from("127.0.0.1", relay.addr, anonymous).await.unwrap();
    tls.write_all(
        b"POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n0123456789",
    )
    .await
    .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), tls.read_to_end(&mut answer))
        .await
        .expect("a stalled body held the connection")
        .ok();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
}

/// A server with `idle_timeout = 1s` in front of the test upstream (`/drip`, `/big`, `/slow`).
async fn with_idle_timeout_of_a_second(fixture: &Fixture) -> Server {
    let upstream = test_upstream().await;
    fixture.start(
        "idle_timeout = \"1s\"",
        &format!("[upstream]\nurl = \"http://{upstream}\"\n"),
    )
}

/// Idle means no request and no response in progress: a download over h2 that takes longer than
/// the idle timeout, on a connection that asks nothing else, arrives whole. The twin: the same
/// connection, once the download is done and nothing else is asked, is closed.
#[tokio::test]
async fn an_h2_download_longer_than_the_idle_timeout_is_not_cut() {
    let fixture = Fixture::new();
    let server = with_idle_timeout_of_a_second(&fixture).await;
    let leaf = fixture.ca.client("12345678901234 taro");
    let tls = tls_from(
        "127.0.0.1",
        server.addr,
        client_config(&fixture.ca, Some(&leaf), &[b"h2"]),
    )
    .await
    .unwrap();
    let (send, connection) = h2::client::handshake(tls).await.unwrap();
    let connection = tokio::spawn(connection);
    let mut send = send.ready().await.unwrap();
    // 16 chunks 300 ms apart: about 5 s, several idle timeouts.
    let request = http::Request::get("https://localhost/drip?chunks=16&ms=300")
        .body(())
        .unwrap();
    let (response, _) = send.send_request(request, true).unwrap();
    let response = response.await.unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut received = 0;
    while let Some(chunk) = body.data().await {
        let chunk = chunk
            .unwrap_or_else(|err| panic!("the download was cut after {received} bytes: {err}"));
        received += chunk.len();
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    assert_eq!(received, 16 * 1024, "the whole download arrives");
    drop(send);
    tokio::time::timeout(Duration::from_secs(60), connection)
        .await
        .expect("the connection, idle after its download, is closed")
        .unwrap()
        .ok();
}

/// The same without ALPN: h2 spoken by prior knowledge (served by the sniffing connection) is
/// closed when idle too, rather than held for as long as the client answers PINGs.
#[tokio::test]
async fn preface_only_h2_without_alpn_is_closed_when_idle() {
    let fixture = Fixture::new();
    let server = fixture.start(
        "client_auth = \"optional\"\nanonymous_idle_timeout = \"1s\"",
        "",
    );
    let no_alpn = client_config(&fixture.ca, None, &[]);
    let connection = preface_only(server.addr, no_alpn)
        .await
        .expect("h2 by prior knowledge is served");
    tokio::time::timeout(Duration::from_secs(30), connection)
        .await
        .expect("an idle h2 connection without ALPN is closed")
        .unwrap();
}

/// Writes `head` and then, a byte every 200 ms, a header line that never ends (slowloris), until
/// the server closes; returns how long the server took to close, and what it sent meanwhile.
async fn trickle_until_closed(
    mut tls: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    head: &str,
) -> (Duration, String) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let started = std::time::Instant::now();
    tls.write_all(head.as_bytes()).await.unwrap();
    let (mut reader, mut writer) = tokio::io::split(tls);
    let trickle = tokio::spawn(async move {
        // Paced as the attack paces it: each byte well within any per-read timeout.
        while writer.write_all(b"a").await.is_ok() && writer.flush().await.is_ok() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), reader.read_to_end(&mut answer))
        .await
        .expect("a request head trickled a byte at a time held the connection")
        .ok();
    trickle.abort();
    (
        started.elapsed(),
        String::from_utf8_lossy(&answer).into_owned(),
    )
}

/// A trickled head's connection closed in time (an idle timeout, at most two looks and a short
/// grace: 2.5 s at `idle_timeout = 2s`; 3 idle timeouts, 6 s, before the watch), never answered.
fn assert_closed_unanswered((took, answer): (Duration, String)) {
    assert!(
        took < Duration::from_millis(3500),
        "closed only after {took:?}"
    );
    assert!(
        !answer.contains("HTTP/1.1 2"),
        "the unfinished head was answered: {answer}"
    );
}

/// HTTP/1.1 slowloris: a request head sent a byte at a time and never finished is closed about
/// one idle timeout after the connection's last activity (not two or three), with a certificate
/// or without, as a first request and after an answered one; it is never answered.
#[tokio::test]
async fn an_http1_request_head_trickled_a_byte_at_a_time_is_closed() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let fixture = Fixture::new();
    let server = fixture.start(
        "client_auth = \"optional\"\nidle_timeout = \"2s\"\nanonymous_idle_timeout = \"2s\"",
        "[[route]]\npath = \"/public\"\nrequire_cert = false\n",
    );
    let leaf = fixture.ca.client("12345678901234 taro");
    let slow = "GET /public/b HTTP/1.1\r\nHost: localhost\r\nX-Slow: ";
    for identity in [Some(&leaf), None] {
        let config = client_config(&fixture.ca, identity, &[b"http/1.1"]);
        let tls = tls_from("127.0.0.1", server.addr, config.clone())
            .await
            .unwrap();
        assert_closed_unanswered(trickle_until_closed(tls, slow).await);

        // After an answered request (HEAD: the answer ends with its head).
        let mut tls = tls_from("127.0.0.1", server.addr, config).await.unwrap();
        tls.write_all(b"HEAD /public/a HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .unwrap();
        let mut first = Vec::new();
        while !first.windows(4).any(|w| w == b"\r\n\r\n") {
            let mut chunk = [0u8; 1024];
            let read = tls.read(&mut chunk).await.unwrap();
            assert!(read > 0, "closed before answering");
            first.extend_from_slice(&chunk[..read]);
        }
        assert!(
            first.starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&first)
        );
        assert_closed_unanswered(trickle_until_closed(tls, slow).await);
    }
}

/// An HTTP/1.1 keep-alive connection asking something more often than the idle timeout stays
/// open; once it stops asking, it is closed about one idle timeout later.
#[tokio::test]
async fn a_busy_http1_connection_stays_open_and_an_idle_one_is_closed() {
    let fixture = Fixture::new();
    let server = fixture.start("idle_timeout = \"1s\"", "");
    let leaf = fixture.ca.client("12345678901234 taro");
    let tls = tls_from(
        "127.0.0.1",
        server.addr,
        client_config(&fixture.ca, Some(&leaf), &[b"http/1.1"]),
    )
    .await
    .unwrap();
    let (mut send, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .unwrap();
    let connection = tokio::spawn(connection);
    // Ten requests 400 ms apart: 4 s on one connection, several idle timeouts.
    for n in 0..10 {
        if n > 0 {
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
        send.ready()
            .await
            .unwrap_or_else(|err| panic!("closed before request {n}: {err}"));
        let response = send
            .send_request(
                http::Request::get("/app")
                    .header("host", "localhost")
                    .body(empty())
                    .unwrap(),
            )
            .await
            .unwrap_or_else(|err| panic!("request {n} failed: {err}"));
        assert_eq!(response.status(), 200);
        http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap();
    }
    let last = std::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(60), connection)
        .await
        .expect("an idle HTTP/1.1 connection is closed")
        .unwrap()
        .ok();
    let closed_after = last.elapsed();
    assert!(
        closed_after < Duration::from_secs(3),
        "closed {closed_after:?} after its last answer (idle_timeout 1 s)"
    );
}

/// A download over HTTP/1.1 that takes longer than the idle timeout arrives whole: one that
/// waits on the application, and one read slowly by its client after the application has
/// handed over its last byte (certgate still writing it out is not idleness).
#[tokio::test]
async fn an_http1_download_longer_than_the_idle_timeout_is_not_cut() {
    use http_body_util::BodyExt as _;
    let fixture = Fixture::new();
    let server = with_idle_timeout_of_a_second(&fixture).await;
    let leaf = fixture.ca.client("12345678901234 taro");
    let mut conn = Conn::open(
        server.addr,
        client_config(&fixture.ca, Some(&leaf), &[b"http/1.1"]),
    )
    .await
    .unwrap();
    // 16 chunks 300 ms apart: about 5 s, several idle timeouts.
    let (status, _, body) = conn.get("/drip?chunks=16&ms=300", &[]).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(body.len(), 16 * 1024, "the whole download arrives");

    // 16 MB read at about 4 MB/s: more than the socket buffers hold, so certgate still has the
    // end of it to write long after the application is done.
    let total: usize = 16_000_000;
    let response = conn
        .send(
            http::Request::get(format!("/big?bytes={total}"))
                .header("host", "localhost")
                .body(empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut received = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame
            .unwrap_or_else(|err| panic!("the download was cut after {received} bytes: {err}"));
        if let Some(data) = frame.data_ref() {
            received += data.len();
            // Paced as a slow client reads.
            tokio::time::sleep(Duration::from_micros(data.len() as u64 / 4)).await;
        }
    }
    assert_eq!(received, total, "the whole slow download arrives");
}

/// A client that asks for a large answer and never reads it does not hold its connection (and
/// the application's) for good: with nothing read for an idle timeout, it is closed, as nginx's
/// `send_timeout` would. The twin: an answer the application takes longer than the idle timeout
/// to give, with nothing to write meanwhile, still arrives.
#[tokio::test]
async fn an_http1_client_that_stops_reading_its_answer_is_closed() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let fixture = Fixture::new();
    let server = with_idle_timeout_of_a_second(&fixture).await;
    let leaf = fixture.ca.client("12345678901234 taro");
    let config = client_config(&fixture.ca, Some(&leaf), &[b"http/1.1"]);

    let mut conn = Conn::open(server.addr, config.clone()).await.unwrap();
    let (status, _, _) = conn.get("/slow?ms=3000", &[]).await.unwrap();
    assert_eq!(status, 200, "a slow application's answer arrives");
    drop(conn);

    let mut tls = tls_from("127.0.0.1", server.addr, config).await.unwrap();
    tls.write_all(b"GET /big?bytes=2000000000 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    // The answer's first bytes, then nothing more is read: the connection is counted open until
    // certgate drops it.
    let mut head = [0u8; 12];
    tls.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    assert_eq!(server.metric("certgate_open_connections").await, 1.0);
    wait_until(
        "certgate drops a connection whose client reads nothing",
        || async { server.metric("certgate_open_connections").await == 0.0 },
    )
    .await;
    drop(tls);
}

/// Reads one HTTP/1.1 answer with a `Content-Length` (certgate's and the echo upstream's) from
/// `tls`: its head and body as text.
async fn read_answer(tls: &mut tokio_rustls::client::TlsStream<tokio::net::TcpStream>) -> String {
    use tokio::io::AsyncReadExt as _;
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = answer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&answer[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .map(|value| value.trim().parse().unwrap())
                .unwrap_or_else(|| panic!("no content-length in {head}"));
            if answer.len() >= end + 4 + length {
                return String::from_utf8_lossy(&answer).into_owned();
            }
        }
        let read = tokio::time::timeout(Duration::from_secs(30), tls.read(&mut chunk))
            .await
            .expect("an answer")
            .unwrap();
        assert!(read > 0, "closed before the whole answer: {answer:?}");
        answer.extend_from_slice(&chunk[..read]);
    }
}

/// An HTTP/1.1 connection waiting for its next request is parked (its HTTP buffers given back,
/// as nginx frees its own at keep-alive) and answers what comes next on the same connection: the
/// rest of a head it was parked in the middle of, then a whole request after its answer. Parked,
/// it is drained as any other: closed with close_notify, and the server exits 0.
#[tokio::test]
async fn a_parked_http1_connection_answers_what_comes_next_and_drains() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let fixture = Fixture::new();
    let mut server = fixture.start("", "");
    let leaf = fixture.ca.client("12345678901234 taro");
    let mut tls = tls_from(
        "127.0.0.1",
        server.addr,
        client_config(&fixture.ca, Some(&leaf), &[b"http/1.1"]),
    )
    .await
    .unwrap();
    let parked = || async { server.metric("certgate_parked_connections").await == 1.0 };

    // A request, and the start of the next one behind it.
    tls.write_all(
        b"GET /app/first HTTP/1.1\r\nHost: localhost\r\n\r\nGET /app/second HTTP/1.1\r\nHo",
    )
    .await
    .unwrap();
    let first = read_answer(&mut tls).await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    assert!(first.contains("\"path\":\"/app/first\""), "{first}");
    wait_until("the connection parked in the middle of a head", parked).await;
    tls.write_all(b"st: localhost\r\n\r\n").await.unwrap();
    let second = read_answer(&mut tls).await;
    assert!(second.starts_with("HTTP/1.1 200"), "{second}");
    assert!(second.contains("\"path\":\"/app/second\""), "{second}");
    assert!(
        second.contains("12345678901234"),
        "identity headers: {second}"
    );

    wait_until("the connection parked after its answer", parked).await;
    tls.write_all(b"GET /app/third HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let third = read_answer(&mut tls).await;
    assert!(third.starts_with("HTTP/1.1 200"), "{third}");
    assert!(third.contains("\"path\":\"/app/third\""), "{third}");
    assert!(
        third.contains("12345678901234"),
        "identity headers: {third}"
    );

    wait_until("the connection parked after its third answer", parked).await;
    server.signal("TERM");
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), tls.read_to_end(&mut rest))
        .await
        .expect("a parked connection is closed when the server drains")
        .expect("closed with close_notify");
    assert!(rest.is_empty(), "{rest:?}");
    let (code, logs) = tokio::task::spawn_blocking(move || {
        let code = server.wait_exit(Duration::from_secs(10));
        (code, server.logs())
    })
    .await
    .unwrap();
    assert_eq!(code, Some(0), "{logs}");
    assert!(logs.contains("all connections closed"), "{logs}");
}

/// A client that pauses in the middle of its first request head (a person typing into
/// `openssl s_client`, a slow link) is answered when the head completes: the connection is not
/// parked, nor dropped, while hyper holds the start of that head.
#[tokio::test]
async fn a_first_request_head_sent_in_two_parts_a_second_and_a_half_apart_is_answered() {
    use tokio::io::AsyncWriteExt as _;
    let fixture = Fixture::new();
    let server = fixture.start("", "");
    let leaf = fixture.ca.client("12345678901234 taro");
    let mut tls = tls_from(
        "127.0.0.1",
        server.addr,
        client_config(&fixture.ca, Some(&leaf), &[b"http/1.1"]),
    )
    .await
    .unwrap();
    tls.write_all(b"GET /app/slow HTTP/1.1\r\nHo")
        .await
        .unwrap();
    // The pause is the scenario: three looks of the connection's watch.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    tls.write_all(b"st: localhost\r\n\r\n").await.unwrap();
    let answer = read_answer(&mut tls).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"path\":\"/app/slow\""), "{answer}");
}

/// An application that answers an upload before reading it (a 401, say) and reads it after:
/// the client's upload pauses for longer than the connection's watch waits before parking it
/// (and than parking waits for hyper), and still arrives; the connection then closes cleanly,
/// with close_notify. (Parking used to drop it here: hyper, still reading the body, did not end.)
#[tokio::test]
async fn an_upload_paused_after_its_early_answer_still_arrives() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    let (got, mut arrived) = tokio::sync::mpsc::unbounded_channel::<usize>();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let got = got.clone();
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut chunk = [0u8; 1024];
                let mut answered = false;
                while let Ok(read) = stream.read(&mut chunk).await {
                    if read == 0 {
                        break;
                    }
                    seen.extend_from_slice(&chunk[..read]);
                    let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") else {
                        continue;
                    };
                    if !answered {
                        answered = true;
                        stream
                            .write_all(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n")
                            .await
                            .unwrap();
                    }
                    let _ = got.send(seen.len() - end - 4);
                }
            });
        }
    });
    let fixture = Fixture::new();
    let server = fixture.start("", &format!("[upstream]\nurl = \"http://{upstream}\""));
    let leaf = fixture.ca.client("12345678901234 taro");
    let mut tls = tls_from(
        "127.0.0.1",
        server.addr,
        client_config(&fixture.ca, Some(&leaf), &[b"http/1.1"]),
    )
    .await
    .unwrap();
    tls.write_all(
        b"POST /app/upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 20\r\n\r\n0123456789",
    )
    .await
    .unwrap();
    let answer = read_answer(&mut tls).await;
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    // The pause is the scenario: longer than a look, a park and its grace together.
    tokio::time::sleep(Duration::from_secs(3)).await;
    tls.write_all(b"abcdefghij").await.unwrap();
    let mut body = 0;
    while body < 20 {
        body = tokio::time::timeout(Duration::from_secs(30), arrived.recv())
            .await
            .expect("the rest of the upload reaches the application")
            .unwrap();
    }
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), tls.read_to_end(&mut rest))
        .await
        .expect("the connection ends once the upload is in")
        .expect("closed with close_notify");
    assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
}

/// An application that answers an upload early (413) and then neither reads the rest nor closes
/// its connection: the rest of the upload gets `upstream.request_timeout`, then certgate lets go
/// of both sides. Before, the rest waited on the application for good, and with it the client,
/// whose bytes nobody read any more.
#[tokio::test]
async fn an_upload_answered_early_by_an_application_that_stops_reading_is_let_go() {
    use tokio::io::AsyncWriteExt as _;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut stream, _)) = listener.accept().await {
            read_request_head(&mut stream).await;
            let _ = stream
                .write_all(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\n\r\n")
                .await;
            held.push(stream);
        }
    });
    let fixture = Fixture::new();
    let server = fixture.start(
        "idle_timeout = \"120s\"",
        &format!("[upstream]\nurl = \"http://{upstream}\"\nrequest_timeout = \"1s\""),
    );
    let leaf = fixture.ca.client("12345678901234 taro");
    let mut tls = tls_from(
        "127.0.0.1",
        server.addr,
        client_config(&fixture.ca, Some(&leaf), &[b"http/1.1"]),
    )
    .await
    .unwrap();
    const SIZE: usize = 64 << 20;
    let head =
        format!("POST /app/upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: {SIZE}\r\n\r\n");
    tls.write_all(head.as_bytes()).await.unwrap();
    let answer = read_answer(&mut tls).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    // More than the socket buffers on the way hold: the upload ends (read and dropped, or the
    // connection closed) only once certgate stops waiting on the application.
    let chunk = vec![b'x'; 1 << 20];
    let sent = tokio::time::timeout(Duration::from_secs(20), async {
        for _ in 0..SIZE / chunk.len() {
            if tls.write_all(&chunk).await.is_err() {
                break;
            }
        }
    })
    .await;
    assert!(sent.is_ok(), "the client's upload is still held after 20 s");
}

/// How much CPU the server spends in half a second in which nothing should happen: a window
/// of time is the point of the measurement here, not a wait for an event.
async fn cpu_while_waiting(server: &Server) -> Duration {
    let before = server.cpu_time();
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.cpu_time() - before
}

/// The last answer of a connection whose client asked to close is held for close_notify only
/// while hyper is about to shut the connection down. Answered early, an upload still to come
/// keeps the connection open: the answer is sent, and the server then waits for the rest
/// without spinning. The first version left out every flush hyper made while it waited, and
/// woke itself each time: a core at 100 %.
#[tokio::test]
async fn an_early_answer_to_a_closing_upload_arrives_and_the_server_waits_without_spinning() {
    use tokio::io::AsyncWriteExt as _;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        if !read_request_head(&mut stream).await {
            return;
        }
        let _ = stream
            .write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 6\r\n\r\ndenied")
            .await;
        // Neither reads the upload nor closes.
        std::future::pending::<()>().await;
    });
    let fixture = Fixture::new();
    let server = fixture.start(
        "",
        &format!("[upstream]\nurl = \"http://{upstream}\"\nrequest_timeout = \"30s\""),
    );
    let leaf = fixture.ca.client("12345678901234 taro");
    let mut tls = tls_http1(
        server.addr,
        client_config(&fixture.ca, Some(&leaf), &[b"http/1.1"]),
    )
    .await;
    tls.write_all(
        b"POST /app/upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000000\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let answer = read_answer(&mut tls).await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    let spent = cpu_while_waiting(&server).await;
    assert!(
        spent < Duration::from_millis(250),
        "the server spent {spent:?} of CPU in 500 ms while it waited for the upload"
    );
}

/// `Connection: close, é` is no `close` to hyper, which reads no token in a value that is not
/// visible ASCII, and so none to certgate: the connection stays open for the next request, and
/// waiting for it costs no CPU. The first version found `close` in the raw bytes, held every
/// later answer as a last one and woke itself for every flush while the connection waited.
#[tokio::test]
async fn a_connection_header_hyper_does_not_read_as_close_is_not_taken_for_one() {
    use tokio::io::AsyncWriteExt as _;
    let fixture = Fixture::new();
    let upstream = test_upstream().await;
    let server = fixture.start("", &format!("[upstream]\nurl = \"http://{upstream}\"\n"));
    let leaf = fixture.ca.client("12345678901234 taro");
    let mut tls = tls_http1(
        server.addr,
        client_config(&fixture.ca, Some(&leaf), &[b"http/1.1"]),
    )
    .await;
    tls.write_all(b"GET /first HTTP/1.1\r\nHost: localhost\r\nConnection: close, \xe9\r\n\r\n")
        .await
        .unwrap();
    let first = read_answer(&mut tls).await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    let spent = cpu_while_waiting(&server).await;
    assert!(
        spent < Duration::from_millis(250),
        "the server spent {spent:?} of CPU in 500 ms on a connection waiting for its next request"
    );
    tls.write_all(b"GET /second HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let second = read_answer(&mut tls).await;
    assert!(second.starts_with("HTTP/1.1 200"), "{second}");
}
