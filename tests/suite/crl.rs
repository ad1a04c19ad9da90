//! Every revocation reason the CLI and the API accept reaches the CRL with its code, as
//! `openssl crl -text` reads it. (Two reason types converted through strings once dropped
//! aACompromise from the CRL.)

use certgate::lifecycle::{Actor, Context, KeySource};
use certgate::model::{Holder, Role};

use crate::support::*;

/// The names `openssl crl -text` gives each reason code.
const OPENSSL_NAMES: [(&str, Option<&str>); 8] = [
    ("unspecified", None),
    ("keyCompromise", Some("Key Compromise")),
    ("cACompromise", Some("CA Compromise")),
    ("affiliationChanged", Some("Affiliation Changed")),
    ("superseded", Some("Superseded")),
    ("cessationOfOperation", Some("Cessation Of Operation")),
    ("privilegeWithdrawn", Some("Privilege Withdrawn")),
    ("aACompromise", Some("AA Compromise")),
];

/// Enrolls `user` of corporation A through the lifecycle; returns the serial in hex.
async fn enrolled(bank: &Bank, user: &str) -> String {
    let ops = Context::operator();
    bank.lifecycle
        .add_user(CORP_A, user, Role::General, None, &ops)
        .await
        .unwrap();
    let holder = Holder::user(CORP_A, user);
    let pin = bank
        .lifecycle
        .issue_permit(&holder, &ops)
        .await
        .unwrap()
        .pin;
    let (csr_pem, _) = csr();
    let ctx = Context {
        actor: Actor::Enrollee(holder.clone()),
        client_addr: None,
    };
    bank.lifecycle
        .enroll(holder, &pin, KeySource::Csr(csr_pem.into_bytes()), &ctx)
        .await
        .unwrap()
        .serial
        .to_hex()
}

/// `openssl crl -text` of generation g1's CRL as served.
async fn crl_text(bank: &Bank) -> String {
    let mut conn = Conn::open(bank.server.addr, bank.client(None))
        .await
        .unwrap();
    let (status, _, der) = conn.get("/certgate/crl/g1.crl", &[]).await.unwrap();
    assert_eq!(status, 200);
    openssl_crl_text(&der)
}

/// The reason line of `serial` in `text`: `Some(name)`, `None` when it has none, or a panic
/// when the serial is not listed.
fn listed_reason(text: &str, serial: &str) -> Option<String> {
    let upper = serial.to_uppercase();
    let at = text
        .find(&format!("Serial Number: {upper}"))
        .unwrap_or_else(|| panic!("{serial} is not in the CRL:\n{text}"));
    let entry = &text[at..];
    let end = entry[1..]
        .find("Serial Number:")
        .map_or(entry.len(), |e| e + 1);
    let entry = &entry[..end];
    entry
        .lines()
        .skip_while(|line| !line.contains("CRL Reason Code"))
        .nth(1)
        .map(|line| line.trim().to_owned())
}

/// The CRL as served once it lists every serial of `serials`: revocations reach it in the
/// background, not before the answer.
async fn crl_listing(bank: &Bank, serials: &[String]) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let text = crl_text(bank).await;
        let missing: Vec<&String> = serials
            .iter()
            .filter(|serial| !text.contains(&format!("Serial Number: {}", serial.to_uppercase())))
            .collect();
        if missing.is_empty() {
            return text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{missing:?} never reached the CRL:\n{text}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn every_reason_the_cli_accepts_is_in_the_crl_with_its_code() {
    let bank = Bank::open("").await;
    let config = bank.fixture.dir.path().join("certgate.toml");
    let mut serials = Vec::new();
    for (index, (reason, _)) in OPENSSL_NAMES.iter().enumerate() {
        let serial = enrolled(&bank, &format!("cli{index}")).await;
        let out = certgate()
            .args(["cert", "revoke", &serial, "--reason", reason, "--config"])
            .arg(&config)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{reason}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serials.push(serial);
    }
    // The running server's CRL writer reads the CLI's revocations from the feed.
    let text = crl_listing(&bank, &serials).await;
    for ((reason, openssl_name), serial) in OPENSSL_NAMES.iter().zip(&serials) {
        assert_eq!(
            listed_reason(&text, serial).as_deref(),
            *openssl_name,
            "{reason}"
        );
    }
    // The reasons that are not a final revocation are refused, by the CLI as by the API.
    let serial = enrolled(&bank, "held").await;
    for reason in ["certificateHold", "removeFromCRL"] {
        let out = certgate()
            .args(["cert", "revoke", &serial, "--reason", reason, "--config"])
            .arg(&config)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{reason}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("not a final revocation"));
    }
}

#[tokio::test]
async fn every_reason_the_api_accepts_is_in_the_crl_with_its_code() {
    let bank = Bank::open("").await;
    let mut serials = Vec::new();
    for (index, (reason, _)) in OPENSSL_NAMES.iter().enumerate() {
        let user = format!("api{index}");
        let serial = enrolled(&bank, &user).await;
        let (status, _, json, _) = bank
            .post(
                Some(&bank.admin_a),
                &format!("/certgate/api/admin/users/{user}/revoke"),
                &[("content-type", "application/json")],
                with_confirmation(&serde_json::json!({ "reason": reason }).to_string()),
            )
            .await;
        assert_eq!(status, 200, "{reason}: {json}");
        serials.push(serial);
    }
    let text = crl_listing(&bank, &serials).await;
    for ((reason, openssl_name), serial) in OPENSSL_NAMES.iter().zip(&serials) {
        assert_eq!(
            listed_reason(&text, serial).as_deref(),
            *openssl_name,
            "{reason}"
        );
    }
    enrolled(&bank, "extra").await;
    for reason in ["certificateHold", "removeFromCRL", "KeyCompromise"] {
        let (status, _, json, _) = bank
            .post(
                Some(&bank.admin_a),
                "/certgate/api/admin/users/extra/revoke",
                &[("content-type", "application/json")],
                serde_json::json!({ "reason": reason }).to_string(),
            )
            .await;
        assert_eq!(
            (status, json["field"].as_str()),
            (400, Some("reason")),
            "{reason}: {json}"
        );
    }
}
