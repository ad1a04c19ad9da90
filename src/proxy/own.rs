//! certgate's own paths (EST, the JSON API, the pages): the proxy decides who is calling, then
//! hands such requests to the service it was given at start-up instead of forwarding them. The
//! proxy never names that service: `serve` wires it in.

use std::future::Future;
use std::pin::Pin;

use http::{Request, Response};
use hyper::body::Incoming;

use crate::http::Body;
use crate::identity::Caller;

/// A future answering one request.
pub type Answer<'a> = Pin<Box<dyn Future<Output = Response<Body>> + Send + 'a>>;

/// The service for certgate's own paths.
pub trait OwnPaths: Send + Sync {
    /// Whether certgate answers `path` (already normalised, `;` parameters removed) itself.
    fn owns(&self, path: &str) -> bool;

    /// Answers one request of `caller`, whose certificate (if any) the proxy's policy accepted.
    fn answer<'a>(&'a self, caller: Caller<'a>, request: Request<Incoming>) -> Answer<'a>;

    /// A page to show instead of the application's, for a GET of one of `[notice] paths`
    /// (the renewal notice); `None` lets the request through.
    fn notice(&self, _caller: Caller<'_>, _request: &Request<Incoming>) -> Option<Response<Body>> {
        None
    }
}

/// No own paths: everything is forwarded (benchmarks, tests of the proxy alone).
pub struct NoOwnPaths;

impl OwnPaths for NoOwnPaths {
    fn owns(&self, _path: &str) -> bool {
        false
    }

    fn answer<'a>(&'a self, _caller: Caller<'a>, _request: Request<Incoming>) -> Answer<'a> {
        Box::pin(async {
            crate::http::Kind::NOT_FOUND
                .detail("not an endpoint")
                .json()
        })
    }
}
