//! The one renderer of refusals: the proxy's (no certificate, revoked, suspended…) and the API's
//! (bad input, lifecycle rules). The client gets a status, a stable type and a short sentence;
//! causes stay in the log.

use std::borrow::Cow;

use http::header::{self, HeaderValue};
use http::{Response, StatusCode};

use super::{Body, bytes_response};

/// A kind of refusal: its status, its stable type (`urn:certgate:problem:<slug>`) and title.
/// Kinds that both the proxy and the API answer with are defined here, once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kind {
    /// HTTP status.
    pub status: StatusCode,
    /// Last part of the problem `type`.
    pub slug: &'static str,
    /// Short title.
    pub title: &'static str,
}

impl Kind {
    /// 401: a client certificate is needed and none was presented.
    pub const CERTIFICATE_REQUIRED: Self =
        Self::new(401, "certificate-required", "Client certificate required");
    /// 403: the user is suspended by the corporation's master user.
    pub const USER_SUSPENDED: Self = Self::new(403, "user-suspended", "User suspended");
    /// 400: the request is malformed.
    pub const INVALID_REQUEST: Self = Self::new(400, "invalid-request", "Invalid request");
    /// 404.
    pub const NOT_FOUND: Self = Self::new(404, "not-found", "Not found");
    /// 405.
    pub const METHOD_NOT_ALLOWED: Self = Self::new(405, "method-not-allowed", "Method not allowed");
    /// 413: a body over the endpoint's limit.
    pub const TOO_LARGE: Self = Self::new(413, "too-large", "Request too large");
    /// 500: details in the log.
    pub const INTERNAL: Self = Self::new(500, "internal", "Internal error");
    /// 503: certgate cannot tell who is revoked right now.
    pub const STALE: Self = Self::new(503, "revocation-state-stale", "Temporarily unavailable");

    /// A kind; `status` must be a valid status code (checked at compile time for constants).
    pub const fn new(status: u16, slug: &'static str, title: &'static str) -> Self {
        let status = match StatusCode::from_u16(status) {
            Ok(status) => status,
            Err(_) => panic!("invalid status code in a problem kind"),
        };
        Self {
            status,
            slug,
            title,
        }
    }

    /// A problem of this kind saying `detail`.
    pub fn detail(self, detail: impl Into<Cow<'static, str>>) -> Problem {
        Problem {
            kind: self,
            detail: detail.into(),
            members: serde_json::Map::new(),
        }
    }
}

/// One refusal, ready to render.
#[derive(Debug, Clone)]
pub struct Problem {
    /// What kind.
    pub kind: Kind,
    /// A sentence for the caller: what is wrong and what to do.
    pub detail: Cow<'static, str>,
    /// Extension members of the JSON form, e.g. `field` or `opens_at`.
    pub members: serde_json::Map<String, serde_json::Value>,
}

impl Problem {
    /// Adds an extension member.
    pub fn with(mut self, name: &str, value: impl Into<serde_json::Value>) -> Self {
        self.members.insert(name.to_owned(), value.into());
        self
    }

    /// Problem JSON (RFC 9457).
    pub fn json(&self) -> Response<Body> {
        let mut body = serde_json::json!({
            "type": format!("urn:certgate:problem:{}", self.kind.slug),
            "title": self.kind.title,
            "status": self.kind.status.as_u16(),
            "detail": self.detail,
        });
        if let Some(object) = body.as_object_mut() {
            object.extend(self.members.clone());
        }
        bytes_response(
            self.kind.status,
            "application/problem+json",
            format!("{body}\n"),
        )
    }

    /// A short HTML page, for a browser.
    pub fn page(&self) -> Response<Body> {
        let html = format!(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{status} {title}</title></head>\n<body><h1>{title}</h1>\n<p>{detail}</p>\n<p><small>{status} &middot; certgate</small></p></body></html>\n",
            status = self.kind.status.as_u16(),
            title = escape_html(self.kind.title),
            detail = escape_html(&self.detail),
        );
        bytes_response(self.kind.status, "text/html; charset=utf-8", html)
    }

    /// The page for browsers, the JSON for everyone else.
    pub fn respond(&self, accept: Option<&HeaderValue>) -> Response<Body> {
        if wants_html(accept) {
            self.page()
        } else {
            self.json()
        }
    }
}

/// Browsers ask for `text/html`; API clients and curl's `*/*` get problem JSON.
pub fn wants_html(accept: Option<&HeaderValue>) -> bool {
    accept
        .and_then(|value| value.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"))
}

fn escape_html(text: &str) -> Cow<'_, str> {
    if !text.contains(['<', '>', '&', '"', '\'']) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    Cow::Owned(out)
}

/// `WWW-Authenticate: Basic` on a 401, so that HTTP clients that send credentials only when
/// challenged (libest, browsers) send them.
pub fn basic_challenge(mut response: Response<Body>) -> Response<Body> {
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"certgate\", charset=\"UTF-8\""),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn browsers_get_a_page_and_others_json() {
        let problem = Kind::USER_SUSPENDED.detail("<b>x</b>");
        let html = HeaderValue::from_static("text/html,application/xhtml+xml");
        let page = problem.respond(Some(&html));
        assert_eq!(
            page.headers()[header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
        let json = problem.respond(Some(&HeaderValue::from_static("*/*")));
        assert_eq!(
            json.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
        assert_eq!(json.status(), 403);
        assert_eq!(escape_html("<b>"), "&lt;b&gt;");
    }
}
