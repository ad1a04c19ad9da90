//! Compact keys of the hot path's revocation snapshot: fixed-size, `Copy`, computed once per
//! certificate (the identity cache keeps them) and once per registry row when loading.

use std::fmt;

use super::sha256;

/// Which CA issued a certificate: the first 8 bytes of the SHA-256 of the issuer Name's DER. A
/// serial is unique per issuer only, so revocations are keyed by (issuer, serial); a handful of
/// issuers cannot collide in 64 bits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IssuerKey(pub u64);

impl IssuerKey {
    /// The key of the issuer whose Name is `name_der` (the DER of the Name, as in a certificate's
    /// `issuer` field or a CA certificate's `subject` field).
    pub fn of_name(name_der: &[u8]) -> Self {
        let digest = sha256(name_der);
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        Self(u64::from_be_bytes(first))
    }

    /// The key as the registry stores it (a signed 64-bit integer, the same bits).
    pub fn to_stored(self) -> i64 {
        i64::from_be_bytes(self.0.to_be_bytes())
    }

    /// The key from the registry's column.
    pub fn from_stored(stored: i64) -> Self {
        Self(u64::from_be_bytes(stored.to_be_bytes()))
    }
}

impl fmt::Debug for IssuerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IssuerKey({:016x})", self.0)
    }
}

/// A corporation or a user, as the snapshot keys them: 128 bits of the SHA-256 of the IDs (the
/// registry's million users then take 16 bytes each, and no two real IDs collide).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StandingKey(pub u128);

impl StandingKey {
    /// A corporation's key.
    pub fn corporation(corp_id: &str) -> Self {
        Self::of(b'c', corp_id, "")
    }

    /// A user's key.
    pub fn user(corp_id: &str, user_id: &str) -> Self {
        Self::of(b'u', corp_id, user_id)
    }

    fn of(kind: u8, corp_id: &str, user_id: &str) -> Self {
        // Length-prefixed, so that no two pairs of IDs hash the same bytes.
        let mut bytes = Vec::with_capacity(corp_id.len() + user_id.len() + 5);
        bytes.push(kind);
        bytes.extend_from_slice(
            &u16::try_from(corp_id.len())
                .unwrap_or(u16::MAX)
                .to_be_bytes(),
        );
        bytes.extend_from_slice(corp_id.as_bytes());
        bytes.extend_from_slice(
            &u16::try_from(user_id.len())
                .unwrap_or(u16::MAX)
                .to_be_bytes(),
        );
        bytes.extend_from_slice(user_id.as_bytes());
        let digest = sha256(&bytes);
        let mut first = [0u8; 16];
        first.copy_from_slice(&digest[..16]);
        Self(u128::from_be_bytes(first))
    }
}

impl fmt::Debug for StandingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StandingKey({:032x})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stable_and_distinct() {
        let key = IssuerKey::of_name(b"\x30\x00");
        assert_eq!(IssuerKey::from_stored(key.to_stored()), key);
        assert_ne!(StandingKey::user("12", "3"), StandingKey::user("1", "23"));
        assert_ne!(StandingKey::corporation("12"), StandingKey::user("12", ""));
        assert_eq!(StandingKey::user("a", "b"), StandingKey::user("a", "b"));
    }
}
