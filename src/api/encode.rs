//! Encodings the endpoints answer with: PEM, base64 with line breaks (EST), multipart (EST
//! `serverkeygen`), and HTTP Basic credentials.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use secrecy::SecretString;

use crate::model::Holder;

/// PEM block of `der` under `label`.
pub(super) fn pem(label: &str, der: &[u8]) -> String {
    format!(
        "-----BEGIN {label}-----\n{}-----END {label}-----\n",
        wrapped_base64(der)
    )
}

/// Base64 on one line ending in one newline: what every EST client reads (strongSwan's `pki`
/// fails on line breaks inside; `openssl base64 -d -A` and libest read it too).
pub(super) fn one_line_base64(bytes: &[u8]) -> String {
    let mut out = STANDARD.encode(bytes);
    out.push('\n');
    out
}

/// Base64 in 64-character lines, each ending in a newline (the body of a PEM block).
fn wrapped_base64(bytes: &[u8]) -> String {
    let encoded = STANDARD.encode(bytes);
    let mut out = String::with_capacity(encoded.len() + encoded.len() / 64 + 1);
    for line in encoded.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out
}

/// The boundary of `serverkeygen` answers; it cannot occur in base64 text.
pub(super) const BOUNDARY: &str = "certgate-est-boundary";

/// RFC 7030 §4.4.2: the private key part, then the certificate part, each one line of base64.
pub(super) fn serverkeygen_multipart(pkcs8: &[u8], certs_only: &[u8]) -> String {
    format!(
        "--{BOUNDARY}\r\nContent-Type: application/pkcs8\r\nContent-Transfer-Encoding: base64\r\n\r\n{key}\r\n--{BOUNDARY}\r\nContent-Type: application/pkcs7-mime; smime-type=certs-only\r\nContent-Transfer-Encoding: base64\r\n\r\n{certs}\r\n--{BOUNDARY}--\r\n",
        key = STANDARD.encode(pkcs8),
        certs = STANDARD.encode(certs_only),
    )
}

/// Why Basic credentials were not usable.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum BasicError {
    /// No `Authorization` header.
    Missing,
    /// Present but not `Basic base64(user:password)` with `C` or `C.U` as the user.
    Malformed,
}

/// Reads EST enrollment credentials: user `C` (the corporation's administrator) or `C.U`
/// (user U of corporation C); the password is the temporary PIN.
pub(super) fn basic_credentials(
    header: Option<&http::HeaderValue>,
) -> Result<(Holder, SecretString), BasicError> {
    let header = header
        .ok_or(BasicError::Missing)?
        .to_str()
        .map_err(|_| BasicError::Malformed)?;
    let (scheme, encoded) = header.trim().split_once(' ').ok_or(BasicError::Malformed)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(BasicError::Malformed);
    }
    let decoded = STANDARD
        .decode(encoded.trim())
        .map_err(|_| BasicError::Malformed)?;
    let decoded = String::from_utf8(decoded).map_err(|_| BasicError::Malformed)?;
    let (user, password) = decoded.split_once(':').ok_or(BasicError::Malformed)?;
    let holder = match user.split_once('.') {
        Some((corp_id, user_id)) if !corp_id.is_empty() && !user_id.is_empty() => Holder {
            corp_id: corp_id.to_owned(),
            user_id: Some(user_id.to_owned()),
        },
        None if !user.is_empty() => Holder {
            corp_id: user.to_owned(),
            user_id: None,
        },
        _ => return Err(BasicError::Malformed),
    };
    Ok((holder, SecretString::from(password.to_owned())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(text: &str) -> http::HeaderValue {
        http::HeaderValue::from_str(&format!("Basic {}", STANDARD.encode(text))).unwrap()
    }

    #[test]
    fn basic_user_names_the_administrator_or_a_user() {
        let (holder, pin) = basic_credentials(Some(&header("12345678901234:PIN"))).unwrap();
        assert_eq!(
            holder,
            Holder {
                corp_id: "12345678901234".into(),
                user_id: None
            }
        );
        assert_eq!(secrecy::ExposeSecret::expose_secret(&pin), "PIN");
        let (holder, _) =
            basic_credentials(Some(&header("12345678901234.taro:PIN:with:colons"))).unwrap();
        assert_eq!(holder.user_id.as_deref(), Some("taro"));
    }

    #[test]
    fn malformed_basic_credentials_are_refused() {
        assert_eq!(basic_credentials(None).err(), Some(BasicError::Missing));
        for bad in ["Bearer x", "Basic !!!", "Basic"] {
            assert_eq!(
                basic_credentials(Some(&http::HeaderValue::from_static(bad))).err(),
                Some(BasicError::Malformed),
                "{bad}"
            );
        }
        assert_eq!(
            basic_credentials(Some(&header(".taro:PIN"))).err(),
            Some(BasicError::Malformed)
        );
        assert_eq!(
            basic_credentials(Some(&header("nocolon"))).err(),
            Some(BasicError::Malformed)
        );
    }

    #[test]
    fn est_base64_is_one_line_with_one_newline() {
        let text = one_line_base64(&[0u8; 100]);
        assert_eq!(text.matches('\n').count(), 1);
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn base64_lines_are_64_characters() {
        let text = wrapped_base64(&[0u8; 100]);
        assert!(text.lines().all(|line| line.len() <= 64));
        assert_eq!(text.lines().next().unwrap().len(), 64);
    }
}
