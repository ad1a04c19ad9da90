//! Forwarding: HTTP/1.1 and h2 from clients, streaming bodies both ways with flat memory,
//! hop-by-hop headers, the upstream failing, and protocol upgrades.

use std::time::Duration;

use crate::support::*;
use futures_util::{SinkExt as _, StreamExt as _};
use http::Request;
use http_body_util::BodyExt as _;

fn upstream_config(url: &str, extra: &str) -> String {
    format!("[upstream]\nurl = \"{url}\"\n{extra}")
}

#[tokio::test]
async fn http1_and_h2_clients_both_reach_the_upstream() {
    let fixture = Fixture::new();
    let upstream = test_upstream().await;
    let server = fixture.start("", &upstream_config(&format!("http://{upstream}"), ""));
    let leaf = fixture.ca.client("12345678901234 taro");
    for (alpn, version) in [
        (&b"h2"[..], http::Version::HTTP_2),
        (&b"http/1.1"[..], http::Version::HTTP_11),
    ] {
        let mut conn = Conn::open(
            server.addr,
            client_config(&fixture.ca, Some(&leaf), &[alpn]),
        )
        .await
        .unwrap();
        let response = conn
            .send(
                Request::get(if version == http::Version::HTTP_2 {
                    "https://localhost/v"
                } else {
                    "/v"
                })
                .header("host", "localhost")
                .body(empty())
                .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.version(), version);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let echo = echoed(&body);
        assert_eq!(echo["headers"]["x-client-user-id"], "taro");
        // The application sees the Host the client asked for, whatever the protocol.
        assert_eq!(echo["headers"]["host"], "localhost");
        assert_eq!(echo["headers"]["x-forwarded-host"], "localhost");
    }
}

