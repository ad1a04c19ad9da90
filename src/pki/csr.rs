//! Certificate signing requests and the public keys certgate certifies.
//!
//! A CSR contributes exactly one thing to a certificate: its public key, after its
//! self-signature proves the requester holds the private key. Its subject, extensions and
//! attributes are never read into a certificate; the leaf's fields come from the permit or the
//! current certificate (`lifecycle`).

use std::fmt;

use aws_lc_rs::signature::{self, VerificationAlgorithm};
use base64::Engine as _;
use rustls_pki_types::CertificateSigningRequestDer;
use rustls_pki_types::pem::PemObject as _;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::error::X509Error;
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_PKCS1_RSAENCRYPTION,
    OID_PKCS1_SHA256WITHRSA, OID_PKCS1_SHA384WITHRSA, OID_PKCS1_SHA512WITHRSA,
    OID_SIG_ECDSA_WITH_SHA256, OID_SIG_ECDSA_WITH_SHA384, OID_SIG_ED25519,
};
use x509_parser::prelude::FromDer as _;
use x509_parser::x509::{AlgorithmIdentifier, SubjectPublicKeyInfo};

use super::error::CsrError;
use crate::model::sha256;

/// A PEM RSA-8192 request is about 3 KiB; anything far larger is not a request to parse.
pub const MAX_CSR_BYTES: usize = 64 * 1024;

/// RSA moduli certgate certifies: below 2048 bits is too weak, above 8192 aws-lc-rs cannot
/// verify signatures.
const RSA_BITS: std::ops::RangeInclusive<usize> = 2048..=8192;

/// A public key that certgate will put into a certificate: ECDSA P-256/P-384, RSA 2048-8192 or
/// Ed25519, in a SubjectPublicKeyInfo encoding that the certificate will carry byte for byte.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    spki: Vec<u8>,
    sha256: [u8; 32],
    rcgen: rcgen::SubjectPublicKeyInfo,
}

impl PublicKey {
    /// Checks a DER SubjectPublicKeyInfo. The key's algorithm and size must be supported, and
    /// the encoding canonical (re-encoding it gives the same bytes), so that the certificate
    /// carries exactly the key that was requested.
    pub fn from_spki_der(spki_der: &[u8]) -> Result<Self, CsrError> {
        let (rest, spki) = SubjectPublicKeyInfo::from_der(spki_der)
            .map_err(|e| CsrError::UnsupportedKey(format!("not a SubjectPublicKeyInfo: {e}")))?;
        if !rest.is_empty() {
            return Err(CsrError::UnsupportedKey(
                "trailing bytes after the SubjectPublicKeyInfo".into(),
            ));
        }
        check_key(&spki)?;
        let rcgen = rcgen::SubjectPublicKeyInfo::from_der(spki_der)
            .map_err(|e| CsrError::UnsupportedKey(e.to_string()))?;
        if rcgen::PublicKeyData::subject_public_key_info(&rcgen) != spki_der {
            return Err(CsrError::UnsupportedKey(
                "non-canonical SubjectPublicKeyInfo encoding".into(),
            ));
        }
        Ok(Self {
            spki: spki_der.to_vec(),
            sha256: sha256(spki_der),
            rcgen,
        })
    }

    /// The DER SubjectPublicKeyInfo.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki
    }

    /// SHA-256 of the DER SubjectPublicKeyInfo, e.g. to refuse re-using a key on renewal.
    pub fn sha256(&self) -> &[u8; 32] {
        &self.sha256
    }

    pub(super) fn as_rcgen(&self) -> &rcgen::SubjectPublicKeyInfo {
        &self.rcgen
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey")
            .field("sha256", &crate::model::hex(&self.sha256))
            .finish()
    }
}

/// A CSR whose self-signature verified: its public key is ready to be certified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedCsr {
    public_key: PublicKey,
    requested_subject: String,
}

impl VerifiedCsr {
    /// The requester's public key: the only part of the CSR a certificate takes.
    pub fn public_key(&self) -> &PublicKey {
        &self.public_key
    }

