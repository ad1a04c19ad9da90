//! The CA hierarchy on disk: the root, the issuing generations, `init`, `open` and `rotate`.

use std::io;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, PublicKeyData as _,
    SerialNumber,
};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;
use time::{Duration, OffsetDateTime};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::ParsedExtension;

use super::crl::sign_crl;
use super::csr::verify_signature;
use super::error::PkiError;
use super::settings::PkiSettings;
use super::{params_with_subject, random_serial, sha256, utc_seconds, write_atomically};

/// Validity of the root CA: it outlives every generation it signs.
pub const ROOT_VALIDITY: Duration = Duration::days(20 * 365 + 5);
/// Validity of an issuing generation: rotate well before it ends, since leaves are clamped
/// to it.
pub const GENERATION_VALIDITY: Duration = Duration::days(10 * 365 + 2);
/// CA certificates start this much before their creation, so that a replica whose clock lags
/// does not see a not-yet-valid issuer. Leaves are not backdated: their validity is exactly
/// `validity_days` from issuance.
const CA_BACKDATE: Duration = Duration::hours(1);

/// The self-signed root. It signs generations only, never a leaf; its key is needed by
/// `init` and `rotate` alone, so `root.key` may be kept offline in between.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootCa {
    /// Subject for display (`O=…, OU=…`); commas in values are not escaped.
    pub subject: String,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
    /// The certificate, DER.
    pub cert_der: CertificateDer<'static>,
    /// The certificate, PEM.
    pub cert_pem: String,
}

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
pub(super) struct Signer {
    pub(super) issuer: Issuer<'static, KeyPair>,
    /// The generation's subject key identifier: the AKI of everything it signs.
    pub(super) key_id: Vec<u8>,
}

/// certgate's issuing CA: the root and every generation under `pki.dir`, with the keys of the
/// generations loaded. Share it behind an `Arc` (or a swap for `rotate`); all signing takes
/// `&self`.
#[derive(Debug)]
pub struct Pki {
    pub(super) settings: PkiSettings,
    pub(super) root: RootCa,
    /// Ascending by number; never empty.
    pub(super) generations: Vec<Generation>,
    /// Parallel to `generations`.
    pub(super) signers: Vec<Signer>,
    /// Serialises CRL writes in this process, so that CRL numbers grow.
    pub(super) crl_lock: std::sync::Mutex<()>,
}

