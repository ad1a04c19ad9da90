//! certgate's own endpoints refuse bad input clearly and change nothing: PINs, permits, CSRs,
//! PKCS#12 passwords, cross-corporation admin actions, revoked certificates, retries.

use crate::support::*;
use certgate::lifecycle::Context;
use certgate::model::Role;
use certgate::store::PermitState;
use http_body_util::BodyExt as _;

#[tokio::test]
async fn wrong_pin_five_times_locks_the_permit_and_a_missing_credential_is_not_a_failure() {
    let bank = Bank::open("").await;
    let pin = bank.permit(CORP_A, Some("taro")).await;
    let (csr, _) = csr();
    // No credentials at all (EST): 401 with a Basic challenge, and no failure counted.
    let (status, headers, _, _) = bank
        .post(
            None,
            "/.well-known/est/simpleenroll",
            &[("content-type", "application/pkcs10")],
            csr.clone(),
        )
        .await;
    assert_eq!(status, 401);
    assert!(
        headers["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic")
    );
    assert_eq!(
        bank.permit_state(CORP_A, Some("taro")).await,
        (PermitState::Active, 0)
    );
    // Wrong PINs all answer alike, before and after the permit locks: whoever guesses learns
    // neither that the holder exists nor that the permit is now locked.
    for attempt in 1..=7 {
        let (status, json) = bank
            .enroll_json(CORP_A, Some("taro"), "WRONG-PIN-12345", &csr)
            .await;
        assert_eq!(
            (status, problem_type(&json)),
            (401, "urn:certgate:problem:bad-credentials"),
            "attempt {attempt}: {json}"
        );
    }
    assert_eq!(
        bank.permit_state(CORP_A, Some("taro")).await,
        (PermitState::Locked, 5)
    );
    let (status, unknown) = bank
        .enroll_json(CORP_A, Some("nobody"), "WRONG-PIN-12345", &csr)
        .await;
    assert_eq!(status, 401);
    assert_eq!(
        unknown["detail"],
        bank.enroll_json(CORP_A, Some("taro"), "WRONG-PIN-12345", &csr)
            .await
            .1["detail"]
    );
    // The right PIN no longer works, and its holder (only) is told why.
    let (status, json) = bank.enroll_json(CORP_A, Some("taro"), &pin, &csr).await;
    assert_eq!(status, 423);
    assert_eq!(problem_type(&json), "urn:certgate:problem:permit-locked");
}

#[tokio::test]
async fn garbage_truncated_and_bad_signature_csrs_are_refused_without_using_the_permit() {
    let bank = Bank::open("").await;
    let pin = bank.permit(CORP_A, Some("taro")).await;
    let (good, _) = csr();
    let truncated = good[..good.len() / 2].to_owned();
    // Flip one byte of the signature (the end of the DER) to break it.
    use rustls_pki_types::pem::PemObject as _;
    let mut der = rustls_pki_types::CertificateSigningRequestDer::from_pem_slice(good.as_bytes())
        .unwrap()
        .as_ref()
        .to_vec();
    let last = der.len() - 3;
    der[last] ^= 0x55;
    let bad_signature = {
        use base64::Engine as _;
        format!(
            "-----BEGIN CERTIFICATE REQUEST-----\n{}\n-----END CERTIFICATE REQUEST-----\n",
            base64::engine::general_purpose::STANDARD.encode(&der)
        )
    };
    for (name, csr) in [
        ("garbage", "not a csr at all".to_owned()),
        ("truncated", truncated),
        ("bad signature", bad_signature),
    ] {
        let (status, json) = bank.enroll_json(CORP_A, Some("taro"), &pin, &csr).await;
        assert_eq!(status, 400, "{name}: {json}");
        assert_eq!(
            problem_type(&json),
            "urn:certgate:problem:bad-csr",
            "{name}"
        );
    }
    assert_eq!(
        bank.permit_state(CORP_A, Some("taro")).await,
        (PermitState::Active, 0)
    );
    let (status, json) = bank.enroll_json(CORP_A, Some("taro"), &pin, &good).await;
    assert_eq!(status, 200, "{json}");
}

