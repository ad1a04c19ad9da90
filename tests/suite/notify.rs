//! Expiry e-mails against a real SMTP server (aiosmtpd): what arrives, to whom, with what; each
//! (certificate, threshold) once, across restarts and two servers on one registry; an SMTP
//! outage retried until the mail arrives; bad `[notify]` values refused naming the key.

use crate::support::*;
use certgate::lifecycle::Context;
use certgate::model::Role;

const RENEW_URL: &str = "https://ib.bank.example/certgate/renew";

/// Certificates valid 5 days (inside the 10-day threshold) and notices to `sink` every second.
fn expiring(sink: &SmtpSink) -> String {
    format!(
        "validity_days = 5\n\n[notify]\ndays = [30, 10]\nsmtp_url = \"{}\"\nfrom = \"Bank <certs@bank.example>\"\nrenew_url = \"{RENEW_URL}\"\ninterval = \"1s\"\n",
        sink.url()
    )
}

/// A mail's body as its reader sees it (lettre encodes UTF-8 text as base64 or quoted-printable).
fn body_of(raw: &str) -> String {
    let (head, body) = raw.split_once("\r\n\r\n").expect("a header and a body");
    if head.contains("Content-Transfer-Encoding: base64") {
        use base64::Engine as _;
        let joined: String = body.split_whitespace().collect();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(joined)
            .unwrap();
        return String::from_utf8(bytes).unwrap();
    }
    if head.contains("Content-Transfer-Encoding: quoted-printable") {
        let soft = body.replace("=\r\n", "");
        let mut bytes = Vec::new();
        let mut rest = soft.as_bytes();
        while let Some((&byte, tail)) = rest.split_first() {
            if byte == b'=' && tail.len() >= 2 {
                let hex = std::str::from_utf8(&tail[..2]).unwrap();
                bytes.push(u8::from_str_radix(hex, 16).unwrap());
                rest = &tail[2..];
            } else {
                bytes.push(byte);
                rest = tail;
            }
        }
        return String::from_utf8(bytes).unwrap();
    }
    body.to_owned()
}

/// How many runs of the notifier `server` has logged.
fn runs(server: &Server) -> usize {
    server.logs().matches("expiry notices checked").count()
}

