//! The whole story of DOMAIN.md against the real server, the real CLI and a real SQLite file:
//! corporation → administrator enrolls over EST (openssl + curl) → user enrolls by PKCS#12 →
//! both reach the application with their roles → renewal outside and inside its window →
//! revocation cuts an open keep-alive connection → CRL → re-issue → enroll again.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::*;

const CORP: &str = "44444444444444";

struct Story {
    fixture: Fixture,
    config: PathBuf,
}

impl Story {
    fn new(lifecycle: &str) -> Self {
        let fixture = Fixture::new();
        let config = fixture.write(
            "certgate.toml",
            &fixture.config("client_auth = \"optional\"", lifecycle),
        );
        Self { fixture, config }
    }

    /// Replaces the config's extra tables (the server re-reads it on restart).
    fn rewrite(&self, lifecycle: &str) {
        std::fs::write(
            &self.config,
            self.fixture.config("client_auth = \"optional\"", lifecycle),
        )
        .unwrap();
    }

    /// Runs `certgate ARGS --config F`; returns stdout, asserting success.
    fn cli(&self, args: &[&str]) -> String {
        let out = certgate()
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "certgate {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.fixture.dir.path().join(name)
    }

    /// The CA generations' certificates, for clients to trust the server: the server certificate
    /// comes from the fixture CA.
    fn curl(&self, server: &Server, extra: &[&str], url_path: &str) -> std::process::Output {
        Command::new("curl")
            .args(["--silent", "--show-error", "--max-time", "20", "--cacert"])
            .arg(&self.fixture.ca_path)
            .args([
                "--resolve",
                &format!("localhost:{}:127.0.0.1", server.addr.port()),
            ])
            .args(extra)
            .arg(format!(
                "https://localhost:{}{url_path}",
                server.addr.port()
            ))
            .output()
            .unwrap()
    }
}

fn openssl(args: &[&str], dir: &Path) -> String {
    run_in(dir, "openssl", args)
}

fn leaf_of(cert_pem: &str, key_pem: &str) -> Leaf {
    use rustls_pki_types::pem::PemObject as _;
    let der = rustls_pki_types::CertificateDer::from_pem_slice(cert_pem.as_bytes())
        .unwrap()
        .to_vec();
    Leaf {
        cert_pem: cert_pem.to_owned(),
        key_pem: key_pem.to_owned(),
        der,
        serial: vec![],
    }
}

