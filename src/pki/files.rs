//! Writing key material to disk without ever leaving a half-written file behind.

use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use rcgen::KeyPair;
use rustls_pki_types::CertificateDer;
use x509_parser::certificate::X509Certificate;

use super::error::PkiError;
use std::sync::atomic::{AtomicU64, Ordering};

/// Makes temporary names unique within the process too: two threads writing the same file
/// (e.g. two revocations re-signing one CRL) must not share, and tear, one temporary file.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes `bytes` to a temporary file beside `path`, syncs it, and renames it into place, so a
/// reader (or a crash) sees the old file or the new one, never a torn one. `private` files are
/// created readable by the owner only.
pub fn write_atomically(path: &Path, bytes: &[u8], private: bool) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|dir| !dir.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let file_name = path
        .file_name()
        .and_then(|name| name.to_str())
        .unwrap_or("file");
    let temp = dir.join(format!(
        ".{file_name}.tmp-{}-{}",
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let mut options = std::fs::OpenOptions::new();
    // create_new: a leftover temporary file (from a crash, with another mode) is never reused
    // for key material.
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(if private { 0o600 } else { 0o644 });
    }
    let mut file = options.open(&temp)?;
    let written = file
        .write_all(bytes)
        .and_then(|()| file.sync_all())
        .and_then(|()| {
            drop(file);
            std::fs::rename(&temp, path)
        });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(e);
    }
    // The rename lives in the directory: sync it too, or a crash may bring the old file back.
    #[cfg(unix)]
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

// --- the layout of `pki.dir` (see the module documentation of `pki`) ---

pub(super) fn parse_cert<'a>(
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

pub(super) fn read_key(path: &Path) -> Result<KeyPair, PkiError> {
    let pem = read_string(path)?;
    // The parser's message is not passed on: it could quote the key material it choked on.
    KeyPair::from_pem(&pem).map_err(|_| PkiError::BadFile {
        path: path.to_owned(),
        what: "private key",
        reason: "not a PEM PKCS#8, SEC1 or PKCS#1 ECDSA/RSA key".into(),
    })
}

pub(super) fn read_string(path: &Path) -> Result<String, PkiError> {
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
pub(super) fn list_generations(dir: &Path) -> Result<Vec<u32>, PkiError> {
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

pub(super) fn generation_name(number: u32) -> String {
    format!("g{number}")
}

pub(super) fn root_cert_path(dir: &Path) -> PathBuf {
    dir.join("root.pem")
}

pub(super) fn root_key_path(dir: &Path) -> PathBuf {
    dir.join("root.key")
}

pub(super) fn generation_dir(dir: &Path, number: u32) -> PathBuf {
    dir.join(generation_name(number))
}

/// `<dir>/<generation>.crl`.
pub(super) fn crl_path(dir: &Path, generation: &str) -> PathBuf {
    dir.join(format!("{generation}.crl"))
}

/// Creates `g<number>/` with `create_dir`, which fails if it exists: the one atomic step that
/// decides which process makes a generation.
pub(super) fn claim_generation_dir(dir: &Path, number: u32) -> Result<(), PkiError> {
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
pub(super) fn create_private_dir(path: &Path, recursive: bool) -> Result<(), PkiError> {
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
