//! What the proxy and certgate's own endpoints share about HTTP: the one response body type
//! ([`Body`]) and the one renderer of refusals ([`Problem`]), an HTML page for browsers and RFC 9457
//! problem JSON for everything else.
//!
//! A leaf: it uses only [`crate::model`].

mod body;
mod drain;
mod problem;

pub use body::{Body, ConnectionHome, UpstreamBody, empty, full};
pub use drain::{BodyError, DISCARD_BEFORE_REFUSAL, discard_before_refusal, linger, read_to_limit};
pub use problem::{Kind, Problem, basic_challenge, wants_html};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};

/// A response certgate made itself, `Cache-Control: no-store` (it is about one caller).
pub fn bytes_response(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A JSON answer, one line.
pub fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    bytes_response(status, "application/json", format!("{value}\n"))
}
