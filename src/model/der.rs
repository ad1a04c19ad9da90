//! DER bytes that would flood a log: `Debug` shows their length only.

use std::fmt;

/// A DER object (a certificate, most often), owned.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Der(pub Vec<u8>);

impl Der {
    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.0
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Der {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{} bytes of DER>", self.0.len())
    }
}

impl AsRef<[u8]> for Der {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl From<Vec<u8>> for Der {
    fn from(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }
}
