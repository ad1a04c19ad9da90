//! The registry in SQL, written once for SQLite and PostgreSQL: `$N` placeholders (which sqlx's
//! SQLite driver binds by number), `IS NOT DISTINCT FROM`, `RETURNING`, and integers, text and
//! bytes only. What differs between the two databases (connection options, how a write
//! transaction begins, the migrations, serialising writers to the feed) is in [`Dialect`] and the
//! backend files `sqlite.rs` and `postgres.rs`.
//!
//! The rules of the lifecycle (which permit may be used, what makes a valid certificate, what a
//! PIN hash looks like) are the lifecycle's; the registry keeps the data coherent (one active
//! permit per holder, one certificate per permit, claims made with a single conditional
//! `UPDATE … RETURNING`, constraints on every column) and writes every change that decides who
//! is refused into the feed, in the same transaction.

use std::collections::HashMap;

use async_trait::async_trait;
use futures_util::TryStreamExt as _;
use sqlx::{Any, Transaction};
use sqlx::{AnyConnection, AnyPool};
use time::{Duration, OffsetDateTime};

use super::rows::{
    self, AUDIT_COLS, CERT_COLS, CHANGE_COLS, CORP_COLS, PERMIT_SELECT, REVOKED_COLS, USER_COLS,
};
use super::types::{from_unix, to_unix, validate_email, validate_holder, validate_id};
use super::{
    AuditEntry, CertStatus, CertificateRecord, Change, Confirmation, Corporation,
    CorporationStatus, CrlClaim, Expiring, FeedEntry, Holder, Issuance, IssueStatus, Issued,
    NewAudit, NewCorporation, NewPermit, NewUser, Permit, PermitFailure, PermitIssued, PermitState,
    Registry, RetryInfo, RevocationReason, RevokedCert, Serial, SignedCrl, StatusRow, StoreError,
    User, UserStatus, UserUpdate,
};
use crate::model::{Der, IssuerKey, Role};

/// One schema migration of a backend: its version, description and SQL.
pub(super) type EmbeddedMigration = (i64, &'static str, &'static str);

/// A backend's migrations as sqlx's migrator reads them.
#[derive(Debug)]
pub(super) struct EmbeddedMigrations(pub(super) &'static [EmbeddedMigration]);

impl sqlx::migrate::MigrationSource<'static> for EmbeddedMigrations {
    fn resolve(
        self,
    ) -> futures_util::future::BoxFuture<
        'static,
        Result<Vec<sqlx::migrate::Migration>, sqlx::error::BoxDynError>,
    > {
        Box::pin(async move {
            Ok(self
                .0
                .iter()
                .map(|(version, description, sql)| {
                    sqlx::migrate::Migration::new(
                        *version,
                        std::borrow::Cow::Borrowed(*description),
                        sqlx::migrate::MigrationType::Simple,
                        std::borrow::Cow::Borrowed(*sql),
                        false,
                    )
                })
                .collect())
        })
    }
}

/// What differs between the two databases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dialect {
    /// SQLite: one writer at a time, so `BEGIN IMMEDIATE` (a deferred transaction that reads
    /// first and writes later can hit `SQLITE_BUSY_SNAPSHOT` under WAL, which no busy timeout
    /// retries), and feed rows commit in order by themselves.
    Sqlite,
    /// PostgreSQL: several writers; row-level claims; writers to the feed take an advisory lock.
    Postgres,
}

/// The advisory lock that serialises writers to the feed on PostgreSQL. Sequence values are
/// allocated when a row is inserted but become visible when its transaction commits, so without
/// it a reader could see seq 11 before a slower transaction commits seq 10, and skip 10 for
/// ever. Holding the lock from the insert to the commit makes rows commit in `seq` order; it is
/// taken last in each transaction (after its row updates, before its feed rows), so it is held
/// for a few statements and never while waiting on a row lock.
const FEED_LOCK: i64 = 0x6365_7274_6761_7465; // "certgate"

impl Dialect {
    fn begin_write(self) -> &'static str {
        match self {
            Self::Sqlite => "BEGIN IMMEDIATE",
            Self::Postgres => "BEGIN",
        }
    }
}

/// The registry over either database.
#[derive(Debug, Clone)]
pub struct SqlRegistry {
    pool: AnyPool,
    /// Connections kept for reading the change feed, so that a flood of other work (enrollment
    /// attempts queueing for the pool) can never make the revocation snapshot stale.
    feed: AnyPool,
    dialect: Dialect,
}

type Tx = Transaction<'static, Any>;

impl SqlRegistry {
    pub(super) fn new(pool: AnyPool, feed: AnyPool, dialect: Dialect) -> Self {
        Self {
            pool,
            feed,
            dialect,
        }
    }

    /// The connection pool (tests that look at the database itself).
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    async fn write(&self) -> Result<Tx, StoreError> {
        self.pool
            .begin_with(self.dialect.begin_write())
            .await
            .map_err(StoreError::db("begin a write transaction"))
    }

    /// A read transaction, so that multi-statement reads see one snapshot.
    async fn read(&self) -> Result<Tx, StoreError> {
        self.read_on(&self.pool).await
    }

    /// The same on the feed's own connections.
    async fn read_feed(&self) -> Result<Tx, StoreError> {
        self.read_on(&self.feed).await
    }

    async fn read_on(&self, pool: &AnyPool) -> Result<Tx, StoreError> {
        let statement = match self.dialect {
            Dialect::Sqlite => "BEGIN",
            Dialect::Postgres => "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
        };
        pool.begin_with(statement)
            .await
            .map_err(StoreError::db("begin a read transaction"))
    }

    /// Certificates entered before the change feed existed have no issuer key: it is read from the
    /// certificate itself, once.
    pub(super) async fn fill_issuer_keys(&self) -> Result<(), StoreError> {
        let missing: Vec<(i64, Vec<u8>)> =
            sqlx::query_as("SELECT cert_id, der FROM certificates WHERE issuer_key IS NULL")
                .fetch_all(self.pool())
                .await
                .map_err(StoreError::db("find certificates without an issuer key"))?;
        for (cert_id, der) in missing {
            let Ok((_, cert)) = x509_parser::parse_x509_certificate(&der) else {
                return Err(StoreError::corrupt(format!(
                    "certificate row {cert_id} does not parse"
                )));
            };
            let key = IssuerKey::of_name(cert.issuer().as_raw());
            sqlx::query("UPDATE certificates SET issuer_key = $1 WHERE cert_id = $2")
                .bind(key.to_stored())
                .bind(cert_id)
                .execute(self.pool())
                .await
                .map_err(StoreError::db("fill in an issuer key"))?;
        }
        Ok(())
    }

    /// Appends `changes` to the feed, in the transaction that made them.
    async fn append_changes(
        &self,
        tx: &mut AnyConnection,
        at: OffsetDateTime,
        changes: &[Change],
    ) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        if self.dialect == Dialect::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(FEED_LOCK)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::db("lock the change feed"))?;
        }
        // The row before, for the chain (see `FeedEntry::prev_seq`): writers are serialised, so
        // the last row now is the last committed one.
        let mut prev: i64 = sqlx::query_scalar("SELECT COALESCE(max(seq), 0) FROM changes")
            .fetch_one(&mut *tx)
            .await
            .map_err(StoreError::db("read the head of the change feed"))?;
        for change in changes {
            prev = insert_change(tx, at, prev, change).await?;
        }
        Ok(())
    }
}

