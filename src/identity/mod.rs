//! Who the caller is, from the DER of a certificate that the TLS layer already verified.
//!
//! A small pure function over DER ([`Identity::from_der`]), the CN layout from config, and the
//! rendering of an identity to the headers the application receives. This module does not know
//! about rustls: it takes bytes.

mod cache;
mod cn;
mod dn;
mod headers;

use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::config::IdentityConfig;
use crate::model::{IssuerKey, Role, Serial, StandingKey, hex, rfc3339_unix, sha256};

pub use cache::{IdentityCache, Resolved};
pub use dn::rfc4514;
pub use headers::{IdentityHeaders, client_cert_chain};

/// Header names fixed by RFC 9440 and Envoy.
pub mod headers_consts {
    pub use super::headers::{CLIENT_CERT, CLIENT_CERT_CHAIN, XFCC};
}

/// Who is calling one request: the client's address, the verified certificate's identity (if a
/// certificate in good standing was presented) and the effective role (the registry's role of
/// the user, `admin` for the corporation administrator's certificate).
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    /// The client's address.
    pub peer: std::net::SocketAddr,
    /// The certificate's identity; `None` without a certificate.
    pub identity: Option<&'a Identity>,
    /// The effective role.
    pub role: Role,
    /// Whether the certificate's CA is trusted for certgate's own operations (certgate's CA
    /// generations, or a `[[trust.ca]]` with `lifecycle = true`), not only for logging in to
    /// the application.
    pub lifecycle_ca: bool,
    /// The longest its request body may pause (its connection's idle timeout).
    pub body_stall: std::time::Duration,
}

/// Why a verified certificate does not name a caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// The DER did not parse as an X.509 certificate.
    #[error("the certificate does not parse: {0}")]
    Malformed(String),
    /// The subject has no CN, or more than one.
    #[error("the certificate subject has {count} CNs; exactly one is needed")]
    CommonNameCount {
        /// How many CN attributes the subject has.
        count: usize,
    },
    /// The CN matches neither the administrator form nor the template.
    #[error("CN {cn:?} is neither a corporation ID nor the layout {template:?}")]
    CommonNameLayout {
        /// The certificate's CN.
        cn: String,
        /// The configured template.
        template: String,
    },
}

/// A caller named by a verified client certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The contract corporation's ID.
    pub corp_id: String,
    /// The user ID; `None` for the corporation administrator.
    pub user_id: Option<String>,
    /// The role the CN implies.
    pub role: Role,
    /// Serial number.
    pub serial: Serial,
    /// The issuer, as the revocation snapshot keys it.
    pub issuer: IssuerKey,
    /// The corporation, as the revocation snapshot keys it.
    pub corp_key: StandingKey,
    /// The user, as the revocation snapshot keys it (`None` for the administrator).
    pub user_key: Option<StandingKey>,
    /// notAfter, seconds since the Unix epoch.
    pub not_after: i64,
    /// notAfter as RFC 3339 UTC.
    pub not_after_rfc3339: String,
    /// SHA-256 of the leaf DER.
    pub fingerprint: [u8; 32],
    /// Subject in RFC 4514 form.
    pub subject_dn: String,
    /// Issuer in RFC 4514 form.
    pub issuer_dn: String,
    /// DNS names from the subjectAltName extension.
    pub dns_names: Vec<String>,
    /// URIs from the subjectAltName extension.
    pub uris: Vec<String>,
}

