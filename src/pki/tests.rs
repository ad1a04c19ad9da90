//! The PKI end to end: real files in a temporary directory, checked with the real `openssl`.

use std::path::Path;

use ::time::{Duration, OffsetDateTime};
use rcgen::PublicKeyData as _;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::*;

use super::test_support::{openssl, openssl_csr, openssl_output, openssl_stdout};
use super::*;
use crate::model::{RevocationReason, Serial};

const ORG: &str = "Example Bank, Ltd.";
const UNIT: &str = "Internet Banking CA";

fn settings(dir: &Path) -> PkiSettings {
    PkiSettings::new(dir.join("pki"), ORG, UNIT)
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn subject(cn: &str) -> LeafSubject {
    LeafSubject {
        common_name: cn.to_owned(),
    }
}

fn save(dir: &Path, name: &str, bytes: impl AsRef<[u8]>) {
    std::fs::write(dir.join(name), bytes).unwrap();
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn ski(cert: &X509Certificate<'_>) -> Vec<u8> {
    cert.extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
            _ => None,
        })
        .expect("SKI")
}

fn aki(cert: &X509Certificate<'_>) -> Vec<u8> {
    cert.extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(aki) => {
                aki.key_identifier.as_ref().map(|id| id.0.to_vec())
            }
            _ => None,
        })
        .expect("AKI")
}

/// `openssl verify` of `leaf` against the root with the generation as untrusted intermediate,
/// and against the generation alone as anchor (what the TLS verifier is given).
fn assert_openssl_verifies(dir: &Path, pki: &Pki, leaf: &IssuedCertificate) {
    let generation = pki.generation(&leaf.generation).unwrap();
    save(dir, "v-root.pem", &pki.root().cert_pem);
    save(dir, "v-gen.pem", &generation.cert_pem);
    save(dir, "v-leaf.pem", &leaf.pem);
    let out = openssl_stdout(
        dir,
        &[
            "verify",
            "-CAfile",
            "v-root.pem",
            "-untrusted",
            "v-gen.pem",
            "-purpose",
            "sslclient",
            "v-leaf.pem",
        ],
    );
    assert!(out.contains("v-leaf.pem: OK"), "{out}");
    save(dir, "v-anchors.pem", pki.trust_anchors_pem(now()));
    let out = openssl_stdout(
        dir,
        &[
            "verify",
            "-partial_chain",
            "-CAfile",
            "v-anchors.pem",
            "-purpose",
            "sslclient",
            "v-leaf.pem",
        ],
    );
    assert!(out.contains("v-leaf.pem: OK"), "{out}");
}

#[test]
fn init_writes_the_root_and_g1_with_private_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::init(settings(tmp.path()), now()).unwrap();
    let dir = tmp.path().join("pki");
    for file in ["root.pem", "root.key", "g1/ca.pem", "g1/ca.key", "g1.crl"] {
        assert!(dir.join(file).is_file(), "{file}");
    }
    assert_eq!(mode(&dir.join("root.key")), 0o600);
    assert_eq!(mode(&dir.join("g1/ca.key")), 0o600);
    assert_eq!(mode(&dir.join("g1")), 0o700);

    let [g1] = pki.generations() else {
        panic!("one generation")
    };
    assert_eq!((g1.name.as_str(), g1.number), ("g1", 1));
    assert_eq!(g1.unit, UNIT);
    assert_eq!(g1.organization, ORG);
    assert_eq!(g1.subject, format!("O={ORG}, OU={UNIT}"));
    assert_eq!(pki.root().subject, format!("O={ORG}, CN={UNIT} Root"));
    assert_eq!(pki.current(), g1);
    let (_, cert) = parse_x509_certificate(&g1.cert_der).unwrap();
    assert!(cert.is_ca());
    let bc = cert.basic_constraints().unwrap().unwrap().value;
    assert_eq!(bc.path_len_constraint, Some(0));
    let ku = cert.key_usage().unwrap().unwrap().value;
    assert!(ku.key_cert_sign() && ku.crl_sign());
    assert!(g1.not_after > now() + Duration::days(3650));
    assert!(pki.root().not_after > g1.not_after);

    // The files are what openssl calls a chain.
    save(tmp.path(), "root.pem", &pki.root().cert_pem);
    let out = openssl_stdout(
        tmp.path(),
        &[
            "verify",
            "-CAfile",
            "root.pem",
            dir.join("g1/ca.pem").to_str().unwrap(),
        ],
    );
    assert!(out.contains(": OK"), "{out}");
}

