//! Revocations of the external CAs of `[[trust.ca]]`, from the CRL files they publish
//! (`crl = "path"` or a list; DER or PEM). A CRL counts only when its signature verifies with
//! the CA's key and it names that CA as issuer; its serials join the snapshot's revoked set under
//! the CA's issuer key, so they never collide with certgate's own serials. A file is read again
//! when it changes; one that does not parse or verify is refused with a log line and the CRL read
//! before stays. Past its nextUpdate a CRL is stale, and certificates of its CA follow
//! `revocation.on_stale`.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;
use x509_parser::prelude::{FromDer as _, X509Certificate};
use x509_parser::revocation_list::CertificateRevocationList;

use crate::config::{ConfigError, TrustCa};
use crate::model::{IssuerKey, Serial};

/// What the external CRLs say, as the snapshot holds it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExternalSet {
    revoked: HashSet<(IssuerKey, Serial)>,
    /// The earliest nextUpdate (Unix seconds) among each CA's CRLs.
    next_update: HashMap<IssuerKey, i64>,
}

impl ExternalSet {
    /// Whether an external CRL lists the certificate.
    pub fn is_revoked(&self, issuer: IssuerKey, serial: &Serial) -> bool {
        !self.revoked.is_empty() && self.revoked.contains(&(issuer, *serial))
    }

    /// Whether the CRL of `issuer` is past its nextUpdate at `now_unix`.
    pub fn is_stale(&self, issuer: IssuerKey, now_unix: i64) -> bool {
        self.next_update
            .get(&issuer)
            .is_some_and(|next| *next < now_unix)
    }

    /// How many certificates the external CRLs list.
    pub fn len(&self) -> usize {
        self.revoked.len()
    }

    /// Whether they list none.
    pub fn is_empty(&self) -> bool {
        self.revoked.is_empty()
    }
}

/// One CRL as read.
#[derive(Debug, Clone)]
struct Read {
    issuer: IssuerKey,
    serials: Vec<Serial>,
    next_update: Option<i64>,
    modified: Option<SystemTime>,
}

/// One CA's certificates (its key may have been renewed: several) and its CRL files.
struct Source {
    name: String,
    key: String,
    cas: Vec<CertificateDer<'static>>,
    paths: Vec<PathBuf>,
}

/// The CRL files of every `[[trust.ca]]` that names some.
pub struct ExternalCrls {
    sources: Vec<Source>,
    read: std::sync::Mutex<HashMap<PathBuf, Read>>,
}

impl ExternalCrls {
    /// Reads every CA's CRLs; one that cannot be used at start is a configuration error.
    pub fn load(trust: &[TrustCa]) -> Result<Option<Self>, ConfigError> {
        let mut sources = Vec::new();
        for (index, ca) in trust.iter().enumerate() {
            if ca.crls.is_empty() {
                continue;
            }
            let key = format!("trust.ca[{index}].crl");
            let bytes = std::fs::read(&ca.cert).map_err(|err| {
                ConfigError::new(
                    format!("trust.ca[{index}].cert"),
                    format!("cannot read {}: {err}", ca.cert.display()),
                )
            })?;
            let cas: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&bytes)
                .filter_map(Result::ok)
                .collect();
            sources.push(Source {
                name: ca.name.clone(),
                key,
                cas,
                paths: ca.crls.clone(),
            });
        }
        if sources.is_empty() {
            return Ok(None);
        }
        let crls = Self {
            sources,
            read: std::sync::Mutex::new(HashMap::new()),
        };
        let mut read = HashMap::new();
        for source in &crls.sources {
            for path in &source.paths {
                let list = read_crl(source, path).map_err(|why| {
                    ConfigError::new(source.key.clone(), format!("{}: {why}", path.display()))
                })?;
                read.insert(path.clone(), list);
            }
        }
        *crls.lock() = read;
        Ok(Some(crls))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, Read>> {
        self.read
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Reads again the files that changed; returns whether anything did.
    pub fn refresh(&self) -> bool {
        let mut changed = false;
        for source in &self.sources {
            for path in &source.paths {
                let modified = modified(path);
                if self
                    .lock()
                    .get(path)
                    .is_some_and(|read| read.modified == modified)
                {
                    continue;
                }
                match read_crl(source, path) {
                    Ok(list) => {
                        tracing::info!(ca = %source.name, file = %path.display(), revoked = list.serials.len(), "CRL read");
                        self.lock().insert(path.clone(), list);
                        changed = true;
                    }
                    Err(why) => {
                        tracing::error!(ca = %source.name, file = %path.display(), reason = %why, "CRL refused; the one read before stays");
                        // Not again until the file changes once more.
                        if let Some(read) = self.lock().get_mut(path) {
                            read.modified = modified;
                        }
                    }
                }
            }
        }
        changed
    }

    /// What the CRLs read say now.
    pub fn set(&self) -> ExternalSet {
        let mut set = ExternalSet::default();
        for read in self.lock().values() {
            for serial in &read.serials {
                set.revoked.insert((read.issuer, *serial));
            }
            if let Some(next) = read.next_update {
                let earliest = set.next_update.entry(read.issuer).or_insert(next);
                *earliest = (*earliest).min(next);
            }
        }
        set
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path)
        .and_then(|meta| meta.modified())
        .ok()
}

/// Reads one CRL file and checks it against its CA.
fn read_crl(source: &Source, path: &Path) -> Result<Read, String> {
    let modified = modified(path);
    let bytes = std::fs::read(path).map_err(|err| format!("cannot read it: {err}"))?;
    let der = if bytes.starts_with(b"-----BEGIN") {
        rustls_pki_types::CertificateRevocationListDer::from_pem_slice(&bytes)
            .map_err(|_| "holds no X509 CRL block".to_owned())?
            .as_ref()
            .to_vec()
    } else {
        bytes
    };
    let (_, crl) = CertificateRevocationList::from_der(&der)
        .map_err(|_| "is not a CRL (DER or PEM)".to_owned())?;
    let signer = source
        .cas
        .iter()
        .filter_map(|ca| {
            X509Certificate::from_der(ca.as_ref())
                .ok()
                .map(|(_, ca)| ca)
        })
        .find(|ca| ca.subject().as_raw() == crl.issuer().as_raw())
        .ok_or_else(|| format!("is issued by {}, not by {}", crl.issuer(), source.name))?;
    crl.verify_signature(signer.public_key()).map_err(|_| {
        format!(
            "its signature does not verify with the key of {}",
            source.name
        )
    })?;
    let serials = crl
        .iter_revoked_certificates()
        .map(|entry| Serial::from_be_bytes(entry.raw_serial()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| "lists a serial longer than 20 bytes".to_owned())?;
    Ok(Read {
        issuer: IssuerKey::of_name(signer.subject().as_raw()),
        serials,
        next_update: crl.next_update().map(|at| at.timestamp()),
        modified,
    })
}
