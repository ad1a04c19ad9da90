//! Plain row types of the registry, and the validation of the values that go into it.

use std::fmt;
use std::str::FromStr;

use time::{Duration, OffsetDateTime};

use super::StoreError;

use crate::model::{Der, Holder, IssuerKey, RevocationReason, Role, Serial};

/// Refuses a holder whose IDs the registry cannot hold.
pub(crate) fn validate_holder(holder: &Holder) -> Result<(), StoreError> {
    validate_id("corp_id", &holder.corp_id)?;
    if let Some(user_id) = &holder.user_id {
        validate_id("user_id", user_id)?;
    }
    Ok(())
}

/// Declares a string-backed enum whose spelling is the one stored in the database (and
/// allowed by the column's CHECK constraint).
macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// The stored spelling.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)+
                }
            }
        }

        impl FromStr for $name {
            type Err = StoreError;

            fn from_str(s: &str) -> Result<Self, StoreError> {
                match s {
                    $($text => Ok(Self::$variant),)+
                    other => Err(StoreError::invalid(
                        stringify!($name),
                        format!("unknown value `{other}`"),
                    )),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

text_enum! {
    /// Whether a corporation may use the service.
    CorporationStatus {
        /// In service.
        Active = "active",
        /// Temporarily stopped by the bank.
        Suspended = "suspended",
        /// The contract has ended.
        Closed = "closed",
    }
}

text_enum! {
    /// Whether a user may use the service (the master user suspends and resumes).
    UserStatus {
        /// May log in.
        Active = "active",
        /// Suspended by the master user or the bank.
        Suspended = "suspended",
    }
}

text_enum! {
    /// A permit's stored state. Expiry is not a state: compare [`Permit::expires_at`] with the time.
    PermitState {
        /// Not yet used; may be presented until it expires.
        Active = "active",
        /// Too many wrong PINs; stays locked until a new permit is issued.
        Locked = "locked",
        /// Consumed by an enrollment; see [`Permit::serial`].
        Used = "used",
        /// Replaced by a newer permit for the same holder.
        Superseded = "superseded",
    }
}

text_enum! {
    /// A certificate's stored state. Expiry is not a state: compare `not_after` with the time.
    CertStatus {
        /// Not revoked.
        Active = "active",
        /// Revoked; see [`CertificateRecord::revocation`].
        Revoked = "revoked",
    }
}

/// A corporation to register.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCorporation {
    /// Contract corporation ID (1–30 ASCII alphanumerics; 14 digits in practice).
    pub corp_id: String,
    /// Display name.
    pub name: String,
    /// Where expiry notices go.
    pub admin_email: String,
    /// Whether every user of the corporation must log in with a certificate.
    pub cert_required: bool,
}

/// A registered corporation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corporation {
    /// Contract corporation ID.
    pub corp_id: String,
    /// Display name.
    pub name: String,
    /// Where expiry notices go.
    pub admin_email: String,
    /// Whether every user of the corporation must log in with a certificate.
    pub cert_required: bool,
    /// In service, suspended or closed.
    pub status: CorporationStatus,
    /// When it was registered.
    pub created_at: OffsetDateTime,
}

/// A user to register (status starts active).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUser {
    /// The corporation, which must exist.
    pub corp_id: String,
    /// User ID (1–30 ASCII alphanumerics).
    pub user_id: String,
    /// Master, admin or general; a corporation has at most one master.
    pub role: Role,
    /// Optional e-mail address.
    pub email: Option<String>,
    /// The user's name (利用者名), optional.
    pub name: Option<String>,
}

/// A certificate that may need an expiry notice: active, not replaced by a renewal, expiring
/// soon; with where its notice goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expiring {
    /// Its serial.
    pub serial: Serial,
    /// Whose.
    pub holder: Holder,
    /// notAfter.
    pub not_after: OffsetDateTime,
    /// The corporation administrator's e-mail.
    pub admin_email: String,
    /// The user's e-mail, when known.
    pub user_email: Option<String>,
}

/// A user's details as a manager changes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserUpdate {
    /// The name (利用者名), or none.
    pub name: Option<String>,
    /// Admin or general.
    pub role: Role,
    /// The e-mail address, or none.
    pub email: Option<String>,
}

/// A registered user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The corporation.
    pub corp_id: String,
    /// User ID.
    pub user_id: String,
    /// Master, admin or general.
    pub role: Role,
    /// Optional e-mail address.
    pub email: Option<String>,
    /// Active or suspended.
    pub status: UserStatus,
    /// When the user was registered.
    pub created_at: OffsetDateTime,
    /// The user's name (利用者名), when given.
    pub name: Option<String>,
}

