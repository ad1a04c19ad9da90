//! The durable registry: corporations, users, enrollment permits, the certificate ledger,
//! revocations and the audit trail.
//!
//! Everything goes through the [`Registry`] trait, whose methods are domain operations, not
//! SQL. [`open`] picks the backend from the URL (`sqlite://data/certgate.db` by default) and
//! returns an `Arc<dyn Registry>`; [`SqliteRegistry`] is the only backend today, and a
//! PostgreSQL one is meant to pass the same test suite (the tests take a `&dyn Registry`).
//!
//! # Design choices
//! - **Dyn-compatible async trait** (`async-trait`): the backend is chosen at run time from
//!   the configuration, and callers should hold one `Arc<dyn Registry>` rather than be generic
//!   over it. One boxed future per call is nothing next to a database round trip.
//! - **Every change is one transaction and carries its audit entry.** Mutating methods take a
//!   [`NewAudit`] that is written in the same transaction, and its `at` is the time recorded on
//!   the changed rows (`revoked_at`, `used_at`, `created_at`). A method returns only after the
//!   commit, so whatever a caller tells a client is already durable. When a method fails,
//!   nothing was written, not even the audit entry: the caller audits the refusal with
//!   [`Registry::append_audit`].
//! - **The administrator** is a certificate holder with no user ID ([`Holder::admin`]): permits
//!   and certificates have `user_id = NULL`, and the administrator has no user row, matching
//!   the CN layout (corporation ID alone).
//! - **Times** are stored as INTEGER unix seconds (portable between SQLite and PostgreSQL) and
//!   exposed as [`time::OffsetDateTime`]; sub-second precision is dropped.
//! - **Business rules stay in lifecycle** (PIN checks, TTLs, retry windows, who may revoke
//!   whom). The registry enforces only what keeps the data coherent: one active permit per
//!   holder, one certificate per permit, at most one master per corporation, unique serials,
//!   foreign keys and CHECK constraints on every enum column.
//!
//! # SQLite settings
//! WAL journal (readers never block the writer), `synchronous=FULL` (each commit fsyncs the WAL:
//! `NORMAL` would survive `kill -9`, but could lose the last commits on power loss, and a
//! certificate whose bytes have left must stay in the ledger), foreign keys on, and a busy
//! timeout so that concurrent writers queue instead of failing. Every write transaction starts
//! with `BEGIN IMMEDIATE`: a deferred transaction that reads first and writes later can hit
//! `SQLITE_BUSY_SNAPSHOT` under WAL, which no busy timeout retries.
//!
//! Migrations live in `migrations/sqlite/` and are embedded with `include_str!` (so that
//! editing one triggers a rebuild, which `sqlx::migrate!` cannot promise without a build
//! script) and applied by sqlx's migrator at every start; applied ones are skipped.

mod error;
mod sqlite;
mod types;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use async_trait::async_trait;
use time::{Duration, OffsetDateTime};

use crate::model::{Holder, RevocationReason, Serial};

pub use error::StoreError;
pub use sqlite::SqliteRegistry;
pub use types::{
    AuditEntry, CertStatus, CertificateRecord, Corporation, CorporationStatus, Issuance,
    IssueStatus, Issued, KeptP12, NewAudit, NewCertificate, NewCorporation, NewPermit, NewUser,
    Permit, PermitFailure, PermitIssued, PermitState, RetryInfo, Revocation, RevokedCert,
    StatusRow, User, UserStatus,
};

/// The default registry URL: a SQLite file under `data/`, relative to the working directory.
pub const DEFAULT_URL: &str = "sqlite://data/certgate.db";

/// Opens the registry named by `url`, creating and migrating it as needed.
///
/// `sqlite://path` (or `sqlite:path`) opens a SQLite file; other schemes are refused until
/// their backend exists.
pub async fn open(url: &str) -> Result<Arc<dyn Registry>, StoreError> {
    let scheme = url.split_once(':').map_or(url, |(scheme, _)| scheme);
    match scheme {
        "sqlite" => Ok(Arc::new(SqliteRegistry::open(url).await?)),
        other => Err(StoreError::UnsupportedScheme {
            scheme: other.to_owned(),
        }),
    }
}

/// The registry's operations. See the module documentation for the transaction and audit rules
/// every implementation follows.
#[async_trait]
pub trait Registry: Send + Sync {
    // --- corporations ---

    /// Registers a corporation (status active). A duplicate ID is [`StoreError::Conflict`].
    async fn add_corporation(
        &self,
        corp: &NewCorporation,
        audit: &NewAudit,
    ) -> Result<Corporation, StoreError>;

    /// The corporation with this ID, if registered.
    async fn corporation(&self, corp_id: &str) -> Result<Option<Corporation>, StoreError>;

    /// Every corporation, by ID.
    async fn list_corporations(&self) -> Result<Vec<Corporation>, StoreError>;

    /// Turns the certificate requirement on or off for the whole corporation.
    async fn set_cert_required(
        &self,
        corp_id: &str,
        required: bool,
        audit: &NewAudit,
    ) -> Result<(), StoreError>;

    /// Suspends, resumes or closes a corporation.
    async fn set_corporation_status(
        &self,
        corp_id: &str,
        status: CorporationStatus,
        audit: &NewAudit,
    ) -> Result<(), StoreError>;

    // --- users ---

