//! Why a PKI operation was refused. Three enums, so that a caller can tell the client's fault
//! (a bad CSR, a short password) from the server's (a missing key file) without string matching.
//! No variant ever carries key bytes or a password.

use std::path::PathBuf;

use time::OffsetDateTime;

/// A CA operation failed: files, keys, generations, signing.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// `init` found an existing CA and refused to overwrite it.
    #[error(
        "{dir}: a CA already exists here ({found} is present); `certgate init` never overwrites \
         CA keys (use `certgate ca rotate` for a new generation)"
    )]
    AlreadyInitialised {
        /// `pki.dir`.
        dir: PathBuf,
        /// The first existing file or generation directory found.
        found: PathBuf,
    },
    /// `open` found no CA.
    #[error("{dir}: no CA here ({missing} is missing); run `certgate init` first")]
    NotInitialised {
        /// `pki.dir`.
        dir: PathBuf,
        /// The file or directory that should exist.
        missing: PathBuf,
    },
    /// A generation directory lacks its certificate or key, e.g. after an interrupted rotation.
    #[error(
        "{dir}: incomplete CA generation ({missing} is missing), probably an interrupted \
         `certgate ca rotate`; nothing was issued from it: remove {dir} and rotate again"
    )]
    IncompleteGeneration {
        /// The generation's directory.
        dir: PathBuf,
        /// The missing file.
        missing: PathBuf,
    },
    /// `rotate` lost the race for the next generation against another process.
    #[error(
        "{dir} already exists: another certgate process created generation {name}; \
         reopen the PKI to load it"
    )]
    GenerationExists {
        /// The generation's name (`g3`).
        name: String,
        /// Its directory.
        dir: PathBuf,
    },
    /// A generation name that this PKI does not have.
    #[error("unknown CA generation {name:?} (known: {known})")]
    UnknownGeneration {
        /// The name asked for.
        name: String,
        /// The generations that exist, comma-separated.
        known: String,
    },
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file or directory could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file exists but does not hold what it should.
    #[error("{path}: not a usable {what}: {reason}")]
    BadFile {
        /// The file.
        path: PathBuf,
        /// What it should hold (`CA certificate`, `private key`).
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A CA key file belongs to another certificate.
    #[error("{key} does not match the public key of {cert}")]
    KeyMismatch {
        /// The key file.
        key: PathBuf,
        /// The certificate file.
        cert: PathBuf,
    },
    /// A generation's certificate is not signed by the root beside it.
    #[error("{cert} is not signed by the root CA in {root}")]
    NotSignedByRoot {
        /// The generation's certificate file.
        cert: PathBuf,
        /// The root certificate file.
        root: PathBuf,
    },
    /// The current issuing CA has expired: nothing can be issued until a rotation.
    #[error("issuing CA {generation} expired at {not_after}; run `certgate ca rotate`")]
    IssuerExpired {
        /// The generation.
        generation: String,
        /// When it expired.
        not_after: OffsetDateTime,
    },
    /// The root CA has expired: no new generation can be made under it.
    #[error("the root CA expired at {not_after}; a new root needs a new `pki.dir`")]
    RootExpired {
        /// When it expired.
        not_after: OffsetDateTime,
    },
    /// The settings cannot make a valid certificate.
    #[error("pki.{key}: {reason}")]
    InvalidSettings {
        /// The config key under `[pki]`.
        key: &'static str,
        /// Why, and what is allowed.
        reason: String,
    },
    /// The leaf subject cannot go into a certificate.
    #[error("leaf subject: {0}")]
    InvalidSubject(String),
    /// A certificate handed in (e.g. for PKCS#7) is not X.509 DER.
    #[error("certificate #{index} is not a DER X.509 certificate: {reason}")]
    BadCertificate {
        /// Its position in the list, from 0.
        index: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// Key generation or signing failed (rcgen / aws-lc-rs).
    #[error("cannot {operation}: {source}")]
    Crypto {
        /// What was being done (`generate the g2 key`, `sign the CRL of g1`).
        operation: String,
        /// The cause.
        source: rcgen::Error,
    },
}

/// A certificate signing request (or a bare public key) was refused. All of these are the
/// client's fault: an HTTP layer answers 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CsrError {
    /// Neither PEM, DER nor base64 of a PKCS#10 request.
    #[error("not a PKCS#10 certificate request (expected PEM, DER or base64 DER): {0}")]
    NotACsr(String),
    /// Larger than [`super::MAX_CSR_BYTES`].
    #[error("the certificate request is {bytes} bytes; at most {max} are accepted")]
    TooLarge {
        /// Bytes given.
        bytes: usize,
        /// Bytes accepted.
        max: usize,
    },
    /// The DER ends before the structure does.
    #[error("the certificate request is truncated: {0}")]
    Truncated(String),
    /// A structure was recognised but is not a valid PKCS#10 request.
    #[error("the certificate request is malformed: {0}")]
    Malformed(String),
    /// The request is not signed with the private key of the public key it carries.
    #[error("the certificate request's signature does not verify with its own public key")]
    BadSignature,
    /// A signature algorithm certgate does not verify (e.g. SHA-1, RSA-PSS).
    #[error(
        "the certificate request is signed with an unsupported algorithm ({0}); use ECDSA with \
         SHA-256/384, RSA PKCS#1 v1.5 with SHA-256/384/512, or Ed25519"
    )]
    UnsupportedSignatureAlgorithm(String),
    /// A public key certgate does not certify.
    #[error("unsupported public key: {0}; use ECDSA P-256/P-384, RSA 2048-8192 or Ed25519")]
    UnsupportedKey(String),
}

/// A PKCS#12 file could not be made.
#[derive(Debug, thiserror::Error)]
pub enum Pkcs12Error {
    /// The password is shorter than [`super::PKCS12_MIN_PASSWORD_CHARS`]; the client's fault.
    #[error("the PKCS#12 password has {chars} characters; at least {min} are required")]
    PasswordTooShort {
        /// Characters given.
        chars: usize,
        /// Characters required.
        min: usize,
    },
    /// Encoding failed (a malformed key or certificate was handed in).
    #[error("cannot build the PKCS#12 file: {0}")]
    Encode(#[source] p12_keystore::error::Error),
}