impl Pki {
    /// Creates the root CA and generation `g1` under `settings.dir` (`certgate init`), with
    /// an empty CRL for `g1`.
    ///
    /// Refuses with [`PkiError::AlreadyInitialised`] when any root file or generation already
    /// exists: keys are never overwritten.
    pub fn init(settings: PkiSettings, now: OffsetDateTime) -> Result<Pki, PkiError> {
        settings.validate()?;
        let dir = settings.dir.clone();
        create_private_dir(&dir, true)?;
        let found = [root_cert_path(&dir), root_key_path(&dir)]
            .into_iter()
            .find(|path| path.exists())
            .or_else(|| {
                list_generations(&dir)
                    .ok()
                    .and_then(|numbers| numbers.first().map(|n| generation_dir(&dir, *n)))
            });
        if let Some(found) = found {
            return Err(PkiError::AlreadyInitialised { dir, found });
        }
        // Creating g1/ is the claim: of two concurrent inits, one gets AlreadyExists here before
        // it has written anything.
        claim_generation_dir(&dir, 1).map_err(|e| match e {
            PkiError::GenerationExists { dir: found, .. } => PkiError::AlreadyInitialised {
                dir: dir.clone(),
                found,
            },
            other => other,
        })?;

        let now = utc_seconds(now);
        let root_key = settings.key_type.generate("the root CA key")?;
        let mut params = params_with_subject(&[
            (DnType::OrganizationName, settings.organization.clone()),
            (DnType::CommonName, format!("{} Root", settings.unit)),
        ]);
        // pathlen 1: the root signs generations, a generation signs leaves, nothing deeper.
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(1));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.serial_number = Some(SerialNumber::from_slice(&random_serial()?));
        params.not_before = now - CA_BACKDATE;
        params.not_after = now + ROOT_VALIDITY;
        let root_cert = params
            .self_signed(&root_key)
            .map_err(|source| PkiError::Crypto {
                operation: "self-sign the root CA".into(),
                source,
            })?;
        write(
            &root_key_path(&dir),
            root_key.serialize_pem().as_bytes(),
            true,
        )?;
        write(&root_cert_path(&dir), root_cert.pem().as_bytes(), false)?;
        let root = load_root(&dir)?;
        let root_issuer = Issuer::new(params, root_key);
        let (generation, signer) = create_generation(&settings, &root, &root_issuer, 1, now)?;
        Ok(Pki {
            settings,
            root,
            generations: vec![generation],
            signers: vec![signer],
            crl_lock: Default::default(),
        })
    }

    /// Loads the root certificate and every generation (certificate and key) from
    /// `settings.dir`. Each generation's key must match its certificate and the certificate
    /// must be signed by the root. `root.key` is not read.
    pub fn open(settings: PkiSettings) -> Result<Pki, PkiError> {
        settings.validate()?;
        let dir = settings.dir.clone();
        let root = load_root(&dir)?;
        let numbers = list_generations(&dir)?;
        if numbers.is_empty() {
            return Err(PkiError::NotInitialised {
                missing: generation_dir(&dir, 1),
                dir,
            });
        }
        let mut generations = Vec::with_capacity(numbers.len());
        let mut signers = Vec::with_capacity(numbers.len());
        for number in numbers {
            let (generation, signer) = load_generation(&dir, number, &root)?;
            generations.push(generation);
            signers.push(signer);
        }
        Ok(Pki {
            settings,
            root,
            generations,
            signers,
            crl_lock: Default::default(),
        })
    }

    /// Creates the next generation (`certgate ca rotate`), signed by the root, with an empty
    /// CRL. It signs every certificate from now on; the previous ones stay listed and trusted.
    ///
    /// Needs `root.key`. Refuses with [`PkiError::GenerationExists`] when another process
    /// rotated since this one opened the PKI.
    pub fn rotate(&mut self, now: OffsetDateTime) -> Result<&Generation, PkiError> {
        let now = utc_seconds(now);
        if now >= self.root.not_after {
            return Err(PkiError::RootExpired {
                not_after: self.root.not_after,
            });
        }
        let dir = self.settings.dir.clone();
        let key_path = root_key_path(&dir);
        let root_key = read_key(&key_path)?;
        let root_cert = parse_cert(&root_cert_path(&dir), &self.root.cert_der, "root CA")?;
        if root_key.subject_public_key_info() != root_cert.public_key().raw {
            return Err(PkiError::KeyMismatch {
                key: key_path,
                cert: root_cert_path(&dir),
            });
        }
        let root_issuer =
            Issuer::from_ca_cert_der(&self.root.cert_der, root_key).map_err(|source| {
                PkiError::Crypto {
                    operation: "load the root CA as an issuer".into(),
                    source,
                }
            })?;
        let number = self.current().number + 1;
        claim_generation_dir(&dir, number)?;
        let (generation, signer) =
            create_generation(&self.settings, &self.root, &root_issuer, number, now)?;
        self.generations.push(generation);
        self.signers.push(signer);
        Ok(self.current())
    }

    /// The settings this PKI was opened with.
    pub fn settings(&self) -> &PkiSettings {
        &self.settings
    }

    /// The root CA.
    pub fn root(&self) -> &RootCa {
        &self.root
    }

    /// Every generation, oldest first (`certgate ca list`).
    pub fn generations(&self) -> &[Generation] {
        &self.generations
    }

    /// The generation that signs now: the newest.
    pub fn current(&self) -> &Generation {
        // `init` and `open` never build a Pki without a generation.
        &self.generations[self.generations.len() - 1]
    }

    /// The generation called `name` (`g2`).
    pub fn generation(&self, name: &str) -> Result<&Generation, PkiError> {
        self.index_of(name).map(|i| &self.generations[i])
    }

    pub(super) fn index_of(&self, name: &str) -> Result<usize, PkiError> {
        self.generations
            .iter()
            .position(|g| g.name == name)
            .ok_or_else(|| PkiError::UnknownGeneration {
                name: name.to_owned(),
                known: self
                    .generations
                    .iter()
                    .map(|g| g.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// The certificates a client-certificate verifier should trust: every generation whose CA
    /// certificate is still valid at `now`. Leaves never outlive their generation, so this
    /// covers every certificate certgate issued that has not expired.
    ///
    /// The issuing generations are the anchors, not the root: a client that presents only
    /// its leaf (common with EST clients and browsers) still verifies, and dropping an
    /// expired generation really ends its trust (webpki does not check an anchor's own
    /// validity, and with the root as anchor a presented old intermediate would still chain).
    pub fn trust_anchors(&self, now: OffsetDateTime) -> Vec<CertificateDer<'static>> {
        self.generations
            .iter()
            .filter(|g| g.not_after > now)
            .map(|g| g.cert_der.clone())
            .collect()
    }

    /// [`Self::trust_anchors`] as concatenated PEM, e.g. for a CA file.
    pub fn trust_anchors_pem(&self, now: OffsetDateTime) -> String {
        self.generations
            .iter()
            .filter(|g| g.not_after > now)
            .map(|g| g.cert_pem.as_str())
            .collect()
    }

    /// The chain above a leaf of generation `name`: that generation's certificate, then the
    /// root. What a PKCS#12 file and an EST response carry beside the leaf.
    pub fn chain(&self, name: &str) -> Result<Vec<CertificateDer<'static>>, PkiError> {
        let generation = self.generation(name)?;
        Ok(vec![
            generation.cert_der.clone(),
            self.root.cert_der.clone(),
        ])
    }

    /// The CA certificates for EST `/cacerts`: the root, then every generation still valid
    /// at `now`.
    pub fn ca_certs(&self, now: OffsetDateTime) -> Vec<CertificateDer<'static>> {
        std::iter::once(self.root.cert_der.clone())
            .chain(self.trust_anchors(now))
            .collect()
    }
}

