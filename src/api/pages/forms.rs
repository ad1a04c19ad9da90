//! What keeps a page's form from being sent by someone else: the browser's own word on where a
//! request came from (`Sec-Fetch-Site`, `Origin`), and a hidden token signed with the pages' key,
//! bound to the form, the path it posts to, the caller's certificate and an expiry.
//!
//! A client certificate is ambient authority, like a cookie: a page on another site could make
//! the browser post a form to certgate, and the browser would present the certificate. Either
//! check alone would refuse that; both are kept because old browsers send neither header.

use std::io::Write as _;
use std::path::Path;

use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::header;

/// How long a form stays good after the page was shown.
const TOKEN_LIFETIME_SECS: i64 = 60 * 60;

/// The key that signs form tokens (and the pages' cookies), read from `pages.secret_file`:
/// replicas that share the file accept each other's forms, also after a restart.
pub struct PageKey(hmac::Key);

impl std::fmt::Debug for PageKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PageKey(<hidden>)")
    }
}

/// Why a page key could not be had.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PageKeyError(String);

impl PageKey {
    /// A key from 32 or more secret bytes.
    pub fn from_bytes(bytes: &[u8]) -> Self {
        Self(hmac::Key::new(hmac::HMAC_SHA256, bytes))
    }

    /// Reads the key file (64 hex characters), making it first (mode 0600, 32 random bytes)
    /// when it does not exist; says whether it made it.
    pub fn load_or_create(path: &Path) -> Result<(Self, bool), PageKeyError> {
        let created = match std::fs::read_to_string(path) {
            Ok(_) => false,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => create(path)?,
            Err(err) => {
                return Err(PageKeyError(format!(
                    "cannot read {}: {err}",
                    path.display()
                )));
            }
        };
        let text = std::fs::read_to_string(path)
            .map_err(|err| PageKeyError(format!("cannot read {}: {err}", path.display())))?;
        let bytes = decode_hex(text.trim()).ok_or_else(|| {
            PageKeyError(format!(
                "{} does not hold a key: it must be 64 hexadecimal characters (certgate init makes one)",
                path.display()
            ))
        })?;
        Ok((Self::from_bytes(&bytes), created))
    }

    /// The hidden token of `form` posting to `action`, for the certificate `binding` (empty
    /// without one), good until an hour after `now`.
    pub(super) fn token(&self, form: &str, action: &str, binding: &str, now: i64) -> String {
        self.signed_until(
            form,
            action,
            binding,
            now.saturating_add(TOKEN_LIFETIME_SECS),
        )
    }

    /// A token like [`Self::token`], good until `expiry` (a cookie's value).
    pub(super) fn signed_until(
        &self,
        form: &str,
        action: &str,
        binding: &str,
        expiry: i64,
    ) -> String {
        let tag = hmac::sign(&self.0, &message(form, action, binding, expiry));
        format!("{expiry}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
    }

    /// Whether `token` is one this key made for the same form, action and binding, not expired.
    pub(super) fn check(
        &self,
        token: &str,
        form: &str,
        action: &str,
        binding: &str,
        now: i64,
    ) -> bool {
        let Some((expiry, tag)) = token.split_once('.') else {
            return false;
        };
        let (Ok(expiry), Ok(tag)) = (expiry.parse::<i64>(), URL_SAFE_NO_PAD.decode(tag)) else {
            return false;
        };
        // The signature first, so that a forged expiry is never compared with the clock.
        hmac::verify(&self.0, &message(form, action, binding, expiry), &tag).is_ok()
            && now <= expiry
    }
}

fn message(form: &str, action: &str, binding: &str, expiry: i64) -> Vec<u8> {
    format!("certgate-form-v1\0{form}\0{action}\0{binding}\0{expiry}").into_bytes()
}

/// Makes the key file without ever leaving a partial one: the key is written to a temporary file
/// beside it, then linked to the name, which fails if another process made it first (that key
/// is then the one).
fn create(path: &Path) -> Result<bool, PageKeyError> {
    let failed = |what: &str, err: std::io::Error| {
        PageKeyError(format!("cannot {what} {}: {err}", path.display()))
    };
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|err| failed("make the directory of", err))?;
    }
    let mut secret = [0u8; 32];
    aws_lc_rs::rand::fill(&mut secret)
        .map_err(|_| PageKeyError("no random bytes for a new key".to_owned()))?;
    let temporary = path.with_extension(format!("tmp{}", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = options.open(&temporary).and_then(|mut file| {
        writeln!(file, "{}", crate::model::hex(&secret))?;
        file.sync_all()
    });
    if let Err(err) = written {
        let _ = std::fs::remove_file(&temporary);
        return Err(failed("write", err));
    }
    let linked = std::fs::hard_link(&temporary, path);
    let _ = std::fs::remove_file(&temporary);
    match linked {
        Ok(()) => Ok(true),
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(err) => Err(failed("write", err)),
    }
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() < 64 || text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(text.get(at..at + 2)?, 16).ok())
        .collect()
}