impl User {
    /// The user as a certificate holder.
    pub fn holder(&self) -> Holder {
        Holder::user(self.corp_id.clone(), self.user_id.clone())
    }
}

/// A permit to issue. Its creation time is the audit entry's time.
#[derive(Clone, PartialEq, Eq)]
pub struct NewPermit {
    /// Who may enroll with it.
    pub holder: Holder,
    /// PHC string of the temporary PIN (argon2, hashed by lifecycle).
    pub pin_hash: String,
    /// End of validity (exclusive).
    pub expires_at: OffsetDateTime,
    /// Re-issue: revoke the holder's unexpired certificates with this reason, in the same
    /// transaction as the new permit.
    pub revoke_active: Option<RevocationReason>,
}

impl fmt::Debug for NewPermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewPermit")
            .field("holder", &self.holder)
            .field("pin_hash", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .field("revoke_active", &self.revoke_active)
            .finish()
    }
}

/// An enrollment permit: a one-time temporary PIN for one holder.
#[derive(Clone, PartialEq, Eq)]
pub struct Permit {
    /// Registry-assigned ID.
    pub permit_id: i64,
    /// Who may enroll with it.
    pub holder: Holder,
    /// PHC string of the temporary PIN. Never log it (`Debug` redacts it).
    pub pin_hash: String,
    /// When it was issued.
    pub created_at: OffsetDateTime,
    /// End of validity (exclusive).
    pub expires_at: OffsetDateTime,
    /// Wrong PINs so far.
    pub failures: u32,
    /// Stored state.
    pub state: PermitState,
    /// When it was used, if it was.
    pub used_at: Option<OffsetDateTime>,
    /// SHA-256 (lowercase hex) of the SubjectPublicKeyInfo it was used with.
    pub spki_sha256: Option<String>,
    /// Serial of the certificate it produced.
    pub serial: Option<Serial>,
}

impl Permit {
    /// Whether a PIN may still be checked against it at `now`.
    pub fn is_presentable(&self, now: OffsetDateTime) -> bool {
        self.state == PermitState::Active && now < self.expires_at
    }
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("permit_id", &self.permit_id)
            .field("holder", &self.holder)
            .field("pin_hash", &"<redacted>")
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .field("failures", &self.failures)
            .field("state", &self.state)
            .field("used_at", &self.used_at)
            .field("spki_sha256", &self.spki_sha256)
            .field("serial", &self.serial)
            .finish()
    }
}

/// What [`Registry::issue_permit`](super::Registry::issue_permit) did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PermitIssued {
    /// The new permit.
    pub permit: Permit,
    /// IDs of the older active or locked permits it superseded.
    pub superseded: Vec<i64>,
    /// Certificates revoked because [`NewPermit::revoke_active`] was set.
    pub revoked: Vec<RevokedCert>,
}

/// A wrong PIN counted against a permit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PermitFailure {
    /// Wrong PINs so far, this one included (when it was counted).
    pub failures: u32,
    /// Whether the permit is locked now (by this failure, or already before it).
    pub locked: bool,
}

/// A `certificate.p12` kept for a retried enrollment, until the retry window closes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptP12 {
    /// The file as it was sent (encrypted under the user's password).
    pub file: Der,
    /// When it is erased.
    pub until: OffsetDateTime,
}

/// How an earlier use of a permit ended, for a retried enrollment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryInfo {
    /// The permit.
    pub permit_id: i64,
    /// When it was used.
    pub used_at: OffsetDateTime,
    /// SHA-256 (lowercase hex) of the SubjectPublicKeyInfo it was used with.
    pub spki_sha256: String,
    /// The certificate it produced (check its status before handing it out again).
    pub certificate: CertificateRecord,
    /// The `certificate.p12` that was sent, while it is kept.
    pub p12: Option<Der>,
}

/// A certificate to enter into the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCertificate {
    /// Serial.
    pub serial: Serial,
    /// The issuing CA generation, as the pki room names it.
    pub issuer_generation: String,
    /// The issuer, as the revocation snapshot keys it.
    pub issuer: IssuerKey,
    /// Whose certificate.
    pub holder: Holder,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
    /// SHA-256 of the certificate's DER, hex.
    pub sha256: String,
    /// SHA-256 of its SubjectPublicKeyInfo, hex.
    pub spki_sha256: String,
    /// The certificate's DER, kept so that a retried enrollment returns the same bytes.
    pub der: Der,
    /// Renewal: the serial of the certificate it renews (same holder).
    pub renewed_from: Option<Serial>,
}

/// When and why a certificate was revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Revocation {
    /// Revocation time.
    pub at: OffsetDateTime,
    /// RFC 5280 reason.
    pub reason: RevocationReason,
}

