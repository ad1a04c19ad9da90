//! PKCS#12 (`certificate.p12`) for keys that certgate generated: the key, its certificate and
//! the chain, encrypted with PBES2 (PBKDF2-HMAC-SHA256, AES-256-CBC) and protected by an
//! HMAC-SHA256 MAC, the profile OpenSSL 3 writes by default and Windows 10+/macOS import.

use p12_keystore::{
    Certificate, EncryptionAlgorithm, KeyStore, KeyStoreEntry, MacAlgorithm, PrivateKey,
    PrivateKeyChain,
};
use rustls_pki_types::{CertificateDer, PrivatePkcs8KeyDer};

use super::error::Pkcs12Error;

/// The shortest password a PKCS#12 file may be protected with, in characters.
pub const PKCS12_MIN_PASSWORD_CHARS: usize = 8;

/// PBKDF2 and PKCS#12-KDF rounds: both protect the same password, so an attacker takes the
/// cheaper; keep them equal. Far above OpenSSL's 2048, while a download still takes well
/// under a second.
const ITERATIONS: u32 = 100_000;

/// Builds a PKCS#12 file holding `key` (PKCS#8 DER), its certificate `cert` and `chain` (the
/// issuing CA, then the root), encrypted under `password`.
///
/// A password shorter than [`PKCS12_MIN_PASSWORD_CHARS`] characters is refused.
/// `friendly_name` is what an import dialog shows (e.g. the certificate's CN).
pub fn pkcs12(
    key: &PrivatePkcs8KeyDer<'_>,
    cert: &CertificateDer<'_>,
    chain: &[CertificateDer<'_>],
    password: &str,
    friendly_name: &str,
) -> Result<Vec<u8>, Pkcs12Error> {
    let chars = password.chars().count();
    if chars < PKCS12_MIN_PASSWORD_CHARS {
        return Err(Pkcs12Error::PasswordTooShort {
            chars,
            min: PKCS12_MIN_PASSWORD_CHARS,
        });
    }
    let key = PrivateKey::from_der(key.secret_pkcs8_der()).map_err(Pkcs12Error::Encode)?;
    let certs = std::iter::once(cert)
        .chain(chain)
        .map(|c| Certificate::from_der(c))
        .collect::<Result<Vec<_>, _>>()
        .map_err(Pkcs12Error::Encode)?;
    // The localKeyId pairs the key bag with the leaf's certificate bag; a digest of the leaf is
    // unique and says nothing about the key.
    let local_key_id = crate::model::sha256(cert)[..20].to_vec();
    let mut store = KeyStore::new();
    store.add_entry(
        friendly_name,
        KeyStoreEntry::PrivateKeyChain(PrivateKeyChain::new(local_key_id, key, certs)),
    );
    store
        .writer(password)
        .encryption_algorithm(EncryptionAlgorithm::PbeWithHmacSha256AndAes256)
        .encryption_iterations(ITERATIONS)
        .mac_algorithm(MacAlgorithm::HmacSha256)
        .mac_iterations(ITERATIONS)
        .write()
        .map_err(Pkcs12Error::Encode)
}

/// Whether `password` opens the PKCS#12 file `data` (its MAC verifies and its key decrypts).
/// Slow on purpose (the file's key derivation); run it off the async threads.
pub fn pkcs12_opens(data: &[u8], password: &str) -> bool {
    p12_keystore::KeyStore::from_pkcs12(data, password, p12_keystore::Pkcs12ImportPolicy::Strict)
        .is_ok_and(|store| store.entries_len() > 0)
}
