//! An upgraded connection (WebSocket) has no next request to refuse: when its certificate is
//! revoked or its user suspended, certgate closes it, as soon as a new request would be refused.
//! Before, an open WebSocket outlived the revocation of its certificate.

use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use tokio_tungstenite::tungstenite::Message;

use crate::support::*;

async fn enroll(bank: &Bank, user: &str) -> Leaf {
    let pin = bank.permit(CORP_A, Some(user)).await;
    let (csr_pem, key) = csr();
    let (status, json) = bank.enroll_json(CORP_A, Some(user), &pin, &csr_pem).await;
    assert_eq!(status, 200, "{json}");
    Leaf {
        cert_pem: json["certificate"].as_str().unwrap().to_owned(),
        key_pem: key,
        der: vec![],
        serial: vec![],
    }
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

async fn echoes(socket: &mut Socket, text: &str) -> bool {
    if socket.send(Message::text(text)).await.is_err() {
        return false;
    }
    match socket.next().await {
        Some(Ok(message)) => message.into_text().is_ok_and(|t| t.as_str() == text),
        _ => false,
    }
}

/// Waits until the server closes `socket` (an event: the stream ends or fails).
async fn closed_by_server(socket: &mut Socket) {
    let closed = async {
        loop {
            match socket.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), closed)
        .await
        .expect("the server closes the tunnel of a refused certificate");
}

#[tokio::test]
async fn revoking_or_suspending_closes_open_websockets_and_only_theirs() {
    let upstream = websocket_upstream().await;
    let bank = Bank::open(&format!("[upstream]\nurl = \"http://{upstream}\"\n")).await;
    let ops = certgate::lifecycle::Context::operator();
    for user in ["jiro", "hana"] {
        bank.lifecycle
            .add_user(CORP_A, user, certgate::model::Role::General, None, &ops)
            .await
            .unwrap();
    }
    let taro = enroll(&bank, "taro").await;
    let jiro = enroll(&bank, "jiro").await;
    let hana = enroll(&bank, "hana").await;
    let open = |leaf: &Leaf| {
        websocket_client(
            bank.server.addr,
            client_config(&bank.fixture.ca, Some(leaf), &[b"http/1.1"]),
        )
    };
    let mut taro_socket = open(&taro).await;
    let mut jiro_socket = open(&jiro).await;
    let mut hana_socket = open(&hana).await;
    for socket in [&mut taro_socket, &mut jiro_socket, &mut hana_socket] {
        assert!(echoes(socket, "before").await);
    }

    let (status, _, json, _) = bank
        .post(
            Some(&bank.admin_a),
            "/certgate/api/admin/users/taro/revoke",
            &[("content-type", "application/json")],
            with_confirmation(""),
        )
        .await;
    assert_eq!(status, 200, "{json}");
    closed_by_server(&mut taro_socket).await;

    let (status, _, json, _) = bank
        .post(
            Some(&bank.admin_a),
            "/certgate/api/admin/users/jiro/suspend",
            &[],
            "",
        )
        .await;
    assert_eq!(status, 200, "{json}");
    closed_by_server(&mut jiro_socket).await;

    // The twin: a tunnel whose certificate is in good standing goes on.
    assert!(echoes(&mut hana_socket, "after").await);
}

/// `Upgrade: h2c` on an open route, to an application that honours it (hypercorn): certgate
/// forwards the request as plain HTTP/1.1 and never joins the connections. Before, it passed the
/// upgrade on, tunnelled the 101, and the client then spoke HTTP/2 to the application with any
/// path and forged identity headers.
#[tokio::test]
async fn h2c_upgrades_are_never_passed_on_and_only_websocket_is_tunnelled() {
    let fixture = Fixture::new();
    let hypercorn = hypercorn_echo();
    let server = fixture.start(
        "client_auth = \"optional\"",
        &format!(
            "[[route]]\npath = \"/public\"\nrequire_cert = false\n[upstream]\nurl = \"http://{}\"\n",
            hypercorn.addr
        ),
    );
    let anonymous = client_config(&fixture.ca, None, &[b"http/1.1"]);
    for (connection, upgrade) in [
        ("Upgrade, HTTP2-Settings", "h2c"),
        ("upgrade", "h2c"),
        ("Upgrade", "websocket-not, h2c"),
        ("Upgrade", "TLS/1.2"),
    ] {
        let request = format!(
            "GET /public/x HTTP/1.1\r\nHost: localhost\r\nConnection: {connection}\r\n\
             Upgrade: {upgrade}\r\nHTTP2-Settings: AAMAAABkAARAAAAA\r\n\r\n\
             PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
        );
        let (status, head, body) = raw_h1(server.addr, anonymous.clone(), &request).await;
        assert_eq!(status, 200, "{upgrade}: {head}");
        let seen: serde_json::Value = serde_json::from_str(
            body.lines()
                .find(|line| line.starts_with('{'))
                .unwrap_or(""),
        )
        .unwrap_or_else(|_| panic!("{upgrade}: {body}"));
        assert_eq!(seen["http_version"], "1.1", "{seen}");
        assert!(seen["headers"].get("upgrade").is_none(), "{seen}");
        assert!(seen["headers"].get("http2-settings").is_none(), "{seen}");
    }
}

/// An application that switches protocols unasked (or to another protocol than WebSocket) gets
/// no tunnel: the client is answered 502.
#[tokio::test]
async fn an_unasked_protocol_switch_is_answered_502() {
    let fixture = Fixture::new();
    let upstream = switching_upstream().await;
    let server = fixture.start(
        "client_auth = \"optional\"",
        &format!(
            "[[route]]\npath = \"/\"\nrequire_cert = false\n[upstream]\nurl = \"http://{upstream}\"\n"
        ),
    );
    let anonymous = client_config(&fixture.ca, None, &[b"http/1.1"]);
    for extra in [
        "",
        "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
    ] {
        let request =
            format!("GET /x HTTP/1.1\r\nHost: localhost\r\n{extra}Connection: close\r\n\r\n");
        let (status, head, _) = raw_h1(server.addr, anonymous.clone(), &request).await;
        assert_eq!(status, 502, "{extra:?}: {head}");
    }
}