async fn commit(tx: Tx) -> Result<(), StoreError> {
    tx.commit().await.map_err(StoreError::db("commit"))
}

fn flag(value: bool) -> i64 {
    i64::from(value)
}

/// Appends one change after `prev`; returns its sequence number.
async fn insert_change(
    conn: &mut AnyConnection,
    at: OffsetDateTime,
    prev: i64,
    change: &Change,
) -> Result<i64, StoreError> {
    let query = match change {
        Change::Certificate {
            issuer,
            serial,
            generation,
            not_after,
            revoked,
            renewed,
        } => sqlx::query(
            "INSERT INTO changes (prev_seq, at, kind, issuer_key, serial, generation, not_after, \
             revoked_at, reason, renewed) \
             VALUES ($1, $2, 'certificate', $3, $4, $5, $6, $7, $8, $9) RETURNING seq",
        )
        .bind(prev)
        .bind(to_unix(at))
        .bind(issuer.to_stored())
        .bind(serial.to_hex())
        .bind(generation.clone())
        .bind(to_unix(*not_after))
        .bind(revoked.map(|(at, _)| to_unix(at)))
        .bind(revoked.map(|(_, reason)| reason.as_str()))
        .bind(flag(*renewed)),
        Change::User {
            corp_id,
            user_id,
            role,
            suspended,
            removed,
        } => sqlx::query(
            "INSERT INTO changes (prev_seq, at, kind, corp_id, user_id, role, suspended, removed) \
             VALUES ($1, $2, 'user', $3, $4, $5, $6, $7) RETURNING seq",
        )
        .bind(prev)
        .bind(to_unix(at))
        .bind(corp_id.clone())
        .bind(user_id.clone())
        .bind(role.as_str())
        .bind(flag(*suspended))
        .bind(flag(*removed)),
        Change::Reload => sqlx::query(
            "INSERT INTO changes (prev_seq, at, kind) VALUES ($1, $2, 'reload') RETURNING seq",
        )
        .bind(prev)
        .bind(to_unix(at)),
        Change::Corporation {
            corp_id,
            active,
            cert_required,
        } => sqlx::query(
            "INSERT INTO changes (prev_seq, at, kind, corp_id, active, cert_required) \
             VALUES ($1, $2, 'corporation', $3, $4, $5) RETURNING seq",
        )
        .bind(prev)
        .bind(to_unix(at))
        .bind(corp_id.clone())
        .bind(flag(*active))
        .bind(flag(*cert_required)),
    };
    let row = query
        .fetch_one(conn)
        .await
        .map_err(StoreError::db("append to the change feed"))?;
    rows::col(&row, "seq")
}

fn certificate_change(cert: &RevokedCert) -> Change {
    Change::Certificate {
        issuer: cert.issuer,
        serial: cert.serial,
        generation: cert.issuer_generation.clone(),
        not_after: cert.not_after,
        revoked: Some((cert.revoked_at, cert.reason)),
        renewed: false,
    }
}

fn user_change(user: &User) -> Change {
    Change::User {
        corp_id: user.corp_id.clone(),
        user_id: user.user_id.clone(),
        role: user.role,
        suspended: user.status == UserStatus::Suspended,
        removed: false,
    }
}

fn corporation_change(corp: &Corporation) -> Change {
    Change::Corporation {
        corp_id: corp.corp_id.clone(),
        active: corp.status == CorporationStatus::Active,
        cert_required: corp.cert_required,
    }
}

// --- statements shared by several operations ---

async fn insert_audit(conn: &mut AnyConnection, audit: &NewAudit) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO audit (at, actor, action, corp_id, target, result, client_addr) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(to_unix(audit.at))
    .bind(audit.actor.clone())
    .bind(audit.action.clone())
    .bind(audit.corp_id.clone())
    .bind(audit.target.clone())
    .bind(audit.result.clone())
    .bind(audit.client_addr.clone())
    .execute(conn)
    .await
    .map_err(StoreError::db("write audit entry"))?;
    Ok(())
}

async fn fetch_corporation(
    conn: &mut AnyConnection,
    corp_id: &str,
) -> Result<Option<Corporation>, StoreError> {
    sqlx::query(&format!(
        "SELECT {CORP_COLS} FROM corporations WHERE corp_id = $1"
    ))
    .bind(corp_id.to_owned())
    .fetch_optional(conn)
    .await
    .map_err(StoreError::db("read corporation"))?
    .as_ref()
    .map(rows::corporation)
    .transpose()
}

async fn fetch_user(
    conn: &mut AnyConnection,
    corp_id: &str,
    user_id: &str,
) -> Result<Option<User>, StoreError> {
    sqlx::query(&format!(
        "SELECT {USER_COLS} FROM users WHERE corp_id = $1 AND user_id = $2"
    ))
    .bind(corp_id.to_owned())
    .bind(user_id.to_owned())
    .fetch_optional(conn)
    .await
    .map_err(StoreError::db("read user"))?
    .as_ref()
    .map(rows::user)
    .transpose()
}

async fn fetch_users(conn: &mut AnyConnection, corp_id: &str) -> Result<Vec<User>, StoreError> {
    sqlx::query(&format!(
        "SELECT {USER_COLS} FROM users WHERE corp_id = $1 ORDER BY user_id"
    ))
    .bind(corp_id.to_owned())
    .fetch_all(conn)
    .await
    .map_err(StoreError::db("list users"))?
    .iter()
    .map(rows::user)
    .collect()
}

/// Refuses a holder whose corporation (or user) is not registered, with a message naming it.
async fn require_holder(conn: &mut AnyConnection, holder: &Holder) -> Result<(), StoreError> {
    if fetch_corporation(conn, &holder.corp_id).await?.is_none() {
        return Err(StoreError::not_found(format!(
            "corporation {}",
            holder.corp_id
        )));
    }
    if let Some(user_id) = &holder.user_id {
        if fetch_user(conn, &holder.corp_id, user_id).await?.is_none() {
            return Err(StoreError::not_found(format!(
                "user {}/{}",
                holder.corp_id, user_id
            )));
        }
    }
    Ok(())
}

async fn fetch_permit(
    conn: &mut AnyConnection,
    permit_id: i64,
) -> Result<Option<Permit>, StoreError> {
    sqlx::query(&format!("{PERMIT_SELECT} WHERE p.permit_id = $1"))
        .bind(permit_id)
        .fetch_optional(conn)
        .await
        .map_err(StoreError::db("read permit"))?
        .as_ref()
        .map(rows::permit)
        .transpose()
}

async fn fetch_certificate(
    conn: &mut AnyConnection,
    serial: &Serial,
) -> Result<Option<CertificateRecord>, StoreError> {
    sqlx::query(&format!(
        "SELECT {CERT_COLS} FROM certificates WHERE serial = $1"
    ))
    .bind(serial.to_hex())
    .fetch_optional(conn)
    .await
    .map_err(StoreError::db("read certificate"))?
    .as_ref()
    .map(rows::certificate)
    .transpose()
}