/// Makes generation `number`: key, certificate, empty CRL, written in that order so that
/// `ca.pem` — what `open` looks for — appears only once everything else is in place.
fn create_generation(
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
    let crl = sign_crl(&generation, &signer, &[], now, None)?;
    write(&crl_path(dir, &name), &crl, false)?;
    write(
        &generation_dir(dir, number).join("ca.pem"),
        generation.cert_pem.as_bytes(),
        false,
    )?;
    Ok((generation, signer))
}

fn load_generation(
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

fn load_root(dir: &Path) -> Result<RootCa, PkiError> {
    let path = root_cert_path(dir);
    if !path.exists() {
        return Err(PkiError::NotInitialised {
            dir: dir.to_owned(),
            missing: path,
        });
    }
    let cert_pem = read_string(&path)?;
    let cert_der =
        CertificateDer::from_pem_slice(cert_pem.as_bytes()).map_err(|e| PkiError::BadFile {
            path: path.clone(),
            what: "root CA certificate",
            reason: e.to_string(),
        })?;
    let x509 = parse_cert(&path, &cert_der, "root CA certificate")?;
    let root = RootCa {
        subject: x509.subject().to_string(),
        not_before: x509.validity().not_before.to_datetime(),
        not_after: x509.validity().not_after.to_datetime(),
        cert_der: cert_der.clone(),
        cert_pem,
    };
    Ok(root)
}

fn parse_cert<'a>(
    path: &Path,
    der: &'a CertificateDer<'_>,
    what: &'static str,
) -> Result<X509Certificate<'a>, PkiError> {
    match x509_parser::parse_x509_certificate(der) {
        Ok(([], cert)) => Ok(cert),
        Ok(_) => Err(PkiError::BadFile {
            path: path.to_owned(),
            what,
            reason: "trailing bytes after the certificate".into(),
        }),
        Err(e) => Err(PkiError::BadFile {
            path: path.to_owned(),
            what,
            reason: e.to_string(),
        }),
    }
}

