//! The command-line tools tests check answers with (openssl, curl), run one way: in a directory,
//! failing the test with the tool's own words when it fails.

use std::path::Path;
use std::process::Command;

/// Runs `program args` in `dir`; returns its standard output, or fails the test with its
/// standard error.
pub(crate) fn run_in(dir: &Path, program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|err| panic!("cannot run {program} ({err}); scripts/test.sh installs it"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `openssl x509 -noout <what>` of a PEM certificate (`-subject`, `-issuer`, `-serial`, …).
pub(crate) fn openssl_x509(cert_pem: &str, what: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("c.pem"), cert_pem).unwrap();
    let mut args = vec!["x509", "-noout", "-in", "c.pem"];
    args.extend_from_slice(what);
    run_in(dir.path(), "openssl", &args)
}

/// `openssl crl -text` of a DER CRL.
pub(crate) fn openssl_crl_text(der: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("c.crl"), der).unwrap();
    run_in(
        dir.path(),
        "openssl",
        &["crl", "-inform", "DER", "-in", "c.crl", "-noout", "-text"],
    )
}
