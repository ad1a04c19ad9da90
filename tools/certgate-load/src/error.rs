//! What can go wrong in one operation, by kind: the kinds are what the
//! report counts, so TLS alerts, refused server certificates, resets and
//! bad responses each need their own, dug out of the io / rustls / hyper
//! errors that carry them.

use std::io;
use std::time::Duration;

use rustls::{AlertDescription, CertificateError};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum ErrorKind {
    Connect,
    Timeout,
    Closed,
    Reset,
    Io,
    BadResponse,
    NoH2,
    Http2,
    Http(u16),
    TlsAlert(u8),
    TlsUnknownCa,
    TlsNameMismatch,
    TlsCertExpired,
    TlsBadServerCert,
    TlsIncompatible,
    TlsHandshake,
    Tls,
}

impl ErrorKind {
    pub(crate) fn is_tls(self) -> bool {
        matches!(
            self,
            ErrorKind::TlsAlert(_)
                | ErrorKind::TlsUnknownCa
                | ErrorKind::TlsNameMismatch
                | ErrorKind::TlsCertExpired
                | ErrorKind::TlsBadServerCert
                | ErrorKind::TlsIncompatible
                | ErrorKind::TlsHandshake
                | ErrorKind::Tls
        )
    }

    pub(crate) fn name(self) -> String {
        match self {
            ErrorKind::Connect => "connect".into(),
            ErrorKind::Timeout => "timeout".into(),
            ErrorKind::Closed => "closed".into(),
            ErrorKind::Reset => "reset".into(),
            ErrorKind::Io => "io".into(),
            ErrorKind::BadResponse => "bad_response".into(),
            ErrorKind::NoH2 => "no_h2".into(),
            ErrorKind::Http2 => "http2".into(),
            ErrorKind::Http(s) => format!("http_{s}"),
            ErrorKind::TlsAlert(a) => format!("tls_alert_{}", alert_name(a)),
            ErrorKind::TlsUnknownCa => "tls_unknown_ca".into(),
            ErrorKind::TlsNameMismatch => "tls_name_mismatch".into(),
            ErrorKind::TlsCertExpired => "tls_cert_expired".into(),
            ErrorKind::TlsBadServerCert => "tls_bad_server_cert".into(),
            ErrorKind::TlsIncompatible => "tls_incompatible".into(),
            ErrorKind::TlsHandshake => "tls_handshake".into(),
            ErrorKind::Tls => "tls".into(),
        }
    }
}

/// RFC 8446 / IANA alert names, which is what server logs and other tools
/// print, rather than rustls' CamelCase Debug names.
fn alert_name(code: u8) -> String {
    let name = match AlertDescription::from(code) {
        AlertDescription::CloseNotify => "close_notify",
        AlertDescription::UnexpectedMessage => "unexpected_message",
        AlertDescription::BadRecordMac => "bad_record_mac",
        AlertDescription::DecryptionFailed => "decryption_failed",
        AlertDescription::RecordOverflow => "record_overflow",
        AlertDescription::DecompressionFailure => "decompression_failure",
        AlertDescription::HandshakeFailure => "handshake_failure",
        AlertDescription::NoCertificate => "no_certificate",
        AlertDescription::BadCertificate => "bad_certificate",
        AlertDescription::UnsupportedCertificate => "unsupported_certificate",
        AlertDescription::CertificateRevoked => "certificate_revoked",
        AlertDescription::CertificateExpired => "certificate_expired",
        AlertDescription::CertificateUnknown => "certificate_unknown",
        AlertDescription::IllegalParameter => "illegal_parameter",
        AlertDescription::UnknownCA => "unknown_ca",
        AlertDescription::AccessDenied => "access_denied",
        AlertDescription::DecodeError => "decode_error",
        AlertDescription::DecryptError => "decrypt_error",
        AlertDescription::ExportRestriction => "export_restriction",
        AlertDescription::ProtocolVersion => "protocol_version",
        AlertDescription::InsufficientSecurity => "insufficient_security",
        AlertDescription::InternalError => "internal_error",
        AlertDescription::InappropriateFallback => "inappropriate_fallback",
        AlertDescription::UserCanceled => "user_canceled",
        AlertDescription::NoRenegotiation => "no_renegotiation",
        AlertDescription::MissingExtension => "missing_extension",
        AlertDescription::UnsupportedExtension => "unsupported_extension",
        AlertDescription::CertificateUnobtainable => "certificate_unobtainable",
        AlertDescription::UnrecognisedName => "unrecognized_name",
        AlertDescription::BadCertificateStatusResponse => "bad_certificate_status_response",
        AlertDescription::BadCertificateHashValue => "bad_certificate_hash_value",
        AlertDescription::UnknownPSKIdentity => "unknown_psk_identity",
        AlertDescription::CertificateRequired => "certificate_required",
        AlertDescription::NoApplicationProtocol => "no_application_protocol",
        AlertDescription::EncryptedClientHelloRequired => "encrypted_client_hello_required",
        _ => return code.to_string(),
    };
    name.to_string()
}