/// Given one core, certgate runs tokio's single-threaded scheduler (cheaper per handshake): it
/// serves both protocols and its own paths, and refuses what it refuses on more cores.
#[tokio::test]
async fn on_one_core_the_single_threaded_server_serves_both_protocols_and_refuses_strangers() {
    let fixture = Fixture::new();
    let upstream = test_upstream().await;
    let config = fixture.write(
        "certgate.toml",
        &fixture.config("", &upstream_config(&format!("http://{upstream}"), "")),
    );
    let server = Server::start_on_cpus(&config, "0");
    server.wait_for_log(r#""scheduler":"single-threaded""#);
    let leaf = fixture.ca.client("12345678901234 taro");
    for alpn in [&b"h2"[..], &b"http/1.1"[..]] {
        let mut conn = Conn::open(
            server.addr,
            client_config(&fixture.ca, Some(&leaf), &[alpn]),
        )
        .await
        .unwrap();
        for _ in 0..3 {
            let (status, _, body) = conn
                .get("/v", &[("x-client-user-id", "hanako")])
                .await
                .unwrap();
            assert_eq!(status, 200);
            assert_eq!(echoed(&body)["headers"]["x-client-user-id"], "taro");
        }
        // certgate answers its own paths itself (taro is not in the registry): not the upstream.
        let (_, headers, body) = conn.get("/certgate/api/me", &[]).await.unwrap();
        assert!(
            headers[http::header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .contains("json")
        );
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(
            json.get("headers").is_none(),
            "forwarded to the upstream: {json}"
        );
    }
    let stranger = Ca::new("stranger").client("12345678901234 taro");
    get_once(
        server.addr,
        client_config(&Ca::new("stranger"), Some(&stranger), &[]),
        "/v",
        &[],
    )
    .await
    .expect_err("a certificate from an unknown CA was accepted");
    get_once(
        server.addr,
        client_config(&fixture.ca, None, &[]),
        "/v",
        &[],
    )
    .await
    .expect_err("a client without a certificate was accepted");
}

/// The twin: with two cores, the work-stealing scheduler runs (where the machine has two).
#[tokio::test]
async fn on_two_cores_the_multi_threaded_scheduler_runs() {
    if std::thread::available_parallelism().map_or(1, |cores| cores.get()) < 2 {
        eprintln!("skipped: this machine gives the tests fewer than two cores");
        return;
    }
    let fixture = Fixture::new();
    let config = fixture.write("certgate.toml", &fixture.config("", ""));
    let server = Server::start_on_cpus(&config, "0,1");
    server.wait_for_log(r#""scheduler":"multi-threaded""#);
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
}

#[tokio::test]
async fn hop_by_hop_headers_are_not_forwarded() {
    let fixture = Fixture::new();
    let upstream = test_upstream().await;
    let server = fixture.start("", &upstream_config(&format!("http://{upstream}"), ""));
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
            &[
                ("connection", "keep-alive, x-private-hop"),
                ("x-private-hop", "secret"),
                ("keep-alive", "timeout=5"),
                ("proxy-authorization", "Basic Zm9vOmJhcg=="),
                ("te", "trailers"),
                ("x-end-to-end", "kept"),
            ],
        )
        .await
        .unwrap();
    let headers = &echoed(&body)["headers"];
    for gone in ["x-private-hop", "keep-alive", "proxy-authorization", "te"] {
        assert!(headers.get(gone).is_none(), "{gone} was forwarded");
    }
    assert_eq!(headers["x-end-to-end"], "kept");
}

#[tokio::test]
async fn hundred_mib_stream_up_and_down_with_flat_memory() {
    const SIZE: u64 = 100 << 20;
    let fixture = Fixture::new();
    let upstream = test_upstream().await;
    let server = fixture.start("", &upstream_config(&format!("http://{upstream}"), ""));
    let leaf = fixture.ca.client("12345678901234 taro");
    for alpn in [&b"http/1.1"[..], &b"h2"[..]] {
        let mut conn = Conn::open(
            server.addr,
            client_config(&fixture.ca, Some(&leaf), &[alpn]),
        )
        .await
        .unwrap();
        let upload = Request::post("https://localhost/upload")
            .header("host", "localhost")
            .body(big_body(SIZE))
            .unwrap();
        let response = conn.send(upload).await.unwrap();
        assert_eq!(response.status(), 200);
        let echo = echoed(&response.into_body().collect().await.unwrap().to_bytes());
        assert_eq!(echo["body_bytes"], SIZE);

        let download = Request::get(format!("https://localhost/big?bytes={SIZE}"))
            .header("host", "localhost")
            .body(empty())
            .unwrap();
        let mut body = conn.send(download).await.unwrap().into_body();
        let mut received = 0u64;
        while let Some(frame) = body.frame().await {
            if let Some(data) = frame.unwrap().data_ref() {
                received += data.len() as u64;
            }
        }
        assert_eq!(received, SIZE);
    }
    // Streaming means the proxy never held a body: its peak memory stays far below one body.
    let peak = server.peak_rss_kib();
    assert!(peak < 64 * 1024, "peak RSS {peak} KiB");
}

#[tokio::test]
async fn upstream_down_is_a_502_page() {
    let fixture = Fixture::new();
    let server = fixture.start(
        "",
        &upstream_config(
            &format!("http://{}", closed_port()),
            "connect_timeout = \"2s\"",
        ),
    );
    let leaf = fixture.ca.client("12345678901234 taro");
    let config = client_config(&fixture.ca, Some(&leaf), &[]);
    let (status, headers, body) =
        get_once(server.addr, config.clone(), "/", &[("accept", "text/html")])
            .await
            .unwrap();
    assert_eq!(status, 502);
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    assert!(String::from_utf8_lossy(&body).contains("unavailable"));
    let (status, _, body) = get_once(server.addr, config, "/", &[]).await.unwrap();
    assert_eq!(status, 502);
    assert!(String::from_utf8_lossy(&body).contains("urn:certgate:problem:upstream-unavailable"));
    assert_eq!(
        server
            .metric("certgate_http_requests_total{route=\"/\",status=\"5xx\"}")
            .await,
        2.0
    );
    server.wait_for_log("upstream failed");
}

#[tokio::test]
async fn slow_upstream_is_a_504_not_a_hang() {
    let fixture = Fixture::new();
    let silent = silent_upstream().await;
    let server = fixture.start(
        "",
        &upstream_config(&format!("http://{silent}"), "request_timeout = \"500ms\""),
    );
    let leaf = fixture.ca.client("12345678901234 taro");
    let config = client_config(&fixture.ca, Some(&leaf), &[]);
    let answer = tokio::time::timeout(
        Duration::from_secs(10),
        get_once(server.addr, config, "/", &[]),
    )
    .await;
    let (status, _, body) = answer.expect("certgate hung").unwrap();
    assert_eq!(status, 504);
    assert!(String::from_utf8_lossy(&body).contains("upstream-timeout"));
}

#[tokio::test]
async fn a_fast_enough_upstream_is_not_cut_off() {
    let fixture = Fixture::new();
    let upstream = test_upstream().await;
    let server = fixture.start(
        "",
        &upstream_config(&format!("http://{upstream}"), "request_timeout = \"5s\""),
    );
    let leaf = fixture.ca.client("12345678901234 taro");
    let (status, _, body) = get_once(
        server.addr,
        client_config(&fixture.ca, Some(&leaf), &[]),
        "/slow?ms=300",
        &[],
    )
    .await
    .unwrap();
    assert_eq!(status, 200);
    assert_eq!(&body[..], b"slow answer");
}

/// An application that answers a head and the first 10 bytes of a 70-byte body, then either
/// stops sending (holding its connection open) or sends the rest in six pieces, 300 ms apart,
/// and closes.
async fn half_answering_upstream(steady: bool) -> std::net::SocketAddr {
    use tokio::io::AsyncWriteExt as _;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                if !read_request_head(&mut stream).await {
                    return;
                }
                let head =
                    "HTTP/1.1 200 OK\r\ncontent-length: 70\r\nconnection: close\r\n\r\n0123456789";
                if stream.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                if steady {
                    for _ in 0..6 {
                        // The answer's pace, not a wait for an event.
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        if stream.write_all(b"abcdefghij").await.is_err() {
                            return;
                        }
                    }
                }
                if !steady {
                    std::future::pending::<()>().await;
                }
                drop(stream);
            });
        }
    });
    addr
}

