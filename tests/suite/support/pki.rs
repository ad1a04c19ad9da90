//! Certificates made with rcgen at test time.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber,
};
use time::OffsetDateTime;

/// A CA made at test time.
pub(crate) struct Ca {
    pub name: String,
    issuer: Issuer<'static, KeyPair>,
    pub cert_pem: String,
}

/// A leaf certificate and its key.
#[derive(Clone)]
pub(crate) struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: Vec<u8>,
    pub serial: Vec<u8>,
}

/// What a test wants in a client certificate.
pub(crate) struct LeafSpec {
    pub cn: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub eku: Vec<ExtendedKeyUsagePurpose>,
}

impl LeafSpec {
    pub(crate) fn client(cn: &str) -> Self {
        let now = OffsetDateTime::now_utc();
        Self {
            cn: cn.to_owned(),
            not_before: now - time::Duration::hours(1),
            not_after: now + time::Duration::days(30) + time::Duration::hours(1),
            eku: vec![ExtendedKeyUsagePurpose::ClientAuth],
        }
    }
}

impl Ca {
    pub(crate) fn new(name: &str) -> Self {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Test Bank");
        params.distinguished_name.push(
            DnType::OrganizationalUnitName,
            format!("Test Internet Banking CA {name}"),
        );
        params
            .distinguished_name
            .push(DnType::CommonName, format!("Test CA {name}"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).unwrap();
        Self {
            name: name.to_owned(),
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    pub(crate) fn leaf(&self, spec: LeafSpec) -> Leaf {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Test Bank");
        params.distinguished_name.push(DnType::CommonName, spec.cn);
        params.not_before = spec.not_before;
        params.not_after = spec.not_after;
        params.extended_key_usages = spec.eku;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let mut serial = rand_bytes(16);
        serial[0] &= 0x7f;
        serial[0] |= 0x01;
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
            serial,
        }
    }

    /// A DER CRL of this CA listing `serials`, valid from an hour ago until `next_update`.
    pub(crate) fn crl(
        &self,
        serials: &[&[u8]],
        number: u64,
        next_update: OffsetDateTime,
    ) -> Vec<u8> {
        let now = OffsetDateTime::now_utc();
        let params = rcgen::CertificateRevocationListParams {
            this_update: now - time::Duration::hours(1),
            next_update,
            crl_number: SerialNumber::from(number),
            issuing_distribution_point: None,
            revoked_certs: serials
                .iter()
                .map(|serial| rcgen::RevokedCertParams {
                    serial_number: SerialNumber::from_slice(serial),
                    revocation_time: now - time::Duration::minutes(5),
                    reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        params.signed_by(&self.issuer).unwrap().der().to_vec()
    }

    pub(crate) fn client(&self, cn: &str) -> Leaf {
        self.leaf(LeafSpec::client(cn))
    }

    pub(crate) fn server(&self) -> Leaf {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params
            .subject_alt_names
            .push(SanType::IpAddress([127, 0, 0, 1].into()));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
            serial: vec![],
        }
    }
}

fn rand_bytes(n: usize) -> Vec<u8> {
    let mut out = vec![0u8; n];
    aws_lc_rs::rand::fill(&mut out).unwrap();
    out
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn sha256_hex(der: &[u8]) -> String {
    hex(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der).as_ref())
}
