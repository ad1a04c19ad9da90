//! The one place where a refusal or failure becomes a response: the status, a short reason for
//! the client (an HTML page for browsers, RFC 9457 problem JSON otherwise), never the cause chain,
//! which goes to the log.

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::{Either, Full};

use super::ProxyBody;
use super::forward::UpstreamError;
use super::policy::Denied;

/// A response certgate makes itself instead of forwarding.
#[derive(Debug, Clone, Copy)]
struct Problem {
    status: StatusCode,
    /// Stable slug, the last part of the problem `type`.
    slug: &'static str,
    title: &'static str,
    detail: &'static str,
}

/// The response for a refused request.
pub fn denied(denied: &Denied, accept: Option<&HeaderValue>) -> Response<ProxyBody> {
    let problem = match denied {
        Denied::NoCertificate { .. } => Problem {
            status: StatusCode::UNAUTHORIZED,
            slug: "certificate-required",
            title: "Client certificate required",
            detail: "This page needs the client certificate issued by the bank. Install it, then reconnect and choose it when the browser asks.",
        },
        Denied::UnknownIdentity(_) => Problem {
            status: StatusCode::FORBIDDEN,
            slug: "certificate-identity-unknown",
            title: "Certificate not accepted",
            detail: "The client certificate does not name a corporation or user of this service.",
        },
        Denied::Revoked { .. } => Problem {
            status: StatusCode::FORBIDDEN,
            slug: "certificate-revoked",
            title: "Certificate revoked",
            detail: "This client certificate has been revoked. Ask your corporation's administrator to re-issue it, then enroll again.",
        },
        Denied::Suspended { .. } => Problem {
            status: StatusCode::FORBIDDEN,
            slug: "user-suspended",
            title: "User suspended",
            detail: "This user is suspended. Your corporation's master user can resume it.",
        },
        Denied::CorporationInactive { .. } => Problem {
            status: StatusCode::FORBIDDEN,
            slug: "corporation-inactive",
            title: "Service stopped",
            detail: "The service is stopped for this corporation. Please contact the bank.",
        },
        Denied::LoginNeedsCertificate { .. } => Problem {
            status: StatusCode::FORBIDDEN,
            slug: "login-needs-certificate",
            title: "Log in with your certificate",
            detail: "Your corporation uses certificate login: ID and PIN alone are no longer accepted. Log in from the PC that holds your client certificate.",
        },
        Denied::LoginMismatch => Problem {
            status: StatusCode::FORBIDDEN,
            slug: "login-certificate-mismatch",
            title: "Login does not match the certificate",
            detail: "The corporation ID or user ID you entered is not the one of your client certificate. Log in as the certificate's holder.",
        },
        Denied::Expired { .. } => Problem {
            status: StatusCode::FORBIDDEN,
            slug: "certificate-expired",
            title: "Certificate expired",
            detail: "The client certificate has expired. Obtain a new certificate, then reconnect.",
        },
    };
    render(problem, accept)
}

/// The response for an upstream that failed.
pub fn upstream(error: &UpstreamError, accept: Option<&HeaderValue>) -> Response<ProxyBody> {
    let problem = match error {
        UpstreamError::Timeout(_) => Problem {
            status: StatusCode::GATEWAY_TIMEOUT,
            slug: "upstream-timeout",
            title: "The application did not answer in time",
            detail: "The banking application is taking too long to answer. Please try again later.",
        },
        UpstreamError::Unavailable(_) => Problem {
            status: StatusCode::BAD_GATEWAY,
            slug: "upstream-unavailable",
            title: "The application is unavailable",
            detail: "The banking application cannot be reached right now. Please try again later.",
        },
    };
    render(problem, accept)
}

/// A request certgate cannot read (e.g. an oversized login form).
pub fn bad_request(
    status: StatusCode,
    detail: &'static str,
    accept: Option<&HeaderValue>,
) -> Response<ProxyBody> {
    render(
        Problem {
            status,
            slug: "bad-request",
            title: "Request not accepted",
            detail,
        },
        accept,
    )
}

/// Browsers ask for `text/html`; everything else (API clients, curl's `*/*`) gets problem JSON.
fn wants_html(accept: Option<&HeaderValue>) -> bool {
    accept
        .and_then(|value| value.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"))
}

fn render(problem: Problem, accept: Option<&HeaderValue>) -> Response<ProxyBody> {
    let (content_type, body) = if wants_html(accept) {
        let html = format!(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{status} {title}</title></head>\n<body><h1>{title}</h1>\n<p>{detail}</p>\n<p><small>{status} &middot; certgate</small></p></body></html>\n",
            status = problem.status.as_u16(),
            title = problem.title,
            detail = problem.detail,
        );
        ("text/html; charset=utf-8", html)
    } else {
        let json = serde_json::json!({
            "type": format!("urn:certgate:problem:{}", problem.slug),
            "title": problem.title,
            "status": problem.status.as_u16(),
            "detail": problem.detail,
        });
        ("application/problem+json", format!("{json}\n"))
    };
    let mut response = Response::new(Either::Right(Full::new(Bytes::from(body))));
    *response.status_mut() = problem.status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