#[test]
fn init_twice_is_refused_and_keys_are_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    Pki::init(settings(tmp.path()), now()).unwrap();
    let dir = tmp.path().join("pki");
    let root_key = std::fs::read(dir.join("root.key")).unwrap();
    let g1_key = std::fs::read(dir.join("g1/ca.key")).unwrap();
    let err = Pki::init(settings(tmp.path()), now()).unwrap_err();
    assert!(matches!(err, PkiError::AlreadyInitialised { .. }), "{err}");
    assert!(err.to_string().contains("never overwrites"), "{err}");
    assert_eq!(std::fs::read(dir.join("root.key")).unwrap(), root_key);
    assert_eq!(std::fs::read(dir.join("g1/ca.key")).unwrap(), g1_key);
}

#[test]
fn init_is_refused_over_a_leftover_generation() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("pki/g1")).unwrap();
    let err = Pki::init(settings(tmp.path()), now()).unwrap_err();
    assert!(matches!(err, PkiError::AlreadyInitialised { .. }), "{err}");
    assert!(!tmp.path().join("pki/root.key").exists());
}

#[test]
fn init_refuses_invalid_settings_before_writing() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = settings(tmp.path());
    s.validity_days = 0;
    let err = Pki::init(s, now()).unwrap_err();
    assert!(
        matches!(
            err,
            PkiError::InvalidSettings {
                key: "validity_days",
                ..
            }
        ),
        "{err}"
    );
    assert!(!tmp.path().join("pki").exists());
}

#[test]
fn open_without_init_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let err = Pki::open(settings(tmp.path())).unwrap_err();
    assert!(matches!(err, PkiError::NotInitialised { .. }), "{err}");
    assert!(err.to_string().contains("certgate init"), "{err}");
}

#[test]
fn open_loads_what_init_made_and_it_still_signs() {
    let tmp = tempfile::tempdir().unwrap();
    let made = Pki::init(settings(tmp.path()), now()).unwrap();
    let pki = Pki::open(settings(tmp.path())).unwrap();
    assert_eq!(pki.generations(), made.generations());
    assert_eq!(pki.root(), made.root());
    let (_, leaf) = pki
        .issue_with_server_key(&subject("12345678901234 u1"), now())
        .unwrap();
    assert_openssl_verifies(tmp.path(), &pki, &leaf);
}