/// Waits until `server` has logged `more` runs after now: every notice due was looked at.
async fn after_runs(server: &Server, more: usize) {
    let seen = runs(server);
    wait_until("the notifier runs again", || async {
        runs(server) >= seen + more
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_mails_go_out_once_across_restarts_and_two_servers() {
    let sink = SmtpSink::start();
    let bank = Bank::open_configured(Fixture::new(), "", &expiring(&sink)).await;
    // A second server on the same registry from the start: both look for the same notices.
    let second = bank.fixture.start_named(
        "second.toml",
        "client_auth = \"optional\"",
        &expiring(&sink),
    );
    // A user whose e-mail the registry knows, enrolled: their notice is copied to them.
    bank.lifecycle
        .add_user(
            CORP_A,
            "hana",
            Role::General,
            Some("hana@corp.example"),
            &Context::operator(),
        )
        .await
        .unwrap();
    let pin = bank.permit(CORP_A, Some("hana")).await;
    let (status, json) = bank.enroll_json(CORP_A, Some("hana"), &pin, &csr().0).await;
    assert_eq!(status, 200, "{json}");
    let hana_serial = json["serial"].as_str().unwrap().to_owned();

    // Both administrators' certificates and hana's.
    wait_until("three notices arrive", || async {
        sink.messages().len() >= 3
    })
    .await;
    after_runs(&bank.server, 2).await;
    let messages = sink.messages();
    assert_eq!(messages.len(), 3, "{messages:#?}");
    let hana = messages
        .iter()
        .find(|message| message.contains("hana@corp.example"))
        .expect("hana's notice");
    assert!(
        hana.contains("X-Envelope-To: admin@corp.example, hana@corp.example"),
        "{hana}"
    );
    assert!(
        hana.contains(&format!("Message-ID: <{hana_serial}.10d@certgate>")),
        "{hana}"
    );
    assert!(hana.contains("From: Bank <certs@bank.example>"), "{hana}");
    for message in &messages {
        let body = body_of(message);
        assert!(body.contains(RENEW_URL), "{body}");
        assert!(
            body.contains("有効期限") && body.contains("days left"),
            "{body}"
        );
        assert!(body.contains("JST"), "{body}");
    }

    // The second server raced the first for every notice; a restart of the first: nothing
    // goes twice.
    after_runs(&second, 2).await;
    let mut first = bank.server;
    first.child.kill().unwrap();
    first.wait_exit(std::time::Duration::from_secs(10));
    let restarted = bank
        .fixture
        .start("client_auth = \"optional\"", &expiring(&sink));
    after_runs(&restarted, 2).await;
    after_runs(&second, 1).await;
    assert_eq!(sink.messages().len(), 3, "{:#?}", sink.messages());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_smtp_outage_is_retried_until_the_mail_arrives_once() {
    let mut sink = SmtpSink::start();
    sink.stop();
    let bank = Bank::open_configured(Fixture::new(), "", &expiring(&sink)).await;
    bank.server
        .wait_for_log("expiry notice not sent; it will be retried");
    assert!(sink.messages().is_empty());
    sink.resume();
    wait_until("the two administrators' notices arrive", || async {
        sink.messages().len() >= 2
    })
    .await;
    after_runs(&bank.server, 2).await;
    assert_eq!(sink.messages().len(), 2, "{:#?}", sink.messages());
}

#[tokio::test]
async fn certgate_notify_once_sends_what_is_due_and_then_nothing() {
    let sink = SmtpSink::start();
    // The server itself sends nothing here: no [notify] in its config.
    let bank = Bank::open_configured(Fixture::new(), "", "validity_days = 5\n").await;
    let config = bank.fixture.write(
        "notify.toml",
        &bank
            .fixture
            .config("client_auth = \"optional\"", &expiring(&sink)),
    );
    let once = || {
        let out = certgate()
            .args(["notify", "--once", "--json", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    // A revoked certificate and a renewed one get no notice: of corporation B's administrator
    // (revoked) and taro (enrolled, then renewed), only taro's new certificate and A's
    // administrator's are due.
    let b_admin = bank
        .lifecycle
        .certificates(&Context::operator(), CORP_B)
        .await
        .unwrap()
        .remove(0);
    bank.lifecycle
        .revoke_serial(
            &b_admin.serial,
            certgate::model::RevocationReason::KeyCompromise,
            &Context::operator(),
        )
        .await
        .unwrap();
    let pin = bank.permit(CORP_A, Some("taro")).await;
    let (csr_pem, key) = csr();
    let (status, json) = bank.enroll_json(CORP_A, Some("taro"), &pin, &csr_pem).await;
    assert_eq!(status, 200, "{json}");
    let taro = leaf_from(&json, key);
    let (status, _, renewed, _) = bank
        .post(
            Some(&taro),
            "/certgate/api/renew",
            &[("content-type", "application/json")],
            serde_json::json!({ "csr": csr().0 }).to_string(),
        )
        .await;
    assert_eq!(status, 200, "{renewed}");
    let old_serial = json["serial"].as_str().unwrap().to_owned();
    let new_serial = renewed["serial"].as_str().unwrap().to_owned();
    assert_eq!(once()["sent"], 2);
    assert_eq!(once()["sent"], 0);
    let messages = sink.messages();
    assert_eq!(messages.len(), 2);
    let ids: Vec<&str> = messages
        .iter()
        .filter_map(|message| {
            message
                .lines()
                .find_map(|line| line.strip_prefix("Message-ID: "))
        })
        .collect();
    assert!(
        ids.iter()
            .any(|id| id.starts_with(&format!("<{new_serial}."))),
        "the renewed certificate's successor: {ids:?}"
    );
    for gone in [b_admin.serial.to_string(), old_serial] {
        assert!(
            !ids.iter().any(|id| id.starts_with(&format!("<{gone}."))),
            "nothing for {gone} (revoked or renewed): {ids:?}"
        );
    }
}

#[test]
fn bad_notify_settings_are_refused_naming_the_key() {
    let fixture = Fixture::new();
    for (notify, says) in [
        ("days = [30, 0]", "notify.days[1]"),
        ("days = [10, 10]", "notify.days[1]"),
        ("days = [400]", "notify.days[0]"),
        (
            "smtp_url = \"http://mail\"\nfrom = \"a@b\"\nrenew_url = \"https://x\"",
            "notify.smtp_url",
        ),
        (
            "smtp_url = \"smtp://mail:25\"\nrenew_url = \"https://x\"",
            "notify.from",
        ),
        (
            "smtp_url = \"smtp://mail:25\"\nfrom = \"a@b\"",
            "notify.renew_url",
        ),
        ("interval = \"soon\"", "notify.interval"),
        (
            "smtp_url = \"smtp://mail:25\"\nfrom = \"a@b\"\nrenew_url = \"https://x\"\nwebhook = \"http://hooks.example/x\"",
            "notify.webhook",
        ),
        ("webhook = \"https://hooks.example/x\"", "notify.webhook"),
        ("smpt_url = \"smtp://mail\"", "smpt_url"),
    ] {
        let config = fixture.write(
            "bad.toml",
            &fixture.config("", &format!("\n[notify]\n{notify}\n")),
        );
        let out = certgate()
            .args(["check-config", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{notify}: {stderr}");
        assert!(stderr.contains(says), "{notify}: {stderr}");
    }
}

/// A webhook receiver on loopback: every call's signature header and body; it answers `status`.
async fn webhook_receiver(
    status: u16,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>,
) {
    use http_body_util::BodyExt as _;
    let calls = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = calls.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let seen = seen.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |request: http::Request<hyper::body::Incoming>| {
                        let seen = seen.clone();
                        async move {
                            let signature = request
                                .headers()
                                .get("x-certgate-signature")
                                .map(|value| value.to_str().unwrap().to_owned())
                                .unwrap_or_default();
                            let body = request.into_body().collect().await.unwrap().to_bytes();
                            seen.lock()
                                .unwrap()
                                .push((signature, String::from_utf8_lossy(&body).into_owned()));
                            let mut response =
                                http::Response::new(http_body_util::Full::new(bytes::Bytes::new()));
                            *response.status_mut() = http::StatusCode::from_u16(status).unwrap();
                            Ok::<_, std::convert::Infallible>(response)
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    (addr, calls)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_is_told_of_each_notice_signed_and_a_refusing_one_is_retried() {
    const SECRET: &str = "webhook-secret-of-the-bank";
    let sink = SmtpSink::start();
    let bank = Bank::open_configured(Fixture::new(), "", "validity_days = 5\n").await;
    let notify = |webhook: std::net::SocketAddr, with_secret: bool| {
        let config = bank.fixture.write(
            "notify.toml",
            &bank.fixture.config(
                "client_auth = \"optional\"",
                &format!("{}webhook = \"http://{webhook}/hook\"\n", expiring(&sink)),
            ),
        );
        let mut command = certgate();
        command
            .args(["notify", "--once", "--json", "--config"])
            .arg(&config);
        if with_secret {
            command.env("CERTGATE_WEBHOOK_SECRET", SECRET);
        }
        command.output().unwrap()
    };
    // Without the key to sign with, nothing starts.
    let (refusing, refused_calls) = webhook_receiver(500).await;
    let out = notify(refusing, false);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("notify.webhook"));
    // A webhook that refuses: the notices are not marked sent, and the run says so.
    let out = notify(refusing, true);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(refused_calls.lock().unwrap().len(), 2);
    // Once it accepts, each notice is told once, signed with the bank's key.
    let (accepting, calls) = webhook_receiver(200).await;
    let out = notify(accepting, true);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = notify(accepting, true);
    assert!(out.status.success());
    let calls = calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 2, "{calls:#?}");
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, SECRET.as_bytes());
    for (signature, body) in &calls {
        let expected = aws_lc_rs::hmac::sign(&key, body.as_bytes());
        assert_eq!(
            signature,
            &format!("sha256={}", hex(expected.as_ref())),
            "{body}"
        );
        let event: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(event["event"], "certificate.expiring");
        assert_eq!(event["renew_url"], RENEW_URL);
        assert!(
            event["message_id"]
                .as_str()
                .unwrap()
                .ends_with(".10d@certgate>")
        );
    }
    // The mails of the refused run went out and were sent again with the same Message-ID.
    let ids: Vec<String> = sink
        .messages()
        .iter()
        .map(|message| {
            message
                .lines()
                .find_map(|line| line.strip_prefix("Message-ID: "))
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(ids.len(), 4, "{ids:?}");
    let unique: std::collections::BTreeSet<&String> = ids.iter().collect();
    assert_eq!(
        unique.len(),
        2,
        "a resend is recognisable by its Message-ID: {ids:?}"
    );
}

#[test]
fn certgate_notify_refuses_without_once_or_without_smtp_url() {
    let fixture = Fixture::new();
    let config = fixture.write("certgate.toml", &fixture.config("", ""));
    for (args, says) in [
        (vec!["notify"], "--once"),
        (vec!["notify", "--once"], "notify.smtp_url"),
    ] {
        let out = certgate()
            .args(&args)
            .arg("--config")
            .arg(&config)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}
