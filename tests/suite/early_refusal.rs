//! A refusal sent while the client is still sending its body must still reach the client. Over
//! h2 an answer before the body's end is followed by RST_STREAM, and curl 7.88 then dropped the
//! response (exit 92) in most runs; over HTTP/1.1 an EST body over the limit got a reset. Now a
//! small body is read to its end first, and an oversized one is answered 413 while the rest is
//! drained. Each case runs curl 20 times: exit 0 and the status every time.

use std::path::Path;

use crate::support::*;

fn curl(dir: &Path, port: u16, h2: bool, path: &str, body: &str, extra: &[&str]) -> (i32, String) {
    let mut command = std::process::Command::new("curl");
    command
        .current_dir(dir)
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--cacert",
            "ca-g1.pem",
        ])
        .arg(if h2 { "--http2" } else { "--http1.1" })
        .args(["-X", "POST", "--data-binary", &format!("@{body}")])
        .args(extra)
        .arg(format!("https://localhost:{port}{path}"));
    let out = command
        .output()
        .expect("curl runs (scripts/test.sh installs it)");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test]
async fn early_refusals_reach_curl_intact_over_h1_and_h2() {
    let fixture = Fixture::new();
    // Many enrollment attempts from one address, on purpose: no per-address limit here.
    let server = fixture.start(
        "client_auth = \"optional\"",
        "[lifecycle]\nenroll_attempts_per_minute = 10000\n",
    );
    let dir = fixture.dir.path();
    std::fs::write(dir.join("small.bin"), vec![b'x'; 10 * 1024]).unwrap();
    std::fs::write(dir.join("large.bin"), vec![b'x'; 200 * 1024]).unwrap();
    let port = server.addr.port();
    for (path, body, extra, expected) in [
        // The proxy: a route that needs a certificate, none presented.
        ("/app", "small.bin", &[][..], "401"),
        // EST without credentials: the CSR body is on its way.
        (
            "/.well-known/est/simpleenroll",
            "small.bin",
            &["-H", "Content-Type: application/pkcs10"][..],
            "401",
        ),
        // Over the API's limit.
        (
            "/certgate/api/enroll",
            "large.bin",
            &["-H", "Content-Type: application/json"][..],
            "413",
        ),
        (
            "/.well-known/est/simpleenroll",
            "large.bin",
            &["-H", "Content-Type: application/pkcs10"][..],
            "413",
        ),
    ] {
        for h2 in [false, true] {
            for run in 0..20 {
                let (code, status) = curl(dir, port, h2, path, body, extra);
                assert_eq!(
                    (code, status.as_str()),
                    (0, expected),
                    "{path} with {body} (h2: {h2}), run {run}"
                );
            }
        }
    }
}