/// An application that stops sending in the middle of its answer's body holds neither the
/// client's connection nor its own for ever: after `upstream.request_timeout` without a byte,
/// the answer is cut off (the client sees it end early, over HTTP/1.1 and h2) and certgate says
/// why in its log.
#[tokio::test]
async fn an_application_that_stops_in_the_middle_of_its_answer_is_cut_off() {
    let fixture = Fixture::new();
    let upstream = half_answering_upstream(false).await;
    let server = fixture.start(
        "",
        &upstream_config(&format!("http://{upstream}"), "request_timeout = \"1s\""),
    );
    let leaf = fixture.ca.client("12345678901234 taro");
    for alpn in [&b"http/1.1"[..], &b"h2"[..]] {
        let answer = tokio::time::timeout(
            Duration::from_secs(10),
            get_once(
                server.addr,
                client_config(&fixture.ca, Some(&leaf), &[alpn]),
                "/",
                &[],
            ),
        )
        .await
        .expect("certgate held the stalled answer open");
        assert!(answer.is_err(), "a whole answer: {answer:?}");
    }
    server.wait_for_log("the application stopped sending its answer");
}

/// The twin: an application that sends its answer slowly but without a pause as long as the
/// request timeout gets it through whole, although it takes longer than that timeout in all.
#[tokio::test]
async fn a_slow_but_steady_answer_arrives_whole() {
    let fixture = Fixture::new();
    let upstream = half_answering_upstream(true).await;
    let server = fixture.start(
        "",
        &upstream_config(&format!("http://{upstream}"), "request_timeout = \"1s\""),
    );
    let leaf = fixture.ca.client("12345678901234 taro");
    for alpn in [&b"http/1.1"[..], &b"h2"[..]] {
        let (status, _, body) = get_once(
            server.addr,
            client_config(&fixture.ca, Some(&leaf), &[alpn]),
            "/",
            &[],
        )
        .await
        .unwrap();
        assert_eq!(status, 200);
        assert_eq!(body.len(), 70);
        assert!(body.starts_with(b"0123456789abcdefghij"));
    }
}

