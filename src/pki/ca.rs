//! The CA hierarchy on disk: the root, the issuing generations, `init`, `open` and `rotate`.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, DnType, IsCa, Issuer, KeyUsagePurpose, PublicKeyData as _, SerialNumber,
};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;
use time::{Duration, OffsetDateTime};

use super::crl::{RevokedEntry, crl_number_of, sign_crl};
use super::error::PkiError;
use super::files::{
    claim_generation_dir, create_private_dir, crl_path, generation_dir, list_generations,
    parse_cert, read_key, read_string, root_cert_path, root_key_path, write,
};
use super::generation::{Generation, Signer, create_generation, load_generation, publish};
use super::settings::PkiSettings;
use super::{params_with_subject, random_serial, utc_seconds};

/// Validity of the root CA: it outlives every generation it signs.
pub const ROOT_VALIDITY: Duration = Duration::days(20 * 365 + 5);
/// Validity of an issuing generation: rotate well before it ends, since leaves are clamped
/// to it.
pub const GENERATION_VALIDITY: Duration = Duration::days(10 * 365 + 2);
/// CA certificates start this much before their creation, so that a replica whose clock lags
/// does not see a not-yet-valid issuer. Leaves are not backdated: their validity is exactly
/// `validity_days` from issuance.
pub(super) const CA_BACKDATE: Duration = Duration::hours(1);

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
    crl_lock: std::sync::Mutex<()>,
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
        let pki = Pki {
            settings,
            root,
            generations: vec![generation],
            signers: vec![signer],
            crl_lock: Default::default(),
        };
        pki.write_first_crl("g1", now)?;
        publish(&dir, pki.current())?;
        Ok(pki)
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
        let name = generation.name.clone();
        self.generations.push(generation);
        self.signers.push(signer);
        self.write_first_crl(&name, now)?;
        publish(&dir, self.current())?;
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

    /// A DER CRL of generation `generation` listing `revoked` (every revoked, unexpired
    /// certificate that generation issued), signed by that generation, valid from `now` for
    /// `pki.crl_validity`, numbered `number` (the caller keeps the numbers growing: the
    /// registry counts them, see `lifecycle::crl`).
    pub fn crl_numbered(
        &self,
        generation: &str,
        revoked: &[RevokedEntry],
        now: OffsetDateTime,
        number: u128,
    ) -> Result<Vec<u8>, PkiError> {
        let index = self.index_of(generation)?;
        let now = utc_seconds(now);
        sign_crl(
            &self.generations[index],
            &self.signers[index],
            revoked,
            now,
            now + self.settings.crl_validity,
            number,
        )
    }

    /// The number of the CRL in `pki.dir`, if there is one that parses.
    pub fn crl_number_on_disk(&self, generation: &str) -> Option<u128> {
        std::fs::read(crl_path(&self.settings.dir, generation))
            .ok()
            .and_then(|der| crl_number_of(&der))
    }

    /// Writes a signed CRL atomically to `<pki.dir>/<generation>.crl`; returns that path.
    ///
    /// Writes are serialised within the process, and a CRL whose number is not above the one
    /// on disk is not written: relying parties that read the file never see it go backwards.
    pub fn write_crl_file(&self, generation: &str, der: &[u8]) -> Result<PathBuf, PkiError> {
        let path = self.crl_path(generation)?;
        // A panic elsewhere while holding the lock leaves nothing half-done here: the file is
        // written atomically, so a poisoned lock is still usable.
        let _guard = self
            .crl_lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let on_disk = self.crl_number_on_disk(generation);
        if on_disk.is_some() && on_disk >= crl_number_of(der) {
            return Ok(path);
        }
        write(&path, der, false)?;
        Ok(path)
    }

    /// The first CRL of a new generation: empty, number 1.
    fn write_first_crl(&self, generation: &str, now: OffsetDateTime) -> Result<(), PkiError> {
        let der = self.crl_numbered(generation, &[], now, 1)?;
        self.write_crl_file(generation, &der)?;
        Ok(())
    }

    /// Where generation `generation`'s CRL lives: `<pki.dir>/<generation>.crl`.
    pub fn crl_path(&self, generation: &str) -> Result<PathBuf, PkiError> {
        self.index_of(generation)?;
        Ok(crl_path(&self.settings.dir, generation))
    }
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
