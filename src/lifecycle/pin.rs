//! Temporary PINs: generated from the system CSPRNG, stored only as argon2id hashes, compared in
//! constant time by the argon2 verifier.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};

use super::LifecycleError;

/// Characters a PIN is drawn from: letters and digits without the ones people misread (0/O, 1/l/I).
const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
/// 16 characters of 57: about 93 bits.
const LENGTH: usize = 16;

/// A fresh temporary PIN.
pub(super) fn generate() -> Result<String, LifecycleError> {
    let mut pin = String::with_capacity(LENGTH);
    // Rejection sampling keeps every character equally likely.
    let limit = 256 - (256 % ALPHABET.len());
    while pin.len() < LENGTH {
        let mut byte = [0u8; 1];
        aws_lc_rs::rand::fill(&mut byte)
            .map_err(|_| LifecycleError::Internal("the system random generator failed".into()))?;
        if usize::from(byte[0]) < limit {
            pin.push(char::from(ALPHABET[usize::from(byte[0]) % ALPHABET.len()]));
        }
    }
    Ok(pin)
}

/// The PHC string stored in the registry.
pub(super) fn hash(pin: &str) -> Result<String, LifecycleError> {
    let mut salt = [0u8; 16];
    aws_lc_rs::rand::fill(&mut salt)
        .map_err(|_| LifecycleError::Internal("the system random generator failed".into()))?;
    let salt = SaltString::encode_b64(&salt)
        .map_err(|err| LifecycleError::Internal(format!("salt: {err}")))?;
    Argon2::default()
        .hash_password(pin.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|err| LifecycleError::Internal(format!("cannot hash the PIN: {err}")))
}

/// The hash a PIN is checked against when there is no permit (unknown corporation or user): of
/// a random PIN nobody knows, made once with the same parameters, so that the check costs what
/// a real one costs.
pub(super) fn unknown_holder_hash() -> Result<&'static str, LifecycleError> {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    if let Some(hash) = HASH.get() {
        return Ok(hash);
    }
    let hash = hash(&generate()?)?;
    Ok(HASH.get_or_init(|| hash))
}

/// Whether `pin` matches the stored hash. Slow on purpose; run it off the async threads.
pub(super) fn verify(pin: &str, phc: &str) -> Result<bool, LifecycleError> {
    let parsed = PasswordHash::new(phc)
        .map_err(|_| LifecycleError::Internal("a stored PIN hash does not parse".into()))?;
    Ok(Argon2::default()
        .verify_password(pin.as_bytes(), &parsed)
        .is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_are_long_unambiguous_and_different() {
        let a = generate().unwrap();
        let b = generate().unwrap();
        assert_eq!(a.len(), LENGTH);
        assert_ne!(a, b);
        assert!(a.bytes().all(|c| ALPHABET.contains(&c)));
    }

    #[test]
    fn hash_verifies_only_the_right_pin() {
        let stored = hash("ABCDEFGHJKLMNPQR").unwrap();
        assert!(stored.starts_with("$argon2id$"));
        assert!(verify("ABCDEFGHJKLMNPQR", &stored).unwrap());
        assert!(!verify("ABCDEFGHJKLMNPQr", &stored).unwrap());
    }
}
