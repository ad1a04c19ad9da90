//! Connections that never authenticate cannot crowd out the ones that do: h2 connections with no
//! request are closed with GOAWAY (answering PINGs does not keep them open), sooner when they
//! have no certificate, and one address cannot hold more than `max_connections_per_ip` of them.
//!
//! Before these limits, 50 preface-only h2 connections filled `max_connections = 50` for good
//! and legitimate clients timed out.

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
    assert!(
        (1..=8).contains(&held.len()),
        "at most 8 from one address, got {}",
        held.len()
    );

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
        // A refused connection is closed at accept, before its TLS handshake can finish.
        match tls_from("127.0.0.1", server.addr, anonymous.clone()).await {
            Ok(tls) => anonymous_open.push(tls),
            Err(_) => refused += 1,
        }
    }
    assert_eq!((anonymous_open.len(), refused), (2, 2));
}