#[test]
fn open_refuses_an_interrupted_rotation() {
    let tmp = tempfile::tempdir().unwrap();
    Pki::init(settings(tmp.path()), now()).unwrap();
    std::fs::create_dir(tmp.path().join("pki/g2")).unwrap();
    let err = Pki::open(settings(tmp.path())).unwrap_err();
    assert!(
        matches!(err, PkiError::IncompleteGeneration { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("remove"), "{err}");
}

#[test]
fn open_refuses_a_key_that_is_not_the_generations() {
    let tmp = tempfile::tempdir().unwrap();
    Pki::init(settings(tmp.path()), now()).unwrap();
    let other = rcgen::KeyPair::generate().unwrap();
    std::fs::write(tmp.path().join("pki/g1/ca.key"), other.serialize_pem()).unwrap();
    let err = Pki::open(settings(tmp.path())).unwrap_err();
    assert!(matches!(err, PkiError::KeyMismatch { .. }), "{err}");
}

#[test]
fn open_refuses_a_generation_from_another_root() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    Pki::init(settings(&a), now()).unwrap();
    Pki::init(settings(&b), now()).unwrap();
    std::fs::copy(b.join("pki/root.pem"), a.join("pki/root.pem")).unwrap();
    let err = Pki::open(settings(&a)).unwrap_err();
    assert!(matches!(err, PkiError::NotSignedByRoot { .. }), "{err}");
}

#[test]
fn rotate_makes_g2_which_signs_from_then_on() {
    let tmp = tempfile::tempdir().unwrap();
    let mut pki = Pki::init(settings(tmp.path()), now()).unwrap();
    let (_, old_leaf) = pki
        .issue_with_server_key(&subject("before"), now())
        .unwrap();
    assert_eq!(old_leaf.generation, "g1");

    let g2 = pki.rotate(now()).unwrap().clone();
    assert_eq!((g2.name.as_str(), g2.number), ("g2", 2));
    assert_eq!(g2.unit, format!("{UNIT}-G2"));
    assert_eq!(g2.subject, format!("O={ORG}, OU={UNIT}-G2"));
    assert!(tmp.path().join("pki/g2/ca.pem").is_file());
    assert!(tmp.path().join("pki/g2.crl").is_file());
    assert_eq!(mode(&tmp.path().join("pki/g2/ca.key")), 0o600);
    let names: Vec<_> = pki.generations().iter().map(|g| g.name.as_str()).collect();
    assert_eq!(names, ["g1", "g2"]);
    assert_eq!(pki.current(), &g2);

    let (_, new_leaf) = pki.issue_with_server_key(&subject("after"), now()).unwrap();
    assert_eq!(new_leaf.generation, "g2");
    assert_eq!(new_leaf.unit, format!("{UNIT}-G2"));
    let (_, cert) = parse_x509_certificate(&new_leaf.der).unwrap();
    let (_, g2_cert) = parse_x509_certificate(&g2.cert_der).unwrap();
    assert_eq!(cert.issuer(), g2_cert.subject());
    assert_eq!(aki(&cert), ski(&g2_cert));

    // Both generations' leaves verify against the anchors; the old one still does.
    assert_eq!(pki.trust_anchors(now()).len(), 2);
    assert_openssl_verifies(tmp.path(), &pki, &new_leaf);
    assert_openssl_verifies(tmp.path(), &pki, &old_leaf);

    // A restart sees the same thing.
    let reopened = Pki::open(settings(tmp.path())).unwrap();
    assert_eq!(reopened.generations(), pki.generations());
    let (_, leaf) = reopened
        .issue_with_server_key(&subject("reopened"), now())
        .unwrap();
    assert_eq!(leaf.generation, "g2");

    let g3 = pki.rotate(now()).unwrap();
    assert_eq!(g3.unit, format!("{UNIT}-G3"));
}

#[test]
fn a_second_process_cannot_rotate_to_the_same_generation() {
    let tmp = tempfile::tempdir().unwrap();
    let mut first = Pki::init(settings(tmp.path()), now()).unwrap();
    let mut second = Pki::open(settings(tmp.path())).unwrap();
    first.rotate(now()).unwrap();
    let err = second.rotate(now()).unwrap_err();
    assert!(
        matches!(err, PkiError::GenerationExists { ref name, .. } if name == "g2"),
        "{err}"
    );
    assert_eq!(second.generations().len(), 1);
}

#[test]
fn rotate_needs_the_root_key() {
    let tmp = tempfile::tempdir().unwrap();
    let mut pki = Pki::init(settings(tmp.path()), now()).unwrap();
    std::fs::rename(
        tmp.path().join("pki/root.key"),
        tmp.path().join("offline.key"),
    )
    .unwrap();
    // Serving needs no root key…
    let reopened = Pki::open(settings(tmp.path())).unwrap();
    reopened
        .issue_with_server_key(&subject("x"), now())
        .unwrap();
    // …rotating does, and leaves nothing behind without it.
    let err = pki.rotate(now()).unwrap_err();
    assert!(matches!(err, PkiError::Read { .. }), "{err}");
    assert!(err.to_string().contains("root.key"), "{err}");
    assert!(!tmp.path().join("pki/g2").exists());
}

#[test]
fn issue_from_an_openssl_csr_takes_only_its_key() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::init(settings(tmp.path()), now()).unwrap();
    let csr = verify_csr(&openssl_csr(tmp.path(), "ec")).unwrap();
    let t = now();
    let leaf = pki
        .issue(csr.public_key(), &subject("12345678901234 user01"), t)
        .unwrap();

    let (_, cert) = parse_x509_certificate(&leaf.der).unwrap();
    assert_eq!(
        cert.subject().to_string(),
        format!("O={ORG}, OU={UNIT}, CN=12345678901234 user01")
    );
    let cns: Vec<_> = cert
        .subject()
        .iter_common_name()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(cns, ["12345678901234 user01"]);
    assert!(!leaf.pem.contains("someone else"));
    let o: Vec<_> = cert
        .subject()
        .iter_organization()
        .map(|a| a.as_str().unwrap())
        .collect();
    let ou: Vec<_> = cert
        .subject()
        .iter_organizational_unit()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(
        (o.as_slice(), ou.as_slice()),
        ([ORG].as_slice(), [UNIT].as_slice())
    );
    assert_eq!(
        (leaf.organization.as_str(), leaf.unit.as_str()),
        (ORG, UNIT)
    );
    assert_eq!(cert.public_key().raw, csr.public_key().spki_der());

    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.client_auth && !eku.server_auth && eku.other.is_empty());
    let ku = cert.key_usage().unwrap().unwrap();
    assert!(ku.critical && ku.value.digital_signature() && !ku.value.key_cert_sign());
    assert!(!cert.is_ca());
    let (_, g1) = parse_x509_certificate(&pki.current().cert_der).unwrap();
    assert_eq!(aki(&cert), ski(&g1));
    assert!(!ski(&cert).is_empty());

    assert_eq!(leaf.serial.as_bytes().len(), 16);
    assert_eq!(cert.raw_serial(), leaf.serial.as_bytes());
    assert_eq!(
        leaf.serial.to_hex(),
        cert.raw_serial_as_string().replace(':', "")
    );
    assert_eq!(leaf.sha256, crate::model::sha256(&leaf.der));

    let t = t.replace_nanosecond(0).unwrap();
    assert_eq!(leaf.not_before, t);
    assert_eq!(leaf.not_after, t + Duration::days(365));
    assert_eq!(cert.validity().not_before.to_datetime(), leaf.not_before);
    assert_eq!(cert.validity().not_after.to_datetime(), leaf.not_after);

    save(tmp.path(), "leaf.pem", &leaf.pem);
    let text = openssl_stdout(tmp.path(), &["x509", "-in", "leaf.pem", "-noout", "-text"]);
    for want in [
        "TLS Web Client Authentication",
        "Digital Signature",
        "X509v3 Authority Key Identifier",
        "X509v3 Subject Key Identifier",
        "CA:FALSE",
    ] {
        assert!(text.contains(want), "{want} missing in\n{text}");
    }
    assert_openssl_verifies(tmp.path(), &pki, &leaf);
}

