//! Certificate issuing: certgate's own CA.
//!
//! A root CA signs issuing CA *generations* (`g1`, `g2`, …); the newest generation signs
//! client certificates, and every generation stays listed, trusted and served a CRL while
//! its certificates may still be in use. [`Pki`] is the whole of it: [`Pki::init`] (root +
//! `g1`), [`Pki::open`], [`Pki::rotate`], [`Pki::issue`] for a key from a [`verify_csr`]-checked
//! CSR, [`Pki::issue_with_server_key`] + [`pkcs12`] for `certificate.p12`, [`Pki::crl_numbered`],
//! and [`certs_only_pkcs7`] for EST bodies. [`dev`] is separate: the throwaway CA that `serve`
//! makes on a fresh clone.
//!
//! # Layout of `pki.dir`
//! ```text
//! root.pem      root CA certificate (O = organization, CN = "<unit> Root"), 20 years
//! root.key      root CA key, PKCS#8 PEM, 0600; read by init and rotate only, may live offline
//! g1/           0700
//!   ca.key      generation 1 key, PKCS#8 PEM, 0600 (written first)
//!   ca.pem      generation 1 certificate (O, OU = unit), 10 years, pathlen 0 (written last:
//!               a generation without it is an interrupted rotation)
//! g1.crl        generation 1 CRL, DER; served at /certgate/crl/g1.crl
//! g2/ …         generation 2 (OU = "<unit>-G2"), and so on
//! g2.crl
//! ```
//! The directory listing is the manifest. Every file is written atomically
//! ([`write_atomically`]); nothing ever overwrites a key.
//!
//! # Certificates
//! - Root: O, CN `<unit> Root`; CA, pathlen 1, keyCertSign + cRLSign, SKI.
//! - Generation N: O, OU (`<unit>`, then `<unit>-G<N>`); CA, pathlen 0, keyCertSign + cRLSign,
//!   SKI, AKI; 10 years, never beyond the root.
//! - Leaf: O and OU of its generation, CN from [`LeafSubject`]; clientAuth, digitalSignature,
//!   cA=false, SKI, AKI; a random 16-byte serial; exactly `validity_days`, clamped to the
//!   generation's end. Nothing from a CSR but its verified public key.
//!
//! Callers pass `now` to everything time-dependent, so tests and replicas agree on it.

mod ca;
mod crl;
mod csr;
pub mod dev;
mod error;
mod files;
mod generation;
mod issue;
mod pkcs12;
mod pkcs7;
mod settings;
#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;

pub use ca::{GENERATION_VALIDITY, Pki, ROOT_VALIDITY, RootCa};
pub use crl::{RevokedEntry, crl_number_of, sign_crl};
pub use csr::{MAX_CSR_BYTES, PublicKey, VerifiedCsr, verify_csr};
pub use error::{CsrError, Pkcs12Error, PkiError};
pub use files::write_atomically;
pub use generation::{Generation, Signer};
pub use issue::{IssuedCertificate, LeafSubject};
pub use pkcs7::certs_only_pkcs7;
pub use pkcs12::{PKCS12_MIN_PASSWORD_CHARS, pkcs12, pkcs12_opens};
pub use settings::{KeyType, PkiSettings};

/// A certificate serial: 16 bytes from the system CSPRNG (126 of them random), first byte in
/// 0x40..=0x7f so that the DER INTEGER is positive and always exactly 16 bytes long.
/// Never derived from the key: re-issuing for the same key gives a new serial.
fn random_serial() -> Result<Vec<u8>, PkiError> {
    let mut serial = vec![0u8; 16];
    aws_lc_rs::rand::fill(&mut serial).map_err(|_| PkiError::Crypto {
        operation: "draw a random serial number".into(),
        source: rcgen::Error::RingUnspecified,
    })?;
    serial[0] = (serial[0] & 0x3f) | 0x40;
    Ok(serial)
}

/// Certificate parameters whose subject is exactly `subject`, in that order (O, OU, CN as the
/// banks' certificates show them). rcgen's default subject is `CN=rcgen self signed cert`,
/// which must not leak into ours.
fn params_with_subject(subject: &[(rcgen::DnType, String)]) -> rcgen::CertificateParams {
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    for (kind, value) in subject {
        params.distinguished_name.push(kind.clone(), value.as_str());
    }
    params
}

/// `now` in UTC and whole seconds, the precision of X.509 times, so that what certgate
/// reports equals what the certificate says.
fn utc_seconds(now: time::OffsetDateTime) -> time::OffsetDateTime {
    let now = now.to_offset(time::UtcOffset::UTC);
    now - time::Duration::nanoseconds(i64::from(now.nanosecond()))
}
