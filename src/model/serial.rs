//! A certificate's serial number, held in one canonical form: the big-endian magnitude without
//! leading zero bytes (the DER sign byte removed). Its text form, lowercase hex, is what the
//! identity header shows, the registry stores and the CLI prints; equal serials have equal text.

use std::fmt;
use std::str::FromStr;

/// The most bytes a serial may have. RFC 5280 caps conforming CAs at 20; some CAs in the wild
/// write more, so there is room for them.
pub(super) const MAX_SERIAL_BYTES: usize = 32;

/// A serial number. Small, `Copy`, hashable without allocating: the hot path's revoked set is
/// keyed by it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Serial {
    len: u8,
    bytes: [u8; MAX_SERIAL_BYTES],
}

/// Why bytes or text are not a serial.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SerialError {
    /// More than `MAX_SERIAL_BYTES` (32) bytes once leading zeros are removed.
    #[error("a serial has at most {MAX_SERIAL_BYTES} bytes; this one has {0}")]
    TooLong(usize),
    /// Empty, or not hexadecimal.
    #[error("{0:?} is not a hexadecimal serial number (e.g. 3a1f…, 3A:1F:…, 0x3a1f…)")]
    NotHex(String),
    /// Hex that is not the canonical form (lowercase or uppercase, two digits per byte, no
    /// leading zero bytes).
    #[error("{0:?} is not a canonical serial: two hex digits per byte, no leading zero bytes")]
    NotCanonical(String),
}

impl Serial {
    /// The serial whose big-endian bytes are `raw` (a DER INTEGER's content octets, leading zero
    /// bytes allowed). All-zero or empty input is the serial 0.
    pub fn from_be_bytes(raw: &[u8]) -> Result<Self, SerialError> {
        let magnitude = match raw.iter().position(|byte| *byte != 0) {
            Some(first) => &raw[first..],
            None => &[0u8][..],
        };
        if magnitude.len() > MAX_SERIAL_BYTES {
            return Err(SerialError::TooLong(magnitude.len()));
        }
        let mut bytes = [0u8; MAX_SERIAL_BYTES];
        bytes[..magnitude.len()].copy_from_slice(magnitude);
        Ok(Self {
            // At most MAX_SERIAL_BYTES, checked above.
            len: u8::try_from(magnitude.len()).unwrap_or(u8::MAX),
            bytes,
        })
    }

    /// The canonical text form only (what the registry stores): two hex digits per byte, no
    /// leading zero bytes, either case.
    pub fn from_canonical_hex(text: &str) -> Result<Self, SerialError> {
        let not_canonical = || SerialError::NotCanonical(text.to_owned());
        if text.len() < 2 || text.len() % 2 != 0 {
            return Err(not_canonical());
        }
        let raw = decode_hex(text).ok_or_else(not_canonical)?;
        if raw.len() > 1 && raw[0] == 0 {
            return Err(not_canonical());
        }
        Self::from_be_bytes(&raw)
    }

    /// The magnitude, big-endian, without leading zero bytes (`[0]` for zero).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// Lowercase hex, two digits per byte.
    pub fn to_hex(&self) -> String {
        super::hex(self.as_bytes())
    }
}

/// Lenient parsing for what people type: `3a1f…`, `3A:1F:…`, `0x3a1f…`, an odd number of digits,
/// leading zeros.
impl FromStr for Serial {
    type Err = SerialError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let trimmed = text.trim();
        let digits: String = trimmed
            .strip_prefix("0x")
            .or_else(|| trimmed.strip_prefix("0X"))
            .unwrap_or(trimmed)
            .chars()
            .filter(|c| *c != ':')
            .collect();
        if digits.is_empty() || digits.len() > 2 * MAX_SERIAL_BYTES + 2 {
            return Err(SerialError::NotHex(text.to_owned()));
        }
        let padded = if digits.len() % 2 == 1 {
            format!("0{digits}")
        } else {
            digits
        };
        let raw = decode_hex(&padded).ok_or_else(|| SerialError::NotHex(text.to_owned()))?;
        Self::from_be_bytes(&raw)
    }
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    text.as_bytes()
        .chunks(2)
        .map(|pair| {
            let digit = |c: u8| char::from(c).to_digit(16);
            Some(u8::try_from(digit(pair[0])? * 16 + digit(pair[1])?).unwrap_or(0))
        })
        .collect()
}

impl fmt::Display for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.as_bytes() {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Serial({self})")
    }
}

impl serde::Serialize for Serial {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Tests write serials as canonical hex literals.
#[cfg(test)]
impl From<&str> for Serial {
    fn from(hex: &str) -> Self {
        Self::from_canonical_hex(hex).expect("a canonical hex serial in a test")
    }
}

#[cfg(test)]
impl PartialEq<&str> for Serial {
    fn eq(&self, other: &&str) -> bool {
        self.to_hex() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leading_zero_bytes_go_and_a_lone_zero_stays() {
        assert_eq!(
            Serial::from_be_bytes(&[0, 0x8f, 1]).unwrap().to_hex(),
            "8f01"
        );
        assert_eq!(Serial::from_be_bytes(&[0]).unwrap().to_hex(), "00");
        assert_eq!(Serial::from_be_bytes(&[0, 0, 0x10]).unwrap().to_hex(), "10");
        assert_eq!(Serial::from_be_bytes(&[]).unwrap().to_hex(), "00");
        assert!(matches!(
            Serial::from_be_bytes(&[1; 33]),
            Err(SerialError::TooLong(33))
        ));
    }

    #[test]
    fn typed_forms_all_name_one_serial() {
        let canonical = Serial::from_canonical_hex("3a1f").unwrap();
        for typed in ["3a1f", "3A:1F", "0x3a1f", "0X3A1F", " 003a1f "] {
            assert_eq!(typed.parse::<Serial>().unwrap(), canonical, "{typed}");
        }
        assert_eq!("a1f".parse::<Serial>().unwrap().to_hex(), "0a1f");
        for bad in ["", "xyz", "0x", "12 34", "-1"] {
            assert!(bad.parse::<Serial>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn canonical_form_is_strict() {
        assert_eq!(Serial::from_canonical_hex("3A1F").unwrap().to_hex(), "3a1f");
        for bad in ["3a1", "003a", "", "zz"] {
            assert!(Serial::from_canonical_hex(bad).is_err(), "{bad:?}");
        }
        assert_eq!(Serial::from_canonical_hex("00").unwrap().to_hex(), "00");
    }
}
