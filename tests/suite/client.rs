//! `certgate client enroll|renew [--daemon]` against a real `certgate serve`: the key stays on
//! the user's machine, an interrupted enrollment is retried with the same key, renewal happens
//! only inside its window and replaces both files.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

const CORP: &str = "99999999999990";

fn client(args: &[&str], pin: Option<&str>) -> Output {
    let mut command = certgate();
    command.arg("client").args(args).stdin(Stdio::null());
    match pin {
        Some(pin) => command.env("CERTGATE_PIN", pin),
        None => command.env_remove("CERTGATE_PIN"),
    };
    command.output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Asserts a one-line refusal with `code` that mentions `needle`.
fn refused(out: &Output, code: i32, needle: &str) {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{stderr}");
    assert!(stderr.contains(needle), "expected {needle:?} in {stderr:?}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
}

struct Setup {
    fixture: Fixture,
    config: PathBuf,
}

impl Setup {
    fn new() -> Self {
        let fixture = Fixture::new();
        let config = fixture.write(
            "certgate.toml",
            &fixture.config("client_auth = \"optional\"", ""),
        );
        let setup = Self { fixture, config };
        setup.operator(&["init"]);
        setup.operator(&[
            "corp",
            "add",
            "--corp-id",
            CORP,
            "--name",
            "Client Co",
            "--admin-email",
            "a@client.example",
        ]);
        setup.operator(&[
            "user",
            "add",
            "--corp-id",
            CORP,
            "--user-id",
            "taro",
            "--role",
            "general",
        ]);
        setup
    }

    fn operator(&self, args: &[&str]) -> String {
        let out = certgate()
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        text(&out.stdout)
    }

    fn permit(&self, user: Option<&str>) -> String {
        let mut args = vec!["permit", "issue", "--corp-id", CORP];
        args.extend(user.map(|user| ["--user-id", user]).iter().flatten());
        self.operator(&args).trim().to_owned()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.fixture.dir.path().join(name)
    }

    fn ca(&self) -> &str {
        self.fixture.ca_path.to_str().unwrap()
    }
}

fn enroll_args<'a>(
    url: &'a str,
    user: Option<&'a str>,
    out: &'a Path,
    ca: &'a str,
) -> Vec<&'a str> {
    let mut args = vec![
        "enroll",
        "--server",
        url,
        "--corp-id",
        CORP,
        "--out",
        out.to_str().unwrap(),
        "--ca",
        ca,
    ];
    if let Some(user) = user {
        args.extend(["--user-id", user]);
    }
    args
}

fn renew_args<'a>(url: &'a str, dir: &'a Path, ca: &'a str) -> Vec<String> {
    [
        "renew",
        "--server",
        url,
        "--cert",
        dir.join("cert.pem").to_str().unwrap(),
        "--key",
        dir.join("key.pem").to_str().unwrap(),
        "--ca",
        ca,
    ]
    .map(str::to_owned)
    .to_vec()
}

fn leaf_in(dir: &Path) -> Leaf {
    Leaf {
        cert_pem: std::fs::read_to_string(dir.join("cert.pem")).unwrap(),
        key_pem: std::fs::read_to_string(dir.join("key.pem")).unwrap(),
        der: vec![],
        serial: vec![],
    }
}

