//! The real `openssl` CLI, for tests that check interoperability rather than our own reading
//! of our own output.

use std::path::Path;
use std::process::{Command, Output};

/// Runs `openssl args…` in `dir`.
pub(super) fn openssl_output(dir: &Path, args: &[&str]) -> Output {
    Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl CLI should be installed for the pki tests")
}

/// Runs `openssl args…` in `dir`, which must succeed.
pub(super) fn openssl(dir: &Path, args: &[&str]) {
    openssl_stdout(dir, args);
}

/// Runs `openssl args…` in `dir`, which must succeed; returns stdout.
pub(super) fn openssl_stdout(dir: &Path, args: &[&str]) -> String {
    let out = openssl_output(dir, args);
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A PEM CSR with subject `/CN=someone else` and a new `kind` (`ec` P-256 or `rsa` 2048) key,
/// as the example command makes it.
pub(super) fn openssl_csr(dir: &Path, kind: &str) -> Vec<u8> {
    let mut args = vec!["req", "-new", "-newkey"];
    match kind {
        "ec" => args.extend(["ec", "-pkeyopt", "ec_paramgen_curve:P-256"]),
        _ => args.push("rsa:2048"),
    }
    args.extend([
        "-subj",
        "/CN=someone else",
        "-nodes",
        "-keyout",
        "csr.key",
        "-out",
        "csr.pem",
    ]);
    openssl(dir, &args);
    std::fs::read(dir.join("csr.pem")).expect("openssl wrote csr.pem")
}
