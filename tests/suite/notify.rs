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
    assert_eq!(once()["sent"], 2);
    assert_eq!(once()["sent"], 0);
    assert_eq!(sink.messages().len(), 2);
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