async fn fetch_holder_certificates(
    conn: &mut AnyConnection,
    holder: &Holder,
    only_active_at: Option<OffsetDateTime>,
    limit: Option<i64>,
) -> Result<Vec<CertificateRecord>, StoreError> {
    let active = if only_active_at.is_some() {
        "AND status = 'active' AND not_after > $3"
    } else {
        ""
    };
    let sql = format!(
        "SELECT {CERT_COLS} FROM certificates \
         WHERE corp_id = $1 AND user_id IS NOT DISTINCT FROM $2 {active} \
         ORDER BY cert_id DESC {}",
        if limit.is_some() { "LIMIT 1" } else { "" }
    );
    let mut query = sqlx::query(&sql)
        .bind(holder.corp_id.clone())
        .bind(holder.user_id.clone());
    if let Some(at) = only_active_at {
        query = query.bind(to_unix(at));
    }
    query
        .fetch_all(conn)
        .await
        .map_err(StoreError::db("list certificates"))?
        .iter()
        .map(rows::certificate)
        .collect()
}

/// Revokes the holder's certificates that are neither revoked nor expired at `now`; their
/// kept `certificate.p12` files go with them.
async fn revoke_holder_in(
    conn: &mut AnyConnection,
    holder: &Holder,
    reason: RevocationReason,
    now: OffsetDateTime,
) -> Result<Vec<RevokedCert>, StoreError> {
    let rows = sqlx::query(&format!(
        "UPDATE certificates SET status = 'revoked', revoked_at = $1, revocation_reason = $2 \
         WHERE corp_id = $3 AND user_id IS NOT DISTINCT FROM $4 AND status = 'active' \
         AND not_after > $1 RETURNING {REVOKED_COLS}"
    ))
    .bind(to_unix(now))
    .bind(reason.as_str())
    .bind(holder.corp_id.clone())
    .bind(holder.user_id.clone())
    .fetch_all(&mut *conn)
    .await
    .map_err(StoreError::db("revoke certificates"))?;
    let revoked = rows::revoked_in_order(rows)?;
    forget_files_of(conn, &revoked).await?;
    Ok(revoked)
}

/// A revoked certificate is never handed out again: its kept `certificate.p12` goes.
async fn forget_files_of(
    conn: &mut AnyConnection,
    revoked: &[RevokedCert],
) -> Result<(), StoreError> {
    for cert in revoked {
        sqlx::query(
            "DELETE FROM enrollment_files WHERE permit_id = \
             (SELECT permit_id FROM certificates WHERE serial = $1)",
        )
        .bind(cert.serial.to_hex())
        .execute(&mut *conn)
        .await
        .map_err(StoreError::db("erase a kept certificate.p12"))?;
    }
    Ok(())
}

#[async_trait]
impl Registry for SqlRegistry {
    async fn add_corporation(
        &self,
        corp: &NewCorporation,
        audit: &NewAudit,
    ) -> Result<Corporation, StoreError> {
        validate_id("corp_id", &corp.corp_id)?;
        if corp.name.trim().is_empty() {
            return Err(StoreError::invalid("name", "must not be empty"));
        }
        validate_email("admin_email", &corp.admin_email)?;
        let mut tx = self.write().await?;
        if fetch_corporation(&mut tx, &corp.corp_id).await?.is_some() {
            return Err(StoreError::conflict(format!(
                "corporation {} already exists",
                corp.corp_id
            )));
        }
        sqlx::query(
            "INSERT INTO corporations (corp_id, name, admin_email, cert_required, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(corp.corp_id.clone())
        .bind(corp.name.clone())
        .bind(corp.admin_email.clone())
        .bind(flag(corp.cert_required))
        .bind(to_unix(audit.at))
        .execute(&mut *tx)
        .await
        .map_err(StoreError::db("insert corporation"))?;
        let stored = fetch_corporation(&mut tx, &corp.corp_id)
            .await?
            .ok_or_else(|| StoreError::corrupt("corporation vanished after insert"))?;
        self.append_changes(&mut tx, audit.at, &[corporation_change(&stored)])
            .await?;
        insert_audit(&mut tx, audit).await?;
        commit(tx).await?;
        Ok(stored)
    }

    async fn corporation(&self, corp_id: &str) -> Result<Option<Corporation>, StoreError> {
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(StoreError::db("acquire a connection"))?;
        fetch_corporation(&mut conn, corp_id).await
    }

    async fn list_corporations(&self) -> Result<Vec<Corporation>, StoreError> {
        sqlx::query(&format!(
            "SELECT {CORP_COLS} FROM corporations ORDER BY corp_id"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::db("list corporations"))?
        .iter()
        .map(rows::corporation)
        .collect()
    }

    async fn set_cert_required(
        &self,
        corp_id: &str,
        required: bool,
        audit: &NewAudit,
    ) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        let row = sqlx::query(&format!(
            "UPDATE corporations SET cert_required = $1 WHERE corp_id = $2 RETURNING {CORP_COLS}"
        ))
        .bind(flag(required))
        .bind(corp_id.to_owned())
        .fetch_optional(&mut *tx)
        .await
        .map_err(StoreError::db("update corporation"))?
        .ok_or_else(|| StoreError::not_found(format!("corporation {corp_id}")))?;
        let corp = rows::corporation(&row)?;
        self.append_changes(&mut tx, audit.at, &[corporation_change(&corp)])
            .await?;
        insert_audit(&mut tx, audit).await?;
        commit(tx).await
    }

    async fn set_corporation_status(
        &self,
        corp_id: &str,
        status: CorporationStatus,
        audit: &NewAudit,
    ) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        let row = sqlx::query(&format!(
            "UPDATE corporations SET status = $1 WHERE corp_id = $2 RETURNING {CORP_COLS}"
        ))
        .bind(status.as_str())
        .bind(corp_id.to_owned())
        .fetch_optional(&mut *tx)
        .await
        .map_err(StoreError::db("update corporation"))?
        .ok_or_else(|| StoreError::not_found(format!("corporation {corp_id}")))?;
        let corp = rows::corporation(&row)?;
        self.append_changes(&mut tx, audit.at, &[corporation_change(&corp)])
            .await?;
        insert_audit(&mut tx, audit).await?;
        commit(tx).await
    }

