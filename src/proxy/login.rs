//! The application's ID + PIN login form, guarded: once a corporation requires certificates,
//! the form is refused without a certificate, and with one it must name the certificate's own
//! corporation and user.
//!
//! The guard reads the fields wherever the application could: the query string and an
//! `application/x-www-form-urlencoded` body (a servlet's `getParameter` reads both), split at `&`
//! and at `;` (as some frameworks split), under every name the application could read as the
//! field: PHP turns `corp.id`, `corp id` and `corp[id` into `corp_id` and drops leading spaces,
//! ASP.NET ignores case. A field given twice with different values is refused (the application
//! might take either), and a body of another type is refused rather than passed unread.
//!
//! It fails closed: without a certificate, a form that names a user must name the corporation,
//! with a value that is exactly a corporation ID (ASCII, matching `identity.corp_id`): an
//! application that trims `11111111111111 `, or folds full-width digits, would otherwise log in
//! a corporation certgate did not recognise. It guards the login path's whole subtree
//! (`/login.php/x` runs `login.php`).

use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::{Either, Full};
use hyper::body::Incoming;

use super::policy;
use crate::config::LoginConfig;
use crate::http::{Body, BodyError, discard_before_refusal, linger, read_to_limit};
use crate::identity::Resolved;
use crate::revocation::Snapshot;

/// The most a login form body may hold: it is buffered to read two fields.
const MAX_LOGIN_FORM: usize = 64 * 1024;

/// Why the login form was refused.
#[derive(Debug)]
pub(super) enum LoginRefusal {
    /// By the rules of certificate login.
    Denied(policy::Denied),
    /// The form cannot be read unambiguously.
    Body(StatusCode, &'static str),
}

/// Whether `path` (normalised, parameters removed) is the login form's or below it, whatever its
/// case and trailing slash: servers that fold case or ignore the slash serve it as the form, and
/// PHP or CGI run `/login.php/anything` as `/login.php`.
pub(super) fn is_login_path(login: &LoginConfig, path: &str) -> bool {
    let form = login.path.trim_end_matches('/');
    if form.is_empty() {
        return true;
    }
    let path = path.as_bytes();
    path.len() >= form.len()
        && path[..form.len()].eq_ignore_ascii_case(form.as_bytes())
        && matches!(path.get(form.len()), None | Some(b'/'))
}

/// A field name as PHP and ASP.NET read it: leading spaces dropped, `.`, ` ` and `[` read as
/// `_`, case ignored.
fn field_name(name: &str) -> String {
    name.trim_start_matches(' ')
        .chars()
        .map(|c| match c {
            '.' | ' ' | '[' => '_',
            other => other.to_ascii_lowercase(),
        })
        .collect()
}

/// Reads the form's fields (small, capped), checks them against the certificate, then hands the
/// same bytes on.
pub(super) async fn guard_login(
    login: &LoginConfig,
    corp_pattern: &regex::Regex,
    stall: std::time::Duration,
    identity: Option<&Resolved>,
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
        match read_to_limit(body, MAX_LOGIN_FORM, stall).await {
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
            Err(BodyError::Stalled) => {
                return Err(LoginRefusal::Body(
                    StatusCode::REQUEST_TIMEOUT,
                    "The login form stopped arriving.",
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
    let query = parts.uri.query().unwrap_or("");
    let (corp_field, user_field) = (field_name(&login.corp_field), field_name(&login.user_field));
    let mut corp_id: Option<String> = None;
    let mut user_id: Option<String> = None;
    let body = String::from_utf8_lossy(&bytes);
    let pairs = [query, body.as_ref()]
        .into_iter()
        .flat_map(|text| text.split(';'))
        .flat_map(|text| form_urlencoded::parse(text.as_bytes()));
    for (key, value) in pairs {
        let key = field_name(&key);
        let (slot, what) = if key == corp_field {
            (&mut corp_id, "The login form names the corporation twice.")
        } else if key == user_field {
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
    if identity.is_none() {
        match corp_id.as_deref() {
            None if user_id.is_some() => {
                return Err(LoginRefusal::Body(
                    StatusCode::BAD_REQUEST,
                    "The login form names a user but no corporation.",
                ));
            }
            Some(corp) if !corp.is_ascii() || !corp_pattern.is_match(corp) => {
                return Err(LoginRefusal::Body(
                    StatusCode::BAD_REQUEST,
                    "The login form's corporation ID is not written as one (digits only, nothing around them).",
                ));
            }
            _ => {}
        }
    }
    policy::authorize_login(identity, corp_id.as_deref(), user_id.as_deref(), standing)
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
        for path in [
            "/login",
            "/login/",
            "/LOGIN",
            "/Login/",
            "/login/x",
            "/LOGIN/x/y",
        ] {
            assert!(is_login_path(&login, path), "{path}");
        }
        for path in ["/logins", "/log", "/", "/login.php"] {
            assert!(!is_login_path(&login, path), "{path}");
        }
    }

    #[test]
    fn field_names_as_php_and_asp_net_read_them() {
        for alias in [
            "corp_id", "corp.id", "corp id", "corp[id", " corp_id", "CORP_ID", "Corp.Id",
        ] {
            assert_eq!(field_name(alias), "corp_id", "{alias}");
        }
        assert_ne!(field_name("corp_idx"), "corp_id");
        assert_ne!(field_name("corp-id"), "corp_id");
    }
}