fn read_key(path: &Path) -> Result<KeyPair, PkiError> {
    let pem = read_string(path)?;
    // The parser's message is not passed on: it could quote the key material it choked on.
    KeyPair::from_pem(&pem).map_err(|_| PkiError::BadFile {
        path: path.to_owned(),
        what: "private key",
        reason: "not a PEM PKCS#8, SEC1 or PKCS#1 ECDSA/RSA key".into(),
    })
}

fn read_string(path: &Path) -> Result<String, PkiError> {
    std::fs::read_to_string(path).map_err(|source| PkiError::Read {
        path: path.to_owned(),
        source,
    })
}

pub(super) fn write(path: &Path, bytes: &[u8], private: bool) -> Result<(), PkiError> {
    write_atomically(path, bytes, private).map_err(|source| PkiError::Write {
        path: path.to_owned(),
        source,
    })
}

/// Generation numbers found under `dir`: directories named `g<N>`, N ≥ 1 without leading
/// zeros, ascending.
fn list_generations(dir: &Path) -> Result<Vec<u32>, PkiError> {
    let entries = std::fs::read_dir(dir).map_err(|source| PkiError::Read {
        path: dir.to_owned(),
        source,
    })?;
    let mut numbers = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| PkiError::Read {
            path: dir.to_owned(),
            source,
        })?;
        let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
        if let (true, Some(number)) = (is_dir, entry.file_name().to_str().and_then(parse_name)) {
            numbers.push(number);
        }
    }
    numbers.sort_unstable();
    Ok(numbers)
}

/// `g<N>` → N.
pub(super) fn parse_name(name: &str) -> Option<u32> {
    let digits = name.strip_prefix('g')?;
    if digits.starts_with('0') || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().filter(|n| *n >= 1)
}

fn generation_name(number: u32) -> String {
    format!("g{number}")
}

fn root_cert_path(dir: &Path) -> PathBuf {
    dir.join("root.pem")
}

fn root_key_path(dir: &Path) -> PathBuf {
    dir.join("root.key")
}

fn generation_dir(dir: &Path, number: u32) -> PathBuf {
    dir.join(generation_name(number))
}

/// `<dir>/<generation>.crl`.
pub(super) fn crl_path(dir: &Path, generation: &str) -> PathBuf {
    dir.join(format!("{generation}.crl"))
}

/// Creates `g<number>/` with `create_dir`, which fails if it exists: the one atomic step that
/// decides which process makes a generation.
fn claim_generation_dir(dir: &Path, number: u32) -> Result<(), PkiError> {
    let path = generation_dir(dir, number);
    match create_private_dir(&path, false) {
        Err(PkiError::Write { source, .. }) if source.kind() == io::ErrorKind::AlreadyExists => {
            Err(PkiError::GenerationExists {
                name: generation_name(number),
                dir: path,
            })
        }
        other => other,
    }
}

/// Directories holding keys are created readable by the owner only.
fn create_private_dir(path: &Path, recursive: bool) -> Result<(), PkiError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(recursive);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder.create(path).map_err(|source| PkiError::Write {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_names_parse_strictly() {
        assert_eq!(parse_name("g1"), Some(1));
        assert_eq!(parse_name("g12"), Some(12));
        for bad in ["g0", "g01", "g", "g1a", "G1", "x1", "g-1", "g+1"] {
            assert_eq!(parse_name(bad), None, "{bad}");
        }
    }
}
