//! The one error type of the registry.

use std::path::PathBuf;

/// Why a registry operation failed. Messages name the object concerned (`corporation
/// 12345678901234`, `permit 7`) and never contain a PIN hash or other secret.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The object the operation needs does not exist.
    #[error("{what} not found")]
    NotFound {
        /// What was looked for, e.g. `user 12345678901234/alice`.
        what: String,
    },
    /// The operation contradicts what the registry already holds (duplicate ID, permit already
    /// used, certificate already revoked). Nothing was changed.
    #[error("conflict: {what}")]
    Conflict {
        /// What conflicts, as a sentence fragment.
        what: String,
    },
    /// An input value is malformed; nothing was changed.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The field, e.g. `serial`.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The URL names a backend this build does not provide.
    #[error("unsupported registry URL scheme `{scheme}` (supported: sqlite)")]
    UnsupportedScheme {
        /// The scheme part of the URL.
        scheme: String,
    },
    /// The registry URL could not be understood or the database could not be opened.
    #[error("cannot open registry {url}: {source}")]
    Open {
        /// The URL, without any password.
        url: String,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// The directory that should hold the database file could not be created.
    #[error("cannot create registry directory {}: {source}", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The embedded schema migrations could not be applied.
    #[error("registry schema migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The database refused or failed an operation.
    #[error("registry could not {op}: {source}")]
    Database {
        /// What the registry was doing, e.g. `insert certificate`.
        op: &'static str,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// A stored value cannot be read back as its type (edited by hand, or a newer schema).
    #[error("corrupt registry data: {what}")]
    Corrupt {
        /// Which value.
        what: String,
    },
}

impl StoreError {
    pub(crate) fn not_found(what: impl Into<String>) -> Self {
        Self::NotFound { what: what.into() }
    }

    pub(crate) fn conflict(what: impl Into<String>) -> Self {
        Self::Conflict { what: what.into() }
    }

    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field,
            reason: reason.into(),
        }
    }

    pub(crate) fn corrupt(what: impl Into<String>) -> Self {
        Self::Corrupt { what: what.into() }
    }

    /// Wraps a driver error, turning constraint violations into the typed variants so that a
    /// race the pre-checks could not see still reads as a conflict rather than an outage.
    pub(crate) fn db(op: &'static str) -> impl FnOnce(sqlx::Error) -> Self {
        move |source| {
            let kind = match &source {
                sqlx::Error::Database(e) => Some((e.kind(), e.message().to_owned())),
                _ => None,
            };
            match kind {
                Some((sqlx::error::ErrorKind::UniqueViolation, msg)) => {
                    Self::conflict(format!("{op}: {msg}"))
                }
                Some((sqlx::error::ErrorKind::ForeignKeyViolation, _)) => {
                    Self::not_found(format!("{op}: a referenced row"))
                }
                Some((
                    sqlx::error::ErrorKind::CheckViolation
                    | sqlx::error::ErrorKind::NotNullViolation,
                    msg,
                )) => Self::invalid("row", format!("{op}: {msg}")),
                _ => Self::Database { op, source },
            }
        }
    }
}