/// A failed operation: the kind is what gets counted, the detail is kept
/// once per kind so the report can show an example.
#[derive(Debug)]
pub(crate) struct OpError {
    pub(crate) kind: ErrorKind,
    pub(crate) detail: String,
}

impl OpError {
    pub(crate) fn new(kind: ErrorKind, detail: impl Into<String>) -> Self {
        Self {
            kind,
            detail: detail.into(),
        }
    }

    pub(crate) fn tls(e: &rustls::Error, handshaking: bool) -> Self {
        let kind = match e {
            rustls::Error::AlertReceived(a) => ErrorKind::TlsAlert(u8::from(*a)),
            rustls::Error::InvalidCertificate(c) => match c {
                CertificateError::UnknownIssuer => ErrorKind::TlsUnknownCa,
                CertificateError::NotValidForName
                | CertificateError::NotValidForNameContext { .. } => ErrorKind::TlsNameMismatch,
                CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                    ErrorKind::TlsCertExpired
                }
                _ => ErrorKind::TlsBadServerCert,
            },
            rustls::Error::PeerIncompatible(_) => ErrorKind::TlsIncompatible,
            _ if handshaking => ErrorKind::TlsHandshake,
            _ => ErrorKind::Tls,
        };
        Self::new(kind, e.to_string())
    }

    /// tokio-rustls reports TLS failures as `io::Error`s wrapping the
    /// `rustls::Error`; unwrap them so alerts get their own kind.
    pub(crate) fn io(e: &io::Error, handshaking: bool) -> Self {
        if let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
            return Self::tls(tls, handshaking);
        }
        let kind = match e.kind() {
            io::ErrorKind::UnexpectedEof => ErrorKind::Closed,
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe => ErrorKind::Reset,
            io::ErrorKind::TimedOut => ErrorKind::Timeout,
            _ => ErrorKind::Io,
        };
        Self::new(kind, e.to_string())
    }

    pub(crate) fn hyper(e: &hyper::Error) -> Self {
        let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
        while let Some(err) = cur {
            if let Some(tls) = err.downcast_ref::<rustls::Error>() {
                return Self::tls(tls, false);
            }
            if let Some(io_err) = err.downcast_ref::<io::Error>() {
                let mut op = Self::io(io_err, false);
                op.detail = e.to_string() + ": " + &op.detail;
                return op;
            }
            cur = err.source();
        }
        let kind = if e.is_incomplete_message() || e.is_closed() || e.is_canceled() {
            ErrorKind::Closed
        } else if e.is_parse() {
            ErrorKind::BadResponse
        } else {
            ErrorKind::Http2
        };
        let mut detail = e.to_string();
        if let Some(src) = std::error::Error::source(e) {
            detail = format!("{detail}: {src}");
        }
        Self::new(kind, detail)
    }

    pub(crate) fn timeout(limit: Duration) -> Self {
        Self::new(
            ErrorKind::Timeout,
            format!(
                "no complete response within {}",
                humantime::format_duration(limit)
            ),
        )
    }

    pub(crate) fn bad(msg: &'static str) -> Self {
        Self::new(ErrorKind::BadResponse, msg)
    }
}

/// Only a 2xx counts as success, whatever the protocol.
pub(crate) fn check_status(status: u16) -> Result<(), OpError> {
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(OpError::new(
            ErrorKind::Http(status),
            format!("server answered {status}"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alert_names() {
        let code = u8::from(AlertDescription::CertificateRequired);
        assert_eq!(
            ErrorKind::TlsAlert(code).name(),
            "tls_alert_certificate_required"
        );
        assert_eq!(ErrorKind::TlsAlert(0xfe).name(), "tls_alert_254");
    }

    #[test]
    fn only_2xx_succeeds() {
        assert!(check_status(204).is_ok());
        assert_eq!(check_status(503).expect_err("503").kind.name(), "http_503");
    }
}