#[test]
fn serials_are_random_even_for_the_same_key() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::init(settings(tmp.path()), now()).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let public = PublicKey::from_spki_der(&key.subject_public_key_info()).unwrap();
    let a = pki.issue(&public, &subject("same"), now()).unwrap();
    let b = pki.issue(&public, &subject("same"), now()).unwrap();
    assert_ne!(a.serial, b.serial);
    for serial in [&a.serial, &b.serial] {
        assert_eq!(serial.as_bytes().len(), 16);
        assert!((0x40..=0x7f).contains(&serial.as_bytes()[0]));
    }
}

#[test]
fn leaves_never_outlive_their_issuer() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::init(settings(tmp.path()), now()).unwrap();
    let end = pki.current().not_after;
    let (_, leaf) = pki
        .issue_with_server_key(&subject("late"), end - Duration::days(10))
        .unwrap();
    assert_eq!(leaf.not_after, end);
    let (_, cert) = parse_x509_certificate(&leaf.der).unwrap();
    assert_eq!(cert.validity().not_after.to_datetime(), end);
    let err = pki
        .issue_with_server_key(&subject("too late"), end)
        .unwrap_err();
    assert!(matches!(err, PkiError::IssuerExpired { .. }), "{err}");
}

#[test]
fn bad_common_names_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::init(settings(tmp.path()), now()).unwrap();
    for cn in ["", &"x".repeat(65), "a\nb"] {
        let err = pki.issue_with_server_key(&subject(cn), now()).unwrap_err();
        assert!(matches!(err, PkiError::InvalidSubject(_)), "{cn:?}: {err}");
    }
    pki.issue_with_server_key(&subject(&"x".repeat(64)), now())
        .unwrap();
    pki.issue_with_server_key(&subject("日本語の利用者"), now())
        .unwrap();
}

