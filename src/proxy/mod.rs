//! The application's side of certgate: every request that is not certgate's own goes through
//! [`accept`] (TCP + TLS + connection identity; under TLS, [`tcp`] holds the handshake's last
//! flight for the first answer), [`idle`] (the connection's HTTP served until it ends:
//! idleness, parking, draining), [`service`] (per request: strip, authorize, inject, forward
//! through [`pool`] on certgate's own HTTP/1.1 client, `crate::http::client`), and comes back
//! through [`rescue`] when it is refused or fails.

pub mod accept;
mod balancer;
mod echo;
mod forward;
mod headers;
mod idle;
mod login;
mod own;
mod path;
mod policy;
mod pool;
mod rescue;
mod routes;
mod service;
mod tcp;
mod tunnel;

use std::sync::Arc;

pub use accept::{ConnectionLimits, serve_tls};
pub use echo::{echo_response, serve_echo};
pub use forward::{Upstream, UpstreamError};
pub use own::{Answer, NoOwnPaths, OwnPaths};
pub use service::Proxy;

/// A client certificate as seen by one connection.
#[derive(Debug, Clone)]
pub enum ClientCert {
    /// None was presented (client_auth optional or none).
    Absent,
    /// A certificate chain verified in the handshake, and what its CN says.
    Verified {
        /// The parsed identity, or why the CN names nobody.
        resolved: Arc<Result<crate::identity::Resolved, crate::identity::IdentityError>>,
        /// RFC 9440 `Client-Cert-Chain`, when that header is on and the client sent intermediates.
        chain_header: Option<http::HeaderValue>,
        /// Whether its CA is trusted for certgate's own operations, not only for login.
        lifecycle_ca: bool,
    },
}

/// What is known about one TLS connection; computed once, shared by all its requests.
#[derive(Debug)]
pub struct Connection {
    /// The client's address.
    pub peer: std::net::SocketAddr,
    /// Its certificate.
    pub cert: ClientCert,
    /// The longest its request bodies may pause (its idle timeout).
    pub body_stall: std::time::Duration,
    /// `X-Forwarded-For` for every request of the connection: rendered once, not per request.
    forwarded_for: http::HeaderValue,
}

impl Connection {
    /// What is known about a connection from `peer` (after any PROXY header) with `cert`.
    pub fn new(
        peer: std::net::SocketAddr,
        cert: ClientCert,
        body_stall: std::time::Duration,
    ) -> Self {
        Self {
            forwarded_for: headers::peer_ip(peer),
            peer,
            cert,
            body_stall,
        }
    }
}
