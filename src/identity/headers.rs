//! An identity rendered to the headers the application receives.
//!
//! The parts that do not change while a certificate lives are rendered once per certificate and
//! cached with the identity; the proxy adds the per-request ones (verify, role, days left).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::{HeaderName, HeaderValue};

use super::Identity;
use crate::config::HeaderNames;

/// RFC 9440 names, fixed by the RFC.
pub const CLIENT_CERT: HeaderName = HeaderName::from_static("client-cert");
/// RFC 9440 chain header.
pub const CLIENT_CERT_CHAIN: HeaderName = HeaderName::from_static("client-cert-chain");
/// Envoy's header.
pub const XFCC: HeaderName = HeaderName::from_static("x-forwarded-client-cert");

/// The per-certificate headers, ready to append.
#[derive(Debug, Clone)]
pub struct IdentityHeaders {
    /// Name/value pairs in the order they are added.
    pub fixed: Vec<(HeaderName, HeaderValue)>,
    /// The same as HTTP/1.1 header lines (`name: value\r\n` each): what a forwarded request
    /// carries, copied whole rather than inserted header by header.
    pub wire: Box<[u8]>,
}

impl IdentityHeaders {
    /// Renders `identity` (read from `leaf_der`) under the configured names.
    pub fn render(identity: &Identity, leaf_der: &[u8], names: &HeaderNames) -> Self {
        let mut fixed = Vec::with_capacity(10);
        fixed.push((names.corp_id.clone(), header_value(&identity.corp_id)));
        if let Some(user_id) = &identity.user_id {
            fixed.push((names.user_id.clone(), header_value(user_id)));
        }
        fixed.push((
            names.serial.clone(),
            header_value(&identity.serial.to_hex()),
        ));
        fixed.push((
            names.not_after.clone(),
            header_value(&identity.not_after_rfc3339),
        ));
        fixed.push((
            names.sha256.clone(),
            header_value(&identity.fingerprint_hex()),
        ));
        fixed.push((names.subject_dn.clone(), header_value(&identity.subject_dn)));
        fixed.push((names.issuer_dn.clone(), header_value(&identity.issuer_dn)));
        if names.rfc9440 {
            fixed.push((CLIENT_CERT, header_value(&sf_binary(leaf_der))));
        }
        if names.xfcc {
            fixed.push((XFCC, header_value(&xfcc(identity))));
        }
        let mut wire = Vec::with_capacity(
            fixed
                .iter()
                .map(|(name, value)| name.as_str().len() + value.len() + 4)
                .sum(),
        );
        for (name, value) in &fixed {
            wire.extend_from_slice(name.as_str().as_bytes());
            wire.extend_from_slice(b": ");
            wire.extend_from_slice(value.as_bytes());
            wire.extend_from_slice(b"\r\n");
        }
        Self {
            fixed,
            wire: wire.into_boxed_slice(),
        }
    }
}

/// RFC 9440 `Client-Cert-Chain`: the certificates the client sent after its leaf, or `None`.
pub fn client_cert_chain<'a>(intermediates: impl Iterator<Item = &'a [u8]>) -> Option<HeaderValue> {
    let items: Vec<String> = intermediates.map(sf_binary).collect();
    (!items.is_empty()).then(|| header_value(&items.join(", ")))
}

/// An RFC 8941 byte sequence: `:base64:`.
fn sf_binary(der: &[u8]) -> String {
    format!(":{}:", STANDARD.encode(der))
}

/// Envoy's `X-Forwarded-Client-Cert` element: `Hash=…;Subject="…";URI=…;DNS=…`.
fn xfcc(identity: &Identity) -> String {
    let mut out = format!(
        "Hash={};Subject=\"{}\"",
        identity.fingerprint_hex(),
        identity.subject_dn.replace('"', "\\\"")
    );
    for uri in &identity.uris {
        out.push_str(";URI=");
        out.push_str(uri);
    }
    for dns in &identity.dns_names {
        out.push_str(";DNS=");
        out.push_str(dns);
    }
    out
}

/// A header value from text that may hold bytes a header cannot carry (control characters, or
/// anything a permissive ID regex let through): those are written as `\XX`.
pub(super) fn header_value(text: &str) -> HeaderValue {
    if let Ok(value) = HeaderValue::from_str(text) {
        return value;
    }
    let mut escaped = String::with_capacity(text.len() + 8);
    for byte in text.bytes() {
        if (0x20..0x7f).contains(&byte) {
            escaped.push(byte as char);
        } else {
            escaped.push_str(&format!("\\{byte:02X}"));
        }
    }
    HeaderValue::from_str(&escaped).unwrap_or_else(|_| HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_not_dropped() {
        assert_eq!(header_value("a\nb"), "a\\0Ab");
        assert_eq!(header_value("plain"), "plain");
    }

    #[test]
    fn chain_is_a_structured_list_of_byte_sequences() {
        let value = client_cert_chain([&b"ab"[..], &b"c"[..]].into_iter()).unwrap();
        assert_eq!(value, ":YWI=:, :Yw==:");
        assert!(client_cert_chain(std::iter::empty()).is_none());
    }
}