#[tokio::test]
async fn websocket_echo_through_the_proxy() {
    let fixture = Fixture::new();
    let upstream = websocket_upstream().await;
    let server = fixture.start("", &upstream_config(&format!("http://{upstream}"), ""));
    let leaf = fixture.ca.client("12345678901234 taro");
    let mut socket = websocket_client(
        server.addr,
        client_config(&fixture.ca, Some(&leaf), &[b"http/1.1"]),
    )
    .await;
    for text in ["hello", "こんにちは"] {
        socket
            .send(tokio_tungstenite::tungstenite::Message::text(text))
            .await
            .unwrap();
        let echoed = socket.next().await.unwrap().unwrap();
        assert_eq!(echoed.into_text().unwrap().as_str(), text);
    }
    socket.close(None).await.unwrap();
}

/// A WebSocket through certgate to an echoing application, with a request timeout of 1 s.
async fn websocket_timing_out_after_1s(
    fixture: &Fixture,
) -> (
    Server,
    tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>,
) {
    let upstream = websocket_upstream().await;
    let server = fixture.start(
        "",
        &upstream_config(&format!("http://{upstream}"), "request_timeout = \"1s\""),
    );
    let leaf = fixture.ca.client("12345678901234 taro");
    let socket = websocket_client(
        server.addr,
        client_config(&fixture.ca, Some(&leaf), &[b"http/1.1"]),
    )
    .await;
    (server, socket)
}

/// A WebSocket over which nothing passes either way for `upstream.request_timeout` is closed: a
/// client or application gone without a word holds no tunnel for ever. certgate says why.
#[tokio::test]
async fn a_tunnel_over_which_nothing_passes_is_closed() {
    let fixture = Fixture::new();
    let (server, mut socket) = websocket_timing_out_after_1s(&fixture).await;
    socket
        .send(tokio_tungstenite::tungstenite::Message::text("hello"))
        .await
        .unwrap();
    assert!(socket.next().await.unwrap().unwrap().is_text());
    let ended = tokio::time::timeout(Duration::from_secs(10), socket.next())
        .await
        .expect("the quiet tunnel stayed open");
    assert!(
        !matches!(ended, Some(Ok(ref message)) if message.is_text()),
        "{ended:?}"
    );
    server.wait_for_log("nothing passed either way");
}

