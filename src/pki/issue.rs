//! Leaf certificates: a client certificate for a public key the caller has verified (from a
//! CSR) or for a key certgate generates itself (`enroll.p12`, EST `serverkeygen`).

use rcgen::{DnType, ExtendedKeyUsagePurpose, IsCa, KeyUsagePurpose, PublicKeyData};
use rustls_pki_types::{CertificateDer, PrivatePkcs8KeyDer};
use time::{Duration, OffsetDateTime};

use super::ca::Pki;
use super::csr::PublicKey;
use super::error::PkiError;
use super::settings::MAX_COMMON_NAME;
use super::{params_with_subject, random_serial, utc_seconds};
use crate::model::{Serial, sha256};

/// What the caller decides about a leaf's subject. O and OU always come from the issuing
/// generation; nothing comes from a CSR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafSubject {
    /// CN, rendered by `lifecycle` from the configured identity template
    /// (e.g. `"12345678901234 user01"`). 1 to 64 characters, no control characters.
    pub common_name: String,
}

/// A certificate certgate issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCertificate {
    /// The certificate, DER.
    pub der: CertificateDer<'static>,
    /// The certificate, PEM.
    pub pem: String,
    /// Serial: 16 random bytes, positive and without a leading zero byte.
    pub serial: Serial,
    /// O (from the issuing generation).
    pub organization: String,
    /// OU (from the issuing generation).
    pub unit: String,
    /// CN (from the [`LeafSubject`]).
    pub common_name: String,
    /// Start of validity: the issuance time, whole seconds.
    pub not_before: OffsetDateTime,
    /// End of validity: `not_before + validity_days`, or the issuer's end if that is sooner.
    pub not_after: OffsetDateTime,
    /// SHA-256 of the DER certificate.
    pub sha256: [u8; 32],
    /// The generation that signed it (`g2`).
    pub generation: String,
}

impl Pki {
    /// Issues a client certificate for `key` from the current generation, valid from `now`
    /// for `validity_days`.
    ///
    /// The leaf never outlives its issuer: `not_after` is clamped to the generation's end (a
    /// shorter certificate beats a refusal at enrollment time; rotate long before that). An
    /// expired generation refuses with [`PkiError::IssuerExpired`].
    pub fn issue(
        &self,
        key: &PublicKey,
        subject: &LeafSubject,
        now: OffsetDateTime,
    ) -> Result<IssuedCertificate, PkiError> {
        self.issue_for(key.as_rcgen(), subject, now)
    }

    fn issue_for(
        &self,
        key: &impl PublicKeyData,
        subject: &LeafSubject,
        now: OffsetDateTime,
    ) -> Result<IssuedCertificate, PkiError> {
        check_common_name(&subject.common_name)?;
        let index = self.generations.len() - 1;
        let generation = &self.generations[index];
        let signer = &self.signers[index];
        let now = utc_seconds(now);
        if now >= generation.not_after {
            return Err(PkiError::IssuerExpired {
                generation: generation.name.clone(),
                not_after: generation.not_after,
            });
        }
        let serial = random_serial()?;
        let mut params = params_with_subject(&[
            (DnType::OrganizationName, generation.organization.clone()),
            (DnType::OrganizationalUnitName, generation.unit.clone()),
            (DnType::CommonName, subject.common_name.clone()),
        ]);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        // ExplicitNoCa writes basicConstraints cA=false and the subject key identifier.
        params.is_ca = IsCa::ExplicitNoCa;
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
        params.not_before = now;
        params.not_after = (now + Duration::days(i64::from(self.settings.validity_days)))
            .min(generation.not_after);
        let cert = params
            .signed_by(key, &signer.issuer)
            .map_err(|source| PkiError::Crypto {
                operation: format!("sign a leaf certificate with {}", generation.name),
                source,
            })?;
        Ok(IssuedCertificate {
            sha256: sha256(cert.der()),
            pem: cert.pem(),
            der: cert.der().clone(),
            serial: Serial::from_be_bytes(&serial)
                .map_err(|err| PkiError::InvalidSubject(err.to_string()))?,
            organization: generation.organization.clone(),
            unit: generation.unit.clone(),
            common_name: subject.common_name.clone(),
            not_before: params.not_before,
            not_after: params.not_after,
            generation: generation.name.clone(),
        })
    }

    /// Generates a key of `pki.key_type` and issues a certificate for it, for `enroll.p12`
    /// and EST `serverkeygen`. The key is returned as PKCS#8 DER and is not kept anywhere.
    pub fn issue_with_server_key(
        &self,
        subject: &LeafSubject,
        now: OffsetDateTime,
    ) -> Result<(PrivatePkcs8KeyDer<'static>, IssuedCertificate), PkiError> {
        check_common_name(&subject.common_name)?;
        let key = self.settings.key_type.generate("a client key")?;
        let issued = self.issue_for(&key, subject, now)?;
        Ok((PrivatePkcs8KeyDer::from(key.serialize_der()), issued))
    }
}

fn check_common_name(cn: &str) -> Result<(), PkiError> {
    let chars = cn.chars().count();
    if chars == 0 || chars > MAX_COMMON_NAME || cn.chars().any(char::is_control) {
        return Err(PkiError::InvalidSubject(format!(
            "CN {cn:?} must be 1 to {MAX_COMMON_NAME} characters without control characters"
        )));
    }
    Ok(())
}
