//! The application's side of certgate: every request that is not certgate's own goes through
//! [`accept`] (TCP + TLS + connection identity), [`service`] (per request: strip, authorize,
//! inject, forward), and comes back through [`rescue`] when it is refused or fails.

pub mod accept;
mod echo;
mod forward;
mod headers;
mod policy;
mod pool;
mod rescue;
mod routes;
mod service;

use std::sync::Arc;

pub use accept::{ConnectionLimits, serve_tls};
pub use echo::{echo_response, serve_echo};
pub use forward::{Upstream, UpstreamError};
pub use service::Proxy;

/// Every body on the proxy path: a client's request streamed on (or the application's response
/// streamed back, which returns its connection to the pool at its end), or a small one certgate
/// made (login form read ahead, error page, echo).
pub type ProxyBody = http_body_util::Either<
    http_body_util::Either<hyper::body::Incoming, pool::PooledBody>,
    http_body_util::Full<bytes::Bytes>,
>;

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
    },
}

/// What is known about one TLS connection; computed once, shared by all its requests.
#[derive(Debug)]
pub struct Connection {
    /// The client's address.
    pub peer: std::net::SocketAddr,
    /// Its certificate.
    pub cert: ClientCert,
}