#[tokio::test]
async fn certificate_carries_the_permits_identity_not_the_csrs() {
    let bank = Bank::open("").await;
    let pin = bank.permit(CORP_A, Some("taro")).await;
    let (status, json) = bank.enroll_json(CORP_A, Some("taro"), &pin, &csr().0).await;
    assert_eq!(status, 200);
    let pem = json["certificate"].as_str().unwrap();
    let subject = openssl_x509(pem, &["-subject"]);
    assert!(
        subject.contains(&format!("CN = {CORP_A} taro")),
        "{subject}"
    );
    assert!(!subject.contains("mallory"));
}

#[tokio::test]
async fn short_p12_password_is_refused_and_the_permit_stays_usable() {
    let bank = Bank::open("").await;
    let pin = bank.permit(CORP_A, Some("taro")).await;
    let body = |password: &str| {
        serde_json::json!({"corp_id": CORP_A, "user_id": "taro", "pin": pin, "p12_password": password}).to_string()
    };
    let (status, _, json, _) = bank
        .post(
            None,
            "/certgate/api/enroll.p12",
            &[("content-type", "application/json")],
            body("short"),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(problem_type(&json), "urn:certgate:problem:bad-p12-password");
    assert_eq!(
        bank.permit_state(CORP_A, Some("taro")).await,
        (PermitState::Active, 0)
    );
    let (status, headers, _, p12) = bank
        .post(
            None,
            "/certgate/api/enroll.p12",
            &[("content-type", "application/json")],
            body("long enough"),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "application/x-pkcs12");
    assert!(
        headers["content-disposition"]
            .to_str()
            .unwrap()
            .contains("certificate.p12")
    );
    assert!(p12.len() > 500);
}

#[tokio::test]
async fn users_wait_for_their_administrator() {
    let fixture_bank = Bank::open("").await;
    let operator = Context::operator();
    let corp = "77777777777777";
    fixture_bank
        .lifecycle
        .add_corporation(corp, "New Corp", "a@new.example", &operator)
        .await
        .unwrap();
    fixture_bank
        .lifecycle
        .add_user(corp, "taro", Role::General, None, &operator)
        .await
        .unwrap();
    let pin = fixture_bank.permit(corp, Some("taro")).await;
    let (status, json) = fixture_bank
        .enroll_json(corp, Some("taro"), &pin, &csr().0)
        .await;
    assert_eq!(status, 409, "{json}");
    assert_eq!(
        problem_type(&json),
        "urn:certgate:problem:administrator-first"
    );
}

#[tokio::test]
async fn interrupted_enrollment_returns_the_same_certificate_for_the_same_key_only() {
    let bank = Bank::open("").await;
    let pin = bank.permit(CORP_A, Some("taro")).await;
    let (csr_pem, _) = csr();
    let (status, first) = bank.enroll_json(CORP_A, Some("taro"), &pin, &csr_pem).await;
    assert_eq!(status, 200);
    let (status, again) = bank.enroll_json(CORP_A, Some("taro"), &pin, &csr_pem).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(first["serial"], again["serial"]);
    assert_eq!(first["certificate"], again["certificate"]);
    let (status, other) = bank.enroll_json(CORP_A, Some("taro"), &pin, &csr().0).await;
    assert_eq!(status, 409, "{other}");
    assert_eq!(
        problem_type(&other),
        "urn:certgate:problem:retry-key-mismatch"
    );
}

#[tokio::test]
async fn administrator_of_one_corporation_cannot_act_on_another() {
    let bank = Bank::open("").await;
    // B's administrator naming corporation A: refused, and A's user is untouched.
    for action in ["reissue", "revoke", "suspend", "resume"] {
        let path = format!("/certgate/api/admin/users/taro/{action}?corp_id={CORP_A}");
        let (status, _, json, _) = bank.post(Some(&bank.admin_b), &path, &[], "").await;
        assert_eq!(status, 403, "{action}: {json}");
    }
    let mut conn = Conn::open(bank.server.addr, bank.client(Some(&bank.admin_b)))
        .await
        .unwrap();
    for path in [
        format!("/certgate/api/admin/users?corp_id={CORP_A}"),
        format!("/certgate/api/admin/audit?corp_id={CORP_A}"),
    ] {
        assert_eq!(conn.get(&path, &[]).await.unwrap().0, 403, "{path}");
    }
    let taro_a = bank
        .lifecycle
        .store()
        .user(CORP_A, "taro")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(taro_a.status, certgate::store::UserStatus::Active);
    // A user certificate of corporation A cannot manage anyone.
    let pin = bank.permit(CORP_A, Some("taro")).await;
    let (csr_pem, key) = csr();
    let (_, json) = bank.enroll_json(CORP_A, Some("taro"), &pin, &csr_pem).await;
    let taro = Leaf {
        cert_pem: json["certificate"].as_str().unwrap().to_owned(),
        key_pem: key,
        der: vec![],
        serial: vec![],
    };
    let (status, _, json, _) = bank
        .post(
            Some(&taro),
            "/certgate/api/admin/users/boss/suspend",
            &[],
            "",
        )
        .await;
    assert_eq!(status, 403, "{json}");
    // Nobody but the bank touches the master user.
    let (status, _, json, _) = bank
        .post(
            Some(&bank.admin_a),
            "/certgate/api/admin/users/boss/revoke",
            &[],
            "",
        )
        .await;
    assert_eq!(status, 403, "{json}");
    // A revocation reason must be an RFC 5280 name.
    let (status, _, json, _) = bank
        .post(
            Some(&bank.admin_a),
            "/certgate/api/admin/users/taro/revoke",
            &[("content-type", "application/json")],
            r#"{"reason":"because"}"#,
        )
        .await;
    assert_eq!(status, 400, "{json}");
    // The status table shows A's users only.
    let mut conn = Conn::open(bank.server.addr, bank.client(Some(&bank.admin_a)))
        .await
        .unwrap();
    let (status, _, body) = conn.get("/certgate/api/admin/users", &[]).await.unwrap();
    assert_eq!(status, 200);
    let table: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(table["corp_id"], CORP_A);
    let taro_row = table["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["user_id"] == "taro")
        .unwrap();
    assert_eq!(taro_row["certificate_status"], "issued");
}

#[tokio::test]
async fn revoked_certificate_can_neither_renew_nor_re_enroll_over_est() {
    let bank = Bank::open("[lifecycle]\nrenew_window_days = 400").await;
    let pin = bank.permit(CORP_A, Some("taro")).await;
    let (csr_pem, key) = csr();
    let (_, json) = bank.enroll_json(CORP_A, Some("taro"), &pin, &csr_pem).await;
    let taro = Leaf {
        cert_pem: json["certificate"].as_str().unwrap().to_owned(),
        key_pem: key,
        der: vec![],
        serial: vec![],
    };
    let (status, _, json, _) = bank
        .post(
            Some(&bank.admin_a),
            "/certgate/api/admin/users/taro/revoke",
            &[("content-type", "application/json")],
            with_confirmation(r#"{"reason":"keyCompromise"}"#),
        )
        .await;
    assert_eq!(status, 200, "{json}");
    let renew = serde_json::json!({"csr": csr().0}).to_string();
    let (status, _, json, _) = bank
        .post(
            Some(&taro),
            "/certgate/api/renew",
            &[("content-type", "application/json")],
            renew,
        )
        .await;
    assert_eq!(status, 403, "{json}");
    assert_eq!(
        problem_type(&json),
        "urn:certgate:problem:certificate-revoked"
    );
    let (status, _, json, _) = bank
        .post(
            Some(&taro),
            "/.well-known/est/simplereenroll",
            &[("content-type", "application/pkcs10")],
            csr().0,
        )
        .await;
    assert_eq!(status, 403, "{json}");
}

#[tokio::test]
async fn est_cacerts_and_serverkeygen_are_read_by_openssl() {
    let bank = Bank::open("").await;
    let mut conn = Conn::open(bank.server.addr, bank.client(None))
        .await
        .unwrap();
    let (status, headers, body) = conn.get("/.well-known/est/cacerts", &[]).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        headers["content-type"],
        "application/pkcs7-mime; smime-type=certs-only"
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.b64"), &body).unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    run(&["base64", "-d", "-A", "-in", "ca.b64", "-out", "ca.p7"]);
    let certs = run(&["pkcs7", "-inform", "DER", "-in", "ca.p7", "-print_certs"]);
    assert_eq!(
        certs.matches("BEGIN CERTIFICATE").count(),
        2,
        "root + g1: {certs}"
    );

    let pin = bank.permit(CORP_A, Some("taro")).await;
    use base64::Engine as _;
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{CORP_A}.taro:{pin}"))
    );
    let (status, headers, _, body) = bank
        .post(
            None,
            "/.well-known/est/serverkeygen",
            &[("authorization", &basic)],
            "",
        )
        .await;
    assert_eq!(status, 200);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("multipart/mixed; boundary=")
    );
    let text = String::from_utf8(body.to_vec()).unwrap();
    assert!(
        text.contains("Content-Type: application/pkcs8") && text.contains("smime-type=certs-only"),
        "{text}"
    );
}

async fn enroll_taro(bank: &Bank) -> Leaf {
    bank.enrolled("taro").await
}

async fn app_status(bank: &Bank, leaf: &Leaf) -> u16 {
    get_once(bank.server.addr, bank.client(Some(leaf)), "/app", &[])
        .await
        .unwrap()
        .0
        .as_u16()
}

#[tokio::test]
async fn suspend_and_resume_through_the_admin_api_take_effect_at_once() {
    let bank = Bank::open("").await;
    let taro = enroll_taro(&bank).await;
    assert_eq!(app_status(&bank, &taro).await, 200);
    let (status, _, json, _) = bank
        .post(
            Some(&bank.admin_a),
            "/certgate/api/admin/users/taro/suspend",
            &[],
            "",
        )
        .await;
    assert_eq!((status, json["status"].as_str()), (200, Some("suspended")));
    assert_eq!(app_status(&bank, &taro).await, 403);
    let (status, _, _, _) = bank
        .post(
            Some(&bank.admin_a),
            "/certgate/api/admin/users/taro/resume",
            &[],
            "",
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(app_status(&bank, &taro).await, 200);
    // Both actions are in the corporation's audit trail.
    let mut conn = Conn::open(bank.server.addr, bank.client(Some(&bank.admin_a)))
        .await
        .unwrap();
    let (status, _, body) = conn.get("/certgate/api/admin/audit", &[]).await.unwrap();
    assert_eq!(status, 200);
    let audit = String::from_utf8_lossy(&body);
    assert!(
        audit.contains("\"suspend\"") && audit.contains("\"resume\""),
        "{audit}"
    );
}

/// After renewal the old certificate is logged off from the application (seed 003) but not
/// revoked, unless `revoke_old_on_renew`; certgate's own endpoints still answer it.
#[tokio::test]
async fn renewal_logs_the_old_certificate_off_and_revokes_it_only_when_configured() {
    for (revoke_old, refusal, own_status) in [
        (false, "certificate-renewed", 200),
        (true, "certificate-revoked", 403),
    ] {
        let bank = Bank::open(&format!(
            "[lifecycle]\nrenew_window_days = 400\nrevoke_old_on_renew = {revoke_old}"
        ))
        .await;
        let taro = enroll_taro(&bank).await;
        let (status, _, json, _) = bank
            .post(
                Some(&taro),
                "/certgate/api/renew",
                &[("content-type", "application/json")],
                serde_json::json!({"csr": csr().0}).to_string(),
            )
            .await;
        assert_eq!(status, 200, "{json}");
        let (status, _, body) = get_once(bank.server.addr, bank.client(Some(&taro)), "/app", &[])
            .await
            .unwrap();
        assert_eq!(status, 403, "revoke_old_on_renew = {revoke_old}");
        assert!(
            String::from_utf8_lossy(&body).contains(refusal),
            "revoke_old_on_renew = {revoke_old}: {}",
            String::from_utf8_lossy(&body)
        );
        let (status, _, _) = get_once(
            bank.server.addr,
            bank.client(Some(&taro)),
            "/certgate/api/me",
            &[],
        )
        .await
        .unwrap();
        assert_eq!(status, own_status, "revoke_old_on_renew = {revoke_old}");
    }
}

/// The parts of a multipart body: (headers, body) each, split at the boundary of `content_type`.
fn multipart_parts(content_type: &str, body: &str) -> Vec<(String, String)> {
    let boundary = content_type
        .split(';')
        .find_map(|param| param.trim().strip_prefix("boundary="))
        .unwrap()
        .trim_matches('"');
    let delimiter = format!("--{boundary}");
    let (_, rest) = body.split_once(&delimiter).unwrap();
    let (rest, after) = rest.split_once(&format!("\r\n{delimiter}--")).unwrap();
    assert!(after.trim().is_empty(), "{after:?}");
    rest.split(&format!("\r\n{delimiter}"))
        .map(|part| {
            let part = part.strip_prefix("\r\n").unwrap();
            let (headers, body) = part.split_once("\r\n\r\n").unwrap();
            (headers.to_owned(), body.to_owned())
        })
        .collect()
}

fn unbase64(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(compact)
        .unwrap()
}

#[tokio::test]
async fn serverkeygen_parts_are_a_pkcs8_key_and_its_certificate() {
    let bank = Bank::open("").await;
    let pin = bank.permit(CORP_A, Some("taro")).await;
    use base64::Engine as _;
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{CORP_A}.taro:{pin}"))
    );
    let (status, headers, _, body) = bank
        .post(
            None,
            "/.well-known/est/serverkeygen",
            &[
                ("authorization", &basic),
                ("content-type", "application/pkcs10"),
            ],
            csr().0,
        )
        .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(headers["cache-control"], "no-store");
    let parts = multipart_parts(
        headers["content-type"].to_str().unwrap(),
        std::str::from_utf8(&body).unwrap(),
    );
    assert_eq!(parts.len(), 2);
    assert!(parts[0].0.contains("Content-Type: application/pkcs8"));
    assert!(parts[0].0.contains("Content-Transfer-Encoding: base64"));
    assert!(
        parts[1]
            .0
            .contains("Content-Type: application/pkcs7-mime; smime-type=certs-only")
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("key.der"), unbase64(&parts[0].1)).unwrap();
    std::fs::write(dir.path().join("cert.p7"), unbase64(&parts[1].1)).unwrap();
    let key_public = run_in(
        dir.path(),
        "openssl",
        &["pkey", "-inform", "DER", "-in", "key.der", "-pubout"],
    );
    let certs = run_in(
        dir.path(),
        "openssl",
        &["pkcs7", "-inform", "DER", "-in", "cert.p7", "-print_certs"],
    );
    assert_eq!(certs.matches("BEGIN CERTIFICATE").count(), 1, "{certs}");
    assert!(certs.contains(&format!("CN = {CORP_A} taro")), "{certs}");
    std::fs::write(dir.path().join("cert.pem"), &certs).unwrap();
    let cert_public = run_in(
        dir.path(),
        "openssl",
        &["x509", "-in", "cert.pem", "-noout", "-pubkey"],
    );
    assert_eq!(key_public, cert_public);
    // The permit is used: the same credentials cannot make a second key (outside a retry, the
    // server-made key would be a new one, which supersedes the first).
    assert_eq!(
        bank.permit_state(CORP_A, Some("taro")).await.0,
        PermitState::Used
    );
}

#[tokio::test]
async fn simplereenroll_with_curl_over_the_current_certificate() {
    let bank = Bank::open("[lifecycle]\nrenew_window_days = 400").await;
    let taro = enroll_taro(&bank).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("taro.pem"), &taro.cert_pem).unwrap();
    std::fs::write(dir.path().join("taro.key"), &taro.key_pem).unwrap();
    run_in(
        dir.path(),
        "openssl",
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "new.key",
            "-subj",
            "/CN=renewal",
            "-outform",
            "DER",
            "-out",
            "req.der",
        ],
    );
    run_in(
        dir.path(),
        "openssl",
        &["base64", "-in", "req.der", "-out", "req.b64"],
    );
    let port = bank.server.addr.port();
    let out = std::process::Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "20", "--cacert"])
        .arg(&bank.fixture.ca_path)
        .args(["--resolve", &format!("localhost:{port}:127.0.0.1")])
        .args(["--cert", "taro.pem", "--key", "taro.key"])
        .args([
            "--data-binary",
            "@req.b64",
            "-H",
            "Content-Type: application/pkcs10",
        ])
        .args(["--dump-header", "headers.txt"])
        .arg(format!(
            "https://localhost:{port}/.well-known/est/simplereenroll"
        ))
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let headers = std::fs::read_to_string(dir.path().join("headers.txt")).unwrap();
    assert!(
        headers.starts_with("HTTP/1.1 200") || headers.starts_with("HTTP/2 200"),
        "{headers}\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        headers
            .to_ascii_lowercase()
            .contains("content-type: application/pkcs7-mime; smime-type=certs-only"),
        "{headers}"
    );
    std::fs::write(dir.path().join("new.p7.b64"), &out.stdout).unwrap();
    run_in(
        dir.path(),
        "openssl",
        &["base64", "-d", "-A", "-in", "new.p7.b64", "-out", "new.p7"],
    );
    let renewed = run_in(
        dir.path(),
        "openssl",
        &["pkcs7", "-inform", "DER", "-in", "new.p7", "-print_certs"],
    );
    assert!(
        renewed.contains(&format!("CN = {CORP_A} taro")),
        "{renewed}"
    );
    assert!(!renewed.contains("renewal"));
    std::fs::write(dir.path().join("new.pem"), &renewed).unwrap();
    // The new certificate is for the new key.
    assert_eq!(
        run_in(
            dir.path(),
            "openssl",
            &["x509", "-in", "new.pem", "-noout", "-pubkey"]
        ),
        run_in(
            dir.path(),
            "openssl",
            &["pkey", "-in", "new.key", "-pubout"]
        ),
    );
    // Without a certificate, re-enrollment is refused.
    let (status, _, json, _) = bank
        .post(
            None,
            "/.well-known/est/simplereenroll",
            &[("content-type", "application/pkcs10")],
            csr().0,
        )
        .await;
    assert_eq!(status, 401, "{json}");
    assert_eq!(
        problem_type(&json),
        "urn:certgate:problem:certificate-required"
    );
}

