//! The path a request is decided on, and the path the application serves, made one: certgate
//! normalises the request target and forwards what it normalised, so that no spelling of a path
//! can be routed as one resource and served as another (`/login/../secret`, `/login/%2e%2e/…`,
//! Tomcat's `/login/..;/secret`).
//!
//! Normalisation (RFC 3986 §6.2.2): percent-encoded unreserved characters are decoded, other
//! percent-encodings upper-cased, empty segments merged (`//`), dot-segments removed (§5.2.4),
//! a segment whose name is `.` or `..` counting as one even with `;` parameters, as Tomcat and
//! Spring read it. What cannot be normalised without guessing what the application will do is
//! refused: an encoded `/`, `\` or NUL, a double-encoded one of those or of `.`, a literal `\`,
//! and `..` above the root.
//!
//! A segment with parameters but no name (`/;x/admin`) is dropped, as Tomcat drops it; bytes
//! outside ASCII are percent-encoded (their one normal form, RFC 3986 §2.1).
//!
//! Two results: the path to forward (segment parameters such as `;jsessionid=` kept, since
//! legacy Java applications need them) and the path to match routes, the login guard and
//! certgate's own paths on (parameters removed, as those applications match, and trailing dots
//! and spaces removed from names, as IIS and Windows servers do: `/admin.` and `/admin%20` are
//! `/admin` there).

use std::borrow::Cow;

/// Why a path cannot be normalised unambiguously.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PathError {
    /// `%2F`: a `/` inside a segment, which some servers decode and some do not.
    EncodedSlash,
    /// `%5C` or a literal `\`: a separator on some servers.
    Backslash,
    /// `%00`.
    Nul,
    /// `%25` before an encoded `.`, `/`, `\` or NUL: decoded twice, it would be one.
    DoubleEncoded,
    /// A `%` not followed by two hex digits.
    BadEscape,
    /// `..` above the root.
    AboveRoot,
}

impl PathError {
    /// What the client is told.
    pub(super) fn detail(self) -> &'static str {
        match self {
            Self::EncodedSlash => {
                "The request path has an encoded slash (%2F), which servers read differently."
            }
            Self::Backslash => "The request path has a backslash (\\ or %5C).",
            Self::Nul => "The request path has an encoded NUL (%00).",
            Self::DoubleEncoded => {
                "The request path has a double-encoded character (%25 followed by an encoded . / \\ or NUL)."
            }
            Self::BadEscape => "The request path has a % that is not followed by two hex digits.",
            Self::AboveRoot => "The request path goes above the root with '..'.",
        }
    }
}

/// A normalised request target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Normalised<'a> {
    /// The path to forward, with segment parameters.
    pub forward: Cow<'a, str>,
    /// The path to decide on: parameters removed from every segment.
    pub matching: Cow<'a, str>,
}

/// Normalises `path` (without the query). A path already in normal form, the common case, is
/// returned borrowed without allocating.
pub(super) fn normalise(path: &str) -> Result<Normalised<'_>, PathError> {
    if !path.starts_with('/') {
        // `*` (OPTIONS) and authority-form targets have no segments to normalise.
        return Ok(Normalised {
            forward: Cow::Borrowed(path),
            matching: Cow::Borrowed(path),
        });
    }
    if is_plain(path) {
        return Ok(Normalised {
            forward: Cow::Borrowed(path),
            matching: Cow::Borrowed(path),
        });
    }
    let decoded = decode(path)?;
    let mut segments: Vec<&str> = Vec::new();
    let mut trailing_slash = false;
    let parts: Vec<&str> = decoded[1..].split('/').collect();
    let last = parts.len() - 1;
    for (index, segment) in parts.iter().enumerate() {
        let name = segment.split(';').next().unwrap_or("");
        let is_last = index == last;
        match name {
            // `//` merged, and `/;x/` with it; a final empty segment is the trailing slash.
            "" => {
                if is_last {
                    trailing_slash = true;
                }
            }
            "." => trailing_slash = is_last,
            ".." => {
                if segments.pop().is_none() {
                    return Err(PathError::AboveRoot);
                }
                trailing_slash = is_last;
            }
            _ => {
                segments.push(segment);
                trailing_slash = false;
            }
        }
    }
    let join = |for_matching: bool| {
        let mut out = String::with_capacity(decoded.len());
        for segment in &segments {
            out.push('/');
            if for_matching {
                out.push_str(windows_name(segment.split(';').next().unwrap_or("")));
            } else {
                out.push_str(segment);
            }
        }
        if trailing_slash || segments.is_empty() {
            out.push('/');
        }
        out
    };
    let forward = join(false);
    let matching = join(true);
    let matching = if matching == forward {
        Cow::Owned(forward.clone())
    } else {
        Cow::Owned(matching)
    };
    Ok(Normalised {
        forward: Cow::Owned(forward),
        matching,
    })
}