#[test]
fn rsa_2048_works_throughout() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = settings(tmp.path());
    s.key_type = KeyType::Rsa2048;
    let mut pki = Pki::init(s.clone(), now()).unwrap();
    let (_, root) = parse_x509_certificate(&pki.root().cert_der).unwrap();
    assert_eq!(root.public_key().parsed().unwrap().key_size(), 2048);

    let (key, leaf) = pki
        .issue_with_server_key(&subject("rsa user"), now())
        .unwrap();
    let (_, cert) = parse_x509_certificate(&leaf.der).unwrap();
    assert!(matches!(
        cert.public_key().parsed().unwrap(),
        x509_parser::public_key::PublicKey::RSA(_)
    ));
    save(tmp.path(), "k.der", key.secret_pkcs8_der());
    let text = openssl_stdout(
        tmp.path(),
        &["pkey", "-inform", "DER", "-in", "k.der", "-noout", "-text"],
    );
    assert!(text.contains("Private-Key: (2048 bit"), "{text}");
    assert_openssl_verifies(tmp.path(), &pki, &leaf);

    // An RSA CA signs EC requests too, and the other way round after a key type change.
    let ec_csr = verify_csr(&openssl_csr(tmp.path(), "ec")).unwrap();
    let leaf = pki
        .issue(ec_csr.public_key(), &subject("ec user"), now())
        .unwrap();
    assert_openssl_verifies(tmp.path(), &pki, &leaf);
    pki.rotate(now()).unwrap();
    let reopened = Pki::open(s).unwrap();
    let rsa_csr = verify_csr(&openssl_csr(tmp.path(), "rsa")).unwrap();
    let leaf = reopened
        .issue(rsa_csr.public_key(), &subject("rsa csr"), now())
        .unwrap();
    assert_openssl_verifies(tmp.path(), &reopened, &leaf);
}

#[test]
fn pkcs12_opens_in_openssl_with_key_cert_and_chain() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::init(settings(tmp.path()), now()).unwrap();
    let (key, leaf) = pki
        .issue_with_server_key(&subject("12345678901234 p12user"), now())
        .unwrap();
    let chain = pki.chain(&leaf.generation).unwrap();
    let p12 = pkcs12(&key, &leaf.der, &chain, "correct horse", &leaf.common_name).unwrap();
    save(tmp.path(), "certificate.p12", &p12);

    let out = openssl_stdout(
        tmp.path(),
        &[
            "pkcs12",
            "-in",
            "certificate.p12",
            "-passin",
            "pass:correct horse",
            "-nodes",
        ],
    );
    assert_eq!(
        out.matches("-----BEGIN PRIVATE KEY-----").count(),
        1,
        "{out}"
    );
    assert_eq!(
        out.matches("-----BEGIN CERTIFICATE-----").count(),
        3,
        "{out}"
    );
    assert!(out.contains("CN = 12345678901234 p12user"), "{out}");
    assert!(out.contains(&format!("OU = {UNIT}")), "{out}");
    assert!(out.contains(&format!("CN = {UNIT} Root")), "{out}");

    // The key in the file is the certificate's.
    save(tmp.path(), "all.pem", &out);
    openssl(
        tmp.path(),
        &["pkey", "-in", "all.pem", "-pubout", "-out", "from-key.pem"],
    );
    save(tmp.path(), "leaf.pem", &leaf.pem);
    openssl(
        tmp.path(),
        &[
            "x509",
            "-in",
            "leaf.pem",
            "-noout",
            "-pubkey",
            "-out",
            "from-cert.pem",
        ],
    );
    assert_eq!(
        std::fs::read(tmp.path().join("from-key.pem")).unwrap(),
        std::fs::read(tmp.path().join("from-cert.pem")).unwrap()
    );

    // PBES2 with AES-256 and a SHA-256 MAC.
    let info = openssl_output(
        tmp.path(),
        &[
            "pkcs12",
            "-in",
            "certificate.p12",
            "-passin",
            "pass:correct horse",
            "-info",
            "-noout",
        ],
    );
    let info = String::from_utf8_lossy(&info.stderr);
    assert!(info.contains("MAC: sha256"), "{info}");
    assert!(
        info.contains("PBES2") && info.contains("AES-256-CBC"),
        "{info}"
    );

    let wrong = openssl_output(
        tmp.path(),
        &[
            "pkcs12",
            "-in",
            "certificate.p12",
            "-passin",
            "pass:wrong horse",
            "-nodes",
        ],
    );
    assert!(!wrong.status.success());
    assert!(!String::from_utf8_lossy(&wrong.stdout).contains("PRIVATE KEY"));
}