/// The twin: a tunnel in use stays open well past that timeout, each message echoed.
#[tokio::test]
async fn a_tunnel_in_use_stays_open() {
    let fixture = Fixture::new();
    let (_server, mut socket) = websocket_timing_out_after_1s(&fixture).await;
    for round in 0..8 {
        let text = format!("message {round}");
        socket
            .send(tokio_tungstenite::tungstenite::Message::text(text.clone()))
            .await
            .unwrap();
        let echoed = socket.next().await.unwrap().unwrap();
        assert_eq!(echoed.into_text().unwrap().as_str(), text);
        // The client's pace (2.4 s in all, over a 1-s timeout), not a wait for an event.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    socket.close(None).await.unwrap();
}

/// An https upstream with a certificate from `ca`, echoing what it receives.
async fn tls_upstream(ca: &Ca) -> std::net::SocketAddr {
    use rustls_pki_types::pem::PemObject as _;
    let leaf = ca.server();
    let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![rustls_pki_types::CertificateDer::from_pem_slice(leaf.cert_pem.as_bytes()).unwrap()],
        rustls_pki_types::PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap(),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let service = hyper::service::service_fn(|request| async {
                    Ok::<_, std::convert::Infallible>(certgate::proxy::echo_response(request).await)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn https_upstream_is_verified_against_upstream_ca() {
    let fixture = Fixture::new();
    let upstream_ca = Ca::new("upstream");
    let upstream = tls_upstream(&upstream_ca).await;
    let upstream_ca_path = fixture.write("upstream-ca.pem", &upstream_ca.cert_pem);
    let url = format!("https://localhost:{}", upstream.port());
    let server = fixture.start(
        "",
        &upstream_config(&url, &format!("ca = \"{}\"", upstream_ca_path.display())),
    );
    let leaf = fixture.ca.client("12345678901234 taro");
    let config = client_config(&fixture.ca, Some(&leaf), &[]);
    let (status, _, body) = get_once(server.addr, config.clone(), "/", &[])
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(echoed(&body)["headers"]["x-client-user-id"], "taro");

    // The same upstream checked against the wrong CA is refused: 502, not a silent downgrade.
    let wrong = fixture.start_named(
        "wrong.toml",
        "",
        &upstream_config(&url, &format!("ca = \"{}\"", fixture.ca_path.display())),
    );
    let (status, _, _) = get_once(wrong.addr, config, "/", &[]).await.unwrap();
    assert_eq!(status, 502);
}

/// A raw HTTP/1.1 upstream that answers every GET with `ok`, counts the connections it accepted
/// and keeps each request line. With `close_after_answer`, it closes each connection right after
/// answering, as an application with a short keep-alive timeout does (without a
/// `Connection: close` header), and reports each close on the channel returned.
async fn counting_upstream(
    close_after_answer: bool,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
    std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    tokio::sync::mpsc::UnboundedReceiver<()>,
) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    let request_lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let lines = request_lines.clone();
    let (closed_tx, closed_rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            let lines = lines.clone();
            let closed = closed_tx.clone();
            tokio::spawn(async move {
                let mut buffer = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Ok(read) = stream.read(&mut chunk).await else {
                        return;
                    };
                    if read == 0 {
                        return;
                    }
                    buffer.extend_from_slice(&chunk[..read]);
                    while let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
                        let line = head.lines().next().unwrap_or_default().to_owned();
                        lines.lock().unwrap().push(line);
                        buffer.drain(..end + 4);
                        if stream
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                            .await
                            .is_err()
                        {
                            return;
                        }
                        if close_after_answer {
                            let _ = stream.shutdown().await;
                            drop(stream);
                            let _ = closed.send(());
                            return;
                        }
                    }
                }
            });
        }
    });
    (addr, accepted, request_lines, closed_rx)
}