/// A certificate in the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateRecord {
    /// Serial.
    pub serial: Serial,
    /// The issuing CA generation.
    pub issuer_generation: String,
    /// Whose certificate.
    pub holder: Holder,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
    /// SHA-256 of the DER (lowercase hex).
    pub sha256: String,
    /// SHA-256 of the SubjectPublicKeyInfo (lowercase hex).
    pub spki_sha256: String,
    /// The certificate's DER.
    pub der: Der,
    /// Active or revoked.
    pub status: CertStatus,
    /// When it entered the ledger.
    pub issued_at: OffsetDateTime,
    /// Set when revoked.
    pub revocation: Option<Revocation>,
    /// The serial it renews.
    pub renewed_from: Option<Serial>,
    /// The permit it was enrolled with (`None` for renewals).
    pub permit_id: Option<i64>,
    /// When a renewal replaced it (it stays valid unless revoked, but its sessions end).
    pub renewed_at: Option<OffsetDateTime>,
}

impl CertificateRecord {
    /// Not revoked and inside its validity period at `now`.
    pub fn is_valid_at(&self, now: OffsetDateTime) -> bool {
        self.status == CertStatus::Active && self.not_before <= now && now < self.not_after
    }
}

/// A revoked certificate as the revocation set and CRLs need it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RevokedCert {
    /// The issuing CA generation.
    pub issuer_generation: String,
    /// Its issuer, as the revocation snapshot keys it.
    pub issuer: IssuerKey,
    /// Serial.
    pub serial: Serial,
    /// Whose certificate.
    pub holder: Holder,
    /// End of validity: past it the entry may leave the set.
    pub not_after: OffsetDateTime,
    /// Revocation time.
    pub revoked_at: OffsetDateTime,
    /// RFC 5280 reason.
    pub reason: RevocationReason,
}

/// One enrollment, written atomically by [`Registry::record_issuance`](super::Registry::record_issuance).
#[derive(Debug, Clone)]
pub struct Issuance {
    /// The permit consumed by this enrollment (`None` for a renewal over mTLS). It must be
    /// active, unexpired and for the certificate's holder; it records the certificate's SPKI.
    pub permit_id: Option<i64>,
    /// The certificate.
    pub cert: NewCertificate,
    /// Revoke the holder's other unexpired certificates with reason `superseded`.
    pub supersede_active: bool,
    /// The `certificate.p12` sent for a server-made key, kept for a retry.
    pub kept_p12: Option<KeptP12>,
    /// The audit entry; its time is the issuance time.
    pub audit: NewAudit,
}

/// What [`Registry::record_issuance`](super::Registry::record_issuance) did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    /// The certificate as now in the ledger.
    pub certificate: CertificateRecord,
    /// The holder's certificates revoked as superseded.
    pub superseded: Vec<RevokedCert>,
}

/// A user's certificate status, as on the second bank's user management screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IssueStatus {
    /// 未発行: no certificate yet.
    Unissued,
    /// 発行済み: valid, outside the renewal window.
    Issued,
    /// 更新可: valid, inside the renewal window before expiry.
    Renewable,
    /// 有効期限切れ: expired.
    Expired,
    /// 失効済み: revoked.
    Revoked,
}

impl IssueStatus {
    /// The status given the holder's latest certificate.
    pub fn of(
        latest: Option<&CertificateRecord>,
        now: OffsetDateTime,
        renewal_window: Duration,
    ) -> Self {
        match latest {
            None => Self::Unissued,
            Some(c) if c.status == CertStatus::Revoked => Self::Revoked,
            Some(c) if now >= c.not_after => Self::Expired,
            Some(c) if now >= c.not_after - renewal_window => Self::Renewable,
            Some(_) => Self::Issued,
        }
    }

    /// Lowercase English name, e.g. `renewable`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unissued => "unissued",
            Self::Issued => "issued",
            Self::Renewable => "renewable",
            Self::Expired => "expired",
            Self::Revoked => "revoked",
        }
    }
}

/// One line of the user status table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusRow {
    /// The user.
    pub user: User,
    /// Their latest certificate (highest issue order), if any.
    pub latest: Option<CertificateRecord>,
    /// Status computed from it.
    pub status: IssueStatus,
}

/// A manager's confirmation password as the registry keeps it.
#[derive(Clone, PartialEq, Eq)]
pub struct Confirmation {
    /// Its argon2 hash (PHC string).
    pub hash: String,
    /// Wrong tries since the last right one.
    pub failures: u32,
    /// Locked after too many wrong tries, until the bank resets it.
    pub locked: bool,
}

impl std::fmt::Debug for Confirmation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Confirmation")
            .field("failures", &self.failures)
            .field("locked", &self.locked)
            .finish_non_exhaustive()
    }
}