/// A segment name as Windows servers read it: without trailing dots and spaces (unless nothing
/// would be left).
fn windows_name(name: &str) -> &str {
    let mut trimmed = name;
    loop {
        let shorter = trimmed
            .strip_suffix('.')
            .or_else(|| trimmed.strip_suffix("%20"))
            .unwrap_or(trimmed);
        if shorter.len() == trimmed.len() {
            break;
        }
        trimmed = shorter;
    }
    if trimmed.is_empty() { name } else { trimmed }
}

/// Nothing to decode, merge, remove or strip.
fn is_plain(path: &str) -> bool {
    let bytes = path.as_bytes();
    !bytes
        .iter()
        .any(|byte| matches!(byte, b'%' | b';' | b'\\') || !byte.is_ascii())
        && !path.contains("//")
        && !path.contains("./")
        && !path.ends_with('.')
        && !bytes
            .windows(2)
            .enumerate()
            .any(|(at, pair)| pair == b"/." && dot_segment_at(&bytes[at + 1..]))
}

/// Whether `rest` (starting at a `.` after a `/`) is a `.` or `..` segment.
fn dot_segment_at(rest: &[u8]) -> bool {
    let end = rest.iter().position(|b| *b == b'/').unwrap_or(rest.len());
    matches!(&rest[..end], b"." | b"..")
}

fn hex_value(byte: u8) -> Option<u8> {
    char::from(byte)
        .to_digit(16)
        .and_then(|digit| u8::try_from(digit).ok())
}

/// Decodes unreserved characters, upper-cases other escapes, refuses the ambiguous ones.
fn decode(path: &str) -> Result<String, PathError> {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut at = 0;
    while at < bytes.len() {
        let byte = bytes[at];
        match byte {
            b'\\' => return Err(PathError::Backslash),
            b'%' => {
                let (Some(high), Some(low)) = (
                    bytes.get(at + 1).copied().and_then(hex_value),
                    bytes.get(at + 2).copied().and_then(hex_value),
                ) else {
                    return Err(PathError::BadEscape);
                };
                let value = high * 16 + low;
                match value {
                    b'/' => return Err(PathError::EncodedSlash),
                    b'\\' => return Err(PathError::Backslash),
                    0 => return Err(PathError::Nul),
                    b'%' if double_encoded(&bytes[at + 3..]) => {
                        return Err(PathError::DoubleEncoded);
                    }
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                        out.push(char::from(value));
                    }
                    _ => {
                        out.push('%');
                        out.push(char::from(upper_hex(high)));
                        out.push(char::from(upper_hex(low)));
                    }
                }
                at += 3;
            }
            _ if !byte.is_ascii() => {
                // Raw UTF-8 (which HTTP parsers let through): its percent-encoded form, so that
                // the bytes are never read as Latin-1 characters.
                out.push('%');
                out.push(char::from(upper_hex(byte >> 4)));
                out.push(char::from(upper_hex(byte)));
                at += 1;
            }
            _ => {
                out.push(char::from(byte));
                at += 1;
            }
        }
    }
    Ok(out)
}

/// After a `%25`: an escape that, decoded once more, is `.`, `/`, `\` or NUL.
fn double_encoded(rest: &[u8]) -> bool {
    let (Some(high), Some(low)) = (
        rest.first().copied().and_then(hex_value),
        rest.get(1).copied().and_then(hex_value),
    ) else {
        return false;
    };
    matches!(high * 16 + low, b'.' | b'/' | b'\\' | 0)
}