#[test]
fn pkcs12_refuses_a_short_password() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::init(settings(tmp.path()), now()).unwrap();
    let (key, leaf) = pki.issue_with_server_key(&subject("short"), now()).unwrap();
    let chain = pki.chain(&leaf.generation).unwrap();
    for short in ["", "1234567", "パスワード七文"] {
        match pkcs12(&key, &leaf.der, &chain, short, "x") {
            Err(Pkcs12Error::PasswordTooShort { chars, min: 8 }) => {
                assert_eq!(chars, short.chars().count())
            }
            other => panic!("{short:?}: {other:?}"),
        }
    }
    let err = pkcs12(&key, &leaf.der, &chain, "1234567", "x").unwrap_err();
    assert!(!err.to_string().contains("1234567"), "{err}");
    // Eight characters, even if multi-byte.
    pkcs12(&key, &leaf.der, &chain, "パスワード八文字", "x").unwrap();
}

#[test]
fn pkcs7_certs_only_of_an_issued_chain_reads_in_openssl() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::init(settings(tmp.path()), now()).unwrap();
    let (_, leaf) = pki
        .issue_with_server_key(&subject("est user"), now())
        .unwrap();
    let mut certs = vec![leaf.der.clone()];
    certs.extend(pki.chain(&leaf.generation).unwrap());
    save(tmp.path(), "est.p7", certs_only_pkcs7(&certs).unwrap());
    let out = openssl_stdout(
        tmp.path(),
        &["pkcs7", "-inform", "DER", "-in", "est.p7", "-print_certs"],
    );
    assert!(out.contains("CN = est user"), "{out}");
    let certs: Vec<_> = CertificateDer::pem_slice_iter(out.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(certs.len(), 3);
    assert!(certs.contains(&leaf.der));
    assert!(certs.contains(&pki.root().cert_der));

    let cacerts = pki.ca_certs(now());
    assert_eq!(cacerts[0], pki.root().cert_der);
    save(
        tmp.path(),
        "cacerts.p7",
        certs_only_pkcs7(&cacerts).unwrap(),
    );
    openssl(
        tmp.path(),
        &[
            "pkcs7",
            "-inform",
            "DER",
            "-in",
            "cacerts.p7",
            "-print_certs",
        ],
    );
}

#[test]
fn crl_lists_the_revoked_serial_and_reason_and_verifies() {
    let tmp = tempfile::tempdir().unwrap();
    let mut pki = Pki::init(settings(tmp.path()), now()).unwrap();
    let (_, leaf) = pki
        .issue_with_server_key(&subject("revoked user"), now())
        .unwrap();
    let (_, kept) = pki
        .issue_with_server_key(&subject("kept user"), now())
        .unwrap();
    let t = now();
    let revoked = [RevokedEntry {
        serial: leaf.serial,
        revoked_at: t - Duration::minutes(5),
        reason: RevocationReason::KeyCompromise,
    }];
    let der = pki.crl_numbered("g1", &revoked, t, 2).unwrap();
    let path = pki.write_crl_file("g1", &der).unwrap();
    assert_eq!(path, tmp.path().join("pki/g1.crl"));
    assert_eq!(pki.crl_path("g1").unwrap(), path);
    assert_eq!(mode(&path), 0o644);

    let text = openssl_stdout(
        tmp.path(),
        &[
            "crl",
            "-inform",
            "DER",
            "-in",
            path.to_str().unwrap(),
            "-noout",
            "-text",
        ],
    );
    assert!(
        text.contains(&leaf.serial.to_hex().to_uppercase()),
        "{text}"
    );
    assert!(
        !text.contains(&kept.serial.to_hex().to_uppercase()),
        "{text}"
    );
    assert!(text.contains("Key Compromise"), "{text}");
    assert!(text.contains(&format!("OU = {UNIT}")), "{text}");
    assert!(text.contains("X509v3 CRL Number"), "{text}");

    save(tmp.path(), "g1.pem", &pki.current().cert_pem);
    let out = openssl_output(
        tmp.path(),
        &[
            "crl",
            "-inform",
            "DER",
            "-in",
            path.to_str().unwrap(),
            "-CAfile",
            "g1.pem",
            "-noout",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("verify OK"));

    // Chain verification with the CRL: the revoked leaf fails, the other passes.
    openssl(
        tmp.path(),
        &[
            "crl",
            "-inform",
            "DER",
            "-in",
            path.to_str().unwrap(),
            "-out",
            "g1.crl.pem",
        ],
    );
    save(tmp.path(), "root.pem", &pki.root().cert_pem);
    save(tmp.path(), "revoked.pem", &leaf.pem);
    save(tmp.path(), "kept.pem", &kept.pem);
    let verify = |leaf: &str| {
        openssl_output(
            tmp.path(),
            &[
                "verify",
                "-crl_check",
                "-CAfile",
                "root.pem",
                "-untrusted",
                "g1.pem",
                "-CRLfile",
                "g1.crl.pem",
                leaf,
            ],
        )
    };
    let out = verify("revoked.pem");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("certificate revoked")
            || String::from_utf8_lossy(&out.stderr).contains("certificate revoked")
    );
    assert!(verify("kept.pem").status.success());

    // Another generation's key did not sign it.
    pki.rotate(now()).unwrap();
    save(tmp.path(), "g2.pem", &pki.current().cert_pem);
    let out = openssl_output(
        tmp.path(),
        &[
            "crl",
            "-inform",
            "DER",
            "-in",
            path.to_str().unwrap(),
            "-CAfile",
            "g2.pem",
            "-noout",
        ],
    );
    assert!(!String::from_utf8_lossy(&out.stderr).contains("verify OK"));
}

