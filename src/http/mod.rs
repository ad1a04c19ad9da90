//! What the proxy and certgate's own endpoints share about HTTP: the one response body type
//! ([`Body`]) and the one renderer of refusals ([`Problem`]), an HTML page for browsers and RFC 9457
//! problem JSON for everything else. Also the HTTP/1.1 client that talks to the application
//! ([`client`]): its answer's body is one of [`Body`]'s kinds ([`UpstreamBody`]), so the codec
//! lives beside the type; the proxy's pool drives it.
//!
//! A leaf: it uses only [`crate::model`].

mod body;
pub mod client;
mod drain;
mod problem;

pub use body::{Body, BodyStalled, ClientBody, UpstreamBody, empty, full};
pub use drain::{BodyError, DISCARD_BEFORE_REFUSAL, discard_before_refusal, linger, read_to_limit};
pub use problem::{Kind, Problem, basic_challenge, wants_html};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};

/// The key under which per-address limits count a client: its IPv4 address, or the /64 prefix of
/// its IPv6 address (one subscriber usually holds a whole /64, so counting single IPv6 addresses
/// would give one attacker billions of slots).
pub fn client_key(ip: std::net::IpAddr) -> std::net::IpAddr {
    match ip.to_canonical() {
        std::net::IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            std::net::IpAddr::V6(std::net::Ipv6Addr::from(prefix))
        }
        v4 => v4,
    }
}

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

#[cfg(test)]
mod tests {
    #[test]
    fn ipv6_clients_count_by_their_64_prefix() {
        let key = |text: &str| super::client_key(text.parse().unwrap()).to_string();
        assert_eq!(key("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::");
        assert_eq!(key("2001:db8:1:2:ffff::9"), "2001:db8:1:2::");
        assert_ne!(key("2001:db8:1:3::1"), key("2001:db8:1:2::1"));
        assert_eq!(key("::ffff:10.0.0.1"), "10.0.0.1");
        assert_eq!(key("192.0.2.7"), "192.0.2.7");
    }
}
