//! Why a lifecycle operation was refused. `api` maps each variant to one HTTP status and one
//! stable problem type; the operator CLI prints the message.

use crate::pki::{CsrError, Pkcs12Error, PkiError};
use crate::store::StoreError;

/// A refusal or failure, with what the caller needs to fix it (never a PIN or key).
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    /// A field of the request is malformed.
    #[error("{field}: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// No enrollment credentials were sent.
    #[error(
        "enrollment credentials are required: the corporation ID, the user ID (not for the administrator) and the temporary PIN"
    )]
    CredentialsRequired,
    /// The corporation, user or PIN is wrong (one message for all, so as not to reveal which).
    #[error("wrong corporation ID, user ID or PIN")]
    BadCredentials,
    /// Too many wrong PINs: the permit is locked until a new one is issued.
    #[error("this permit is locked after too many wrong PINs; ask for a new temporary PIN")]
    PermitLocked,
    /// The permit's validity has ended.
    #[error("the temporary PIN expired at {expired_at}; ask for a new one")]
    PermitExpired {
        /// When it expired (RFC 3339).
        expired_at: String,
    },
    /// The permit was used and the retry window is over.
    #[error("this temporary PIN was already used; ask for a new one to enroll again")]
    PermitUsed,
    /// A newer permit replaced this one.
    #[error("this temporary PIN was replaced by a newer one; use the newest PIN you received")]
    PermitSuperseded,
    /// The permit was used moments ago for a PKCS#12 file, and this retry gives another password.
    #[error(
        "this temporary PIN was just used; retry with the same PKCS#12 password to download the same file again, or ask for a new PIN"
    )]
    RetryPasswordMismatch,
    /// The permit was used moments ago, but for another key.
    #[error(
        "this temporary PIN was just used with another key; retry with the same key, or ask for a new PIN"
    )]
    RetryKeyMismatch,
    /// A user enrolls before the corporation's administrator has a certificate.
    #[error(
        "the administrator of corporation {corp_id} has no certificate yet; the administrator enrolls first"
    )]
    AdministratorFirst {
        /// The corporation.
        corp_id: String,
    },
    /// The CSR is unusable.
    #[error("csr: {0}")]
    BadCsr(#[from] CsrError),
    /// The PKCS#12 password is unusable.
    #[error("p12_password: {0}")]
    BadP12Password(String),
    /// Renewal before the window opens.
    #[error("renewal opens on {opens_at}, {window_days} days before the certificate expires")]
    RenewalNotOpen {
        /// When the window opens (RFC 3339).
        opens_at: String,
        /// The window's length.
        window_days: u32,
    },
    /// The presented certificate cannot be renewed (revoked, superseded, not ours).
    #[error("this certificate cannot be renewed: {why}")]
    NotRenewable {
        /// Why.
        why: String,
    },
    /// The caller may not do this.
    #[error("{why}")]
    Forbidden {
        /// Why.
        why: String,
    },
    /// The user is suspended.
    #[error("user {user} is suspended; the corporation's master user can resume it")]
    Suspended {
        /// `corp/user`.
        user: String,
    },
    /// Something named does not exist.
    #[error("{what} not found")]
    NotFound {
        /// What.
        what: String,
    },
    /// The change conflicts with the registry's state.
    #[error("{what}")]
    Conflict {
        /// What.
        what: String,
    },
    /// A manager's action that needs their confirmation password came without it, or they have
    /// not set one yet.
    #[error("{why}")]
    ConfirmationRequired {
        /// What is missing.
        why: String,
    },
    /// The confirmation password is wrong.
    #[error("the confirmation password is wrong ({left} tries left before it locks)")]
    ConfirmationWrong {
        /// Wrong tries left.
        left: u32,
    },
    /// The confirmation password is locked after too many wrong tries.
    #[error(
        "the confirmation password is locked after too many wrong tries; the bank resets it (certgate user reset-confirmation)"
    )]
    ConfirmationLocked,
    /// `certgate init` has not been run: nothing can be issued.
    #[error("certificate issuing is not set up here; the bank runs `certgate init` first")]
    NoCa,
    /// Too many enrollment attempts are being checked at once.
    #[error(
        "too many enrollments are being checked right now; try again in {retry_after_secs} seconds"
    )]
    Busy {
        /// When to try again.
        retry_after_secs: u64,
    },
    /// A server-side failure (registry, CA files); details are in the log.
    #[error("internal error: {0}")]
    Internal(String),
}

impl LifecycleError {
    /// A short reason for the audit trail.
    pub fn audit_reason(&self) -> String {
        match self {
            Self::Internal(_) => "internal error".to_owned(),
            other => other.to_string(),
        }
    }
}

impl From<StoreError> for LifecycleError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound { what } => Self::NotFound { what },
            StoreError::Conflict { what } => Self::Conflict { what },
            StoreError::Invalid { field, reason } => Self::Invalid { field, reason },
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<PkiError> for LifecycleError {
    fn from(err: PkiError) -> Self {
        match err {
            PkiError::InvalidSubject(_) => Self::Invalid {
                field: "subject",
                reason: err.to_string(),
            },
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<Pkcs12Error> for LifecycleError {
    fn from(err: Pkcs12Error) -> Self {
        match err {
            Pkcs12Error::PasswordTooShort { .. } => Self::BadP12Password(err.to_string()),
            other => Self::Internal(other.to_string()),
        }
    }
}