/// The serial certgate forwards for a request made with the files in `dir`.
async fn serial_seen(server: &Server, fixture: &Fixture, dir: &Path) -> String {
    let (status, _, body) = get_once(
        server.addr,
        client_config(&fixture.ca, Some(&leaf_in(dir)), &[]),
        "/app",
        &[],
    )
    .await
    .unwrap();
    assert_eq!(status, 200);
    echoed(&body)["headers"]["x-client-cert-serial"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn bad_arguments_are_refused_before_anything_is_written() {
    let setup = Setup::new();
    let out_dir = setup.path("nowhere");
    let ca = setup.ca();
    let out = client(
        &enroll_args("http://localhost:1", None, &out_dir, ca),
        Some("x"),
    );
    refused(&out, 2, "https://");
    let missing_ca = setup.path("missing.pem");
    let out = client(
        &enroll_args(
            "https://localhost:1",
            None,
            &out_dir,
            missing_ca.to_str().unwrap(),
        ),
        Some("x"),
    );
    refused(&out, 2, "--ca");
    // No PIN and no terminal to ask on.
    let out = client(
        &enroll_args("https://localhost:1", None, &out_dir, ca),
        None,
    );
    refused(&out, 2, "CERTGATE_PIN");
    assert!(!out_dir.exists(), "nothing written");
    // clap: a missing flag.
    let out = client(&["enroll", "--server", "https://localhost:1"], Some("x"));
    assert_eq!(out.status.code(), Some(2));
    // renew without files, and a daemon with a bad interval.
    let mut args = renew_args("https://localhost:1", &out_dir, ca);
    let out = client(&args.iter().map(String::as_str).collect::<Vec<_>>(), None);
    refused(&out, 2, "--cert");
    args.extend(["--daemon", "--interval", "soon"].map(str::to_owned));
    let out = client(&args.iter().map(String::as_str).collect::<Vec<_>>(), None);
    refused(&out, 2, "--interval");
    // A daemon whose files are missing stops at once instead of retrying forever.
    args.truncate(args.len() - 2);
    let out = client(&args.iter().map(String::as_str).collect::<Vec<_>>(), None);
    refused(&out, 2, "--cert");
}

#[tokio::test]
async fn enroll_retry_and_renew_only_inside_the_window() {
    let setup = Setup::new();
    let server = setup.fixture.start("client_auth = \"optional\"", "");
    let url = format!("https://localhost:{}", server.addr.port());
    let ca = setup.ca();

    // The administrator: a wrong PIN is refused and writes no certificate, but the key made for
    // it is kept and used again by the next attempt.
    let admin_dir = setup.path("admin");
    let admin_pin = setup.permit(None);
    let out = client(
        &enroll_args(&url, None, &admin_dir, ca),
        Some("wrong-pin-123"),
    );
    refused(&out, 1, "wrong corporation ID, user ID or PIN");
    assert!(!text(&out.stderr).contains("wrong-pin-123"));
    assert!(!admin_dir.join("cert.pem").exists() && !admin_dir.join("key.pem").exists());
    let pending = std::fs::read_to_string(admin_dir.join("key.pem.pending")).unwrap();
    let out = client(&enroll_args(&url, None, &admin_dir, ca), Some(&admin_pin));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("earlier, unfinished enrollment"));
    let stdout = text(&out.stdout);
    assert!(stdout.contains(&format!("CN={CORP}")), "{stdout}");
    assert_eq!(
        std::fs::read_to_string(admin_dir.join("key.pem")).unwrap(),
        pending
    );
    assert!(!admin_dir.join("key.pem.pending").exists());

    // A user; the key is private to its owner.
    let taro_dir = setup.path("taro");
    let pin = setup.permit(Some("taro"));
    let out = client(&enroll_args(&url, Some("taro"), &taro_dir, ca), Some(&pin));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let key = taro_dir.join("key.pem");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let first_serial = serial_seen(&server, &setup.fixture, &taro_dir).await;
    assert!(
        text(&out.stdout).contains(&first_serial),
        "{}",
        text(&out.stdout)
    );

    // An enrollment interrupted after the server answered (the files never written): the key
    // kept in key.pem.pending gets the same certificate again with the same PIN.
    let issued = std::fs::read_to_string(taro_dir.join("cert.pem")).unwrap();
    std::fs::copy(&key, taro_dir.join("key.pem.pending")).unwrap();
    std::fs::remove_file(taro_dir.join("cert.pem")).unwrap();
    let out = client(&enroll_args(&url, Some("taro"), &taro_dir, ca), Some(&pin));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        std::fs::read_to_string(taro_dir.join("cert.pem")).unwrap(),
        issued
    );

    // A year left, window 30 days: nothing to do, nothing changed.
    let renew = renew_args(&url, &taro_dir, ca);
    let renew: Vec<&str> = renew.iter().map(String::as_str).collect();
    let out = client(&renew, None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("renewal window opens"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(
        std::fs::read_to_string(taro_dir.join("cert.pem")).unwrap(),
        issued
    );

    // With a window wider than the validity, renewal happens and replaces both files.
    drop(server);
    let server = setup.fixture.start(
        "client_auth = \"optional\"",
        "[lifecycle]\nrenew_window_days = 400",
    );
    let url = format!("https://localhost:{}", server.addr.port());
    let renew = renew_args(&url, &taro_dir, ca);
    let renew: Vec<&str> = renew.iter().map(String::as_str).collect();
    let before = leaf_in(&taro_dir);
    let out = client(&renew, None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("renewed"));
    let after = leaf_in(&taro_dir);
    assert_ne!(after.key_pem, before.key_pem);
    let second_serial = serial_seen(&server, &setup.fixture, &taro_dir).await;
    assert_ne!(second_serial, first_serial);
    assert!(
        !std::fs::read_dir(&taro_dir).unwrap().any(|entry| entry
            .unwrap()
            .file_name()
            .to_string_lossy()
            .contains(".new")),
        "no staging files left"
    );

    // The daemon checks at once (and then every hour here), replacing the files in place.
    let log = setup.path("daemon.log");
    let mut daemon = certgate()
        .arg("client")
        .args(&renew)
        .args(["--daemon", "--interval", "1h"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&log)
        .unwrap()
        .contains("the new certificate and key are in place")
    {
        assert!(daemon.try_wait().unwrap().is_none(), "the daemon stopped");
        assert!(
            Instant::now() < deadline,
            "{}",
            std::fs::read_to_string(&log).unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    daemon.kill().unwrap();
    daemon.wait().unwrap();
    let third_serial = serial_seen(&server, &setup.fixture, &taro_dir).await;
    assert!(third_serial != second_serial && third_serial != first_serial);

    // An unreachable server: one clear line for a single run, and the daemon keeps trying.
    let closed = format!("https://localhost:{}", closed_port().port());
    let unreachable = renew_args(&closed, &taro_dir, ca);
    let unreachable: Vec<&str> = unreachable.iter().map(String::as_str).collect();
    refused(&client(&unreachable, None), 1, "cannot reach");
    let mut daemon = certgate()
        .arg("client")
        .args(&unreachable)
        .args(["--daemon", "--interval", "200ms"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::read_to_string(&log)
        .unwrap()
        .matches("renewal check failed")
        .count()
        < 3
    {
        assert!(
            Instant::now() < deadline,
            "{}",
            std::fs::read_to_string(&log).unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        daemon.try_wait().unwrap().is_none(),
        "a transient error must not stop the daemon"
    );
    daemon.kill().unwrap();
    daemon.wait().unwrap();
}