#[tokio::test]
async fn me_shows_identity_status_and_renewal_window() {
    let bank = Bank::open("").await;
    let mut anonymous = Conn::open(bank.server.addr, bank.client(None))
        .await
        .unwrap();
    let (status, _, body) = anonymous.get("/certgate/api/me", &[]).await.unwrap();
    assert_eq!(status, 401);
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        problem_type(&json),
        "urn:certgate:problem:certificate-required"
    );

    let mut conn = Conn::open(bank.server.addr, bank.client(Some(&bank.admin_a)))
        .await
        .unwrap();
    let (status, headers, body) = conn.get("/certgate/api/me", &[]).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "application/json");
    let me: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(me["corp_id"], CORP_A);
    assert!(me.get("user_id").is_none(), "{me}");
    assert_eq!(me["role"], "admin");
    assert_eq!(me["status"], "issued");
    assert_eq!(me["can_renew"], false);
    let days = me["days_left"].as_i64().unwrap();
    assert!((363..=365).contains(&days), "{me}");
    assert!(
        me["renewal_opens"].is_string() && me["serial"].is_string(),
        "{me}"
    );

    let taro = enroll_taro(&bank).await;
    let mut conn = Conn::open(bank.server.addr, bank.client(Some(&taro)))
        .await
        .unwrap();
    let (_, _, body) = conn.get("/certgate/api/me", &[]).await.unwrap();
    let me: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (me["user_id"].as_str(), me["role"].as_str()),
        (Some("taro"), Some("general"))
    );
}