    /// The subject the requester asked for (`CN=…`, not escaped). For logs and audit only: it
    /// never goes into a certificate.
    pub fn requested_subject(&self) -> &str {
        &self.requested_subject
    }
}

/// Parses a PKCS#10 request given as DER, PEM (`CERTIFICATE REQUEST`) or base64 DER (the body
/// of an EST `simpleenroll`, whitespace allowed), and verifies its self-signature.
///
/// Garbage, a truncated request, a malformed one, a bad signature, an unsupported signature
/// algorithm and an unsupported key each give their own [`CsrError`].
pub fn verify_csr(input: &[u8]) -> Result<VerifiedCsr, CsrError> {
    let der = csr_der(input)?;
    let csr = parse_csr(&der)?;
    let info = &csr.certification_request_info;
    // The key is checked before the signature so that e.g. a DSA request says "unsupported key"
    // rather than "unsupported signature algorithm".
    check_key(&info.subject_pki)?;
    verify_signature(
        &info.subject_pki,
        &csr.signature_algorithm,
        &csr.signature_value.data,
        info.raw,
    )
    .map_err(|e| match e {
        SignatureError::Unsupported(alg) => CsrError::UnsupportedSignatureAlgorithm(alg),
        SignatureError::Invalid => CsrError::BadSignature,
    })?;
    Ok(VerifiedCsr {
        public_key: PublicKey::from_spki_der(info.subject_pki.raw)?,
        requested_subject: info.subject.to_string(),
    })
}

fn csr_der(input: &[u8]) -> Result<Vec<u8>, CsrError> {
    if input.len() > MAX_CSR_BYTES {
        return Err(CsrError::TooLarge {
            bytes: input.len(),
            max: MAX_CSR_BYTES,
        });
    }
    // 0x30: a DER SEQUENCE, which is what a PKCS#10 request is. Binary input is not trimmed:
    // its last bytes may well be 0x20 or 0x0a.
    if input.first() == Some(&0x30) {
        return Ok(input.to_vec());
    }
    let trimmed = input.trim_ascii();
    if trimmed.is_empty() {
        return Err(CsrError::NotACsr("empty input".into()));
    }
    if trimmed.starts_with(b"-----BEGIN") {
        return CertificateSigningRequestDer::from_pem_slice(trimmed)
            .map(|der| der.as_ref().to_vec())
            .map_err(|e| CsrError::NotACsr(format!("no CERTIFICATE REQUEST PEM block: {e}")));
    }
    let compact: Vec<u8> = trimmed
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    match base64::engine::general_purpose::STANDARD.decode(&compact) {
        Ok(der) if der.first() == Some(&0x30) => Ok(der),
        Ok(_) => Err(CsrError::NotACsr(
            "base64 decodes to something that is not DER".into(),
        )),
        Err(_) => Err(CsrError::NotACsr("neither DER, PEM nor base64".into())),
    }
}

fn parse_csr(der: &[u8]) -> Result<X509CertificationRequest<'_>, CsrError> {
    if declared_length_exceeds(der) {
        return Err(CsrError::Truncated(format!(
            "the outer SEQUENCE declares more bytes than the {} given",
            der.len()
        )));
    }
    match X509CertificationRequest::from_der(der) {
        Ok(([], csr)) => Ok(csr),
        Ok((rest, _)) => Err(CsrError::Malformed(format!(
            "{} bytes after the end of the request",
            rest.len()
        ))),
        Err(x509_parser::nom::Err::Incomplete(_)) => {
            Err(CsrError::Truncated("the DER ends early".into()))
        }
        Err(x509_parser::nom::Err::Error(e) | x509_parser::nom::Err::Failure(e)) => Err(match e {
            X509Error::Der(x509_parser::der_parser::error::BerError::Incomplete(_)) => {
                CsrError::Truncated("the DER ends early".into())
            }
            other => CsrError::Malformed(other.to_string()),
        }),
    }
}

