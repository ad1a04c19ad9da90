//! One issuing CA generation: its listing ([`Generation`]), what signs for it ([`Signer`]), and
//! how it is made and loaded from `pki.dir`.

use std::path::Path;

use rcgen::{
    BasicConstraints, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, PublicKeyData as _,
    SerialNumber,
};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;
use time::OffsetDateTime;
use x509_parser::extensions::ParsedExtension;

use super::ca::{CA_BACKDATE, GENERATION_VALIDITY, RootCa};
use super::csr::verify_signature;
use super::error::PkiError;
use super::files::{
    generation_dir, generation_name, parse_cert, read_key, read_string, root_cert_path, write,
};
use super::settings::PkiSettings;
use super::{params_with_subject, random_serial};
use crate::model::sha256;

/// One issuing CA generation (`g1`, `g2`, …). The newest signs; every generation stays
/// listed so that its certificates keep verifying and its CRL keeps being served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generation {
    /// `g<number>`: its directory, its CRL's file name (`g2.crl`) and URL.
    pub name: String,
    /// 1, 2, …
    pub number: u32,
    /// O of its subject, which its leaves copy.
    pub organization: String,
    /// OU of its subject (`<unit>`, `<unit>-G2`, …), which its leaves copy.
    pub unit: String,
    /// Subject for display (`O=…, OU=…`); commas in values are not escaped.
    pub subject: String,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity; no leaf of this generation outlives it.
    pub not_after: OffsetDateTime,
    /// SHA-256 of the certificate.
    pub sha256: [u8; 32],
    /// The certificate, DER.
    pub cert_der: CertificateDer<'static>,
    /// The certificate, PEM.
    pub cert_pem: String,
}

/// What signs for a generation; kept apart from [`Generation`] so that the listing can be
/// cloned and shown without the key.
#[derive(Debug)]
pub struct Signer {
    pub(crate) issuer: Issuer<'static, KeyPair>,
    /// The generation's subject key identifier: the AKI of everything it signs.
    pub(crate) key_id: Vec<u8>,
}

/// Makes generation `number`'s key (written to `ca.key`) and certificate (not written yet: the
/// caller writes the generation's first CRL, then [`publish`]es `ca.pem`, which is what `open`
/// looks for, so that it appears only once everything else is in place).
pub(super) fn create_generation(
    settings: &PkiSettings,
    root: &RootCa,
    root_issuer: &Issuer<'_, KeyPair>,
    number: u32,
    now: OffsetDateTime,
) -> Result<(Generation, Signer), PkiError> {
    let dir = &settings.dir;
    let name = generation_name(number);
    let key = settings
        .key_type
        .generate(&format!("the {name} issuing CA key"))?;
    let mut params = params_with_subject(&[
        (DnType::OrganizationName, settings.organization.clone()),
        (DnType::OrganizationalUnitName, settings.unit_for(number)),
    ]);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(SerialNumber::from_slice(&random_serial()?));
    params.not_before = now - CA_BACKDATE;
    params.not_after = (now + GENERATION_VALIDITY).min(root.not_after);
    let cert = params
        .signed_by(&key, root_issuer)
        .map_err(|source| PkiError::Crypto {
            operation: format!("sign the {name} issuing CA certificate"),
            source,
        })?;
    let key_path = generation_dir(dir, number).join("ca.key");
    write(&key_path, key.serialize_pem().as_bytes(), true)?;
    let (generation, signer) = generation_from(
        &generation_dir(dir, number).join("ca.pem"),
        number,
        cert.der().clone(),
        cert.pem(),
        key,
    )?;
    Ok((generation, signer))
}

/// Writes `ca.pem`, the last file of a new generation.
pub(super) fn publish(dir: &Path, generation: &Generation) -> Result<(), PkiError> {
    write(
        &generation_dir(dir, generation.number).join("ca.pem"),
        generation.cert_pem.as_bytes(),
        false,
    )
}

pub(super) fn load_generation(
    dir: &Path,
    number: u32,
    root: &RootCa,
) -> Result<(Generation, Signer), PkiError> {
    let gen_dir = generation_dir(dir, number);
    let cert_path = gen_dir.join("ca.pem");
    let key_path = gen_dir.join("ca.key");
    for path in [&cert_path, &key_path] {
        if !path.exists() {
            return Err(PkiError::IncompleteGeneration {
                dir: gen_dir,
                missing: path.clone(),
            });
        }
    }
    let cert_pem = read_string(&cert_path)?;
    let cert_der =
        CertificateDer::from_pem_slice(cert_pem.as_bytes()).map_err(|e| PkiError::BadFile {
            path: cert_path.clone(),
            what: "CA certificate",
            reason: e.to_string(),
        })?;
    let x509 = parse_cert(&cert_path, &cert_der, "CA certificate")?;
    let root_x509 = parse_cert(&root_cert_path(dir), &root.cert_der, "root CA certificate")?;
    verify_signature(
        root_x509.public_key(),
        &x509.signature_algorithm,
        &x509.signature_value.data,
        x509.tbs_certificate.as_ref(),
    )
    .map_err(|_| PkiError::NotSignedByRoot {
        cert: cert_path.clone(),
        root: root_cert_path(dir),
    })?;
    let key = read_key(&key_path)?;
    if key.subject_public_key_info() != x509.public_key().raw {
        return Err(PkiError::KeyMismatch {
            key: key_path,
            cert: cert_path,
        });
    }
    generation_from(&cert_path, number, cert_der, cert_pem, key)
}

/// Builds the listing and the signer from a generation's certificate, the same way for a
/// freshly made generation and a loaded one.
fn generation_from(
    cert_path: &Path,
    number: u32,
    cert_der: CertificateDer<'static>,
    cert_pem: String,
    key: KeyPair,
) -> Result<(Generation, Signer), PkiError> {
    let bad = |reason: &str| PkiError::BadFile {
        path: cert_path.to_owned(),
        what: "CA certificate",
        reason: reason.to_owned(),
    };
    let x509 = parse_cert(cert_path, &cert_der, "CA certificate")?;
    if !x509.is_ca() {
        return Err(bad("not a CA (basicConstraints cA is not set)"));
    }
    let subject = x509.subject();
    let organization = first_attr(subject.iter_organization()).ok_or_else(|| bad("no O"))?;
    let unit = first_attr(subject.iter_organizational_unit()).ok_or_else(|| bad("no OU"))?;
    let key_id = x509
        .extensions()
        .iter()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
            _ => None,
        })
        .ok_or_else(|| bad("no subject key identifier"))?;
    let generation = Generation {
        name: generation_name(number),
        number,
        organization,
        unit,
        subject: subject.to_string(),
        not_before: x509.validity().not_before.to_datetime(),
        not_after: x509.validity().not_after.to_datetime(),
        sha256: sha256(&cert_der),
        cert_pem,
        cert_der: cert_der.clone(),
    };
    let issuer = Issuer::from_ca_cert_der(&cert_der, key).map_err(|source| PkiError::Crypto {
        operation: format!("load {} as an issuer", generation.name),
        source,
    })?;
    Ok((generation, Signer { issuer, key_id }))
}

fn first_attr<'a>(
    mut values: impl Iterator<Item = &'a x509_parser::x509::AttributeTypeAndValue<'a>>,
) -> Option<String> {
    values
        .next()
        .and_then(|attr| attr.as_str().ok())
        .map(str::to_owned)
}
