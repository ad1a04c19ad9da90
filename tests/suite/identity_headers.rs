//! What reaches the application: exactly the documented identity headers, computed by certgate,
//! and never a copy a client sent.

use crate::support::*;

const DOCUMENTED: [&str; 10] = [
    "x-client-verify",
    "x-client-corp-id",
    "x-client-user-id",
    "x-client-role",
    "x-client-cert-serial",
    "x-client-cert-not-after",
    "x-client-cert-days-left",
    "x-client-cert-sha256",
    "x-client-subject-dn",
    "x-client-issuer-dn",
];

const SPOOFED: [(&str, &str); 7] = [
    ("X-Client-Verify", "SUCCESS"),
    ("X-Client-Corp-Id", "99999999999999"),
    ("X-Client-Role", "master"),
    ("X-Client-Whatever", "evil"),
    ("Client-Cert", ":ZXZpbA==:"),
    ("Client-Cert-Chain", ":ZXZpbA==:"),
    ("X-Forwarded-Client-Cert", "Hash=evil"),
];

fn identity_headers(echo: &serde_json::Value) -> Vec<String> {
    let mut names: Vec<String> = echo["headers"]
        .as_object()
        .unwrap()
        .keys()
        .filter(|name| {
            name.starts_with("x-client-")
                || name.starts_with("client-cert")
                || *name == "x-forwarded-client-cert"
        })
        .cloned()
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn user_certificate_gives_exactly_the_documented_headers() {
    let fixture = Fixture::new();
    let server = fixture.start("", "");
    let leaf = fixture.ca.client("12345678901234 taro");
    let config = client_config(&fixture.ca, Some(&leaf), &[b"http/1.1"]);
    let (status, _, body) = get_once(server.addr, config, "/accounts?x=1", &[])
        .await
        .unwrap();
    assert_eq!(status, 200);
    let echo = echoed(&body);
    let mut expected: Vec<String> = DOCUMENTED.iter().map(|s| s.to_string()).collect();
    expected.sort();
    assert_eq!(identity_headers(&echo), expected);
    let headers = &echo["headers"];
    assert_eq!(headers["x-client-verify"], "SUCCESS");
    assert_eq!(headers["x-client-corp-id"], "12345678901234");
    assert_eq!(headers["x-client-user-id"], "taro");
    assert_eq!(headers["x-client-role"], "general");
    assert_eq!(headers["x-client-cert-serial"], hex(&leaf.serial));
    assert_eq!(headers["x-client-cert-sha256"], sha256_hex(&leaf.der));
    assert_eq!(headers["x-client-cert-days-left"], "30");
    let not_after = headers["x-client-cert-not-after"].as_str().unwrap();
    assert!(
        not_after.ends_with('Z') && not_after.len() == 20,
        "{not_after}"
    );
    // OpenSSL's RFC 2253 rendering is the reference.
    assert_eq!(
        headers["x-client-subject-dn"],
        openssl_dn(&leaf.cert_pem, "-subject").as_str()
    );
    assert_eq!(
        headers["x-client-issuer-dn"],
        openssl_dn(&leaf.cert_pem, "-issuer").as_str()
    );
    assert_eq!(echo["path"], "/accounts?x=1");
    assert_eq!(headers["x-forwarded-proto"], "https");
    assert_eq!(headers["x-forwarded-for"], "127.0.0.1");
}

#[tokio::test]
async fn administrator_certificate_has_role_admin_and_no_user_id() {
    let fixture = Fixture::new();
    let server = fixture.start("", "");
    let leaf = fixture.ca.client("12345678901234");
    let (status, _, body) = get_once(
        server.addr,
        client_config(&fixture.ca, Some(&leaf), &[]),
        "/",
        &[],
    )
    .await
    .unwrap();
    assert_eq!(status, 200);
    let headers = &echoed(&body)["headers"];
    assert_eq!(headers["x-client-role"], "admin");
    assert_eq!(headers["x-client-corp-id"], "12345678901234");
    assert!(headers.get("x-client-user-id").is_none());
}

#[tokio::test]
async fn spoofed_identity_headers_never_reach_the_application() {
    let fixture = Fixture::new();
    let server = fixture.start(
        "client_auth = \"optional\"",
        "[[route]]\npath = \"/public\"\nrequire_cert = false\n[[route]]\npath = \"/\"\nrequire_cert = true",
    );
    let leaf = fixture.ca.client("12345678901234 taro");
    let with_cert = client_config(&fixture.ca, Some(&leaf), &[]);
    let without_cert = client_config(&fixture.ca, None, &[]);
    let mut spoof: Vec<(&str, &str)> = SPOOFED.to_vec();
    spoof.push(("X-Forwarded-For", "6.6.6.6"));
    spoof.push(("X-Forwarded-Proto", "http"));

    // With a certificate, on a route that requires one and on one that does not.
    for path in ["/private", "/public/page"] {
        let (status, _, body) = get_once(server.addr, with_cert.clone(), path, &spoof)
            .await
            .unwrap();
        assert_eq!(status, 200, "{path}");
        let echo = echoed(&body);
        let headers = &echo["headers"];
        assert_eq!(headers["x-client-corp-id"], "12345678901234", "{path}");
        assert_eq!(headers["x-client-role"], "general", "{path}");
        assert!(headers.get("x-client-whatever").is_none(), "{path}");
        assert!(
            headers.get("client-cert").is_none() && headers.get("client-cert-chain").is_none(),
            "{path}"
        );
        assert!(headers.get("x-forwarded-client-cert").is_none(), "{path}");
        assert_eq!(headers["x-forwarded-for"], "127.0.0.1");
        assert_eq!(headers["x-forwarded-proto"], "https");
    }

    // Without a certificate on the open route: only "NONE" and nothing else of ours.
    let (status, _, body) = get_once(server.addr, without_cert.clone(), "/public", &spoof)
        .await
        .unwrap();
    assert_eq!(status, 200);
    let echo = echoed(&body);
    assert_eq!(identity_headers(&echo), ["x-client-verify"]);
    assert_eq!(echo["headers"]["x-client-verify"], "NONE");

    // Without a certificate on the protected route: refused before anything is forwarded.
    let (status, headers, body) = get_once(server.addr, without_cert, "/private", &spoof)
        .await
        .unwrap();
    assert_eq!(status, 401);
    assert_eq!(headers["content-type"], "application/problem+json");
    assert!(String::from_utf8_lossy(&body).contains("certificate-required"));
    server.wait_for_log("removed inbound identity headers");
}

#[tokio::test]
async fn missing_certificate_page_follows_accept() {
    let fixture = Fixture::new();
    let server = fixture.start("client_auth = \"optional\"", "");
    let config = client_config(&fixture.ca, None, &[]);
    let (status, headers, body) =
        get_once(server.addr, config.clone(), "/", &[("accept", "text/html")])
            .await
            .unwrap();
    assert_eq!(status, 401);
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    assert!(String::from_utf8_lossy(&body).contains("<h1>Client certificate required</h1>"));
    let (status, headers, body) =
        get_once(server.addr, config, "/", &[("accept", "application/json")])
            .await
            .unwrap();
    assert_eq!(status, 401);
    assert_eq!(headers["content-type"], "application/problem+json");
    let problem: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(problem["status"], 401);
    assert_eq!(problem["type"], "urn:certgate:problem:certificate-required");
}

#[tokio::test]
async fn header_names_are_configurable_and_optional_formats_switch_on() {
    let fixture = Fixture::new();
    let server = fixture.start(
        "",
        "[headers]\ncorp_id = \"X-Bank-Corp\"\nstrip_prefix = \"X-Bank-\"\nrfc9440 = true\nxfcc = true",
    );
    let leaf = fixture.ca.client("12345678901234 taro");
    let config = client_config(&fixture.ca, Some(&leaf), &[]);
    let (_, _, body) = get_once(server.addr, config, "/", &[("X-Bank-Other", "evil")])
        .await
        .unwrap();
    let headers = &echoed(&body)["headers"];
    assert_eq!(headers["x-bank-corp"], "12345678901234");
    assert!(headers.get("x-client-corp-id").is_none());
    assert!(headers.get("x-bank-other").is_none());
    use base64::Engine as _;
    let expected = format!(
        ":{}:",
        base64::engine::general_purpose::STANDARD.encode(&leaf.der)
    );
    assert_eq!(headers["client-cert"], expected.as_str());
    let xfcc = headers["x-forwarded-client-cert"].as_str().unwrap();
    let subject = openssl_dn(&leaf.cert_pem, "-subject");
    assert_eq!(
        xfcc,
        format!("Hash={};Subject=\"{subject}\"", sha256_hex(&leaf.der))
    );
}

#[tokio::test]
async fn with_switches_off_no_certificate_body_is_sent() {
    let fixture = Fixture::new();
    let server = fixture.start("", "");
    let leaf = fixture.ca.client("12345678901234 taro");
    let (_, _, body) = get_once(
        server.addr,
        client_config(&fixture.ca, Some(&leaf), &[]),
        "/",
        &[],
    )
    .await
    .unwrap();
    let headers = &echoed(&body)["headers"];
    assert!(headers.get("client-cert").is_none());
    assert!(headers.get("x-forwarded-client-cert").is_none());
    // Nor does the log carry a certificate body.
    assert!(!server.logs().contains("BEGIN CERTIFICATE"));
}

fn openssl_dn(cert_pem: &str, which: &str) -> String {
    let text = openssl_x509(cert_pem, &[which, "-nameopt", "RFC2253"]);
    text.trim().split_once('=').unwrap().1.to_owned()
}