#[tokio::test]
async fn upstream_connections_are_reused_and_one_closed_while_idle_is_not_an_error() {
    use std::sync::atomic::Ordering;
    let fixture = Fixture::new();
    let leaf = fixture.ca.client("12345678901234 taro");

    // Keep-alive: sequential requests, even from separate client connections, share one
    // upstream connection.
    let (keeps, accepted, request_lines, _) = counting_upstream(false).await;
    let server = fixture.start("", &upstream_config(&format!("http://{keeps}"), ""));
    let config = client_config(&fixture.ca, Some(&leaf), &[]);
    for _ in 0..5 {
        let (status, _, body) = get_once(server.addr, config.clone(), "/", &[])
            .await
            .unwrap();
        assert_eq!((status.as_u16(), &body[..]), (200, &b"ok"[..]));
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    // Origin-form, not the absolute URI of the application.
    assert_eq!(request_lines.lock().unwrap()[0], "GET / HTTP/1.1");
    drop(server);

    // The application closes each connection after answering: the pooled connection is dead by
    // the next request (the test waits for the close), which must still be answered, on a new
    // connection.
    let (closes, accepted, _, mut closed) = counting_upstream(true).await;
    let server = fixture.start("", &upstream_config(&format!("http://{closes}"), ""));
    for _ in 0..3 {
        let (status, _, body) = get_once(server.addr, config.clone(), "/", &[])
            .await
            .unwrap();
        assert_eq!((status.as_u16(), &body[..]), (200, &b"ok"[..]));
        closed.recv().await.unwrap();
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 3);
}

/// A raw HTTP/1.1 application that answers the requests it reads, in order over all its
/// connections, with `answers` byte for byte (the last one again once they run out), and counts
/// the connections it accepted: for answers no well-behaved server sends.
async fn scripted_upstream(
    answers: Vec<&'static [u8]>,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    let answered = std::sync::Arc::new(AtomicUsize::new(0));
    let answers = std::sync::Arc::new(answers);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            let (answered, answers) = (answered.clone(), answers.clone());
            tokio::spawn(async move {
                let mut buffer = Vec::new();
                let mut chunk = [0u8; 4096];
                while let Ok(read) = stream.read(&mut chunk).await {
                    if read == 0 {
                        return;
                    }
                    buffer.extend_from_slice(&chunk[..read]);
                    while let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                        buffer.drain(..end + 4);
                        let index = answered.fetch_add(1, Ordering::SeqCst);
                        let answer = answers[index.min(answers.len() - 1)];
                        if stream.write_all(answer).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    (addr, accepted)
}

/// GETs `path` on a new connection over HTTP/1.1; status and body, or why it failed.
async fn get_text(fixture: &Fixture, server: &Server, path: &str) -> Result<(u16, String), String> {
    let leaf = fixture.ca.client("12345678901234 taro");
    let config = client_config(&fixture.ca, Some(&leaf), &[b"http/1.1"]);
    let (status, _, body) = get_once(server.addr, config, path, &[]).await?;
    Ok((status.as_u16(), String::from_utf8_lossy(&body).into_owned()))
}

/// Two GETs, each on a new client connection, to an application that answers the first with
/// `first` and the second with `ok`: the first body, and how many connections the application
/// accepted (1: certgate reused its connection).
async fn first_then_ok(first: &'static [u8]) -> (String, usize) {
    use std::sync::atomic::Ordering;
    let fixture = Fixture::new();
    let (upstream, accepted) = scripted_upstream(vec![
        first,
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    ])
    .await;
    let server = fixture.start("", &upstream_config(&format!("http://{upstream}"), ""));
    let (status, body) = get_text(&fixture, &server, "/1").await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        get_text(&fixture, &server, "/2").await.unwrap(),
        (200, "ok".into()),
        "the second request gets its own answer"
    );
    (body, accepted.load(Ordering::SeqCst))
}

#[tokio::test]
async fn an_answer_followed_by_bytes_nobody_asked_for_never_answers_the_next_request() {
    let (body, connections) = first_then_ok(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhiHTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled",
    )
    .await;
    assert_eq!(body, "hi");
    // The connection that carried the extra bytes was not used again.
    assert_eq!(connections, 2);
}

#[tokio::test]
async fn a_chunked_answer_with_extensions_and_trailers_arrives_whole_and_keeps_its_connection() {
    let (body, connections) = first_then_ok(
        b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: 1\r\n\r\n",
    )
    .await;
    assert_eq!((body.as_str(), connections), ("abcde", 1));
}

#[tokio::test]
async fn transfer_encoding_beats_content_length_and_the_connection_is_not_reused() {
    let (body, connections) = first_then_ok(
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!((body.as_str(), connections), ("hello", 2));
}

#[tokio::test]
async fn answers_framed_two_ways_or_not_at_all_are_a_502_or_a_cut_body() {
    let fixture = Fixture::new();
    for (answer, expected) in [
        (
            &b"HTTP/1.1 200 OK\r\nContent-Length: 2, 3\r\n\r\nok"[..],
            "two lengths",
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
            "two headers",
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: -2\r\n\r\nok",
            "a negative length",
        ),
        (
            b"HTTP/1.1 200 OK\r\nBad Header: x\r\n\r\nok",
            "a space in a name",
        ),
        (b"HTTP/1.1 99999 OK\r\n\r\n", "a five-digit status"),
    ] {
        let (upstream, _) = scripted_upstream(vec![answer]).await;
        let server = fixture.start("", &upstream_config(&format!("http://{upstream}"), ""));
        let (status, body) = get_text(&fixture, &server, "/").await.unwrap();
        assert_eq!(status, 502, "{expected}: {body}");
    }
    // Broken chunking after a good head: the client's body is cut, never completed with
    // whatever follows.
    for answer in [
        &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"[..],
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n",
    ] {
        let (upstream, _) = scripted_upstream(vec![answer]).await;
        let server = fixture.start("", &upstream_config(&format!("http://{upstream}"), ""));
        let outcome = get_text(&fixture, &server, "/").await;
        assert!(
            outcome.is_err(),
            "{}: {outcome:?}",
            String::from_utf8_lossy(answer)
        );
    }
}

#[tokio::test]
async fn a_head_answer_has_no_body_whatever_its_length_says() {
    use std::sync::atomic::Ordering;
    let fixture = Fixture::new();
    let (upstream, accepted) = scripted_upstream(vec![
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    ])
    .await;
    let server = fixture.start("", &upstream_config(&format!("http://{upstream}"), ""));
    let leaf = fixture.ca.client("12345678901234 taro");
    let mut conn = Conn::open(
        server.addr,
        client_config(&fixture.ca, Some(&leaf), &[b"http/1.1"]),
    )
    .await
    .unwrap();
    let head = Request::head("/")
        .header("host", "localhost")
        .body(empty())
        .unwrap();
    let response = conn.send(head).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-length"], "10");
    let (status, _, body) = conn.get("/", &[]).await.unwrap();
    assert_eq!((status.as_u16(), &body[..]), (200, &b"ok"[..]));
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_request_the_application_may_have_received_is_not_sent_twice() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    // An application that answers GETs and, on a DELETE, breaks the connection without an
    // answer (a worker dying after it acted): the DELETE must not reach it a second time.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    let deletes = std::sync::Arc::new(AtomicUsize::new(0));
    let seen = deletes.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut buffer = Vec::new();
                let mut chunk = [0u8; 4096];
                while let Ok(read) = stream.read(&mut chunk).await {
                    if read == 0 {
                        return;
                    }
                    buffer.extend_from_slice(&chunk[..read]);
                    while let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                        let delete = buffer.starts_with(b"DELETE ");
                        buffer.drain(..end + 4);
                        if delete {
                            seen.fetch_add(1, Ordering::SeqCst);
                            return;
                        }
                        if stream
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                }
            });
        }
    });
    let fixture = Fixture::new();
    let server = fixture.start("", &upstream_config(&format!("http://{upstream}"), ""));
    let leaf = fixture.ca.client("12345678901234 taro");
    let mut conn = Conn::open(
        server.addr,
        client_config(&fixture.ca, Some(&leaf), &[b"http/1.1"]),
    )
    .await
    .unwrap();
    // The first exchange leaves a pooled connection, which the DELETE then goes out on.
    let (status, _, _) = conn.get("/", &[]).await.unwrap();
    assert_eq!(status, 200);
    let delete = Request::delete("/orders/77")
        .header("host", "localhost")
        .body(empty())
        .unwrap();
    let response = conn.send(delete).await.unwrap();
    assert_eq!(response.status(), 502);
    assert_eq!(deletes.load(Ordering::SeqCst), 1);
}