    async fn add_user(&self, user: &NewUser, audit: &NewAudit) -> Result<User, StoreError> {
        validate_id("corp_id", &user.corp_id)?;
        validate_id("user_id", &user.user_id)?;
        if let Some(email) = &user.email {
            validate_email("email", email)?;
        }
        let mut tx = self.write().await?;
        if fetch_corporation(&mut tx, &user.corp_id).await?.is_none() {
            return Err(StoreError::not_found(format!(
                "corporation {}",
                user.corp_id
            )));
        }
        if fetch_user(&mut tx, &user.corp_id, &user.user_id)
            .await?
            .is_some()
        {
            return Err(StoreError::conflict(format!(
                "user {}/{} already exists",
                user.corp_id, user.user_id
            )));
        }
        if user.role == Role::Master {
            let master: Option<String> = sqlx::query_scalar(
                "SELECT user_id FROM users WHERE corp_id = $1 AND role = 'master'",
            )
            .bind(user.corp_id.clone())
            .fetch_optional(&mut *tx)
            .await
            .map_err(StoreError::db("look up master user"))?;
            if let Some(master) = master {
                return Err(StoreError::conflict(format!(
                    "corporation {} already has a master user ({master})",
                    user.corp_id
                )));
            }
        }
        let row = sqlx::query(&format!(
            "INSERT INTO users (corp_id, user_id, role, email, created_at, name) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING {USER_COLS}"
        ))
        .bind(user.corp_id.clone())
        .bind(user.user_id.clone())
        .bind(user.role.as_str())
        .bind(user.email.clone())
        .bind(to_unix(audit.at))
        .bind(user.name.clone())
        .fetch_one(&mut *tx)
        .await
        .map_err(StoreError::db("insert user"))?;
        let stored = rows::user(&row)?;
        self.append_changes(&mut tx, audit.at, &[user_change(&stored)])
            .await?;
        insert_audit(&mut tx, audit).await?;
        commit(tx).await?;
        Ok(stored)
    }

    async fn user(&self, corp_id: &str, user_id: &str) -> Result<Option<User>, StoreError> {
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(StoreError::db("acquire a connection"))?;
        fetch_user(&mut conn, corp_id, user_id).await
    }

    async fn list_users(&self, corp_id: &str) -> Result<Vec<User>, StoreError> {
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(StoreError::db("acquire a connection"))?;
        fetch_users(&mut conn, corp_id).await
    }

    async fn update_user(
        &self,
        corp_id: &str,
        user_id: &str,
        update: &UserUpdate,
        audit: &NewAudit,
    ) -> Result<User, StoreError> {
        if let Some(email) = &update.email {
            validate_email("email", email)?;
        }
        if update.role == Role::Master {
            return Err(StoreError::invalid(
                "role",
                "the master user is registered by the bank",
            ));
        }
        let mut tx = self.write().await?;
        let row = sqlx::query(&format!(
            "UPDATE users SET name = $3, role = $4, email = $5 \
             WHERE corp_id = $1 AND user_id = $2 AND role <> 'master' RETURNING {USER_COLS}"
        ))
        .bind(corp_id.to_owned())
        .bind(user_id.to_owned())
        .bind(update.name.clone())
        .bind(update.role.as_str())
        .bind(update.email.clone())
        .fetch_optional(&mut *tx)
        .await
        .map_err(StoreError::db("update user"))?
        .ok_or_else(|| StoreError::not_found(format!("user {corp_id}/{user_id}")))?;
        let user = rows::user(&row)?;
        self.append_changes(&mut tx, audit.at, &[user_change(&user)])
            .await?;
        insert_audit(&mut tx, audit).await?;
        commit(tx).await?;
        Ok(user)
    }

