//! The application's ID + PIN login form, guarded: once a corporation requires certificates,
//! the form is refused without a certificate, and with one it must name the certificate's own
//! corporation and user.
//!
//! The guard reads the fields wherever the application could: the query string and an
//! `application/x-www-form-urlencoded` body (a servlet's `getParameter` reads both). A field
//! given twice with different values is refused (the application might take either), and a body
//! of another type is refused rather than passed unread.

use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::{Either, Full};
use hyper::body::Incoming;

use super::policy::{self, Permit};
use crate::config::LoginConfig;
use crate::http::{Body, BodyError, discard_before_refusal, linger, read_to_limit};
use crate::revocation::Snapshot;

/// The most a login form body may hold: it is buffered to read two fields.
const MAX_LOGIN_FORM: usize = 64 * 1024;

/// Why the login form was refused.
#[derive(Debug)]
pub enum LoginRefusal {
    /// By the rules of certificate login.
    Denied(policy::Denied),
    /// The form cannot be read unambiguously.
    Body(StatusCode, &'static str),
}

/// Whether `path` (normalised, parameters removed) is the login form's, whatever its case and
/// trailing slash: servers that fold case or ignore the slash serve it as the form.
pub fn is_login_path(login: &LoginConfig, path: &str) -> bool {
    let trim = |path: &str| -> String {
        let trimmed = path.trim_end_matches('/');
        if trimmed.is_empty() { "/" } else { trimmed }.to_owned()
    };
    trim(path).eq_ignore_ascii_case(&trim(&login.path))
}

/// Reads the form's fields (small, capped), checks them against the certificate, then hands the
/// same bytes on.
pub async fn guard_login(
    login: &LoginConfig,
    permit: &Permit<'_>,
    request: Request<Incoming>,
    standing: &Snapshot,
) -> Result<Request<Body>, LoginRefusal> {
    let (parts, body) = request.into_parts();
    let urlencoded = match parts.headers.get(header::CONTENT_TYPE) {
        None => true,
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|text| text.split(';').next())
            .is_some_and(|kind| {
                kind.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            }),
    };
    let bytes: Bytes = if urlencoded {
        match read_to_limit(body, MAX_LOGIN_FORM).await {
            Ok(bytes) => bytes,
            Err(BodyError::TooLarge(rest)) => {
                linger(rest);
                return Err(LoginRefusal::Body(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "The login form is larger than 64 KiB.",
                ));
            }
            Err(BodyError::Broken(_)) => {
                return Err(LoginRefusal::Body(
                    StatusCode::BAD_REQUEST,
                    "The login form could not be read.",
                ));
            }
        }
    } else if http_body::Body::is_end_stream(&body) {
        Bytes::new()
    } else {
        discard_before_refusal(body).await;
        return Err(LoginRefusal::Body(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "The login form must be sent as application/x-www-form-urlencoded.",
        ));
    };
    let query = parts.uri.query().unwrap_or("").as_bytes();
    let mut corp_id: Option<String> = None;
    let mut user_id: Option<String> = None;
    for (key, value) in form_urlencoded::parse(query).chain(form_urlencoded::parse(&bytes)) {
        let (slot, what) = if key == login.corp_field.as_str() {
            (&mut corp_id, "The login form names the corporation twice.")
        } else if key == login.user_field.as_str() {
            (&mut user_id, "The login form names the user twice.")
        } else {
            continue;
        };
        match slot {
            Some(seen) if *seen != value => {
                return Err(LoginRefusal::Body(StatusCode::BAD_REQUEST, what));
            }
            _ => *slot = Some(value.into_owned()),
        }
    }
    policy::authorize_login(permit, corp_id.as_deref(), user_id.as_deref(), standing)
        .map_err(LoginRefusal::Denied)?;
    Ok(Request::from_parts(parts, Either::Right(Full::new(bytes))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_login_path_in_any_case_and_with_a_slash() {
        let login = LoginConfig {
            path: "/login".into(),
            corp_field: "c".into(),
            user_field: "u".into(),
        };
        for path in ["/login", "/login/", "/LOGIN", "/Login/"] {
            assert!(is_login_path(&login, path), "{path}");
        }
        for path in ["/logins", "/log", "/", "/login/x"] {
            assert!(!is_login_path(&login, path), "{path}");
        }
    }
}