/// The last answer of a connection its client asks to close leaves with close_notify: whole,
/// however large, and followed by a clean close (`read_to_end` fails on a TLS stream cut
/// without close_notify), for HTTP/1.1 `Connection: close` and for HTTP/1.0.
#[tokio::test]
async fn the_last_answer_before_a_close_the_client_asked_for_arrives_whole_and_closed_cleanly() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let fixture = Fixture::new();
    let upstream = test_upstream().await;
    let server = fixture.start("", &upstream_config(&format!("http://{upstream}"), ""));
    for (request, bytes) in [
        (
            "GET /big?bytes=10 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
            10,
        ),
        (
            "GET /big?bytes=300000 HTTP/1.1\r\nHost: localhost\r\nConnection: keep-alive, Close\r\n\r\n",
            300_000,
        ),
        ("GET /big?bytes=10 HTTP/1.0\r\nHost: localhost\r\n\r\n", 10),
    ] {
        let mut tls = tls_http1(server.addr, taro_http1(&fixture)).await;
        tls.write_all(request.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        tls.read_to_end(&mut answer)
            .await
            .unwrap_or_else(|err| panic!("{request:?}: {err}"));
        let head_end = answer.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let head = String::from_utf8_lossy(&answer[..head_end]).to_ascii_lowercase();
        assert!(head.starts_with("http/1."), "{head}");
        assert!(head.contains(" 200 "), "{head}");
        // The body as it came (chunked or not): at least the bytes asked for.
        assert!(answer.len() - head_end >= bytes, "{request:?}: {head}");
    }
}