/// An audit entry to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAudit {
    /// When it happened; for a change, also the time recorded on the changed rows.
    pub at: OffsetDateTime,
    /// Who: `operator`, a certificate holder (`12345678901234 alice`), `bank`, ...
    pub actor: String,
    /// What, e.g. `permit.issue`, `cert.revoke`, `enroll.refused`.
    pub action: String,
    /// The corporation concerned, for listing by corporation.
    pub corp_id: Option<String>,
    /// The object acted upon, e.g. a user or a serial.
    pub target: String,
    /// `ok`, or the reason of a refusal.
    pub result: String,
    /// The client's address, when the operation came over the network.
    pub client_addr: Option<String>,
}

/// A stored audit entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// Registry-assigned ID (increasing).
    pub audit_id: i64,
    /// When it happened.
    pub at: OffsetDateTime,
    /// Who.
    pub actor: String,
    /// What.
    pub action: String,
    /// The corporation concerned.
    pub corp_id: Option<String>,
    /// The object acted upon.
    pub target: String,
    /// `ok`, or the reason of a refusal.
    pub result: String,
    /// The client's address.
    pub client_addr: Option<String>,
}

/// Corporation and user IDs: ASCII alphanumerics, as the banks' login forms accept, and never a
/// space, which separates them in the CN.
pub(crate) fn validate_id(field: &'static str, value: &str) -> Result<(), StoreError> {
    if value.is_empty() || value.len() > 30 {
        return Err(StoreError::invalid(field, "must be 1 to 30 characters"));
    }
    if !value.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(StoreError::invalid(
            field,
            "must be ASCII letters and digits only",
        ));
    }
    Ok(())
}

pub(crate) fn validate_email(field: &'static str, value: &str) -> Result<(), StoreError> {
    match value.split_once('@') {
        Some((local, domain))
            if !local.is_empty() && !domain.is_empty() && !value.contains(char::is_whitespace) =>
        {
            Ok(())
        }
        _ => Err(StoreError::invalid(field, "must be an e-mail address")),
    }
}

pub(crate) fn to_unix(t: OffsetDateTime) -> i64 {
    t.unix_timestamp()
}

pub(crate) fn from_unix(what: &str, secs: i64) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::from_unix_timestamp(secs)
        .map_err(|_| StoreError::corrupt(format!("{what}: timestamp {secs} out of range")))
}

/// A change that decides who is refused or with what role, as the registry's feed carries it.
/// Each carries the full new state of what it names, so that applying one twice is harmless.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A certificate was revoked, or renewed (replaced; its sessions end).
    Certificate {
        /// Its issuer.
        issuer: IssuerKey,
        /// Its serial.
        serial: Serial,
        /// The CA generation that issued it, for the CRLs.
        generation: String,
        /// Its end of validity: past it, it may leave every set.
        not_after: OffsetDateTime,
        /// When and why it was revoked.
        revoked: Option<(OffsetDateTime, RevocationReason)>,
        /// Whether a renewal replaced it.
        renewed: bool,
    },
    /// A user was added, changed, suspended, resumed or removed.
    User {
        /// The corporation.
        corp_id: String,
        /// The user.
        user_id: String,
        /// Their role now.
        role: Role,
        /// Whether suspended now.
        suspended: bool,
        /// Whether removed.
        removed: bool,
    },
    /// The operator asked every process to load the whole standing again
    /// (`certgate standing reload`).
    Reload,
    /// A corporation was added or its status or certificate requirement changed.
    Corporation {
        /// The corporation.
        corp_id: String,
        /// Whether in service now.
        active: bool,
        /// Whether every user must log in with a certificate now.
        cert_required: bool,
    },
}

/// A change with its place in the feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedEntry {
    /// Its sequence number: increasing, committed in order (not without gaps: a transaction that
    /// rolls back leaves its number unused).
    pub seq: i64,
    /// The sequence number of the change before it (0 for the first; `None` for changes written
    /// before the chain was kept): whoever applied exactly that one may apply this one.
    pub prev_seq: Option<i64>,
    /// The change.
    pub change: Change,
}

/// The CRL of a generation as last signed, by whichever process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCrl {
    /// Its CRL number.
    pub number: u128,
    /// The last change of the feed it includes.
    pub seq: i64,
    /// The CRL, DER.
    pub der: Der,
}

/// The last CRL of a generation, as a process that claimed the signing lease finds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CrlClaim {
    /// Its CRL number (0 before the first).
    pub number: u128,
    /// The last change of the feed it includes (0 before the first).
    pub seq: i64,
    /// When it was signed (`None` before the first).
    pub signed_at: Option<OffsetDateTime>,
}