/// Whether the outermost DER header promises more content than there is: the unambiguous sign
/// of a cut-off upload, told apart from other malformations.
fn declared_length_exceeds(der: &[u8]) -> bool {
    let Some(&first_len) = der.get(1) else {
        return true;
    };
    let (len, header) = if first_len < 0x80 {
        (usize::from(first_len), 2)
    } else {
        let n = usize::from(first_len & 0x7f);
        if n == 0 || n > 4 {
            return false;
        }
        let Some(bytes) = der.get(2..2 + n) else {
            return true;
        };
        let len = bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, 2 + n)
    };
    header + len > der.len()
}

/// Refuses keys certgate does not certify, before anything is signed.
fn check_key(spki: &SubjectPublicKeyInfo<'_>) -> Result<(), CsrError> {
    let alg = &spki.algorithm.algorithm;
    if *alg == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok())
            .ok_or_else(|| CsrError::UnsupportedKey("EC key without a named curve".into()))?;
        if curve == OID_EC_P256 || curve == OID_NIST_EC_P384 {
            Ok(())
        } else {
            Err(CsrError::UnsupportedKey(format!("EC curve {curve}")))
        }
    } else if *alg == OID_PKCS1_RSAENCRYPTION {
        let bits = match spki.parsed() {
            Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => modulus_bits(rsa.modulus),
            _ => return Err(CsrError::UnsupportedKey("unreadable RSA key".into())),
        };
        if RSA_BITS.contains(&bits) {
            Ok(())
        } else {
            Err(CsrError::UnsupportedKey(format!("RSA-{bits}")))
        }
    } else if *alg == OID_SIG_ED25519 {
        Ok(())
    } else {
        Err(CsrError::UnsupportedKey(format!("key algorithm {alg}")))
    }
}

fn modulus_bits(modulus: &[u8]) -> usize {
    let significant: &[u8] = match modulus.iter().position(|b| *b != 0) {
        Some(start) => &modulus[start..],
        None => &[],
    };
    match significant.first() {
        Some(first) => significant.len() * 8 - first.leading_zeros() as usize,
        None => 0,
    }
}

/// Why a signature did not verify.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum SignatureError {
    /// The algorithm (named by its OID) is not one certgate verifies.
    Unsupported(String),
    /// The signature is wrong.
    Invalid,
}