impl Identity {
    /// Reads the identity from a leaf certificate's DER.
    pub fn from_der(der: &[u8], config: &IdentityConfig) -> Result<Self, IdentityError> {
        let (_, cert) = X509Certificate::from_der(der)
            .map_err(|err| IdentityError::Malformed(err.to_string()))?;
        let common_names: Vec<_> = cert.subject().iter_common_name().collect();
        let [common_name] = common_names.as_slice() else {
            return Err(IdentityError::CommonNameCount {
                count: common_names.len(),
            });
        };
        let cn = common_name
            .as_str()
            .map_err(|_| IdentityError::Malformed("the CN is not a text string".to_owned()))?;
        let (corp_id, user_id) =
            cn::split(cn, config).ok_or_else(|| IdentityError::CommonNameLayout {
                cn: cn.to_owned(),
                template: config.template.to_string(),
            })?;
        let not_after = cert.validity().not_after.timestamp();
        let mut dns_names = Vec::new();
        let mut uris = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(dns) => dns_names.push((*dns).to_owned()),
                    GeneralName::URI(uri) => uris.push((*uri).to_owned()),
                    _ => {}
                }
            }
        }
        Ok(Self {
            role: if user_id.is_some() {
                Role::General
            } else {
                Role::Admin
            },
            corp_id: corp_id.to_owned(),
            user_id: user_id.map(str::to_owned),
            serial: Serial::from_be_bytes(cert.raw_serial())
                .map_err(|err| IdentityError::Malformed(err.to_string()))?,
            issuer: IssuerKey::of_name(cert.issuer().as_raw()),
            corp_key: StandingKey::corporation(corp_id),
            user_key: user_id.map(|user_id| StandingKey::user(corp_id, user_id)),
            not_after,
            not_after_rfc3339: rfc3339_unix(not_after),
            fingerprint: fingerprint(der),
            subject_dn: dn::rfc4514(cert.subject()),
            issuer_dn: dn::rfc4514(cert.issuer()),
            dns_names,
            uris,
        })
    }

    /// Whole days until notAfter, rounded down (negative once expired).
    pub fn days_left(&self, now_unix: i64) -> i64 {
        (self.not_after - now_unix).div_euclid(86_400)
    }

    /// The SHA-256 fingerprint as lowercase hex.
    pub fn fingerprint_hex(&self) -> String {
        hex(&self.fingerprint)
    }

    /// Whose certificate this is.
    pub fn holder(&self) -> crate::model::Holder {
        crate::model::Holder {
            corp_id: self.corp_id.clone(),
            user_id: self.user_id.clone(),
        }
    }
}

/// SHA-256 of a certificate's DER: the key of every per-certificate cache.
pub fn fingerprint(der: &[u8]) -> [u8; 32] {
    sha256(der)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use rcgen::{CertificateParams, DnType, KeyPair, SanType, SerialNumber};

    fn config() -> IdentityConfig {
        Config::parse("[server]\ncert=\"a\"\nkey=\"b\"\nclient_auth=\"none\"")
            .unwrap()
            .identity
    }

    fn cert(cn: &str, serial: &[u8]) -> Vec<u8> {
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.serial_number = Some(SerialNumber::from_slice(serial));
        params.not_after = rcgen::date_time_ymd(2030, 1, 2);
        params.subject_alt_names = vec![SanType::URI("spiffe://bank/app".try_into().unwrap())];
        let key = KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn user_certificate_names_corporation_and_user() {
        let der = cert("12345678901234 taro", &[0x00, 0x8f, 0x01]);
        let identity = Identity::from_der(&der, &config()).unwrap();
        assert_eq!(identity.corp_id, "12345678901234");
        assert_eq!(identity.user_id.as_deref(), Some("taro"));
        assert_eq!(identity.role, Role::General);
        assert_eq!(identity.serial.to_hex(), "8f01");
        assert_eq!(identity.not_after_rfc3339, "2030-01-02T00:00:00Z");
        assert_eq!(identity.uris, ["spiffe://bank/app"]);
        assert_eq!(identity.fingerprint_hex().len(), 64);
    }

    #[test]
    fn corporation_id_alone_is_the_administrator() {
        let identity = Identity::from_der(&cert("12345678901234", &[7]), &config()).unwrap();
        assert_eq!(identity.role, Role::Admin);
        assert_eq!(identity.user_id, None);
    }

    #[test]
    fn cn_outside_the_layout_is_refused() {
        for cn in [
            "1234 taro",
            "12345678901234  taro",
            "12345678901234 ta-ro",
            "alice",
        ] {
            let err = Identity::from_der(&cert(cn, &[1]), &config()).unwrap_err();
            assert!(
                matches!(err, IdentityError::CommonNameLayout { .. }),
                "{cn}: {err}"
            );
        }
    }

    #[test]
    fn garbage_is_malformed() {
        assert!(matches!(
            Identity::from_der(b"nope", &config()),
            Err(IdentityError::Malformed(_))
        ));
    }

    #[test]
    fn days_left_rounds_down() {
        let identity = Identity::from_der(&cert("12345678901234", &[7]), &config()).unwrap();
        assert_eq!(identity.days_left(identity.not_after - 86_400 * 3 - 1), 3);
        assert_eq!(identity.days_left(identity.not_after - 86_400 * 3 + 1), 2);
        assert_eq!(identity.days_left(identity.not_after + 1), -1);
    }
}