/// Holding the last answer for close_notify must not hold a streamed one: its first part
/// reaches the client while the application still holds back the rest.
#[tokio::test]
async fn a_streamed_last_answer_is_not_held_back_until_its_end() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    let (rest_tx, rest_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        assert!(
            read_request_head(&mut stream).await,
            "certgate closed before its request was whole"
        );
        stream
            .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
            .await
            .unwrap();
        let _ = rest_rx.await;
        let _ = stream.write_all(b"4\r\nrest\r\n0\r\n\r\n").await;
    });
    let fixture = Fixture::new();
    let server = fixture.start("", &upstream_config(&format!("http://{upstream}"), ""));
    let mut tls = tls_http1(server.addr, taro_http1(&fixture)).await;
    tls.write_all(b"GET /stream HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    let first = tokio::time::timeout(Duration::from_secs(20), async {
        while !answer.windows(5).any(|w| w == b"first") {
            let read = tls.read(&mut chunk).await.unwrap();
            assert!(read > 0, "closed before the first part");
            answer.extend_from_slice(&chunk[..read]);
        }
    })
    .await;
    assert!(
        first.is_ok(),
        "the first part was held back: {}",
        String::from_utf8_lossy(&answer)
    );
    rest_tx.send(()).unwrap();
    tls.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.contains("rest"), "{answer}");
}

/// taro's client configuration over HTTP/1.1.
fn taro_http1(fixture: &Fixture) -> std::sync::Arc<rustls::ClientConfig> {
    let leaf = fixture.ca.client("12345678901234 taro");
    client_config(&fixture.ca, Some(&leaf), &[b"http/1.1"])
}

/// An `upstream.request_timeout` beyond the clock's range means no timeout, as tokio's own
/// `timeout` reads it; computing its deadline must not overflow (it would panic on every
/// request).
#[tokio::test]
async fn a_request_timeout_beyond_the_clocks_range_is_no_timeout() {
    let fixture = Fixture::new();
    let upstream = test_upstream().await;
    let server = fixture.start(
        "",
        &upstream_config(
            &format!("http://{upstream}"),
            "request_timeout = \"500000000000y\"",
        ),
    );
    assert_eq!(get_text(&fixture, &server, "/x").await.unwrap().0, 200);
}