/// Verifies `signature` over `message` with `signer`'s key: CSRs (self-signed) and, on open,
/// the root's signature on each generation. aws-lc-rs does the mathematics; this only maps
/// X.509 algorithm identifiers to it, accepting no SHA-1.
pub(super) fn verify_signature(
    signer: &SubjectPublicKeyInfo<'_>,
    algorithm: &AlgorithmIdentifier<'_>,
    signature: &[u8],
    message: &[u8],
) -> Result<(), SignatureError> {
    let oid = &algorithm.algorithm;
    let curve = || {
        signer
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok())
    };
    let unsupported = || SignatureError::Unsupported(oid.to_id_string());
    let alg: &'static dyn VerificationAlgorithm = if *oid == OID_SIG_ECDSA_WITH_SHA256 {
        match curve() {
            Some(c) if c == OID_EC_P256 => &signature::ECDSA_P256_SHA256_ASN1,
            Some(c) if c == OID_NIST_EC_P384 => &signature::ECDSA_P384_SHA256_ASN1,
            _ => return Err(unsupported()),
        }
    } else if *oid == OID_SIG_ECDSA_WITH_SHA384 {
        match curve() {
            Some(c) if c == OID_EC_P256 => &signature::ECDSA_P256_SHA384_ASN1,
            Some(c) if c == OID_NIST_EC_P384 => &signature::ECDSA_P384_SHA384_ASN1,
            _ => return Err(unsupported()),
        }
    } else if *oid == OID_PKCS1_SHA256WITHRSA {
        &signature::RSA_PKCS1_2048_8192_SHA256
    } else if *oid == OID_PKCS1_SHA384WITHRSA {
        &signature::RSA_PKCS1_2048_8192_SHA384
    } else if *oid == OID_PKCS1_SHA512WITHRSA {
        &signature::RSA_PKCS1_2048_8192_SHA512
    } else if *oid == OID_SIG_ED25519 {
        &signature::ED25519
    } else {
        return Err(unsupported());
    };
    signature::UnparsedPublicKey::new(alg, &signer.subject_public_key.data)
        .verify(message, signature)
        .map_err(|_| SignatureError::Invalid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::test_support::{openssl, openssl_csr};
    use rcgen::PublicKeyData as _;

    #[test]
    fn openssl_ec_csr_verifies_in_der_pem_and_base64() {
        let dir = tempfile::tempdir().unwrap();
        let pem = openssl_csr(dir.path(), "ec");
        let from_pem = verify_csr(&pem).unwrap();
        let der = CertificateSigningRequestDer::from_pem_slice(&pem).unwrap();
        let from_der = verify_csr(der.as_ref()).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
        let wrapped: String = b64
            .as_bytes()
            .chunks(64)
            .map(|c| format!("{}\r\n", String::from_utf8_lossy(c)))
            .collect();
        let from_b64 = verify_csr(wrapped.as_bytes()).unwrap();
        assert_eq!(from_pem, from_der);
        assert_eq!(from_der, from_b64);
        assert_eq!(from_pem.requested_subject(), "CN=someone else");
        assert_eq!(
            from_pem.public_key().sha256(),
            &sha256(from_pem.public_key().spki_der())
        );
    }

    #[test]
    fn openssl_rsa_csr_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let pem = openssl_csr(dir.path(), "rsa");
        verify_csr(&pem).unwrap();
    }

    #[test]
    fn rcgen_ed25519_and_p384_csrs_verify() {
        for alg in [&rcgen::PKCS_ED25519, &rcgen::PKCS_ECDSA_P384_SHA384] {
            let key = rcgen::KeyPair::generate_for(alg).unwrap();
            let csr = rcgen::CertificateParams::default()
                .serialize_request(&key)
                .unwrap();
            let verified = verify_csr(csr.der()).unwrap();
            assert_eq!(
                verified.public_key().spki_der(),
                key.subject_public_key_info()
            );
        }
    }

    #[test]
    fn garbage_is_not_a_csr() {
        for input in [
            &b""[..],
            b"   \n",
            b"hello, world",
            b"\x04\x03abc",
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        ] {
            assert!(
                matches!(verify_csr(input), Err(CsrError::NotACsr(_))),
                "{input:?}: {:?}",
                verify_csr(input)
            );
        }
    }

    #[test]
    fn truncated_csr_is_truncated() {
        let key = rcgen::KeyPair::generate().unwrap();
        let csr = rcgen::CertificateParams::default()
            .serialize_request(&key)
            .unwrap();
        let der = csr.der().as_ref();
        for cut in [der.len() - 1, der.len() / 2, 3] {
            let err = verify_csr(&der[..cut]).unwrap_err();
            assert!(
                matches!(err, CsrError::Truncated(_)),
                "cut at {cut}: {err:?}"
            );
        }
    }

    #[test]
    fn oversized_input_is_refused_before_parsing() {
        let big = vec![b'A'; MAX_CSR_BYTES + 1];
        assert!(matches!(verify_csr(&big), Err(CsrError::TooLarge { .. })));
    }

    #[test]
    fn malformed_csr_is_malformed() {
        // A well-formed DER SEQUENCE that is not a request.
        let err = verify_csr(&[0x30, 0x03, 0x02, 0x01, 0x00]).unwrap_err();
        assert!(matches!(err, CsrError::Malformed(_)), "{err:?}");
    }

    #[test]
    fn tampered_csr_has_a_bad_signature() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::default();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "aaaa");
        let csr = params.serialize_request(&key).unwrap();
        let mut der = csr.der().to_vec();
        let at = der.windows(4).position(|w| w == b"aaaa").unwrap();
        der[at] = b'b';
        assert_eq!(verify_csr(&der).unwrap_err(), CsrError::BadSignature);
    }

    #[test]
    fn csr_signed_by_another_key_has_a_bad_signature() {
        let dir = tempfile::tempdir().unwrap();
        openssl(
            dir.path(),
            &[
                "ecparam",
                "-name",
                "prime256v1",
                "-genkey",
                "-noout",
                "-out",
                "a.key",
            ],
        );
        openssl(
            dir.path(),
            &[
                "ecparam",
                "-name",
                "prime256v1",
                "-genkey",
                "-noout",
                "-out",
                "b.key",
            ],
        );
        openssl(
            dir.path(),
            &[
                "req", "-new", "-key", "a.key", "-subj", "/CN=x", "-outform", "DER", "-out",
                "a.der",
            ],
        );
        openssl(
            dir.path(),
            &[
                "req", "-new", "-key", "b.key", "-subj", "/CN=x", "-outform", "DER", "-out",
                "b.der",
            ],
        );
        let a = std::fs::read(dir.path().join("a.der")).unwrap();
        let b = std::fs::read(dir.path().join("b.der")).unwrap();
        let (_, csr_a) = X509CertificationRequest::from_der(&a).unwrap();
        let (_, csr_b) = X509CertificationRequest::from_der(&b).unwrap();
        // a's request info (with a's key) carrying b's signature algorithm and signature.
        let info_a = csr_a.certification_request_info.raw;
        let tail_b = &b[tail_offset(&b, csr_b.certification_request_info.raw)..];
        let mut forged = info_a.to_vec();
        forged.extend_from_slice(tail_b);
        let forged = yasna::construct_der(|w| w.write_sequence(|w| w.next().write_der(&forged)));
        assert_eq!(verify_csr(&forged).unwrap_err(), CsrError::BadSignature);
    }

    fn tail_offset(whole: &[u8], info: &[u8]) -> usize {
        let start = whole.windows(info.len()).position(|w| w == info).unwrap();
        start + info.len()
    }

    #[test]
    fn sha1_signed_csr_is_an_unsupported_algorithm() {
        let dir = tempfile::tempdir().unwrap();
        openssl(
            dir.path(),
            &[
                "req", "-new", "-newkey", "rsa:2048", "-nodes", "-sha1", "-subj", "/CN=x",
                "-keyout", "k.pem", "-out", "r.pem",
            ],
        );
        let pem = std::fs::read(dir.path().join("r.pem")).unwrap();
        assert!(matches!(
            verify_csr(&pem).unwrap_err(),
            CsrError::UnsupportedSignatureAlgorithm(_)
        ));
    }

    #[test]
    fn small_rsa_and_odd_curves_are_unsupported_keys() {
        let dir = tempfile::tempdir().unwrap();
        openssl(
            dir.path(),
            &[
                "req", "-new", "-newkey", "rsa:1024", "-nodes", "-subj", "/CN=x", "-keyout",
                "k1.pem", "-out", "r1.pem",
            ],
        );
        openssl(
            dir.path(),
            &[
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:secp256k1",
                "-nodes",
                "-subj",
                "/CN=x",
                "-keyout",
                "k2.pem",
                "-out",
                "r2.pem",
            ],
        );
        for (file, want) in [("r1.pem", "RSA-1024"), ("r2.pem", "EC curve")] {
            let pem = std::fs::read(dir.path().join(file)).unwrap();
            match verify_csr(&pem).unwrap_err() {
                CsrError::UnsupportedKey(why) => assert!(why.contains(want), "{why}"),
                other => panic!("{file}: {other:?}"),
            }
        }
    }

    #[test]
    fn modulus_bits_ignores_the_sign_byte() {
        assert_eq!(modulus_bits(&[0x00, 0x80, 0x00]), 16);
        assert_eq!(modulus_bits(&[0x01, 0x00]), 9);
        assert_eq!(modulus_bits(&[]), 0);
    }
}
