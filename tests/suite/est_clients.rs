//! EST with clients nobody here wrote. strongSwan's `pki` (its own TLS stack, TLS 1.2 by
//! default, no ALPN) fetches the CA certificates, enrolls with HTTP Basic credentials and
//! re-enrolls over mTLS; it decodes base64 without skipping line breaks, so every EST answer is
//! one line of base64. libest's `estclient` wants title-case header names on HTTP/1.1, the exact
//! media type, a Content-Length, few headers and a body ending in one newline: checked on the
//! wire.

use std::path::Path;
use std::process::Command;

use crate::support::*;

/// Runs strongSwan's `pki` in `dir`; returns stdout, failing with its stderr.
fn pki(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("pki")
        .current_dir(dir)
        // Only the plugins pki needs, so that its stderr holds no "failed to load" noise.
        .env(
            "PKI_PLUGINS",
            "aes sha2 sha1 md5 mgf1 random x509 revocation pubkey pkcs1 pkcs7 pkcs12 pem openssl pkcs8 gmp hmac kdf drbg nonce",
        )
        .args(args)
        .output()
        .expect("strongSwan's pki runs (Debian strongswan-pki + libstrongswan-standard-plugins; scripts/test.sh installs them)");
    assert!(
        out.status.success(),
        "pki {args:?} exited with {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn subject_of(dir: &Path, file: &str) -> String {
    run_in(dir, "openssl", &["x509", "-in", file, "-noout", "-subject"])
}

#[tokio::test]
async fn strongswan_pki_gets_the_cas_enrolls_and_re_enrolls() {
    // The renewal window covers a whole year, so the fresh certificate can re-enroll at once.
    let bank = Bank::open("[lifecycle]\nrenew_window_days = 400\n").await;
    let dir = bank.fixture.dir.path();
    let url = format!("https://localhost:{}", bank.server.addr.port());

    pki(
        dir,
        &[
            "--estca",
            "--url",
            &url,
            "--cacert",
            "ca-g1.pem",
            "--caout",
            "est-ca.pem",
            "--outform",
            "pem",
            "--force",
        ],
    );
    let cas = std::fs::read_to_string(dir.join("est-ca.pem")).expect("pki wrote the root CA");
    assert!(cas.contains("BEGIN CERTIFICATE"), "{cas}");

    let pin = bank.permit(CORP_A, Some("taro")).await;
    let key = pki(
        dir,
        &[
            "--gen",
            "--type",
            "ecdsa",
            "--size",
            "256",
            "--outform",
            "pem",
        ],
    );
    std::fs::write(dir.join("key.pem"), &key).unwrap();
    let request = pki(
        dir,
        &[
            "--req",
            "--in",
            "key.pem",
            "--dn",
            "CN=anything",
            "--outform",
            "pem",
        ],
    );
    std::fs::write(dir.join("req.pem"), &request).unwrap();
    let cert = pki(
        dir,
        &[
            "--est",
            "--url",
            &url,
            "--cacert",
            "ca-g1.pem",
            "--in",
            "req.pem",
            "--userpass",
            &format!("{CORP_A}.taro:{pin}"),
            "--outform",
            "pem",
        ],
    );
    std::fs::write(dir.join("cert.pem"), &cert).unwrap();
    assert!(subject_of(dir, "cert.pem").contains(&format!("CN = {CORP_A} taro")));

    let key2 = pki(
        dir,
        &[
            "--gen",
            "--type",
            "ecdsa",
            "--size",
            "256",
            "--outform",
            "pem",
        ],
    );
    std::fs::write(dir.join("key2.pem"), &key2).unwrap();
    let request2 = pki(
        dir,
        &[
            "--req",
            "--in",
            "key2.pem",
            "--dn",
            "CN=anything",
            "--outform",
            "pem",
        ],
    );
    std::fs::write(dir.join("req2.pem"), &request2).unwrap();
    let renewed = pki(
        dir,
        &[
            "--est",
            "--url",
            &url,
            "--cacert",
            "ca-g1.pem",
            "--in",
            "req2.pem",
            "--cert",
            "cert.pem",
            "--key",
            "key.pem",
            "--outform",
            "pem",
        ],
    );
    std::fs::write(dir.join("cert2.pem"), &renewed).unwrap();
    assert!(subject_of(dir, "cert2.pem").contains(&format!("CN = {CORP_A} taro")));
    assert_ne!(renewed, cert, "a new certificate");
}

#[tokio::test]
async fn a_wrong_pin_fails_strongswan_pki() {
    let bank = Bank::open("").await;
    let dir = bank.fixture.dir.path();
    let url = format!("https://localhost:{}", bank.server.addr.port());
    bank.permit(CORP_A, Some("taro")).await;
    let key = pki(
        dir,
        &[
            "--gen",
            "--type",
            "ecdsa",
            "--size",
            "256",
            "--outform",
            "pem",
        ],
    );
    std::fs::write(dir.join("key.pem"), &key).unwrap();
    let request = pki(
        dir,
        &[
            "--req",
            "--in",
            "key.pem",
            "--dn",
            "CN=x",
            "--outform",
            "pem",
        ],
    );
    std::fs::write(dir.join("req.pem"), &request).unwrap();
    let out = Command::new("pki")
        .current_dir(dir)
        .args([
            "--est",
            "--url",
            &url,
            "--cacert",
            "ca-g1.pem",
            "--in",
            "req.pem",
            "--userpass",
        ])
        .arg(format!("{CORP_A}.taro:WRONG-PIN-12345"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));
}

#[tokio::test]
async fn est_answers_on_http1_are_what_libest_reads() {
    let bank = Bank::open("").await;
    let pin = bank.permit(CORP_A, Some("taro")).await;
    let (csr_pem, _) = csr();
    use base64::Engine as _;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{CORP_A}.taro:{pin}"));
    // A base64 body with line breaks, as libest sends it, and a PEM one: both accepted.
    let der_b64: String = csr_pem
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect::<Vec<_>>()
        .join("\n");
    for (name, body) in [("cacerts", None), ("simpleenroll", Some(der_b64))] {
        let request = match &body {
            None => format!(
                "GET /.well-known/est/{name} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
            ),
            Some(body) => format!(
                "POST /.well-known/est/{name} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Basic {basic}\r\nContent-Type: application/pkcs10\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            ),
        };
        let (status, head, body) = raw_h1(bank.server.addr, bank.client(None), &request).await;
        assert_eq!(status, 200, "{name}: {head}\n{body}");
        let lines: Vec<&str> = head.lines().skip(1).collect();
        assert!(lines.len() <= 16, "{name}: at most 16 headers: {head}");
        assert!(
            lines.contains(&"Content-Type: application/pkcs7-mime; smime-type=certs-only"),
            "{name}: title-case name, exact media type: {head}"
        );
        let length = lines
            .iter()
            .find_map(|line| line.strip_prefix("Content-Length: "))
            .unwrap_or_else(|| panic!("{name}: a Content-Length: {head}"));
        assert_eq!(length.parse::<usize>().unwrap(), body.len());
        assert!(
            body.ends_with('\n') && body.matches('\n').count() == 1,
            "{name}: one line: {body:?}"
        );
        base64::engine::general_purpose::STANDARD
            .decode(body.trim_end())
            .unwrap_or_else(|err| panic!("{name}: base64: {err}"));
    }
}
