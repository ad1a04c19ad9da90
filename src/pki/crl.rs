//! Certificate revocation lists: one per generation, `<pki.dir>/g<N>.crl` (DER), served at
//! `/certgate/crl/g<N>.crl` and regenerated on every revocation.

use std::path::PathBuf;

use rcgen::{CertificateRevocationListParams, KeyIdMethod, RevokedCertParams, SerialNumber};
use time::{Duration, OffsetDateTime};

use super::ca::{Generation, Pki, Signer, crl_path, write};
use super::error::PkiError;
use super::utc_seconds;

/// nextUpdate − thisUpdate. A CRL is re-signed on every revocation; `lifecycle` should also
/// re-sign each generation's CRL daily, so that readers honouring nextUpdate never see a
/// stale one.
pub const CRL_VALIDITY: Duration = Duration::days(7);

/// Why a certificate was revoked (RFC 5280 §5.3.1; the codes usable in a full CRL).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RevocationReason {
    /// No reason given; written as no reasonCode at all, as RFC 5280 asks.
    Unspecified,
    /// The private key is, or may be, known to someone else.
    KeyCompromise,
    /// The CA's key is compromised.
    CaCompromise,
    /// The holder left the corporation or changed role.
    AffiliationChanged,
    /// Replaced by a new certificate (renewal, re-issue).
    Superseded,
    /// No longer needed (e.g. the corporation ended certificate login).
    CessationOfOperation,
    /// Suspended; may be lifted by removing the entry from the next CRL.
    CertificateHold,
    /// The holder's right to it was withdrawn (e.g. revoked by the master user).
    PrivilegeWithdrawn,
}

impl RevocationReason {
    /// The RFC 5280 name, e.g. `keyCompromise`, for storage and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unspecified => "unspecified",
            Self::KeyCompromise => "keyCompromise",
            Self::CaCompromise => "cACompromise",
            Self::AffiliationChanged => "affiliationChanged",
            Self::Superseded => "superseded",
            Self::CessationOfOperation => "cessationOfOperation",
            Self::CertificateHold => "certificateHold",
            Self::PrivilegeWithdrawn => "privilegeWithdrawn",
        }
    }

    fn to_rcgen(self) -> Option<rcgen::RevocationReason> {
        use rcgen::RevocationReason as R;
        match self {
            Self::Unspecified => None,
            Self::KeyCompromise => Some(R::KeyCompromise),
            Self::CaCompromise => Some(R::CaCompromise),
            Self::AffiliationChanged => Some(R::AffiliationChanged),
            Self::Superseded => Some(R::Superseded),
            Self::CessationOfOperation => Some(R::CessationOfOperation),
            Self::CertificateHold => Some(R::CertificateHold),
            Self::PrivilegeWithdrawn => Some(R::PrivilegeWithdrawn),
        }
    }
}

impl std::str::FromStr for RevocationReason {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            Self::Unspecified,
            Self::KeyCompromise,
            Self::CaCompromise,
            Self::AffiliationChanged,
            Self::Superseded,
            Self::CessationOfOperation,
            Self::CertificateHold,
            Self::PrivilegeWithdrawn,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
        .ok_or_else(|| format!("{s:?} is not a revocation reason"))
    }
}

/// One revoked certificate of a generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedEntry {
    /// The certificate's serial, big-endian bytes as in [`super::IssuedCertificate::serial`].
    pub serial: Vec<u8>,
    /// When it was revoked.
    pub revoked_at: OffsetDateTime,
    /// Why.
    pub reason: RevocationReason,
}

