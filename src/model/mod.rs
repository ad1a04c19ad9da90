//! The domain's small shared types, each defined once and used by every room: who holds a
//! certificate ([`Holder`]), what they may do ([`Role`]), a certificate's [`Serial`], why it was
//! revoked ([`RevocationReason`]), the [`Clock`], and the few encodings every room writes the
//! same way ([`hex`], [`sha256`], [`rfc3339`]).
//!
//! This module is a leaf: it imports nothing from the rest of the crate.

mod clock;
mod der;
mod holder;
mod keys;
mod reason;
mod role;
mod serial;
mod text;

pub use clock::{Clock, ManualClock, SystemClock, now};
pub use der::Der;
pub use holder::Holder;
pub use keys::{IssuerKey, StandingKey};
pub use reason::RevocationReason;
pub use role::Role;
pub use serial::{Serial, SerialError};
pub use text::{error_chain, hex, japan_time, rfc3339, rfc3339_unix, sha256, url_without_password};

/// A stored or typed spelling that names no value of its type (`"boss"` as a role).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a {what}; use one of {known}")]
pub struct UnknownName {
    /// The type, e.g. `role`.
    pub what: &'static str,
    /// The spelling given.
    pub value: String,
    /// Every accepted spelling, comma-separated.
    pub known: String,
}
