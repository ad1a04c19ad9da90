//! `certgate-load` end to end, against the tests' own mTLS server (`support`): every mode runs
//! and reports what it did, a client certificate the server refuses (one from another CA) shows
//! up as errors and exit 1, and bad command-line input is refused with exit 2 and a message
//! naming what is wrong.

#![allow(
    clippy::unwrap_used,
    reason = "a test that cannot go on should fail loudly, at the line that could not"
)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::{Ca, Leaf, MtlsServer};

struct Target {
    // Held for the server's lifetime and its files.
    _server: MtlsServer,
    dir: tempfile::TempDir,
    addr: String,
    cert: PathBuf,
    key: PathBuf,
    ca: PathBuf,
}

impl Target {
    fn start() -> Self {
        let ca = Ca::new("load");
        let server = MtlsServer::start(&ca);
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = write_leaf(dir.path(), "load-client", &ca.client("load client"));
        let ca_path = dir.path().join("ca.pem");
        std::fs::write(&ca_path, &ca.cert_pem).unwrap();
        Self {
            addr: server.addr.to_string(),
            _server: server,
            dir,
            cert,
            key,
            ca: ca_path,
        }
    }

    fn load(&self, args: &[&str]) -> Output {
        self.load_as(&self.cert, &self.key, args)
    }

    fn load_as(&self, cert: &Path, key: &Path, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_certgate-load"))
            .args(["--target", &self.addr, "--sni", "localhost"])
            .arg("--cert")
            .arg(cert)
            .arg("--key")
            .arg(key)
            .arg("--ca")
            .arg(&self.ca)
            .args(args)
            .output()
            .unwrap()
    }
}

/// Writes `leaf` as `<name>.pem` and `<name>.key` in `dir`.
fn write_leaf(dir: &Path, name: &str, leaf: &Leaf) -> (PathBuf, PathBuf) {
    let cert = dir.join(format!("{name}.pem"));
    let key = dir.join(format!("{name}.key"));
    std::fs::write(&cert, &leaf.cert_pem).unwrap();
    std::fs::write(&key, &leaf.key_pem).unwrap();
    (cert, key)
}

fn report(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|_| {
        panic!(
            "no JSON report; stdout: {} stderr: {}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

#[test]
fn every_mode_runs_against_an_mtls_server_and_reports_it() {
    let target = Target::start();
    for mode in [
        &["--mode", "full"][..],
        &["--mode", "resume"],
        &["--mode", "keepalive"],
        &["--mode", "keepalive", "--http2"],
    ] {
        let output =
            target.load(&[mode, &["--concurrency", "2", "--count", "20", "--json"]].concat());
        assert_eq!(output.status.code(), Some(0), "{mode:?}: {output:?}");
        let report = report(&output);
        assert_eq!(report["ok"], 20, "{mode:?}: {report}");
        // The tool reports its own CPU, so that a run it paced can be told from one the server did.
        assert!(
            report["client_cpu_secs"].as_f64().is_some(),
            "{mode:?}: {report}"
        );
        assert!(
            report["client_busy"].as_f64().is_some(),
            "{mode:?}: {report}"
        );
        assert_eq!(report["failed"], 0, "{mode:?}: {report}");
        assert_eq!(
            report["errors"],
            serde_json::json!({}),
            "{mode:?}: {report}"
        );
        assert!(report["latency_ms"]["p99"].as_f64().unwrap() > 0.0);
        if mode[1] == "resume" {
            assert!(report["resumed"].as_u64().unwrap() > 0, "{report}");
        }
        if mode[1] == "full" {
            assert_eq!(report["handshakes"], 20, "{report}");
            assert_eq!(report["resumed"], 0, "{report}");
        }
    }
    let output = target.load(&[
        "--mode",
        "idle",
        "--concurrency",
        "3",
        "--duration",
        "1s",
        "--json",
    ]);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert_eq!(report(&output)["held"], 3);
    assert!(String::from_utf8_lossy(&output.stderr).contains("holding 3 connections"));
}

#[test]
fn the_end_of_a_warm_up_is_announced_and_only_what_follows_is_counted() {
    let target = Target::start();
    let args = [
        "--mode",
        "keepalive",
        "--concurrency",
        "2",
        "--count",
        "10",
        "--json",
    ];
    let warmed = target.load(&[&args[..], &["--warmup", "300ms"]].concat());
    assert_eq!(warmed.status.code(), Some(0), "{warmed:?}");
    assert_eq!(report(&warmed)["ok"], 10);
    assert!(
        String::from_utf8_lossy(&warmed.stderr).contains("certgate-load: measuring"),
        "{warmed:?}"
    );
    // Without a warm-up there is nothing to announce: measuring starts with the run.
    let cold = target.load(&args);
    assert_eq!(cold.status.code(), Some(0), "{cold:?}");
    assert!(
        !String::from_utf8_lossy(&cold.stderr).contains("measuring"),
        "{cold:?}"
    );
}

#[test]
fn a_refused_client_certificate_is_counted_as_errors_and_exits_1() {
    let target = Target::start();
    // The server trusts only its own CA.
    let stranger = Ca::new("stranger").client("load client");
    let (cert, key) = write_leaf(target.dir.path(), "stranger", &stranger);
    let output = target.load_as(
        &cert,
        &key,
        &[
            "--mode",
            "full",
            "--concurrency",
            "1",
            "--count",
            "3",
            "--json",
        ],
    );
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let report = report(&output);
    assert_eq!(report["ok"], 0, "{report}");
    assert_eq!(report["failed"], 3, "{report}");
    let kinds: Vec<&String> = report["errors"].as_object().unwrap().keys().collect();
    assert!(
        kinds
            .iter()
            .all(|kind| kind.starts_with("tls_alert_") || *kind == "reset" || *kind == "closed"),
        "{report}"
    );
}

#[test]
fn bad_command_lines_are_refused_with_exit_2_naming_the_problem() {
    let target = Target::start();
    let missing = PathBuf::from("/nonexistent/client.pem");
    let cases: [(Output, &str); 4] = [
        (
            target.load(&["--mode", "full", "--http2", "--count", "1"]),
            "--http2",
        ),
        (target.load(&["--mode", "idle", "--count", "1"]), "--count"),
        (
            target.load(&["--mode", "sideways", "--count", "1"]),
            "sideways",
        ),
        (
            target.load_as(&missing, &target.key, &["--count", "1"]),
            "/nonexistent/client.pem",
        ),
    ];
    for (output, named) in cases {
        assert_eq!(output.status.code(), Some(2), "{named}: {output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(named), "{named}: {stderr}");
        assert!(
            output.stdout.is_empty(),
            "{named}: no report for a refused command line"
        );
    }
    let output = Command::new(env!("CARGO_BIN_EXE_certgate-load"))
        .args(["--target", "no-port-here", "--cert"])
        .arg(&target.cert)
        .arg("--key")
        .arg(&target.key)
        .arg("--ca")
        .arg(&target.ca)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("no-port-here"));
}
