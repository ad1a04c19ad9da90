//! RFC 4514 string form of a distinguished name, safe to put in an HTTP header.

use std::fmt::Write as _;

use x509_parser::der_parser::asn1_rs::Tag;
use x509_parser::prelude::{AttributeTypeAndValue, X509Name};
use x509_parser::x509::RelativeDistinguishedName;

/// The attribute short names that RFC 4514 §3 defines; any other type is written as a dotted OID.
const SHORT_NAMES: [(&str, &str); 9] = [
    ("2.5.4.3", "CN"),
    ("2.5.4.7", "L"),
    ("2.5.4.8", "ST"),
    ("2.5.4.10", "O"),
    ("2.5.4.11", "OU"),
    ("2.5.4.6", "C"),
    ("2.5.4.9", "STREET"),
    ("0.9.2342.19200300.100.1.25", "DC"),
    ("0.9.2342.19200300.100.1.1", "UID"),
];

/// Formats `name` as RFC 4514: RDNs last-to-first, separated by `,`, multi-valued RDNs joined by `+`.
///
/// Bytes outside printable ASCII are written as `\XX` escapes (RFC 4514 `hexpair`), so that a
/// Japanese organisation name survives as a valid header value and decodes back exactly.
pub fn rfc4514(name: &X509Name<'_>) -> String {
    let rdns: Vec<&RelativeDistinguishedName<'_>> = name.iter_rdn().collect();
    let mut out = String::with_capacity(name.as_raw().len());
    for (index, rdn) in rdns.iter().rev().enumerate() {
        if index > 0 {
            out.push(',');
        }
        for (position, attribute) in rdn.iter().enumerate() {
            if position > 0 {
                out.push('+');
            }
            write_attribute(&mut out, attribute);
        }
    }
    out
}

fn write_attribute(out: &mut String, attribute: &AttributeTypeAndValue<'_>) {
    let oid = attribute.attr_type().to_id_string();
    let short = SHORT_NAMES
        .iter()
        .find(|(id, _)| *id == oid)
        .map(|(_, short)| *short);
    match (short, string_value(attribute)) {
        (Some(short), Some(value)) => {
            out.push_str(short);
            out.push('=');
            escape_value(out, &value);
        }
        (short, _) => {
            out.push_str(short.unwrap_or(&oid));
            out.push_str("=#");
            let value = attribute.attr_value();
            // RFC 4514 §2.4: the hex form carries the BER encoding, tag and length included.
            let content = value.as_bytes();
            let _ = write!(out, "{:02x}", value.tag().0 & 0x1f);
            write_der_length(out, content.len());
            for byte in content {
                let _ = write!(out, "{byte:02x}");
            }
        }
    }
}

fn string_value(attribute: &AttributeTypeAndValue<'_>) -> Option<String> {
    if let Ok(text) = attribute.as_str() {
        return Some(text.to_owned());
    }
    let value = attribute.attr_value();
    let bytes = value.as_bytes();
    if value.tag() == Tag::BmpString && bytes.len() % 2 == 0 {
        let units = bytes
            .chunks_exact(2)
            .map(|pair| u16::from_be_bytes([pair[0], pair[1]]));
        return char::decode_utf16(units)
            .collect::<Result<String, _>>()
            .ok();
    }
    if value.tag() == Tag::TeletexString || value.tag() == Tag::UniversalString {
        return std::str::from_utf8(bytes).ok().map(str::to_owned);
    }
    None
}

fn write_der_length(out: &mut String, len: usize) {
    if len < 0x80 {
        let _ = write!(out, "{len:02x}");
    } else {
        let bytes = len.to_be_bytes();
        let significant: Vec<u8> = bytes
            .iter()
            .copied()
            .skip_while(|byte| *byte == 0)
            .collect();
        let _ = write!(out, "{:02x}", 0x80 | significant.len());
        for byte in significant {
            let _ = write!(out, "{byte:02x}");
        }
    }
}

fn escape_value(out: &mut String, value: &str) {
    let last = value.len().saturating_sub(1);
    for (index, byte) in value.bytes().enumerate() {
        match byte {
            b'"' | b'+' | b',' | b';' | b'<' | b'>' | b'\\' => {
                out.push('\\');
                out.push(byte as char);
            }
            b'#' if index == 0 => out.push_str("\\#"),
            b' ' if index == 0 || index == last => out.push_str("\\ "),
            b'=' => out.push_str("\\="),
            0x21..=0x7e | b' ' => out.push(byte as char),
            _ => {
                let _ = write!(out, "\\{byte:02X}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};
    use x509_parser::prelude::{FromDer, X509Certificate};

    fn subject_of(dn: DistinguishedName) -> String {
        let mut params = CertificateParams::default();
        params.distinguished_name = dn;
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let (_, parsed) = X509Certificate::from_der(cert.der()).unwrap();
        rfc4514(parsed.subject())
    }

    #[test]
    fn rdns_are_written_last_first() {
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CountryName, "JP");
        dn.push(DnType::OrganizationName, "Example Bank");
        dn.push(
            DnType::OrganizationalUnitName,
            "Example Internet Banking CA-G2",
        );
        dn.push(DnType::CommonName, "12345678901234 taro");
        assert_eq!(
            subject_of(dn),
            "CN=12345678901234 taro,OU=Example Internet Banking CA-G2,O=Example Bank,C=JP"
        );
    }

    #[test]
    fn special_characters_are_escaped() {
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "#a, b+c=d ");
        assert_eq!(subject_of(dn), "CN=\\#a\\, b\\+c\\=d\\ ");
    }

    #[test]
    fn non_ascii_becomes_hex_pairs() {
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "銀行");
        assert_eq!(subject_of(dn), "O=\\E9\\8A\\80\\E8\\A1\\8C");
    }
}