#[test]
fn the_crl_file_never_goes_backwards_and_unspecified_has_no_reason_code() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::init(settings(tmp.path()), now()).unwrap();
    let number = |der: &[u8]| {
        let (_, crl) = parse_x509_crl(der).unwrap();
        crl.crl_number().unwrap().clone()
    };
    let t = now();
    // A new generation starts with an empty CRL numbered 1.
    let first = std::fs::read(pki.crl_path("g1").unwrap()).unwrap();
    assert_eq!(number(&first), 1u32.into());
    assert_eq!(pki.crl_number_on_disk("g1"), Some(1));

    let entry = RevokedEntry {
        serial: Serial::from_be_bytes(&[0x41; 16]).unwrap(),
        revoked_at: t,
        reason: RevocationReason::Unspecified,
    };
    let newer = pki.crl_numbered("g1", &[entry], t, 7).unwrap();
    pki.write_crl_file("g1", &newer).unwrap();
    // A CRL numbered lower (a slow signer) or the same is not written over it.
    let older = pki.crl_numbered("g1", &[], t, 5).unwrap();
    pki.write_crl_file("g1", &older).unwrap();
    let same = pki.crl_numbered("g1", &[], t, 7).unwrap();
    pki.write_crl_file("g1", &same).unwrap();
    let on_disk = std::fs::read(pki.crl_path("g1").unwrap()).unwrap();
    assert_eq!(on_disk, newer);

    let (_, crl) = parse_x509_crl(&on_disk).unwrap();
    let revoked: Vec<_> = crl.iter_revoked_certificates().collect();
    assert_eq!(revoked.len(), 1);
    assert_eq!(revoked[0].raw_serial(), &[0x41; 16]);
    assert!(revoked[0].reason_code().is_none());
    assert_eq!(
        crl.next_update().unwrap().to_datetime(),
        crl.last_update().to_datetime() + Duration::days(7)
    );

    let err = pki.crl_numbered("g9", &[], t, 1).unwrap_err();
    assert!(matches!(err, PkiError::UnknownGeneration { .. }), "{err}");
    assert!(err.to_string().contains("g1"), "{err}");
}

#[test]
fn pki_can_be_shared_between_threads() {
    fn shared<T: Send + Sync>() {}
    shared::<Pki>();
}

#[test]
fn concurrent_crl_writes_never_tear_and_the_highest_number_stays() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::init(settings(tmp.path()), now()).unwrap();
    let t = now();
    std::thread::scope(|scope| {
        for thread in 0..4u128 {
            let pki = &pki;
            scope.spawn(move || {
                for round in 0..5u128 {
                    let der = pki
                        .crl_numbered("g1", &[], t, 2 + round * 4 + thread)
                        .unwrap();
                    pki.write_crl_file("g1", &der).unwrap();
                }
            });
        }
    });
    let der = std::fs::read(pki.crl_path("g1").unwrap()).unwrap();
    let (_, crl) = parse_x509_crl(&der).unwrap();
    assert_eq!(crl.crl_number().unwrap(), &21u32.into());
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path().join("pki"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty());
}