#[tokio::test]
async fn certgates_own_address_says_where_things_are_to_a_browser_and_a_program() {
    let bank = Bank::open("").await;
    let mut conn = Conn::open(bank.server.addr, bank.client(None))
        .await
        .unwrap();
    let (status, headers, body) = conn
        .get(
            "/certgate/",
            &[("accept", "text/html,application/xhtml+xml")],
        )
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    assert!(String::from_utf8_lossy(&body).contains("/.well-known/est/"));
    let (status, headers, body) = conn.get("/certgate", &[]).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "application/json");
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["endpoints"]["enroll"], "/certgate/api/enroll");
}

#[tokio::test]
async fn unknown_paths_wrong_methods_big_bodies_and_bad_json_are_problems() {
    let bank = Bank::open("").await;
    let mut conn = Conn::open(bank.server.addr, bank.client(Some(&bank.admin_a)))
        .await
        .unwrap();
    for path in [
        "/certgate/api/nothing",
        "/.well-known/est/csrattrs",
        "/.well-known/est/label/simpleenroll",
        "/certgate/crl/g9.crl",
        "/certgate/crl/g1.pem",
    ] {
        let (status, headers, body) = conn.get(path, &[]).await.unwrap();
        assert_eq!(status, 404, "{path}");
        assert_eq!(
            headers["content-type"], "application/problem+json",
            "{path}"
        );
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            problem_type(&json),
            "urn:certgate:problem:not-found",
            "{path}"
        );
    }
    for (path, allow) in [
        ("/certgate/api/enroll", "POST"),
        ("/.well-known/est/simpleenroll", "POST"),
        ("/certgate/api/admin/users/taro/revoke", "POST"),
    ] {
        let (status, headers, _) = conn.get(path, &[]).await.unwrap();
        assert_eq!(status, 405, "{path}");
        assert_eq!(headers["allow"], allow, "{path}");
    }
    let (status, headers, _, _) = bank.post(None, "/.well-known/est/cacerts", &[], "").await;
    assert_eq!(status, 405);
    assert_eq!(headers["allow"], "GET, HEAD");

    // HEAD answers like GET, without a body.
    let response = conn
        .send(
            http::Request::head("/.well-known/est/cacerts")
                .header("host", "localhost")
                .body(empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .is_empty()
    );

    // The CRL of g1, DER.
    let (status, headers, crl) = conn.get("/certgate/crl/g1.crl", &[]).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "application/pkix-crl");
    assert_eq!(crl[0], 0x30, "DER SEQUENCE");

    // More than 64 KiB.
    let (status, _, json, _) = bank
        .post(
            None,
            "/certgate/api/enroll",
            &[("content-type", "application/json")],
            vec![b' '; 100 * 1024],
        )
        .await;
    assert_eq!(status, 413, "{json}");

    // JSON that is not the expected object names the field.
    let pin = bank.permit(CORP_A, Some("taro")).await;
    for (body, field) in [
        serde_json::json!({"corp_id": CORP_A, "user_id": "taro", "csr": csr().0}),
        serde_json::json!({"corp_id": CORP_A, "user_id": "taro", "pin": pin, "csr": csr().0, "subject": "CN=x"}),
        serde_json::json!({"corp_id": CORP_A, "user_id": 7, "pin": pin, "csr": csr().0}),
    ]
    .into_iter()
    .zip(["pin", "subject", "user_id"])
    {
        let (status, _, json, _) = bank
            .post(
                None,
                "/certgate/api/enroll",
                &[("content-type", "application/json")],
                body.to_string(),
            )
            .await;
        assert_eq!(status, 400, "{json}");
        assert_eq!(json["field"], field, "{json}");
        assert!(json["detail"].as_str().unwrap().contains(field), "{json}");
    }
    let (status, _, json, _) = bank
        .post(None, "/certgate/api/enroll", &[], "{\"corp_id\": ")
        .await;
    assert_eq!(status, 400, "{json}");
    assert_eq!(problem_type(&json), "urn:certgate:problem:invalid-request");

    // A malformed Basic header is a 401 with a challenge, and costs no PIN attempt.
    let (status, headers, json, _) = bank
        .post(
            None,
            "/.well-known/est/simpleenroll",
            &[
                ("authorization", "Basic %%%"),
                ("content-type", "application/pkcs10"),
            ],
            csr().0,
        )
        .await;
    assert_eq!(status, 401, "{json}");
    assert!(headers.contains_key("www-authenticate"));
    // A revocation reason that is not final is refused.
    let (status, _, json, _) = bank
        .post(
            Some(&bank.admin_a),
            "/certgate/api/admin/users/taro/revoke",
            &[("content-type", "application/json")],
            r#"{"reason":"certificateHold"}"#,
        )
        .await;
    assert_eq!(
        (status, json["field"].as_str()),
        (400, Some("reason")),
        "{json}"
    );
    assert_eq!(
        bank.permit_state(CORP_A, Some("taro")).await,
        (PermitState::Active, 0)
    );
}