/// Whether the browser says this request came from another site. `Sec-Fetch-Site`, which no page
/// can set, decides when present (`same-origin`, or `none` for a typed or bookmarked request, is
/// this site). Without it (older browsers), an `Origin` that is not this host over HTTPS is
/// another site. `Origin: null` says nothing: browsers send it for every form posted from a page
/// with `Referrer-Policy: no-referrer`, as certgate's pages are; the token decides then.
pub(super) fn from_another_site(parts: &http::request::Parts) -> bool {
    if let Some(site) = parts.headers.get("sec-fetch-site") {
        return !matches!(site.as_bytes(), b"same-origin" | b"none");
    }
    let Some(origin) = parts.headers.get(header::ORIGIN) else {
        return false;
    };
    if origin.as_bytes() == b"null" {
        return false;
    }
    let host = parts
        .uri
        .authority()
        .map(|authority| authority.as_str().to_owned())
        .or_else(|| {
            parts
                .headers
                .get(header::HOST)
                .and_then(|host| host.to_str().ok())
                .map(str::to_owned)
        });
    match (origin.to_str(), host) {
        (Ok(origin), Some(host)) => !origin.eq_ignore_ascii_case(&format!("https://{host}")),
        _ => true,
    }
}

/// The values of the cookie `name` in the request's `Cookie` headers.
pub(super) fn cookies<'a>(
    headers: &'a http::HeaderMap,
    name: &'a str,
) -> impl Iterator<Item = &'a str> + 'a {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(move |pair| {
            let (key, value) = pair.trim().split_once('=')?;
            (key == name).then_some(value)
        })
}

/// The fields of an `application/x-www-form-urlencoded` body; `None` for another content type.
/// A field sent twice counts once, as the first.
pub(super) fn fields(
    parts: &http::request::Parts,
    body: &[u8],
) -> Option<std::collections::HashMap<String, String>> {
    let content_type = parts.headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let essence = content_type.split(';').next()?.trim();
    if !essence.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        return None;
    }
    let mut fields = std::collections::HashMap::new();
    for (key, value) in form_urlencoded::parse(body) {
        fields
            .entry(key.into_owned())
            .or_insert_with(|| value.into_owned());
    }
    Some(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(headers: &[(&str, &str)]) -> http::request::Parts {
        let mut request = http::Request::post("/certgate/enroll").header("host", "bank.example");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.body(()).unwrap().into_parts().0
    }

    #[test]
    fn tokens_are_bound_to_form_action_binding_and_time() {
        let key = PageKey::from_bytes(&[7; 32]);
        let token = key.token("renew", "/certgate/renew", "0a1b", 1_000);
        assert!(key.check(&token, "renew", "/certgate/renew", "0a1b", 1_000));
        assert!(key.check(&token, "renew", "/certgate/renew", "0a1b", 1_000 + 3_600));
        assert!(!key.check(&token, "renew", "/certgate/renew", "0a1b", 1_000 + 3_601));
        assert!(!key.check(&token, "enroll", "/certgate/renew", "0a1b", 1_000));
        assert!(!key.check(&token, "renew", "/certgate/enroll", "0a1b", 1_000));
        assert!(!key.check(&token, "renew", "/certgate/renew", "0a1c", 1_000));
        let other = PageKey::from_bytes(&[8; 32]);
        assert!(!other.check(&token, "renew", "/certgate/renew", "0a1b", 1_000));
        let (_, tag) = token.split_once('.').unwrap();
        let extended = format!("{}.{tag}", 1_000 + 999_999);
        assert!(!key.check(&extended, "renew", "/certgate/renew", "0a1b", 1_000));
        for junk in ["", ".", "x.y", "1000", "1000.", "1000.!!"] {
            assert!(
                !key.check(junk, "renew", "/certgate/renew", "0a1b", 1_000),
                "{junk:?}"
            );
        }
    }

    #[test]
    fn the_browser_says_where_a_form_came_from() {
        assert!(!from_another_site(&parts(&[])));
        assert!(!from_another_site(&parts(&[(
            "sec-fetch-site",
            "same-origin"
        )])));
        assert!(!from_another_site(&parts(&[("sec-fetch-site", "none")])));
        assert!(from_another_site(&parts(&[(
            "sec-fetch-site",
            "cross-site"
        )])));
        assert!(from_another_site(&parts(&[(
            "sec-fetch-site",
            "same-site"
        )])));
        assert!(!from_another_site(&parts(&[(
            "origin",
            "https://bank.example"
        )])));
        assert!(from_another_site(&parts(&[(
            "origin",
            "https://evil.example"
        )])));
        assert!(from_another_site(&parts(&[(
            "origin",
            "http://bank.example"
        )])));
        assert!(!from_another_site(&parts(&[("origin", "null")])));
        assert!(!from_another_site(&parts(&[
            ("origin", "null"),
            ("sec-fetch-site", "same-origin")
        ])));
        assert!(from_another_site(&parts(&[
            ("origin", "null"),
            ("sec-fetch-site", "cross-site")
        ])));
        assert!(from_another_site(&parts(&[
            ("origin", "https://bank.example"),
            ("sec-fetch-site", "cross-site")
        ])));
    }

    #[test]
    fn the_key_file_is_made_once_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/pages.key");
        let (first, created) = PageKey::load_or_create(&path).unwrap();
        assert!(created);
        let (second, created) = PageKey::load_or_create(&path).unwrap();
        assert!(!created);
        let token = first.token("f", "/a", "", 0);
        assert!(
            second.check(&token, "f", "/a", "", 0),
            "the same key is read back"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, "not a key\n").unwrap();
        let err = PageKey::load_or_create(&path).unwrap_err().to_string();
        assert!(err.contains("64 hexadecimal"), "{err}");
        assert!(!format!("{first:?}").contains('7'));
    }
}
