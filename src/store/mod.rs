//! The durable registry: corporations, users, enrollment permits, the certificate ledger,
//! revocations, the change feed, CRLs and the audit trail.
//!
//! Everything goes through the [`Registry`] trait, whose methods are domain operations, not
//! SQL. [`open`] picks the backend from the URL: `sqlite://data/certgate.db` (the default: one
//! machine, nothing to install) or `postgres://user@host:port/db` (several certgate processes
//! sharing one registry). Both are [`SqlRegistry`]: the statements are written once, in the SQL
//! both databases accept (`sql.rs`); a backend file holds only its connection options, how it
//! opens a write transaction, its migrations and its error mapping (`sqlite.rs`, `postgres.rs`).
//! The tests run the same scenarios on both.
//!
//! # Design choices
//! - **Dyn-compatible async trait** (`async-trait`): the backend is chosen at run time from
//!   the configuration, and callers should hold one `Arc<dyn Registry>` rather than be generic
//!   over it. One boxed future per call is nothing next to a database round trip.
//! - **Every change is one transaction and carries its audit entry.** Mutating methods take a
//!   [`NewAudit`] that is written in the same transaction, and its `at` is the time recorded on
//!   the changed rows. A method returns only after the commit, so whatever a caller tells a
//!   client is already durable. When a method fails, nothing was written, not even the audit
//!   entry: the caller audits the refusal with [`Registry::append_audit`].
//! - **The change feed.** Every change that decides who is refused or with what role (a
//!   revocation, a renewal, a user added, suspended or resumed, a corporation's status or
//!   certificate requirement) appends a [`Change`] to the `changes` table in the same
//!   transaction. A certgate process loads the standing once ([`Registry::load_standing`]) and
//!   then applies the changes after the last one it saw ([`Registry::changes_since`]): its cost
//!   grows with the changes, not with the registry. Rows commit in sequence order (see
//!   `sql.rs`), so a reader that saw sequence N has seen every change before it.
//! - **The administrator** is a certificate holder with no user ID ([`Holder::admin`]): permits
//!   and certificates have `user_id = NULL`, and the administrator has no user row, matching
//!   the CN layout (corporation ID alone).
//! - **Times** are stored as integer Unix seconds (the same on both databases) and exposed as
//!   [`time::OffsetDateTime`]; sub-second precision is dropped.
//! - **Business rules stay in lifecycle** (PIN checks, TTLs, retry windows, who may revoke
//!   whom, what makes a valid certificate). The registry keeps the data coherent: one active
//!   permit per holder, one certificate per permit (claimed with a single conditional update),
//!   at most one master per corporation, unique serials, foreign keys and CHECK constraints.

mod error;
mod postgres;
mod rows;
mod sql;
mod sqlite;
mod types;

#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use async_trait::async_trait;
use time::{Duration, OffsetDateTime};

use crate::model::{Holder, RevocationReason, Serial};

pub use error::StoreError;
pub use postgres::PoolSettings;
pub use sql::SqlRegistry;
pub use types::{
    AuditEntry, CertStatus, CertificateRecord, Change, Confirmation, Corporation,
    CorporationStatus, CrlClaim, Expiring, FeedEntry, Issuance, IssueStatus, Issued, KeptP12,
    NewAudit, NewCertificate, NewCorporation, NewPermit, NewUser, Permit, PermitFailure,
    PermitIssued, PermitState, RetryInfo, Revocation, RevokedCert, SignedCrl, StatusRow, User,
    UserStatus, UserUpdate,
};

/// The default registry URL: a SQLite file under `data/`, relative to the working directory.
pub const DEFAULT_URL: &str = "sqlite://data/certgate.db";

/// How to reach the registry: the URL of `[store]`, a password kept apart from it, and the pool.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// `sqlite://path` or `postgres://user@host:port/db`.
    pub url: String,
    /// PostgreSQL's password when the URL has none (`CERTGATE_STORE_PASSWORD`).
    pub password: Option<secrecy::SecretString>,
    /// The connection pool.
    pub pool: PoolSettings,
}

impl StoreOptions {
    /// The URL alone, with the default pool.
    pub fn url(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            password: None,
            pool: PoolSettings::default(),
        }
    }
}

/// Opens the registry named by `url`, creating and migrating it as needed.
pub async fn open(url: &str) -> Result<Arc<dyn Registry>, StoreError> {
    open_with(&StoreOptions::url(url)).await
}

