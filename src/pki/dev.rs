//! The development CA: made on the first `serve` when `server.dev_ca` is set and the server
//! certificate is missing, so that `cargo run -- serve` works on a fresh clone.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

use super::write_atomically;

/// The demo client's corporation, in the default CN layout.
pub const DEMO_CORP_ID: &str = "12345678901234";
/// The demo user.
pub const DEMO_USER_ID: &str = "demo";

/// What was written.
#[derive(Debug)]
pub struct DevFiles {
    /// The CA certificate to trust.
    pub ca: PathBuf,
    /// The demo client certificate.
    pub client_cert: PathBuf,
    /// Whether the CA was made now (false: an existing one was reused).
    pub new_ca: bool,
}

/// Why the development CA could not be made.
#[derive(Debug, thiserror::Error)]
pub enum DevCaError {
    /// Key or certificate generation failed.
    #[error("cannot generate the development CA: {0}")]
    Generate(#[from] rcgen::Error),
    /// A file could not be written.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// Makes (or reuses) `dir/ca.pem` + `dir/ca.key`, then a localhost server certificate at
/// `server_cert`/`server_key` and a demo client certificate at `dir/client.pem`/`dir/client.key`.
pub fn create(dir: &Path, server_cert: &Path, server_key: &Path) -> Result<DevFiles, DevCaError> {
    let ca_cert_path = dir.join("ca.pem");
    let ca_key_path = dir.join("ca.key");
    let existing = match (
        std::fs::read_to_string(&ca_cert_path),
        std::fs::read_to_string(&ca_key_path),
    ) {
        (Ok(cert), Ok(key)) => Some((cert, key)),
        _ => None,
    };
    let new_ca = existing.is_none();
    let issuer = match existing {
        Some((cert_pem, key_pem)) => {
            Issuer::from_ca_cert_pem(&cert_pem, KeyPair::from_pem(&key_pem)?)?
        }
        None => {
            let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
            let mut params = CertificateParams::default();
            params
                .distinguished_name
                .push(DnType::OrganizationName, "certgate development");
            params.distinguished_name.push(
                DnType::CommonName,
                "certgate development CA - not for production",
            );
            params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
            params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            params.not_before = rcgen::date_time_ymd(2024, 1, 1);
            params.not_after = rcgen::date_time_ymd(2036, 1, 1);
            let cert = params.self_signed(&key)?;
            write(&ca_cert_path, cert.pem().as_bytes(), false)?;
            write(&ca_key_path, key.serialize_pem().as_bytes(), true)?;
            Issuer::new(params, key)
        }
    };

    let server_pair = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut server = leaf_params("localhost", ExtendedKeyUsagePurpose::ServerAuth);
    server.subject_alt_names = vec![
        SanType::DnsName("localhost".try_into()?),
        SanType::IpAddress([127, 0, 0, 1].into()),
        SanType::IpAddress(std::net::Ipv6Addr::LOCALHOST.into()),
    ];
    let cert = server.signed_by(&server_pair, &issuer)?;
    write(server_key, server_pair.serialize_pem().as_bytes(), true)?;
    write(server_cert, cert.pem().as_bytes(), false)?;

    let client_pair = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let client = leaf_params(
        &format!("{DEMO_CORP_ID} {DEMO_USER_ID}"),
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    let cert = client.signed_by(&client_pair, &issuer)?;
    let client_cert = dir.join("client.pem");
    write(
        &dir.join("client.key"),
        client_pair.serialize_pem().as_bytes(),
        true,
    )?;
    write(&client_cert, cert.pem().as_bytes(), false)?;
    Ok(DevFiles {
        ca: ca_cert_path,
        client_cert,
        new_ca,
    })
}

fn leaf_params(common_name: &str, usage: ExtendedKeyUsagePurpose) -> CertificateParams {
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::OrganizationName, "certgate development");
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![usage];
    params.use_authority_key_identifier_extension = true;
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(365);
    params
}

fn write(path: &Path, bytes: &[u8], private: bool) -> Result<(), DevCaError> {
    write_atomically(path, bytes, private).map_err(|source| DevCaError::Io {
        path: path.to_owned(),
        source,
    })
}
