//! Enrollment under attack: a used PIN gives back only what it gave (never a new key), the
//! answers before the PIN is verified tell nobody who exists (and cost one PIN check each), a
//! locked permit says so only to the holder of its PIN, and no answer carries a registry ID.

use certgate::lifecycle::Context;
use certgate::model::{Holder, Role};

use crate::support::*;

async fn enroll_p12(bank: &Bank, user: &str, pin: &str, password: &str) -> (u16, Vec<u8>) {
    let body = serde_json::json!({
        "corp_id": CORP_A, "user_id": user, "pin": pin, "p12_password": password,
    });
    let (status, _, _, bytes) = bank
        .post(
            None,
            "/certgate/api/enroll.p12",
            &[("content-type", "application/json")],
            body.to_string(),
        )
        .await;
    (status, bytes.to_vec())
}

async fn taro_certificates(bank: &Bank) -> Vec<certgate::store::CertificateRecord> {
    bank.lifecycle
        .store()
        .holder_certificates(&Holder::user(CORP_A, "taro"))
        .await
        .unwrap()
}

#[tokio::test]
async fn a_used_pin_gives_back_the_same_certificate_p12_only_with_the_same_password() {
    let bank = Bank::open("").await;
    let pin = bank.permit(CORP_A, Some("taro")).await;
    let (status, first) = enroll_p12(&bank, "taro", &pin, "first-password").await;
    assert_eq!(status, 200);
    // The client lost the answer and asks again: the very same file.
    let (status, again) = enroll_p12(&bank, "taro", &pin, "first-password").await;
    assert_eq!(status, 200);
    assert_eq!(again, first, "a retry gets the same bytes");
    // Someone else holding the used PIN, with their own password: nothing for them.
    let (status, body) = enroll_p12(&bank, "taro", &pin, "attacker-password").await;
    assert_eq!(status, 409, "{}", String::from_utf8_lossy(&body));
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        problem_type(&json),
        "urn:certgate:problem:retry-password-mismatch"
    );
    let certificates = taro_certificates(&bank).await;
    assert_eq!(certificates.len(), 1, "nothing was issued");
    assert!(certificates[0].revocation.is_none(), "nothing was revoked");
}

#[tokio::test]
async fn a_pin_used_with_a_csr_cannot_get_a_server_made_key() {
    let bank = Bank::open("").await;
    let pin = bank.permit(CORP_A, Some("taro")).await;
    let (csr_pem, _) = csr();
    let (status, json) = bank.enroll_json(CORP_A, Some("taro"), &pin, &csr_pem).await;
    assert_eq!(status, 200, "{json}");
    // Before the fix, this issued a new key and revoked the rightful certificate as superseded.
    let (status, body) = enroll_p12(&bank, "taro", &pin, "attacker-password").await;
    assert_eq!(status, 409, "{}", String::from_utf8_lossy(&body));
    // EST serverkeygen: a bare key is never kept, so a used PIN gets nothing there either.
    use base64::Engine as _;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{CORP_A}.taro:{pin}"));
    let (status, _, json, _) = bank
        .post(
            None,
            "/.well-known/est/serverkeygen",
            &[("authorization", &format!("Basic {basic}"))],
            "",
        )
        .await;
    assert_eq!(status, 409, "{json}");
    // Another key through a CSR: refused as well.
    let (other_csr, _) = csr();
    let (status, json) = bank
        .enroll_json(CORP_A, Some("taro"), &pin, &other_csr)
        .await;
    assert_eq!(status, 409, "{json}");
    let certificates = taro_certificates(&bank).await;
    assert_eq!(certificates.len(), 1, "nothing was issued");
    assert!(certificates[0].revocation.is_none(), "nothing was revoked");
}

#[tokio::test]
async fn a_pin_used_for_a_p12_cannot_certify_another_key() {
    let bank = Bank::open("").await;
    let pin = bank.permit(CORP_A, Some("taro")).await;
    let (status, _) = enroll_p12(&bank, "taro", &pin, "first-password").await;
    assert_eq!(status, 200);
    let (csr_pem, _) = csr();
    let (status, json) = bank.enroll_json(CORP_A, Some("taro"), &pin, &csr_pem).await;
    assert_eq!(status, 409, "{json}");
    assert_eq!(taro_certificates(&bank).await.len(), 1);
}

/// `certgate_pin_verifications_total` now.
async fn pin_checks(bank: &Bank) -> f64 {
    bank.server.metric("certgate_pin_verifications_total").await
}