    async fn set_user_status(
        &self,
        corp_id: &str,
        user_id: &str,
        status: UserStatus,
        audit: &NewAudit,
    ) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        let row = sqlx::query(&format!(
            "UPDATE users SET status = $1 WHERE corp_id = $2 AND user_id = $3 RETURNING {USER_COLS}"
        ))
        .bind(status.as_str())
        .bind(corp_id.to_owned())
        .bind(user_id.to_owned())
        .fetch_optional(&mut *tx)
        .await
        .map_err(StoreError::db("update user"))?
        .ok_or_else(|| StoreError::not_found(format!("user {corp_id}/{user_id}")))?;
        let user = rows::user(&row)?;
        self.append_changes(&mut tx, audit.at, &[user_change(&user)])
            .await?;
        insert_audit(&mut tx, audit).await?;
        commit(tx).await
    }

    async fn issue_permit(
        &self,
        permit: &NewPermit,
        audit: &NewAudit,
    ) -> Result<PermitIssued, StoreError> {
        validate_holder(&permit.holder)?;
        let holder = &permit.holder;
        let mut tx = self.write().await?;
        require_holder(&mut tx, holder).await?;
        let mut superseded: Vec<i64> = sqlx::query_scalar(
            "UPDATE permits SET state = 'superseded' \
             WHERE corp_id = $1 AND user_id IS NOT DISTINCT FROM $2 \
             AND state IN ('active', 'locked') RETURNING permit_id",
        )
        .bind(holder.corp_id.clone())
        .bind(holder.user_id.clone())
        .fetch_all(&mut *tx)
        .await
        .map_err(StoreError::db("supersede permits"))?;
        let revoked = match permit.revoke_active {
            Some(reason) => revoke_holder_in(&mut tx, holder, reason, audit.at).await?,
            None => Vec::new(),
        };
        // A new permit (a re-issue) ends every retry of the holder's earlier enrollments.
        sqlx::query(
            "DELETE FROM enrollment_files WHERE permit_id IN \
             (SELECT permit_id FROM permits WHERE corp_id = $1 \
              AND user_id IS NOT DISTINCT FROM $2)",
        )
        .bind(holder.corp_id.clone())
        .bind(holder.user_id.clone())
        .execute(&mut *tx)
        .await
        .map_err(StoreError::db("erase kept certificate.p12 files"))?;
        let permit_id: i64 = sqlx::query_scalar(
            "INSERT INTO permits (corp_id, user_id, pin_hash, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5) RETURNING permit_id",
        )
        .bind(holder.corp_id.clone())
        .bind(holder.user_id.clone())
        .bind(permit.pin_hash.clone())
        .bind(to_unix(audit.at))
        .bind(to_unix(permit.expires_at))
        .fetch_one(&mut *tx)
        .await
        .map_err(StoreError::db("insert permit"))?;
        let changes: Vec<Change> = revoked.iter().map(certificate_change).collect();
        self.append_changes(&mut tx, audit.at, &changes).await?;
        insert_audit(&mut tx, audit).await?;
        let stored = fetch_permit(&mut tx, permit_id)
            .await?
            .ok_or_else(|| StoreError::corrupt("permit vanished after insert"))?;
        commit(tx).await?;
        superseded.sort_unstable();
        Ok(PermitIssued {
            permit: stored,
            superseded,
            revoked,
        })
    }

    async fn permit(&self, permit_id: i64) -> Result<Option<Permit>, StoreError> {
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(StoreError::db("acquire a connection"))?;
        fetch_permit(&mut conn, permit_id).await
    }

    async fn latest_permit(&self, holder: &Holder) -> Result<Option<Permit>, StoreError> {
        sqlx::query(&format!(
            "{PERMIT_SELECT} WHERE p.corp_id = $1 AND p.user_id IS NOT DISTINCT FROM $2 \
             ORDER BY p.permit_id DESC LIMIT 1"
        ))
        .bind(holder.corp_id.clone())
        .bind(holder.user_id.clone())
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::db("read permit"))?
        .as_ref()
        .map(rows::permit)
        .transpose()
    }

    async fn record_permit_failure(
        &self,
        permit_id: i64,
        max_failures: u32,
        audit: &NewAudit,
    ) -> Result<PermitFailure, StoreError> {
        let mut tx = self.write().await?;
        // One conditional update: of two parallel wrong PINs on PostgreSQL, the second waits for
        // the first and counts on its result.
        let row = sqlx::query(
            "UPDATE permits SET failures = failures + 1, \
             state = CASE WHEN failures + 1 >= $1 THEN 'locked' ELSE state END \
             WHERE permit_id = $2 AND state = 'active' RETURNING failures, state",
        )
        .bind(i64::from(max_failures.max(1)))
        .bind(permit_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(StoreError::db("count a permit failure"))?;
        let Some(row) = row else {
            // Locked, used or superseded meanwhile (a parallel attempt): nothing to count.
            let permit = fetch_permit(&mut tx, permit_id)
                .await?
                .ok_or_else(|| StoreError::not_found("the permit"))?;
            return Ok(PermitFailure {
                failures: permit.failures,
                locked: permit.state == PermitState::Locked,
            });
        };
        let failures: i64 = rows::col(&row, "failures")?;
        let state: PermitState = rows::parsed(&row, "state")?;
        insert_audit(&mut tx, audit).await?;
        commit(tx).await?;
        Ok(PermitFailure {
            failures: u32::try_from(failures)
                .map_err(|_| StoreError::corrupt(format!("permit failures {failures}")))?,
            locked: state == PermitState::Locked,
        })
    }

    async fn find_retry(
        &self,
        permit_id: i64,
        now: OffsetDateTime,
    ) -> Result<Option<RetryInfo>, StoreError> {
        let mut tx = self.read().await?;
        let Some(permit) = fetch_permit(&mut tx, permit_id).await? else {
            return Ok(None);
        };
        let (Some(used_at), Some(spki_sha256), Some(serial)) =
            (permit.used_at, permit.spki_sha256, permit.serial)
        else {
            return Ok(None);
        };
        let certificate = fetch_certificate(&mut tx, &serial)
            .await?
            .ok_or_else(|| StoreError::corrupt("a used permit names a missing certificate"))?;
        let p12: Option<Vec<u8>> = sqlx::query_scalar(
            "SELECT p12 FROM enrollment_files WHERE permit_id = $1 AND expires_at > $2",
        )
        .bind(permit_id)
        .bind(to_unix(now))
        .fetch_optional(&mut *tx)
        .await
        .map_err(StoreError::db("read a kept certificate.p12"))?;
        commit(tx).await?;
        Ok(Some(RetryInfo {
            permit_id,
            used_at,
            spki_sha256,
            certificate,
            p12: p12.map(Der),
        }))
    }

    async fn record_issuance(&self, issuance: &Issuance) -> Result<Issued, StoreError> {
        let cert = &issuance.cert;
        validate_holder(&cert.holder)?;
        let now = issuance.audit.at;
        let mut tx = self.write().await?;

        if let Some(permit_id) = issuance.permit_id {
            // The claim: one statement consumes the permit exactly once, whatever runs beside
            // it (on PostgreSQL a second claim waits for the first and then finds no row).
            let claimed: Option<(String, Option<String>)> = sqlx::query_as(
                "UPDATE permits SET state = 'used', used_at = $1, spki_sha256 = $2 \
                 WHERE permit_id = $3 AND state = 'active' AND expires_at > $1 \
                 RETURNING corp_id, user_id",
            )
            .bind(to_unix(now))
            .bind(cert.spki_sha256.clone())
            .bind(permit_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(StoreError::db("consume permit"))?;
            match claimed {
                None => {
                    return Err(StoreError::conflict(
                        "the permit is no longer usable (used, locked, superseded or expired)",
                    ));
                }
                Some((corp_id, user_id)) => {
                    if corp_id != cert.holder.corp_id || user_id != cert.holder.user_id {
                        return Err(StoreError::conflict(format!(
                            "the permit is not for the {}",
                            cert.holder
                        )));
                    }
                }
            }
        } else {
            require_holder(&mut tx, &cert.holder).await?;
        }
        let mut changes = Vec::new();
        if let Some(parent) = &cert.renewed_from {
            let row = sqlx::query(&format!(
                "UPDATE certificates SET renewed_at = $1 WHERE serial = $2 \
                 AND corp_id = $3 AND user_id IS NOT DISTINCT FROM $4 RETURNING {CERT_COLS}, issuer_key"
            ))
            .bind(to_unix(now))
            .bind(parent.to_hex())
            .bind(cert.holder.corp_id.clone())
            .bind(cert.holder.user_id.clone())
            .fetch_optional(&mut *tx)
            .await
            .map_err(StoreError::db("mark the renewed certificate"))?
            .ok_or_else(|| {
                StoreError::not_found(format!(
                    "certificate {parent} of the {} (renewed from)",
                    cert.holder
                ))
            })?;
            let renewed = rows::certificate(&row)?;
            let issuer: Option<i64> = rows::col(&row, "issuer_key")?;
            changes.push(Change::Certificate {
                issuer: issuer.map_or(cert.issuer, crate::model::IssuerKey::from_stored),
                serial: renewed.serial,
                generation: renewed.issuer_generation.clone(),
                not_after: renewed.not_after,
                revoked: renewed.revocation.map(|r| (r.at, r.reason)),
                renewed: true,
            });
        }

        // The new certificate is not in the ledger yet, so it cannot supersede itself; and
        // superseding does not cascade over renewals, which are all the same holder's anyway.
        let superseded = if issuance.supersede_active {
            revoke_holder_in(&mut tx, &cert.holder, RevocationReason::Superseded, now).await?
        } else {
            Vec::new()
        };
        changes.extend(superseded.iter().map(certificate_change));

        sqlx::query(
            "INSERT INTO certificates (serial, issuer_generation, corp_id, user_id, not_before, \
             not_after, sha256, spki_sha256, der, issued_at, renewed_from, permit_id, issuer_key) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        )
        .bind(cert.serial.to_hex())
        .bind(cert.issuer_generation.clone())
        .bind(cert.holder.corp_id.clone())
        .bind(cert.holder.user_id.clone())
        .bind(to_unix(cert.not_before))
        .bind(to_unix(cert.not_after))
        .bind(cert.sha256.clone())
        .bind(cert.spki_sha256.clone())
        .bind(cert.der.0.clone())
        .bind(to_unix(now))
        .bind(cert.renewed_from.map(|serial| serial.to_hex()))
        .bind(issuance.permit_id)
        .bind(cert.issuer.to_stored())
        .execute(&mut *tx)
        .await
        .map_err(|e| match StoreError::db("insert certificate")(e) {
            StoreError::Conflict { .. } => StoreError::conflict(format!(
                "certificate serial {} or its fingerprint is already in the ledger",
                cert.serial
            )),
            other => other,
        })?;

        if let (Some(permit_id), Some(kept)) = (issuance.permit_id, &issuance.kept_p12) {
            sqlx::query(
                "INSERT INTO enrollment_files (permit_id, p12, expires_at) VALUES ($1, $2, $3)",
            )
            .bind(permit_id)
            .bind(kept.file.0.clone())
            .bind(to_unix(kept.until))
            .execute(&mut *tx)
            .await
            .map_err(StoreError::db("keep certificate.p12"))?;
        }
        self.append_changes(&mut tx, now, &changes).await?;
        insert_audit(&mut tx, &issuance.audit).await?;
        let certificate = fetch_certificate(&mut tx, &cert.serial)
            .await?
            .ok_or_else(|| StoreError::corrupt("certificate vanished after insert"))?;
        commit(tx).await?;
        Ok(Issued {
            certificate,
            superseded,
        })
    }

    async fn certificate(&self, serial: &Serial) -> Result<Option<CertificateRecord>, StoreError> {
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(StoreError::db("acquire a connection"))?;
        fetch_certificate(&mut conn, serial).await
    }

    async fn active_certificates(
        &self,
        holder: &Holder,
        now: OffsetDateTime,
    ) -> Result<Vec<CertificateRecord>, StoreError> {
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(StoreError::db("acquire a connection"))?;
        fetch_holder_certificates(&mut conn, holder, Some(now), None).await
    }

    async fn latest_certificate(
        &self,
        holder: &Holder,
    ) -> Result<Option<CertificateRecord>, StoreError> {
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(StoreError::db("acquire a connection"))?;
        Ok(fetch_holder_certificates(&mut conn, holder, None, Some(1))
            .await?
            .into_iter()
            .next())
    }

    async fn holder_certificates(
        &self,
        holder: &Holder,
    ) -> Result<Vec<CertificateRecord>, StoreError> {
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(StoreError::db("acquire a connection"))?;
        fetch_holder_certificates(&mut conn, holder, None, None).await
    }

    async fn corporation_certificates(
        &self,
        corp_id: &str,
    ) -> Result<Vec<CertificateRecord>, StoreError> {
        sqlx::query(&format!(
            "SELECT {CERT_COLS} FROM certificates WHERE corp_id = $1 ORDER BY cert_id DESC"
        ))
        .bind(corp_id.to_owned())
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::db("list certificates"))?
        .iter()
        .map(rows::certificate)
        .collect()
    }

    async fn revoke_certificate(
        &self,
        serial: &Serial,
        reason: RevocationReason,
        audit: &NewAudit,
    ) -> Result<Vec<RevokedCert>, StoreError> {
        let mut tx = self.write().await?;
        let target = fetch_certificate(&mut tx, serial)
            .await?
            .ok_or_else(|| StoreError::not_found(format!("certificate {serial}")))?;
        if target.status == CertStatus::Revoked {
            return Err(StoreError::conflict(format!(
                "certificate {serial} is already revoked"
            )));
        }
        // The walk goes through already revoked links too, so a renewal of a renewal is
        // reached even when the certificate between them was revoked on its own earlier.
        let rows = sqlx::query(&format!(
            "WITH RECURSIVE chain(serial) AS ( \
                 SELECT CAST($1 AS TEXT) \
                 UNION \
                 SELECT c.serial FROM certificates c JOIN chain ON c.renewed_from = chain.serial \
             ) \
             UPDATE certificates SET status = 'revoked', revoked_at = $2, revocation_reason = $3 \
             WHERE serial IN (SELECT serial FROM chain) AND status = 'active' \
             RETURNING {REVOKED_COLS}"
        ))
        .bind(serial.to_hex())
        .bind(to_unix(audit.at))
        .bind(reason.as_str())
        .fetch_all(&mut *tx)
        .await
        .map_err(StoreError::db("revoke certificate"))?;
        let revoked = rows::revoked_in_order(rows)?;
        forget_files_of(&mut tx, &revoked).await?;
        let changes: Vec<Change> = revoked.iter().map(certificate_change).collect();
        self.append_changes(&mut tx, audit.at, &changes).await?;
        insert_audit(&mut tx, audit).await?;
        commit(tx).await?;
        Ok(revoked)
    }

    async fn revoke_holder(
        &self,
        holder: &Holder,
        reason: RevocationReason,
        audit: &NewAudit,
    ) -> Result<Vec<RevokedCert>, StoreError> {
        validate_holder(holder)?;
        let mut tx = self.write().await?;
        require_holder(&mut tx, holder).await?;
        let revoked = revoke_holder_in(&mut tx, holder, reason, audit.at).await?;
        let changes: Vec<Change> = revoked.iter().map(certificate_change).collect();
        self.append_changes(&mut tx, audit.at, &changes).await?;
        insert_audit(&mut tx, audit).await?;
        commit(tx).await?;
        Ok(revoked)
    }

    async fn revoked_unexpired(&self, now: OffsetDateTime) -> Result<Vec<RevokedCert>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {REVOKED_COLS} FROM certificates \
             WHERE status = 'revoked' AND not_after > $1 ORDER BY cert_id"
        ))
        .bind(to_unix(now))
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::db("list revoked certificates"))?;
        rows.iter().map(rows::revoked).collect()
    }

    async fn user_statuses(
        &self,
        corp_id: &str,
        now: OffsetDateTime,
        renewal_window: Duration,
    ) -> Result<Vec<StatusRow>, StoreError> {
        let mut tx = self.read().await?;
        if fetch_corporation(&mut tx, corp_id).await?.is_none() {
            return Err(StoreError::not_found(format!("corporation {corp_id}")));
        }
        let users = fetch_users(&mut tx, corp_id).await?;
        let latest = sqlx::query(&format!(
            "SELECT {CERT_COLS} FROM certificates WHERE cert_id IN ( \
                 SELECT max(cert_id) FROM certificates \
                 WHERE corp_id = $1 AND user_id IS NOT NULL GROUP BY user_id)"
        ))
        .bind(corp_id.to_owned())
        .fetch_all(&mut *tx)
        .await
        .map_err(StoreError::db("read latest certificates"))?;
        commit(tx).await?;
        let mut by_user: HashMap<String, CertificateRecord> = HashMap::new();
        for row in &latest {
            let cert = rows::certificate(row)?;
            if let Some(user_id) = cert.holder.user_id.clone() {
                by_user.insert(user_id, cert);
            }
        }
        Ok(users
            .into_iter()
            .map(|user| {
                let latest = by_user.remove(&user.user_id);
                let status = IssueStatus::of(latest.as_ref(), now, renewal_window);
                StatusRow {
                    user,
                    latest,
                    status,
                }
            })
            .collect())
    }

    async fn append_audit(&self, audit: &NewAudit) -> Result<(), StoreError> {
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(StoreError::db("acquire a connection"))?;
        insert_audit(&mut conn, audit).await
    }

    async fn list_audit(
        &self,
        corp_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let by_corp = format!(
            "SELECT {AUDIT_COLS} FROM audit WHERE corp_id = $1 \
             ORDER BY at DESC, audit_id DESC LIMIT $2"
        );
        let all =
            format!("SELECT {AUDIT_COLS} FROM audit ORDER BY at DESC, audit_id DESC LIMIT $1");
        let query = match corp_id {
            Some(corp_id) => sqlx::query(&by_corp)
                .bind(corp_id.to_owned())
                .bind(i64::from(limit)),
            None => sqlx::query(&all).bind(i64::from(limit)),
        };
        query
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::db("list audit entries"))?
            .iter()
            .map(rows::audit)
            .collect()
    }

    async fn confirmation(&self, holder: &Holder) -> Result<Option<Confirmation>, StoreError> {
        let row = sqlx::query("SELECT hash, failures, locked FROM confirmations WHERE holder = $1")
            .bind(holder.key())
            .fetch_optional(&self.pool)
            .await
            .map_err(StoreError::db("read a confirmation password"))?;
        row.map(|row| {
            Ok(Confirmation {
                hash: rows::col(&row, "hash")?,
                failures: u32::try_from(rows::col::<i64>(&row, "failures")?).unwrap_or(u32::MAX),
                locked: rows::flag(&row, "locked")?,
            })
        })
        .transpose()
    }

    async fn set_confirmation(
        &self,
        holder: &Holder,
        hash: &str,
        audit: &NewAudit,
    ) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        let inserted = sqlx::query(
            "INSERT INTO confirmations (holder, corp_id, hash, failures, locked, set_at) \
             VALUES ($1, $2, $3, 0, 0, $4) ON CONFLICT (holder) DO NOTHING RETURNING holder",
        )
        .bind(holder.key())
        .bind(holder.corp_id.clone())
        .bind(hash.to_owned())
        .bind(to_unix(audit.at))
        .fetch_optional(&mut *tx)
        .await
        .map_err(StoreError::db("set a confirmation password"))?;
        if inserted.is_none() {
            return Err(StoreError::conflict(format!(
                "{} already has a confirmation password",
                holder.key()
            )));
        }
        insert_audit(&mut tx, audit).await?;
        commit(tx).await
    }

    async fn confirmation_failed(
        &self,
        holder: &Holder,
        max_failures: u32,
        audit: &NewAudit,
    ) -> Result<bool, StoreError> {
        let mut tx = self.write().await?;
        let row = sqlx::query(
            "UPDATE confirmations SET failures = failures + 1, \
             locked = CASE WHEN failures + 1 >= $2 THEN 1 ELSE locked END \
             WHERE holder = $1 RETURNING locked",
        )
        .bind(holder.key())
        .bind(i64::from(max_failures))
        .fetch_optional(&mut *tx)
        .await
        .map_err(StoreError::db("count a wrong confirmation password"))?
        .ok_or_else(|| {
            StoreError::not_found(format!("confirmation password of {}", holder.key()))
        })?;
        let locked = rows::flag(&row, "locked")?;
        insert_audit(&mut tx, audit).await?;
        commit(tx).await?;
        Ok(locked)
    }

    async fn confirmation_succeeded(&self, holder: &Holder) -> Result<(), StoreError> {
        sqlx::query("UPDATE confirmations SET failures = 0 WHERE holder = $1 AND failures > 0")
            .bind(holder.key())
            .execute(&self.pool)
            .await
            .map_err(StoreError::db(
                "reset the count of wrong confirmation passwords",
            ))?;
        Ok(())
    }

    async fn reset_confirmation(
        &self,
        holder: &Holder,
        audit: &NewAudit,
    ) -> Result<bool, StoreError> {
        let mut tx = self.write().await?;
        let removed = sqlx::query("DELETE FROM confirmations WHERE holder = $1 RETURNING holder")
            .bind(holder.key())
            .fetch_optional(&mut *tx)
            .await
            .map_err(StoreError::db("reset a confirmation password"))?;
        insert_audit(&mut tx, audit).await?;
        commit(tx).await?;
        Ok(removed.is_some())
    }

    async fn expiring_certificates(
        &self,
        now: OffsetDateTime,
        until: OffsetDateTime,
    ) -> Result<Vec<Expiring>, StoreError> {
        let rows = sqlx::query(
            "SELECT c.serial, c.corp_id, c.user_id, c.not_after, co.admin_email, u.email \
             FROM certificates c JOIN corporations co ON co.corp_id = c.corp_id \
             LEFT JOIN users u ON u.corp_id = c.corp_id AND u.user_id = c.user_id \
             WHERE c.status = 'active' AND c.renewed_at IS NULL \
             AND c.not_after > $1 AND c.not_after <= $2 ORDER BY c.not_after",
        )
        .bind(to_unix(now))
        .bind(to_unix(until))
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::db("list expiring certificates"))?;
        rows.iter()
            .map(|row| {
                let serial: String = rows::col(row, "serial")?;
                Ok(Expiring {
                    serial: Serial::from_canonical_hex(&serial)
                        .map_err(|err| StoreError::corrupt(format!("serial {serial}: {err}")))?,
                    holder: Holder {
                        corp_id: rows::col(row, "corp_id")?,
                        user_id: rows::col(row, "user_id")?,
                    },
                    not_after: from_unix("not_after", rows::col(row, "not_after")?)?,
                    admin_email: rows::col(row, "admin_email")?,
                    user_email: rows::col(row, "email")?,
                })
            })
            .collect()
    }

    async fn claim_notice(
        &self,
        serial: &Serial,
        threshold_days: u32,
        message_id: &str,
        now: OffsetDateTime,
        stale_before: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let mut tx = self.write().await?;
        let claimed = sqlx::query(
            "INSERT INTO notices (serial, threshold_days, state, claimed_at, message_id) \
             VALUES ($1, $2, 'claimed', $3, $4) ON CONFLICT (serial, threshold_days) DO NOTHING \
             RETURNING serial",
        )
        .bind(serial.to_hex())
        .bind(i64::from(threshold_days))
        .bind(to_unix(now))
        .bind(message_id.to_owned())
        .fetch_optional(&mut *tx)
        .await
        .map_err(StoreError::db("claim a notice"))?
        .is_some();
        let claimed = claimed
            || sqlx::query(
                "UPDATE notices SET claimed_at = $3 WHERE serial = $1 AND threshold_days = $2 \
                 AND state = 'claimed' AND claimed_at < $4 RETURNING serial",
            )
            .bind(serial.to_hex())
            .bind(i64::from(threshold_days))
            .bind(to_unix(now))
            .bind(to_unix(stale_before))
            .fetch_optional(&mut *tx)
            .await
            .map_err(StoreError::db("take over a stale notice claim"))?
            .is_some();
        commit(tx).await?;
        Ok(claimed)
    }

    async fn notice_sent(
        &self,
        serial: &Serial,
        threshold_days: u32,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE notices SET state = 'sent', sent_at = $3 \
             WHERE serial = $1 AND threshold_days = $2",
        )
        .bind(serial.to_hex())
        .bind(i64::from(threshold_days))
        .bind(to_unix(now))
        .execute(&self.pool)
        .await
        .map_err(StoreError::db("mark a notice sent"))?;
        Ok(())
    }

    async fn release_notice(&self, serial: &Serial, threshold_days: u32) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE notices SET claimed_at = 0 \
             WHERE serial = $1 AND threshold_days = $2 AND state = 'claimed'",
        )
        .bind(serial.to_hex())
        .bind(i64::from(threshold_days))
        .execute(&self.pool)
        .await
        .map_err(StoreError::db("release a notice claim"))?;
        Ok(())
    }

    async fn forget_expired_files(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM enrollment_files WHERE expires_at <= $1")
            .bind(to_unix(now))
            .execute(&self.pool)
            .await
            .map_err(StoreError::db("erase expired certificate.p12 files"))?;
        Ok(done.rows_affected())
    }

    async fn load_standing(
        &self,
        now: OffsetDateTime,
        sink: &mut (dyn FnMut(Change) + Send),
    ) -> Result<i64, StoreError> {
        // One read transaction: the head of the feed and the state it stands for agree. Rows
        // stream one by one; the registry is never all in memory at once.
        let mut tx = self.read_feed().await?;
        let head: Option<i64> = sqlx::query_scalar("SELECT max(seq) FROM changes")
            .fetch_one(&mut *tx)
            .await
            .map_err(StoreError::db("read the head of the change feed"))?;
        {
            let mut certificates = sqlx::query(
                "SELECT 0 AS seq, 'certificate' AS kind, NULL AS corp_id, NULL AS user_id, \
                 NULL AS role, NULL AS suspended, NULL AS removed, NULL AS active, \
                 NULL AS cert_required, issuer_key, serial, issuer_generation AS generation, \
                 not_after, revoked_at, revocation_reason AS reason, \
                 CASE WHEN renewed_at IS NULL THEN 0 ELSE 1 END AS renewed \
                 FROM certificates \
                 WHERE (status = 'revoked' OR renewed_at IS NOT NULL) AND not_after > $1",
            )
            .bind(to_unix(now))
            .fetch(&mut *tx);
            while let Some(row) = certificates
                .try_next()
                .await
                .map_err(StoreError::db("load revoked certificates"))?
            {
                sink(rows::change(&row)?);
            }
        }
        {
            let mut users = sqlx::query(
                "SELECT corp_id, user_id, role, status FROM users \
                 WHERE role <> 'general' OR status <> 'active'",
            )
            .fetch(&mut *tx);
            while let Some(row) = users
                .try_next()
                .await
                .map_err(StoreError::db("load user standing"))?
            {
                let status: UserStatus = rows::parsed(&row, "status")?;
                sink(Change::User {
                    corp_id: rows::col(&row, "corp_id")?,
                    user_id: rows::col(&row, "user_id")?,
                    role: rows::parsed(&row, "role")?,
                    suspended: status == UserStatus::Suspended,
                    removed: false,
                });
            }
        }
        {
            let mut corporations = sqlx::query(
                "SELECT corp_id, status, cert_required FROM corporations \
                 WHERE status <> 'active' OR cert_required <> 0",
            )
            .fetch(&mut *tx);
            while let Some(row) = corporations
                .try_next()
                .await
                .map_err(StoreError::db("load corporation standing"))?
            {
                let status: CorporationStatus = rows::parsed(&row, "status")?;
                sink(Change::Corporation {
                    corp_id: rows::col(&row, "corp_id")?,
                    active: status == CorporationStatus::Active,
                    cert_required: rows::flag(&row, "cert_required")?,
                });
            }
        }
        commit(tx).await?;
        Ok(head.unwrap_or(0))
    }

    async fn changes_since(&self, seq: i64, limit: u32) -> Result<Vec<FeedEntry>, StoreError> {
        sqlx::query(&format!(
            "SELECT {CHANGE_COLS} FROM changes WHERE seq > $1 ORDER BY seq LIMIT $2"
        ))
        .bind(seq)
        .bind(i64::from(limit))
        .fetch_all(&self.feed)
        .await
        .map_err(StoreError::db("read the change feed"))?
        .iter()
        .map(|row| {
            Ok(FeedEntry {
                seq: rows::col(row, "seq")?,
                prev_seq: rows::col(row, "prev_seq")?,
                change: rows::change(row)?,
            })
        })
        .collect()
    }

    async fn claim_crl(
        &self,
        generation: &str,
        holder: &str,
        now: OffsetDateTime,
        lease: Duration,
    ) -> Result<Option<CrlClaim>, StoreError> {
        let mut tx = self.write().await?;
        sqlx::query(
            "INSERT INTO crl_state (generation) VALUES ($1) ON CONFLICT (generation) DO NOTHING",
        )
        .bind(generation.to_owned())
        .execute(&mut *tx)
        .await
        .map_err(StoreError::db("register a CRL"))?;
        let claimed: Option<(String, i64, Option<i64>)> = sqlx::query_as(
            "UPDATE crl_state SET lease_holder = $1, lease_until = $2 \
             WHERE generation = $3 AND (lease_until <= $4 OR lease_holder = $1) \
             RETURNING number, seq, signed_at",
        )
        .bind(holder.to_owned())
        .bind(to_unix(now + lease))
        .bind(generation.to_owned())
        .bind(to_unix(now))
        .fetch_optional(&mut *tx)
        .await
        .map_err(StoreError::db("claim the CRL signing lease"))?;
        commit(tx).await?;
        claimed
            .map(|(text, seq, signed_at)| {
                Ok(CrlClaim {
                    number: text
                        .parse::<u128>()
                        .map_err(|_| StoreError::corrupt(format!("CRL number `{text}`")))?,
                    seq,
                    signed_at: signed_at
                        .map(|at| from_unix("CRL signed_at", at))
                        .transpose()?,
                })
            })
            .transpose()
    }

    async fn store_crl(
        &self,
        generation: &str,
        holder: &str,
        signed: &SignedCrl,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let mut tx = self.write().await?;
        // Never backwards: not a smaller number, not an older view of the feed.
        let done = sqlx::query(
            "UPDATE crl_state SET number = $1, der = $2, signed_at = $3, seq = $6, \
             lease_holder = NULL, lease_until = 0 \
             WHERE generation = $4 AND lease_holder = $5 AND lease_until > $3 AND seq <= $6",
        )
        .bind(signed.number.to_string())
        .bind(signed.der.0.clone())
        .bind(to_unix(now))
        .bind(generation.to_owned())
        .bind(holder.to_owned())
        .bind(signed.seq)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::db("store a CRL"))?;
        commit(tx).await?;
        Ok(done.rows_affected() == 1)
    }

    async fn release_crl(&self, generation: &str, holder: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE crl_state SET lease_holder = NULL, lease_until = 0 \
             WHERE generation = $1 AND lease_holder = $2",
        )
        .bind(generation.to_owned())
        .bind(holder.to_owned())
        .execute(&self.pool)
        .await
        .map_err(StoreError::db("release the CRL signing lease"))?;
        Ok(())
    }

    async fn signed_crl(&self, generation: &str) -> Result<Option<SignedCrl>, StoreError> {
        let row: Option<(String, i64, Option<Vec<u8>>)> =
            sqlx::query_as("SELECT number, seq, der FROM crl_state WHERE generation = $1")
                .bind(generation.to_owned())
                .fetch_optional(&self.pool)
                .await
                .map_err(StoreError::db("read a CRL"))?;
        let Some((number, seq, Some(der))) = row else {
            return Ok(None);
        };
        Ok(Some(SignedCrl {
            number: number
                .parse()
                .map_err(|_| StoreError::corrupt(format!("CRL number `{number}`")))?,
            seq,
            der: Der(der),
        }))
    }

    async fn feed_head(&self) -> Result<i64, StoreError> {
        let head: Option<i64> = sqlx::query_scalar("SELECT max(seq) FROM changes")
            .fetch_one(&self.feed)
            .await
            .map_err(StoreError::db("read the head of the change feed"))?;
        Ok(head.unwrap_or(0))
    }

    async fn request_reload(&self, at: OffsetDateTime) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        self.append_changes(&mut tx, at, &[Change::Reload]).await?;
        commit(tx).await
    }

    async fn close(&self) {
        self.pool.close().await;
        self.feed.close().await;
    }
}