/// Seed 004: a manager confirms a revocation with their own confirmation password; wrong tries
/// count and lock it; only the bank resets it; the manager then sets a new one, once.
#[tokio::test]
async fn revoking_needs_the_managers_confirmation_password_which_locks_and_the_bank_resets() {
    let bank = Bank::open("").await;
    let taro = enroll_taro(&bank).await;
    let revoke = |body: String| {
        let bank = &bank;
        async move {
            let (status, _, json, _) = bank
                .post(
                    Some(&bank.admin_a),
                    "/certgate/api/admin/users/taro/revoke",
                    &[("content-type", "application/json")],
                    body,
                )
                .await;
            (status, json)
        }
    };
    let (status, json) = revoke(r#"{"reason":"keyCompromise"}"#.to_owned()).await;
    assert_eq!(
        (status, problem_type(&json)),
        (403, "urn:certgate:problem:confirmation-required"),
        "{json}"
    );
    for left in (1..=4).rev() {
        let (status, json) =
            revoke(r#"{"reason":"keyCompromise","confirmation":"wrong-one"}"#.to_owned()).await;
        assert_eq!(status, 403, "{json}");
        assert!(
            json["detail"]
                .as_str()
                .unwrap()
                .contains(&format!("{left} tries left")),
            "{json}"
        );
    }
    let (status, json) =
        revoke(r#"{"reason":"keyCompromise","confirmation":"wrong-one"}"#.to_owned()).await;
    assert_eq!(
        (status, problem_type(&json)),
        (423, "urn:certgate:problem:confirmation-locked")
    );
    // Locked: even the right password is refused, and nothing was revoked.
    let (status, _) = revoke(with_confirmation(r#"{"reason":"keyCompromise"}"#)).await;
    assert_eq!(status, 423);
    assert_eq!(app_status(&bank, &taro).await, 200);

    // The bank resets it; the administrator sets a new one, once; it must be long enough.
    let config = bank.fixture.dir.path().join("certgate.toml");
    let out = certgate()
        .args([
            "user",
            "reset-confirmation",
            "--corp-id",
            CORP_A,
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
    let set = |password: &'static str| {
        let bank = &bank;
        async move {
            let (status, _, json, _) = bank
                .post(
                    Some(&bank.admin_a),
                    "/certgate/api/admin/confirmation",
                    &[("content-type", "application/json")],
                    serde_json::json!({ "password": password }).to_string(),
                )
                .await;
            (status, json)
        }
    };
    let (status, json) = set("short").await;
    assert_eq!(
        (status, json["field"].as_str()),
        (400, Some("confirmation")),
        "{json}"
    );
    assert_eq!(set("a-new-confirmation").await.0, 200);
    let (status, json) = set("another-one-again").await;
    assert_eq!(status, 409, "set once: {json}");
    let (status, json) =
        revoke(r#"{"reason":"keyCompromise","confirmation":"a-new-confirmation"}"#.to_owned())
            .await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(app_status(&bank, &taro).await, 403);
    // The bank resets only what exists.
    let out = certgate()
        .args([
            "user",
            "reset-confirmation",
            "--corp-id",
            CORP_B,
            "--user-id",
            "nobody",
            "--config",
        ])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
