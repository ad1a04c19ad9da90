//! PKCS#7 / CMS "certs-only": the degenerate SignedData that carries certificates and no
//! signature (RFC 5652 §5, RFC 7030 §4.1.3), the body of EST `cacerts`, `simpleenroll` and
//! `serverkeygen`, and the `.p7b` file browsers import.
//!
//! The structure is fixed and tiny, so it is written with yasna (already built for rcgen)
//! rather than pulling a CMS crate in for it.

use rustls_pki_types::CertificateDer;
use yasna::models::ObjectIdentifier;

use super::error::PkiError;

/// id-signedData, RFC 5652 §5.1.
const SIGNED_DATA: &[u64] = &[1, 2, 840, 113549, 1, 7, 2];
/// id-data, RFC 5652 §4: the eContentType of a certs-only message.
const DATA: &[u64] = &[1, 2, 840, 113549, 1, 7, 1];

/// Encodes `certs` as a DER ContentInfo holding a certs-only SignedData (version 1, no digest
/// algorithms, no content, no signers). Serve it base64-encoded as
/// `application/pkcs7-mime; smime-type=certs-only`.
///
/// Each input must be one DER X.509 certificate. DER sorts a SET OF, so the order of `certs`
/// is not kept; readers find the leaf by its key, not its position.
pub fn certs_only_pkcs7(certs: &[CertificateDer<'_>]) -> Result<Vec<u8>, PkiError> {
    for (index, cert) in certs.iter().enumerate() {
        match x509_parser::parse_x509_certificate(cert) {
            Ok(([], _)) => {}
            Ok((rest, _)) => {
                return Err(PkiError::BadCertificate {
                    index,
                    reason: format!("{} bytes after the certificate", rest.len()),
                });
            }
            Err(e) => {
                return Err(PkiError::BadCertificate {
                    index,
                    reason: e.to_string(),
                });
            }
        }
    }
    Ok(yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next()
                .write_oid(&ObjectIdentifier::from_slice(SIGNED_DATA));
            w.next().write_tagged(yasna::Tag::context(0), |w| {
                w.write_sequence(|w| {
                    w.next().write_u8(1);
                    w.next().write_set_of(|_| {});
                    w.next().write_sequence(|w| {
                        w.next().write_oid(&ObjectIdentifier::from_slice(DATA));
                    });
                    w.next().write_tagged_implicit(yasna::Tag::context(0), |w| {
                        w.write_set_of(|w| {
                            for cert in certs {
                                w.next().write_der(cert);
                            }
                        });
                    });
                    w.next().write_set_of(|_| {});
                });
            });
        });
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::test_support::openssl_stdout;

    fn self_signed(cn: &str) -> CertificateDer<'static> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::default();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params.self_signed(&key).unwrap().der().clone()
    }

    #[test]
    fn openssl_reads_every_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let certs = [self_signed("first one"), self_signed("second one")];
        let p7 = certs_only_pkcs7(&certs).unwrap();
        std::fs::write(dir.path().join("certs.p7b"), &p7).unwrap();
        let out = openssl_stdout(
            dir.path(),
            &[
                "pkcs7",
                "-inform",
                "DER",
                "-in",
                "certs.p7b",
                "-print_certs",
            ],
        );
        assert!(out.contains("subject=CN = first one"), "{out}");
        assert!(out.contains("subject=CN = second one"), "{out}");
        assert_eq!(out.matches("-----BEGIN CERTIFICATE-----").count(), 2);
    }

    #[test]
    fn empty_list_is_valid_too() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("e.p7b"), certs_only_pkcs7(&[]).unwrap()).unwrap();
        openssl_stdout(
            dir.path(),
            &["pkcs7", "-inform", "DER", "-in", "e.p7b", "-print_certs"],
        );
    }

    #[test]
    fn non_certificates_are_refused_with_their_index() {
        let good = self_signed("ok");
        let bad = CertificateDer::from(vec![0x30, 0x00]);
        let err = certs_only_pkcs7(&[good, bad]).unwrap_err();
        assert!(
            matches!(err, PkiError::BadCertificate { index: 1, .. }),
            "{err}"
        );
        let empty = CertificateDer::from(Vec::new());
        assert!(certs_only_pkcs7(&[empty]).is_err());
    }
}
