//! Certificate revocation lists, as a pure function: a generation, its signer, the entries, the
//! times and the number in; DER out. Where the file lives and which number comes next is the
//! caller's business ([`super::Pki::crl_numbered`], `lifecycle::crl`).

use rcgen::{CertificateRevocationListParams, KeyIdMethod, RevokedCertParams, SerialNumber};
use time::OffsetDateTime;

use super::error::PkiError;
use super::generation::{Generation, Signer};
use super::utc_seconds;
use crate::model::{RevocationReason, Serial};

/// One revoked certificate of a generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedEntry {
    /// The certificate's serial.
    pub serial: Serial,
    /// When it was revoked.
    pub revoked_at: OffsetDateTime,
    /// Why.
    pub reason: RevocationReason,
}

/// A DER CRL of `generation` listing `revoked`, signed by `signer`, valid from `this_update` to
/// `next_update`, numbered `number`.
pub fn sign_crl(
    generation: &Generation,
    signer: &Signer,
    revoked: &[RevokedEntry],
    this_update: OffsetDateTime,
    next_update: OffsetDateTime,
    number: u128,
) -> Result<Vec<u8>, PkiError> {
    let params = CertificateRevocationListParams {
        this_update: utc_seconds(this_update),
        next_update: utc_seconds(next_update),
        crl_number: SerialNumber::from_slice(&unsigned_be(number)),
        issuing_distribution_point: None,
        revoked_certs: revoked
            .iter()
            .map(|entry| RevokedCertParams {
                serial_number: SerialNumber::from_slice(entry.serial.as_bytes()),
                revocation_time: utc_seconds(entry.revoked_at),
                reason_code: reason_code(entry.reason),
                invalidity_date: None,
            })
            .collect(),
        // The generation's own SKI, whatever method made it: AKI must equal it.
        key_identifier_method: KeyIdMethod::PreSpecified(signer.key_id.clone()),
    };
    params
        .signed_by(&signer.issuer)
        .map(|crl| crl.der().to_vec())
        .map_err(|source| PkiError::Crypto {
            operation: format!("sign the CRL of {}", generation.name),
            source,
        })
}

/// RFC 5280 §5.3.1: `unspecified` is written as no reasonCode at all.
fn reason_code(reason: RevocationReason) -> Option<rcgen::RevocationReason> {
    use rcgen::RevocationReason as R;
    Some(match reason {
        RevocationReason::Unspecified => return None,
        RevocationReason::KeyCompromise => R::KeyCompromise,
        RevocationReason::CaCompromise => R::CaCompromise,
        RevocationReason::AffiliationChanged => R::AffiliationChanged,
        RevocationReason::Superseded => R::Superseded,
        RevocationReason::CessationOfOperation => R::CessationOfOperation,
        RevocationReason::CertificateHold => R::CertificateHold,
        RevocationReason::RemoveFromCrl => R::RemoveFromCrl,
        RevocationReason::PrivilegeWithdrawn => R::PrivilegeWithdrawn,
        RevocationReason::AaCompromise => R::AaCompromise,
    })
}

/// The big-endian bytes of `n`, without leading zeros (rcgen adds the sign byte).
fn unsigned_be(n: u128) -> Vec<u8> {
    let bytes = n.to_be_bytes();
    let start = bytes
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(bytes.len() - 1);
    bytes[start..].to_vec()
}

/// The CRL number of a DER CRL, if it parses and has one that fits.
pub fn crl_number_of(der: &[u8]) -> Option<u128> {
    let (_, crl) = x509_parser::parse_x509_crl(der).ok()?;
    let number = crl.crl_number()?;
    let bytes = number.to_bytes_be();
    if bytes.len() > 16 {
        return None;
    }
    Some(
        bytes
            .iter()
            .fold(0u128, |acc, b| (acc << 8) | u128::from(*b)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_but_unspecified_has_its_code() {
        for reason in RevocationReason::ALL {
            let code = reason_code(reason).map(|code| code as u8);
            match reason {
                RevocationReason::Unspecified => assert_eq!(code, None),
                other => assert_eq!(code, Some(other.code()), "{other}"),
            }
        }
    }

    #[test]
    fn unsigned_be_drops_leading_zeros_only() {
        assert_eq!(unsigned_be(0), vec![0]);
        assert_eq!(unsigned_be(0x0102), vec![1, 2]);
        assert_eq!(unsigned_be(0x80), vec![0x80]);
    }
}
