//! The one place where a refusal or failure of the proxy becomes a response: the status, a short
//! reason for the client (through [`crate::http::Problem`]), never the cause chain, which goes to
//! the log.

use http::Response;
use http::header::HeaderValue;

use super::forward::UpstreamError;
use super::policy::Denied;
use crate::http::{Body, Kind, Problem};

const CERTIFICATE_IDENTITY_UNKNOWN: Kind = Kind::new(
    403,
    "certificate-identity-unknown",
    "Certificate not accepted",
);
const CERTIFICATE_REVOKED: Kind = Kind::new(403, "certificate-revoked", "Certificate revoked");
const CERTIFICATE_RENEWED: Kind = Kind::new(403, "certificate-renewed", "Certificate renewed");
const CORPORATION_INACTIVE: Kind = Kind::new(403, "corporation-inactive", "Service stopped");
const LOGIN_NEEDS_CERTIFICATE: Kind = Kind::new(
    403,
    "login-needs-certificate",
    "Log in with your certificate",
);
const LOGIN_MISMATCH: Kind = Kind::new(
    403,
    "login-certificate-mismatch",
    "Login does not match the certificate",
);
const CERTIFICATE_EXPIRED: Kind = Kind::new(403, "certificate-expired", "Certificate expired");
const UPSTREAM_TIMEOUT: Kind = Kind::new(
    504,
    "upstream-timeout",
    "The application did not answer in time",
);
const UPSTREAM_UNAVAILABLE: Kind = Kind::new(
    502,
    "upstream-unavailable",
    "The application is unavailable",
);
const BAD_REQUEST: Kind = Kind::new(400, "bad-request", "Request not accepted");

/// The problem for a refused request.
pub(super) fn denial(denied: &Denied) -> Problem {
    match denied {
        Denied::NoCertificate { .. } => Kind::CERTIFICATE_REQUIRED.detail(
            "This page needs the client certificate issued by the bank. Install it, then reconnect and choose it when the browser asks.",
        ),
        Denied::UnknownIdentity(_) => CERTIFICATE_IDENTITY_UNKNOWN.detail(
            "The client certificate does not name a corporation or user of this service.",
        ),
        Denied::Revoked { .. } => CERTIFICATE_REVOKED.detail(
            "This client certificate has been revoked. Ask your corporation's administrator to re-issue it, then enroll again.",
        ),
        Denied::Renewed { .. } => CERTIFICATE_RENEWED.detail(
            "この電子証明書は更新されました。ブラウザをすべて閉じてから、新しい電子証明書で接続し直してください。 This certificate was renewed: close every browser window, then connect again and choose the new certificate.",
        ),
        Denied::Suspended { .. } => Kind::USER_SUSPENDED
            .detail("This user is suspended. Your corporation's master user can resume it."),
        Denied::CorporationInactive { .. } => CORPORATION_INACTIVE
            .detail("The service is stopped for this corporation. Please contact the bank."),
        Denied::LoginNeedsCertificate { .. } => LOGIN_NEEDS_CERTIFICATE.detail(
            "Your corporation uses certificate login: ID and PIN alone are no longer accepted. Log in from the PC that holds your client certificate.",
        ),
        Denied::LoginMismatch => LOGIN_MISMATCH.detail(
            "The corporation ID or user ID you entered is not the one of your client certificate. Log in as the certificate's holder.",
        ),
        Denied::Expired { .. } => CERTIFICATE_EXPIRED
            .detail("The client certificate has expired. Obtain a new certificate, then reconnect."),
    }
}

/// The response for a refused request.
pub(super) fn denied(denied: &Denied, accept: Option<&HeaderValue>) -> Response<Body> {
    denial(denied).respond(accept)
}

/// The response for an upstream that failed.
pub(super) fn upstream(error: &UpstreamError, accept: Option<&HeaderValue>) -> Response<Body> {
    let problem = match error {
        UpstreamError::Timeout(_) => UPSTREAM_TIMEOUT.detail(
            "The banking application is taking too long to answer. Please try again later.",
        ),
        UpstreamError::Unavailable(_) => UPSTREAM_UNAVAILABLE
            .detail("The banking application cannot be reached right now. Please try again later."),
        UpstreamError::ClientStalled => Kind::new(408, "body-stalled", "Request body stalled")
            .detail("The request body stopped arriving."),
    };
    problem.respond(accept)
}

/// The response when the application answered 101 to a request that was not a WebSocket
/// upgrade (or switched to another protocol): never tunnelled.
pub(super) fn upstream_switched(accept: Option<&HeaderValue>) -> Response<Body> {
    UPSTREAM_UNAVAILABLE
        .detail("The banking application answered in a way certgate does not pass on.")
        .respond(accept)
}

/// `CONNECT`: a reverse proxy opens no tunnels to where the client says.
pub(super) fn connect_refused(accept: Option<&HeaderValue>) -> Response<Body> {
    let mut response = Kind::new(405, "method-not-allowed", "Method not allowed")
        .detail("certgate does not forward CONNECT.")
        .respond(accept);
    response.headers_mut().insert(
        http::header::ALLOW,
        HeaderValue::from_static("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"),
    );
    response
}

/// A request certgate cannot read or will not pass on (an oversized login form, a path that
/// cannot be normalised).
pub(super) fn bad_request(
    status: http::StatusCode,
    detail: impl Into<std::borrow::Cow<'static, str>>,
    accept: Option<&HeaderValue>,
) -> Response<Body> {
    let kind = if status == http::StatusCode::PAYLOAD_TOO_LARGE {
        Kind::TOO_LARGE
    } else if status == http::StatusCode::UNSUPPORTED_MEDIA_TYPE {
        Kind::new(415, "unsupported-media-type", "Unsupported media type")
    } else if status == http::StatusCode::REQUEST_TIMEOUT {
        Kind::new(408, "body-stalled", "Request body stalled")
    } else {
        BAD_REQUEST
    };
    kind.detail(detail).respond(accept)
}
