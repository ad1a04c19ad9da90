//! Shared test support: certificates made with rcgen at test time, the real `certgate` binary
//! started on port 0 with a temporary config, clients, and upstreams (in-process ones, and real
//! programs where behaviour depends on them: nginx, a WSGI server).
#![allow(dead_code, reason = "each test module uses its part of the support")]

mod bank;
mod client;
mod peers;
mod pki;
mod postgres;
mod server;
mod tools;
mod upstreams;

pub(crate) use bank::*;
pub(crate) use client::*;
pub(crate) use peers::*;
pub(crate) use pki::*;
pub(crate) use postgres::*;
pub(crate) use server::*;
pub(crate) use tools::*;
pub(crate) use upstreams::*;