impl Pki {
    /// A DER CRL of generation `generation` listing `revoked` (every revoked, unexpired
    /// certificate that generation issued), signed by that generation, valid from `now` for
    /// [`CRL_VALIDITY`].
    ///
    /// The CRL number is the Unix time in milliseconds, raised above the number of the CRL on
    /// disk if that is higher, so it only grows without a counter to keep.
    pub fn crl(
        &self,
        generation: &str,
        revoked: &[RevokedEntry],
        now: OffsetDateTime,
    ) -> Result<Vec<u8>, PkiError> {
        let index = self.index_of(generation)?;
        let previous = previous_crl_number(&crl_path(&self.settings.dir, generation));
        sign_crl(
            &self.generations[index],
            &self.signers[index],
            revoked,
            now,
            previous,
        )
    }

    /// [`Self::crl`], written atomically to `<pki.dir>/<generation>.crl`; returns that path.
    ///
    /// Writes are serialised within the process. The last write wins, so a caller that
    /// revokes concurrently should read `revoked` from the registry under its own per-generation
    /// lock, or an older list could overwrite a newer one.
    pub fn write_crl(
        &self,
        generation: &str,
        revoked: &[RevokedEntry],
        now: OffsetDateTime,
    ) -> Result<PathBuf, PkiError> {
        // A panic elsewhere while holding the lock leaves nothing half-done here: the file is
        // written atomically, so a poisoned lock is still usable.
        let _guard = self
            .crl_lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let der = self.crl(generation, revoked, now)?;
        let path = self.crl_path(generation)?;
        write(&path, &der, false)?;
        Ok(path)
    }

    /// Where generation `generation`'s CRL lives: `<pki.dir>/<generation>.crl`.
    pub fn crl_path(&self, generation: &str) -> Result<PathBuf, PkiError> {
        self.index_of(generation)?;
        Ok(crl_path(&self.settings.dir, generation))
    }
}

pub(super) fn sign_crl(
    generation: &Generation,
    signer: &Signer,
    revoked: &[RevokedEntry],
    now: OffsetDateTime,
    previous_number: Option<u128>,
) -> Result<Vec<u8>, PkiError> {
    let millis = u128::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
    let now = utc_seconds(now);
    let number = match previous_number {
        Some(previous) if previous >= millis => previous + 1,
        _ => millis,
    };
    let params = CertificateRevocationListParams {
        this_update: now,
        next_update: now + CRL_VALIDITY,
        crl_number: SerialNumber::from_slice(&unsigned_be(number)),
        issuing_distribution_point: None,
        revoked_certs: revoked
            .iter()
            .map(|entry| RevokedCertParams {
                serial_number: SerialNumber::from_slice(&entry.serial),
                revocation_time: utc_seconds(entry.revoked_at),
                reason_code: entry.reason.to_rcgen(),
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

/// The big-endian bytes of `n`, without leading zeros (rcgen adds the sign byte).
fn unsigned_be(n: u128) -> Vec<u8> {
    let bytes = n.to_be_bytes();
    let start = bytes
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(bytes.len() - 1);
    bytes[start..].to_vec()
}

/// The CRL number of the CRL at `path`, if there is a readable one.
fn previous_crl_number(path: &std::path::Path) -> Option<u128> {
    let der = std::fs::read(path).ok()?;
    let (_, crl) = x509_parser::parse_x509_crl(&der).ok()?;
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
    fn reasons_round_trip_their_rfc_names() {
        for reason in [
            RevocationReason::Unspecified,
            RevocationReason::KeyCompromise,
            RevocationReason::CaCompromise,
            RevocationReason::AffiliationChanged,
            RevocationReason::Superseded,
            RevocationReason::CessationOfOperation,
            RevocationReason::CertificateHold,
            RevocationReason::PrivilegeWithdrawn,
        ] {
            assert_eq!(reason.as_str().parse::<RevocationReason>(), Ok(reason));
        }
        assert!("removeFromCRL".parse::<RevocationReason>().is_err());
    }

    #[test]
    fn unsigned_be_drops_leading_zeros_only() {
        assert_eq!(unsigned_be(0), vec![0]);
        assert_eq!(unsigned_be(0x0102), vec![1, 2]);
        assert_eq!(unsigned_be(0x80), vec![0x80]);
    }
}