    /// Registers a user (status active). Unknown corporation is [`StoreError::NotFound`];
    /// a duplicate user or a second master is [`StoreError::Conflict`].
    async fn add_user(&self, user: &NewUser, audit: &NewAudit) -> Result<User, StoreError>;

    /// The user, if registered.
    async fn user(&self, corp_id: &str, user_id: &str) -> Result<Option<User>, StoreError>;

    /// The corporation's users, by user ID.
    async fn list_users(&self, corp_id: &str) -> Result<Vec<User>, StoreError>;

    /// Every user of every corporation, for the proxy's role and suspension cache.
    async fn all_users(&self) -> Result<Vec<User>, StoreError>;

    /// Suspends or resumes a user.
    async fn set_user_status(
        &self,
        corp_id: &str,
        user_id: &str,
        status: UserStatus,
        audit: &NewAudit,
    ) -> Result<(), StoreError>;

    // --- permits ---

    /// Issues a permit, superseding the holder's active and locked permits; with
    /// [`NewPermit::revoke_active`] (re-issue) also revokes the holder's unexpired certificates.
    async fn issue_permit(
        &self,
        permit: &NewPermit,
        audit: &NewAudit,
    ) -> Result<PermitIssued, StoreError>;

    /// The permit with this ID.
    async fn permit(&self, permit_id: i64) -> Result<Option<Permit>, StoreError>;

    /// The holder's newest permit in any state. Issuing supersedes older ones, so this is the
    /// only one an enrollment can concern (or retry).
    async fn latest_permit(&self, holder: &Holder) -> Result<Option<Permit>, StoreError>;

    /// Counts a wrong PIN against an active permit; reaching `max_failures` locks it. A permit
    /// that is not active (locked or used by a parallel attempt) counts nothing and reports
    /// whether it is locked.
    async fn record_permit_failure(
        &self,
        permit_id: i64,
        max_failures: u32,
        audit: &NewAudit,
    ) -> Result<PermitFailure, StoreError>;

    /// For a used permit: when, with which key, the certificate it produced, and the
    /// `certificate.p12` it sent if that is still kept at `now`.
    async fn find_retry(
        &self,
        permit_id: i64,
        now: OffsetDateTime,
    ) -> Result<Option<RetryInfo>, StoreError>;

    // --- certificates ---

    /// In one transaction: consumes the permit (if any), revokes the holder's other unexpired
    /// certificates as superseded (if asked), enters the certificate, writes the audit entry.
    /// Any failure leaves the registry unchanged.
    async fn record_issuance(&self, issuance: &Issuance) -> Result<Issued, StoreError>;

    /// The certificate with this serial (any case).
    async fn certificate(&self, serial: &Serial) -> Result<Option<CertificateRecord>, StoreError>;

    /// The holder's certificates that are not revoked and not expired at `now`, newest first.
    async fn active_certificates(
        &self,
        holder: &Holder,
        now: OffsetDateTime,
    ) -> Result<Vec<CertificateRecord>, StoreError>;

    /// The holder's most recently issued certificate, in any state.
    async fn latest_certificate(
        &self,
        holder: &Holder,
    ) -> Result<Option<CertificateRecord>, StoreError>;

    /// Every certificate of the holder, newest first.
    async fn holder_certificates(
        &self,
        holder: &Holder,
    ) -> Result<Vec<CertificateRecord>, StoreError>;

    /// Every certificate of the corporation (administrator and users), newest first.
    async fn corporation_certificates(
        &self,
        corp_id: &str,
    ) -> Result<Vec<CertificateRecord>, StoreError>;

    /// Revokes the certificate and, transitively, every active certificate renewed from it.
    /// Returns what was revoked, the named certificate first. Unknown serial is
    /// [`StoreError::NotFound`]; an already revoked one is [`StoreError::Conflict`].
    async fn revoke_certificate(
        &self,
        serial: &Serial,
        reason: RevocationReason,
        audit: &NewAudit,
    ) -> Result<Vec<RevokedCert>, StoreError>;

    /// Revokes every certificate of the holder that is neither revoked nor expired at
    /// `audit.at`. Returns what was revoked (possibly nothing).
    async fn revoke_holder(
        &self,
        holder: &Holder,
        reason: RevocationReason,
        audit: &NewAudit,
    ) -> Result<Vec<RevokedCert>, StoreError>;

    /// Every revoked certificate not yet expired at `now`: the proxy's revoked set and the CRL.
    async fn revoked_unexpired(&self, now: OffsetDateTime) -> Result<Vec<RevokedCert>, StoreError>;

    /// The status table: every user of the corporation with their latest certificate and the
    /// status it gives at `now` (renewable within `renewal_window` of expiry).
    async fn user_statuses(
        &self,
        corp_id: &str,
        now: OffsetDateTime,
        renewal_window: Duration,
    ) -> Result<Vec<StatusRow>, StoreError>;

    // --- audit ---

    /// Writes an audit entry on its own (refusals, read-only operations).
    async fn append_audit(&self, audit: &NewAudit) -> Result<(), StoreError>;

    /// Audit entries, newest first, at most `limit`; only the corporation's when `corp_id` is
    /// given.
    async fn list_audit(
        &self,
        corp_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, StoreError>;

    /// Erases the `certificate.p12` files kept for retries whose window closed before `now`;
    /// returns how many.
    async fn forget_expired_files(&self, now: OffsetDateTime) -> Result<u64, StoreError>;

    // --- lifetime ---

    /// Waits for running operations and closes the connections (checkpointing SQLite's WAL).
    async fn close(&self);
}