fn upper_hex(nibble: u8) -> u8 {
    b"0123456789ABCDEF"[usize::from(nibble & 0x0f)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn both(path: &str) -> (String, String) {
        let normal = normalise(path).unwrap();
        (normal.forward.into_owned(), normal.matching.into_owned())
    }

    fn forward(path: &str) -> String {
        both(path).0
    }

    #[test]
    fn plain_paths_are_borrowed() {
        for path in [
            "/",
            "/a/b",
            "/login",
            "/a/b/",
            "/a.b/c..d",
            "/.well-known/est/cacerts",
        ] {
            let normal = normalise(path).unwrap();
            assert!(matches!(normal.forward, Cow::Borrowed(_)), "{path}");
            assert_eq!(normal.forward, path);
        }
    }

    #[test]
    fn every_spelling_of_a_dot_segment_is_resolved() {
        for attack in [
            "/login/../secret",
            "/login/%2e%2e/secret",
            "/login/%2E%2E/secret",
            "/login/.%2e/secret",
            "/login//../secret",
            "/login/./../secret",
            "/login/..;/secret",
            "/login/..;jsessionid=1/secret",
            "/%6cogin/../secret",
        ] {
            assert_eq!(forward(attack), "/secret", "{attack}");
        }
        assert_eq!(forward("/a/b/.."), "/a/");
        assert_eq!(forward("/a/b/."), "/a/b/");
        assert_eq!(forward("/a/./b"), "/a/b");
        assert_eq!(forward("//a///b//"), "/a/b/");
        assert_eq!(forward("/a/.."), "/");
    }

    #[test]
    fn parameters_are_forwarded_but_not_matched() {
        assert_eq!(
            both("/login;jsessionid=ABC"),
            ("/login;jsessionid=ABC".into(), "/login".into())
        );
        assert_eq!(
            both("/a;x=1/b;y=2/"),
            ("/a;x=1/b;y=2/".into(), "/a/b/".into())
        );
    }

    #[test]
    fn a_segment_of_parameters_alone_is_dropped() {
        for attack in [
            "/;x/admin/",
            "/;/admin/",
            "/;jsessionid=1/admin/",
            "/;x/;y/admin/",
        ] {
            assert_eq!(both(attack).1, "/admin/", "{attack}");
        }
        assert_eq!(both("/admin/;x"), ("/admin/".into(), "/admin/".into()));
    }

    #[test]
    fn trailing_dots_and_spaces_are_matched_as_windows_servers_read_them() {
        assert_eq!(both("/admin."), ("/admin.".into(), "/admin".into()));
        assert_eq!(
            both("/admin%20/x"),
            ("/admin%20/x".into(), "/admin/x".into())
        );
        assert_eq!(
            both("/admin.%20./"),
            ("/admin.%20./".into(), "/admin/".into())
        );
        // A name of dots alone is left as it is (`...` is no dot-segment).
        assert_eq!(both("/a/.../b").1, "/a/.../b");
    }

    #[test]
    fn raw_utf8_is_percent_encoded_not_read_as_latin1() {
        assert_eq!(forward("/public/\u{e9}/./x"), "/public/%C3%A9/x");
        assert_eq!(forward("/caf\u{e9}"), "/caf%C3%A9");
    }

    #[test]
    fn escapes_are_decoded_or_upper_cased() {
        assert_eq!(forward("/%7Euser/%41"), "/~user/A");
        assert_eq!(forward("/caf%c3%a9"), "/caf%C3%A9");
        assert_eq!(forward("/a%20b"), "/a%20b");
    }

    #[test]
    fn ambiguous_paths_are_refused() {
        for (path, error) in [
            ("/login/..%2fsecret", PathError::EncodedSlash),
            ("/login/..%2Fsecret", PathError::EncodedSlash),
            ("/a%5cb", PathError::Backslash),
            ("/a\\b", PathError::Backslash),
            ("/a%00", PathError::Nul),
            ("/a/%252e%252e/b", PathError::DoubleEncoded),
            ("/a/%252f", PathError::DoubleEncoded),
            ("/a%zz", PathError::BadEscape),
            ("/a%2", PathError::BadEscape),
            ("/../secret", PathError::AboveRoot),
            ("/login/../../secret", PathError::AboveRoot),
        ] {
            assert_eq!(normalise(path), Err(error), "{path}");
        }
        // An encoded percent that is not an encoded separator is data.
        assert_eq!(forward("/100%25"), "/100%25");
    }

    #[test]
    fn targets_without_a_path_pass_as_they_are() {
        assert_eq!(forward("*"), "*");
    }
}
