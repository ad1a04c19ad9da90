//! certgate: a reverse-proxy authentication sidecar for corporate internet banking.
//!
//! It terminates TLS, accepts only client certificates that chain to a trusted CA generation,
//! and hands the application behind it the caller's identity in headers nobody else can set.
//! The modules are the rooms of `DESIGN.md`; arrows point one way, down:
//!
//! ```text
//! cli, serve            the command line and the wiring of a running server
//! api, proxy            certgate's own endpoints; the application's side of a request
//! lifecycle, identity,  business rules; who a certificate names; who is refused right now
//!   revocation, tls     (and the listener's TLS)
//! notify                expiry e-mails, from the registry
//! pki, store            certgate's CA; the registry
//! model, http, config,  leaves every room may use: the shared domain types, the response body
//!   ops                 and refusal renderer, the configuration, metrics and signals
//! ```

#![forbid(unsafe_code)]

pub mod api;
pub mod cli;
pub mod config;
pub mod http;
pub mod identity;
pub mod lifecycle;
pub mod model;
pub mod notify;
pub mod ops;
pub mod pki;
pub mod proxy;
pub mod revocation;
pub mod serve;
pub mod store;
pub mod tls;