#[tokio::test]
async fn the_whole_story() {
    // Certificates live 365 days; renewal opens 30 days before expiry.
    let story = Story::new("[lifecycle]\nrenew_window_days = 30");
    let dir = story.fixture.dir.path().to_owned();
    story.cli(&["init"]);
    story.cli(&[
        "corp",
        "add",
        "--corp-id",
        CORP,
        "--name",
        "Example Trading",
        "--admin-email",
        "admin@example.jp",
    ]);
    let admin_pin = story
        .cli(&["permit", "issue", "--corp-id", CORP])
        .trim()
        .to_owned();
    assert!(admin_pin.len() >= 12, "{admin_pin:?}");
    let server = Server::start(&story.config);

    // The administrator enrolls over EST with an openssl-made CSR and the real curl.
    openssl(
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "admin.key",
            "-subj",
            "/CN=whatever",
            "-outform",
            "DER",
            "-out",
            "admin.csr.der",
        ],
        &dir,
    );
    openssl(
        &["base64", "-in", "admin.csr.der", "-out", "admin.csr.b64"],
        &dir,
    );
    let out = story.curl(
        &server,
        &[
            "--data-binary",
            &format!("@{}", story.path("admin.csr.b64").display()),
            "-H",
            "Content-Type: application/pkcs10",
            "--user",
            &format!("{CORP}:{admin_pin}"),
        ],
        "/.well-known/est/simpleenroll",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(story.path("admin.p7.b64"), &out.stdout).unwrap();
    openssl(
        &[
            "base64",
            "-d",
            "-A",
            "-in",
            "admin.p7.b64",
            "-out",
            "admin.p7",
        ],
        &dir,
    );
    let admin_pem = openssl(
        &["pkcs7", "-inform", "DER", "-in", "admin.p7", "-print_certs"],
        &dir,
    );
    // The certificate carries the permit's identity, not the CSR's subject.
    assert!(
        admin_pem.contains(&format!("CN = {CORP}\n"))
            && admin_pem.contains("OU = Internet Banking CA"),
        "{admin_pem}"
    );
    assert!(!admin_pem.contains("whatever"));
    let admin = leaf_of(
        &admin_pem,
        &std::fs::read_to_string(story.path("admin.key")).unwrap(),
    );

    // The user enrolls by PKCS#12, opened by openssl with the chosen password.
    story.cli(&[
        "user",
        "add",
        "--corp-id",
        CORP,
        "--user-id",
        "taro",
        "--role",
        "general",
    ]);
    let user_pin = story
        .cli(&["permit", "issue", "--corp-id", CORP, "--user-id", "taro"])
        .trim()
        .to_owned();
    let body = serde_json::json!({"corp_id": CORP, "user_id": "taro", "pin": user_pin, "p12_password": "correct horse"});
    let out = story.curl(
        &server,
        &[
            "-H",
            "Content-Type: application/json",
            "--data",
            &body.to_string(),
            "--output",
            story.path("certificate.p12").to_str().unwrap(),
            "--write-out",
            "%{http_code}",
        ],
        "/certgate/api/enroll.p12",
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200");
    let opened = openssl(
        &[
            "pkcs12",
            "-in",
            "certificate.p12",
            "-passin",
            "pass:correct horse",
            "-nodes",
        ],
        &dir,
    );
    assert!(
        opened.contains("PRIVATE KEY") && opened.matches("BEGIN CERTIFICATE").count() >= 2,
        "{opened}"
    );
    let user_cert = openssl(
        &[
            "pkcs12",
            "-in",
            "certificate.p12",
            "-passin",
            "pass:correct horse",
            "-nokeys",
            "-clcerts",
        ],
        &dir,
    );
    let user_key = openssl(
        &[
            "pkcs12",
            "-in",
            "certificate.p12",
            "-passin",
            "pass:correct horse",
            "-nocerts",
            "-nodes",
        ],
        &dir,
    );
    let taro = leaf_of(&user_cert, &user_key);

    // Both reach the application with the right headers and roles.
    for (leaf, user, role) in [(&admin, None, "admin"), (&taro, Some("taro"), "general")] {
        let (status, _, body) = get_once(
            server.addr,
            client_config(&story.fixture.ca, Some(leaf), &[]),
            "/app",
            &[],
        )
        .await
        .unwrap();
        assert_eq!(status, 200);
        let headers = &echoed(&body)["headers"];
        assert_eq!(headers["x-client-corp-id"], CORP);
        assert_eq!(headers["x-client-role"], role);
        assert_eq!(
            headers.get("x-client-user-id").and_then(|v| v.as_str()),
            user
        );
    }

    // Renewal is refused outside the window (a year left, window 30 days)…
    let taro_client = client_config(&story.fixture.ca, Some(&taro), &[b"http/1.1"]);
    let mut conn = Conn::open(server.addr, taro_client.clone()).await.unwrap();
    let response = renew(&mut conn).await.unwrap();
    assert_eq!(response.status(), 403);
    let problem: serde_json::Value = serde_json::from_slice(
        &http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes(),
    )
    .unwrap();
    assert!(problem["opens_at"].is_string(), "{problem}");
    drop(conn);

    // …and accepted inside it (a restart with a wider window).
    drop(server);
    story.rewrite("[lifecycle]\nrenew_window_days = 400");
    let server = Server::start(&story.config);
    let mut conn = Conn::open(server.addr, taro_client.clone()).await.unwrap();
    let response = renew(&mut conn).await.unwrap();
    assert_eq!(response.status(), 200);
    let renewed: serde_json::Value = serde_json::from_slice(
        &http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes(),
    )
    .unwrap();
    assert!(
        renewed["certificate"]
            .as_str()
            .unwrap()
            .contains("BEGIN CERTIFICATE")
    );

    // After renewal the old certificate is logged off: on its open connection, the application
    // answers no more; a page says to reconnect with the new certificate.
    let (status, _, body) = conn.get("/app", &[]).await.unwrap();
    assert_eq!(status, 403);
    assert!(String::from_utf8_lossy(&body).contains("certificate-renewed"));

    // The administrator revokes the user; the next request on the open connection is refused.
    assert_eq!(conn.get("/certgate/api/me", &[]).await.unwrap().0, 200);
    let mut admin_conn = Conn::open(
        server.addr,
        client_config(&story.fixture.ca, Some(&admin), &[b"http/1.1"]),
    )
    .await
    .unwrap();
    // Revoking is confirmed with the administrator's confirmation password, set on first use.
    for (path, body) in [
        (
            "/certgate/api/admin/confirmation",
            &br#"{"password": "story-confirmation"}"#[..],
        ),
        (
            "/certgate/api/admin/users/taro/revoke",
            &br#"{"reason": "keyCompromise", "confirmation": "story-confirmation"}"#[..],
        ),
    ] {
        let request = http::Request::post(path)
            .header("host", "localhost")
            .header("content-type", "application/json")
            .body(http_body_util::BodyExt::boxed(http_body_util::Full::new(
                bytes::Bytes::from_static(body),
            )))
            .unwrap();
        assert_eq!(
            admin_conn.send(request).await.unwrap().status(),
            200,
            "{path}"
        );
    }
    let (status, _, body) = conn.get("/app", &[]).await.unwrap();
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("certificate-revoked"));

    // The CRL lists the serial; it is re-signed in the background, so wait for it.
    std::fs::write(story.path("taro.pem"), &taro.cert_pem).unwrap();
    let serial = openssl(&["x509", "-noout", "-serial", "-in", "taro.pem"], &dir);
    let serial = serial.trim().trim_start_matches("serial=").to_uppercase();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let crl = loop {
        let out = story.curl(
            &server,
            &["--output", story.path("g1.crl").to_str().unwrap()],
            "/certgate/crl/g1.crl",
        );
        assert!(out.status.success());
        let crl = openssl(
            &["crl", "-inform", "DER", "-in", "g1.crl", "-noout", "-text"],
            &dir,
        );
        if crl.to_uppercase().replace(':', "").contains(&serial) {
            break crl;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{serial} not in {crl}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert!(crl.contains("Key Compromise"), "{crl}");

    // Re-issue, then enroll again with the new PIN.
    let (status, _, body) = admin_conn
        .get("/certgate/api/admin/users", &[])
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&body).contains("revoked"));
    let request = http::Request::post("/certgate/api/admin/users/taro/reissue")
        .header("host", "localhost")
        .body(http_body_util::BodyExt::boxed(http_body_util::Full::new(
            bytes::Bytes::new(),
        )))
        .unwrap();
    let response = admin_conn.send(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let reissued: serde_json::Value = serde_json::from_slice(
        &http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes(),
    )
    .unwrap();
    let new_pin = reissued["pin"].as_str().unwrap();
    let body = serde_json::json!({"corp_id": CORP, "user_id": "taro", "pin": new_pin, "p12_password": "another password"});
    let out = story.curl(
        &server,
        &[
            "-H",
            "Content-Type: application/json",
            "--data",
            &body.to_string(),
            "--output",
            "/dev/null",
            "--write-out",
            "%{http_code}",
        ],
        "/certgate/api/enroll.p12",
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200");
}

async fn renew(conn: &mut Conn) -> Result<http::Response<hyper::body::Incoming>, hyper::Error> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let csr = rcgen::CertificateParams::new(Vec::<String>::new())
        .unwrap()
        .serialize_request(&key)
        .unwrap()
        .pem()
        .unwrap();
    let request = http::Request::post("/certgate/api/renew")
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(http_body_util::BodyExt::boxed(http_body_util::Full::new(
            bytes::Bytes::from(serde_json::json!({"csr": csr}).to_string()),
        )))
        .unwrap();
    conn.send(request).await
}