#[tokio::test]
async fn before_the_pin_is_checked_every_refusal_is_the_same_and_costs_one_pin_check() {
    let bank = Bank::open("").await;
    let ops = Context::operator();
    // A corporation whose administrator has not enrolled yet, with a user who has a permit.
    let corp_c = "77777777777777";
    bank.lifecycle
        .add_corporation(corp_c, "Corp C", "admin@c.example", &ops)
        .await
        .unwrap();
    bank.lifecycle
        .add_user(corp_c, "hana", Role::General, None, &ops)
        .await
        .unwrap();
    let hana_pin = bank
        .lifecycle
        .issue_permit(&Holder::user(corp_c, "hana"), &ops)
        .await
        .unwrap()
        .pin;
    let hana_pin = secrecy::ExposeSecret::expose_secret(&hana_pin).to_owned();
    // A suspended user with a permit, and a user without one.
    let jiro_pin = {
        bank.lifecycle
            .add_user(CORP_A, "jiro", Role::General, None, &ops)
            .await
            .unwrap();
        bank.permit(CORP_A, Some("jiro")).await
    };
    bank.lifecycle
        .suspend(&ops, CORP_A, "jiro", true)
        .await
        .unwrap();
    let taro_pin = bank.permit(CORP_A, Some("taro")).await;
    let (csr_pem, _) = csr();
    let wrong = "WRONG-PIN-123456";
    let mut bodies = Vec::new();
    for (corp, user, pin, why) in [
        ("11111111111111", "taro", wrong, "unknown corporation"),
        (CORP_A, "nobody", wrong, "unknown user"),
        (CORP_A, "boss", wrong, "a user without a permit"),
        (CORP_A, "taro", wrong, "a wrong PIN"),
        (CORP_A, "jiro", wrong, "a suspended user"),
        (corp_c, "hana", wrong, "administrator not enrolled yet"),
    ] {
        let before = pin_checks(&bank).await;
        let (status, json) = bank.enroll_json(corp, Some(user), pin, &csr_pem).await;
        assert_eq!(status, 401, "{why}: {json}");
        assert_eq!(
            problem_type(&json),
            "urn:certgate:problem:bad-credentials",
            "{why}"
        );
        assert_eq!(
            pin_checks(&bank).await - before,
            1.0,
            "{why}: one PIN check"
        );
        bodies.push(json["detail"].clone());
    }
    assert!(
        bodies.windows(2).all(|pair| pair[0] == pair[1]),
        "one message for all: {bodies:?}"
    );
    // With the right PIN, the answer may say what is wrong.
    let (status, json) = bank
        .enroll_json(CORP_A, Some("jiro"), &jiro_pin, &csr_pem)
        .await;
    assert_eq!(
        (status, problem_type(&json)),
        (403, "urn:certgate:problem:user-suspended")
    );
    let (status, json) = bank
        .enroll_json(corp_c, Some("hana"), &hana_pin, &csr_pem)
        .await;
    assert_eq!(
        (status, problem_type(&json)),
        (409, "urn:certgate:problem:administrator-first")
    );
    let (status, json) = bank
        .enroll_json(CORP_A, Some("taro"), &taro_pin, &csr_pem)
        .await;
    assert_eq!(status, 200, "{json}");
}

#[tokio::test]
async fn parallel_wrong_pins_lock_the_permit_and_all_get_401_without_a_registry_id() {
    let bank = std::sync::Arc::new(Bank::open("").await);
    bank.permit(CORP_A, Some("taro")).await;
    let (csr_pem, _) = csr();
    let mut tasks = Vec::new();
    for _ in 0..12 {
        let (bank, csr_pem) = (bank.clone(), csr_pem.clone());
        tasks.push(tokio::spawn(async move {
            bank.enroll_json(CORP_A, Some("taro"), "WRONG-PIN-123456", &csr_pem)
                .await
        }));
    }
    for task in tasks {
        let (status, json) = task.await.unwrap();
        assert_eq!(status, 401, "{json}");
        let detail = json["detail"].as_str().unwrap_or("");
        assert!(
            !detail.chars().any(|c| c.is_ascii_digit()),
            "no ID in the answer: {detail}"
        );
    }
    assert_eq!(
        bank.permit_state(CORP_A, Some("taro")).await,
        (certgate::store::PermitState::Locked, 5),
        "exactly max_pin_failures counted, however many ran at once"
    );
}

/// A flood of enrollment attempts from one address gets 429 with Retry-After once its allowance
/// is spent (each attempt costs a PIN verification and registry work: the attack's flood starved
/// the registry until every certificate holder got 503). Other addresses are not affected.
#[tokio::test]
async fn enrollment_attempts_beyond_the_per_address_allowance_get_429() {
    let bank = Bank::open("[lifecycle]\nenroll_attempts_per_minute = 3").await;
    let (csr_pem, _) = csr();
    for attempt in 1..=3 {
        let (status, json) = bank
            .enroll_json(CORP_A, Some("nobody"), "WRONG-PIN-123456", &csr_pem)
            .await;
        assert_eq!(status, 401, "attempt {attempt}: {json}");
    }
    let (status, headers, json, _) = bank
        .post(
            None,
            "/certgate/api/enroll",
            &[("content-type", "application/json")],
            serde_json::json!({"corp_id": CORP_A, "user_id": "taro", "pin": "x", "csr": csr_pem})
                .to_string(),
        )
        .await;
    assert_eq!(status, 429, "{json}");
    assert_eq!(
        problem_type(&json),
        "urn:certgate:problem:too-many-attempts"
    );
    let wait: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    // EST counts against the same allowance.
    let (status, _, _, _) = bank
        .post(
            None,
            "/.well-known/est/simpleenroll",
            &[
                ("content-type", "application/pkcs10"),
                ("authorization", "Basic eDp5"),
            ],
            "AAAA",
        )
        .await;
    assert_eq!(status, 429);
    // Reading certgate's own pages is not an attempt.
    let mut conn = Conn::open(bank.server.addr, bank.client(None))
        .await
        .unwrap();
    assert_eq!(
        conn.get("/.well-known/est/cacerts", &[]).await.unwrap().0,
        200
    );
}