/// Opens the registry `options` name, creating and migrating it as needed.
pub async fn open_with(options: &StoreOptions) -> Result<Arc<dyn Registry>, StoreError> {
    let scheme = options
        .url
        .split_once(':')
        .map_or(options.url.as_str(), |(scheme, _)| scheme);
    match scheme {
        "sqlite" => Ok(Arc::new(sqlite::open(&options.url).await?)),
        "postgres" | "postgresql" => Ok(Arc::new(postgres::open(options).await?)),
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

    /// Replaces a user's name, role and e-mail (not master: the bank registers that one).
    async fn update_user(
        &self,
        corp_id: &str,
        user_id: &str,
        update: &UserUpdate,
        audit: &NewAudit,
    ) -> Result<User, StoreError>;

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

    // --- managers' confirmation passwords ---

    /// A manager's confirmation password, when they have set one.
    async fn confirmation(&self, holder: &Holder) -> Result<Option<Confirmation>, StoreError>;

    /// Sets a manager's confirmation password (its argon2 hash); a conflict when one is set.
    async fn set_confirmation(
        &self,
        holder: &Holder,
        hash: &str,
        audit: &NewAudit,
    ) -> Result<(), StoreError>;

    /// Counts a wrong confirmation password; locks it at `max_failures`. Returns whether it is
    /// locked now.
    async fn confirmation_failed(
        &self,
        holder: &Holder,
        max_failures: u32,
        audit: &NewAudit,
    ) -> Result<bool, StoreError>;

    /// A right confirmation password: the count of wrong ones starts again.
    async fn confirmation_succeeded(&self, holder: &Holder) -> Result<(), StoreError>;

    /// Removes a manager's confirmation password (the bank's reset); whether there was one.
    async fn reset_confirmation(
        &self,
        holder: &Holder,
        audit: &NewAudit,
    ) -> Result<bool, StoreError>;

    // --- expiry notices ---

    /// Active, unreplaced certificates whose notAfter is in `(now, until]`, soonest first.
    async fn expiring_certificates(
        &self,
        now: OffsetDateTime,
        until: OffsetDateTime,
    ) -> Result<Vec<Expiring>, StoreError>;

    /// Claims the notice of (`serial`, `threshold_days`) for sending: true when this caller
    /// claimed it (first, or taking over a claim older than `stale_before` that was never marked
    /// sent), false when it is sent or another process is sending it.
    async fn claim_notice(
        &self,
        serial: &Serial,
        threshold_days: u32,
        message_id: &str,
        now: OffsetDateTime,
        stale_before: OffsetDateTime,
    ) -> Result<bool, StoreError>;

    /// The claimed notice went out.
    async fn notice_sent(
        &self,
        serial: &Serial,
        threshold_days: u32,
        now: OffsetDateTime,
    ) -> Result<(), StoreError>;

    /// The claimed notice could not be sent: anyone may claim it again at once.
    async fn release_notice(&self, serial: &Serial, threshold_days: u32) -> Result<(), StoreError>;

    // --- the change feed ---

    /// The standing as it is now, for the revocation snapshot: every revoked or renewed
    /// certificate not expired at `now`, every user who is not a general user in good standing,
    /// every corporation not in service or requiring certificates, each handed to `sink` as a
    /// [`Change`] while it streams from the database. Returns the sequence number of the last
    /// change this state includes: apply [`Self::changes_since`] it next.
    async fn load_standing(
        &self,
        now: OffsetDateTime,
        sink: &mut (dyn FnMut(Change) + Send),
    ) -> Result<i64, StoreError>;

    /// Asks every process applying the feed to load the whole standing again.
    async fn request_reload(&self, at: OffsetDateTime) -> Result<(), StoreError>;

    /// At most `limit` changes after sequence number `seq`, in order.
    async fn changes_since(&self, seq: i64, limit: u32) -> Result<Vec<FeedEntry>, StoreError>;

    // --- CRLs ---

    /// Claims the lease on signing `generation`'s CRL for at most `lease` (or renews it, for the
    /// same `holder`); returns what the last CRL signed was, or `None` when another process is
    /// signing it. The lease is held only while signing: [`Self::store_crl`] and
    /// [`Self::release_crl`] give it back, and `lease` bounds how long a process that died while
    /// signing keeps the others out.
    async fn claim_crl(
        &self,
        generation: &str,
        holder: &str,
        now: OffsetDateTime,
        lease: Duration,
    ) -> Result<Option<CrlClaim>, StoreError>;

    /// Stores a CRL signed under the lease, numbered `number` and including the feed up to
    /// `seq`, and releases the lease (`false`: the lease was lost, nothing stored).
    async fn store_crl(
        &self,
        generation: &str,
        holder: &str,
        signed: &SignedCrl,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError>;

    /// Releases the lease without storing anything (the CRL stored was current after all).
    async fn release_crl(&self, generation: &str, holder: &str) -> Result<(), StoreError>;

    /// The sequence number of the last change in the feed.
    async fn feed_head(&self) -> Result<i64, StoreError>;

    /// The last CRL signed for `generation`, by any process.
    async fn signed_crl(&self, generation: &str) -> Result<Option<SignedCrl>, StoreError>;

    // --- lifetime ---

    /// Waits for running operations and closes the connections (checkpointing SQLite's WAL).
    async fn close(&self);
}
