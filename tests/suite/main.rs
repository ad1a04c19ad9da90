//! certgate's integration tests, in one test binary: the real `certgate` binary is started with a
//! temporary config on free ports and driven by real clients. One binary links the crate once
//! instead of once per file, and its tests run side by side.

#![allow(
    clippy::unwrap_used,
    clippy::result_large_err,
    reason = "a test that cannot go on should fail loudly, at the line that could not"
)]

mod support;

mod api;
mod browser;
mod cli;
mod client;
mod crash;
mod crl;
mod early_refusal;
mod enrollment;
mod est_clients;
mod exhaustion;
mod handshake;
mod identity_headers;
mod layout;
mod life;
mod login_form;
mod notify;
mod pages;
mod paths;
mod proxy;
mod registry;
mod replicas;
mod rights;
mod spoofing;
mod stale;
mod standing;
mod story;
mod tunnels;
