//! The SQLite backend of [`Registry`].

use std::borrow::Cow;
use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration as StdDuration;

use async_trait::async_trait;
use futures_util::future::BoxFuture;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteRow, SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};
use time::{Duration, OffsetDateTime};

use super::types::{
    canonical_sha256, from_unix, to_unix, validate_email, validate_holder, validate_id,
};
use super::{
    AuditEntry, CertStatus, CertificateRecord, Corporation, CorporationStatus, Issuance,
    IssueStatus, Issued, NewAudit, NewCorporation, NewPermit, NewUser, Permit, PermitFailure,
    PermitIssued, PermitState, Registry, RetryInfo, Revocation, RevokedCert, StatusRow, StoreError,
    User, UserStatus,
};
use crate::model::{Der, Holder, RevocationReason, Role, Serial};

/// How long a writer waits for the write lock before giving up. Enrollments are short
/// transactions (a few statements and one fsync), so even a burst of 50 queues well inside it.
const BUSY_TIMEOUT: StdDuration = StdDuration::from_secs(15);

/// SQLite has one writer at a time; more connections only help concurrent readers.
const MAX_CONNECTIONS: u32 = 8;

/// The schema migrations, embedded at build time.
#[derive(Debug)]
struct Embedded;

impl MigrationSource<'static> for Embedded {
    fn resolve(self) -> BoxFuture<'static, Result<Vec<Migration>, sqlx::error::BoxDynError>> {
        Box::pin(async {
            Ok(vec![
                Migration::new(
                    1,
                    Cow::Borrowed("registry"),
                    MigrationType::Simple,
                    Cow::Borrowed(include_str!("../../migrations/sqlite/0001_registry.sql")),
                    false,
                ),
                Migration::new(
                    2,
                    Cow::Borrowed("enrollment files"),
                    MigrationType::Simple,
                    Cow::Borrowed(include_str!(
                        "../../migrations/sqlite/0002_enrollment_files.sql"
                    )),
                    false,
                ),
            ])
        })
    }
}

/// Applies the embedded migrations that the database has not seen yet.
pub(crate) async fn migrate(pool: &SqlitePool) -> Result<(), StoreError> {
    Migrator::new(Embedded).await?.run(pool).await?;
    Ok(())
}

/// The registry in a SQLite file (WAL, `synchronous=FULL`, foreign keys, busy timeout).
#[derive(Debug, Clone)]
pub struct SqliteRegistry {
    pool: SqlitePool,
}

impl SqliteRegistry {
    /// Opens (creating the file and its directory if needed) and migrates the database at
    /// `url`, e.g. `sqlite://data/certgate.db`.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let open_err = |source| StoreError::Open {
            url: url.to_owned(),
            source,
        };
        let options = SqliteConnectOptions::from_str(url)
            .map_err(open_err)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        if let Some(dir) = options.get_filename().parent() {
            if !dir.as_os_str().is_empty() {
                tokio::fs::create_dir_all(dir)
                    .await
                    .map_err(|source| StoreError::CreateDir {
                        path: dir.to_path_buf(),
                        source,
                    })?;
            }
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .connect_with(options)
            .await
            .map_err(open_err)?;
        migrate(&pool).await?;
        Ok(Self { pool })
    }

    #[cfg(test)]
    pub(crate) fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    async fn conn(&self) -> Result<PoolConnection<Sqlite>, StoreError> {
        self.pool
            .acquire()
            .await
            .map_err(StoreError::db("acquire a connection"))
    }

    async fn write(&self) -> Result<Transaction<'static, Sqlite>, StoreError> {
        self.pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(StoreError::db("begin a write transaction"))
    }

    /// A read transaction, so that multi-statement reads see one snapshot.
    async fn read(&self) -> Result<Transaction<'static, Sqlite>, StoreError> {
        self.pool
            .begin()
            .await
            .map_err(StoreError::db("begin a read transaction"))
    }
}

async fn commit(tx: Transaction<'static, Sqlite>) -> Result<(), StoreError> {
    tx.commit().await.map_err(StoreError::db("commit"))
}

// --- row decoding ---

fn col<'r, T>(row: &'r SqliteRow, name: &str) -> Result<T, StoreError>
where
    T: sqlx::Decode<'r, Sqlite> + sqlx::Type<Sqlite>,
{
    row.try_get(name)
        .map_err(|e| StoreError::corrupt(format!("column {name}: {e}")))
}

fn parsed<T: FromStr>(row: &SqliteRow, name: &str) -> Result<T, StoreError> {
    let text: String = col(row, name)?;
    text.parse()
        .map_err(|_| StoreError::corrupt(format!("column {name}: unknown value `{text}`")))
}

fn time_col(row: &SqliteRow, name: &str) -> Result<OffsetDateTime, StoreError> {
    from_unix(name, col(row, name)?)
}

fn opt_time_col(row: &SqliteRow, name: &str) -> Result<Option<OffsetDateTime>, StoreError> {
    col::<Option<i64>>(row, name)?
        .map(|secs| from_unix(name, secs))
        .transpose()
}

fn serial_col(row: &SqliteRow, name: &str) -> Result<Serial, StoreError> {
    let text: String = col(row, name)?;
    Serial::from_canonical_hex(&text)
        .map_err(|e| StoreError::corrupt(format!("column {name}: {e}")))
}

fn opt_serial_col(row: &SqliteRow, name: &str) -> Result<Option<Serial>, StoreError> {
    col::<Option<String>>(row, name)?
        .map(|text| {
            Serial::from_canonical_hex(&text)
                .map_err(|e| StoreError::corrupt(format!("column {name}: {e}")))
        })
        .transpose()
}

fn holder_cols(row: &SqliteRow) -> Result<Holder, StoreError> {
    Ok(Holder {
        corp_id: col(row, "corp_id")?,
        user_id: col(row, "user_id")?,
    })
}

const CORP_COLS: &str = "corp_id, name, admin_email, cert_required, status, created_at";

fn corporation_row(row: &SqliteRow) -> Result<Corporation, StoreError> {
    Ok(Corporation {
        corp_id: col(row, "corp_id")?,
        name: col(row, "name")?,
        admin_email: col(row, "admin_email")?,
        cert_required: col::<i64>(row, "cert_required")? != 0,
        status: parsed(row, "status")?,
        created_at: time_col(row, "created_at")?,
    })
}

const USER_COLS: &str = "corp_id, user_id, role, email, status, created_at";

fn user_row(row: &SqliteRow) -> Result<User, StoreError> {
    Ok(User {
        corp_id: col(row, "corp_id")?,
        user_id: col(row, "user_id")?,
        role: parsed(row, "role")?,
        email: col(row, "email")?,
        status: parsed(row, "status")?,
        created_at: time_col(row, "created_at")?,
    })
}

/// The serial a permit produced is read through the certificate's `permit_id`, so it has one
/// source of truth.
const PERMIT_SELECT: &str = "SELECT p.permit_id, p.corp_id, p.user_id, p.pin_hash, \
     p.created_at, p.expires_at, p.failures, p.state, p.used_at, p.spki_sha256, c.serial \
     FROM permits p LEFT JOIN certificates c ON c.permit_id = p.permit_id";

fn permit_row(row: &SqliteRow) -> Result<Permit, StoreError> {
    let failures: i64 = col(row, "failures")?;
    Ok(Permit {
        permit_id: col(row, "permit_id")?,
        holder: holder_cols(row)?,
        pin_hash: col(row, "pin_hash")?,
        created_at: time_col(row, "created_at")?,
        expires_at: time_col(row, "expires_at")?,
        failures: u32::try_from(failures)
            .map_err(|_| StoreError::corrupt(format!("permit failures {failures}")))?,
        state: parsed(row, "state")?,
        used_at: opt_time_col(row, "used_at")?,
        spki_sha256: col(row, "spki_sha256")?,
        serial: opt_serial_col(row, "serial")?,
    })
}

const CERT_COLS: &str = "cert_id, serial, issuer_generation, corp_id, user_id, not_before, \
     not_after, sha256, spki_sha256, der, status, issued_at, revoked_at, revocation_reason, \
     renewed_from, permit_id";

fn cert_row(row: &SqliteRow) -> Result<CertificateRecord, StoreError> {
    let revoked_at = opt_time_col(row, "revoked_at")?;
    let reason: Option<String> = col(row, "revocation_reason")?;
    let revocation = match (revoked_at, reason) {
        (Some(at), Some(reason)) => Some(Revocation {
            at,
            reason: reason
                .parse()
                .map_err(|_| StoreError::corrupt(format!("revocation reason `{reason}`")))?,
        }),
        (None, None) => None,
        _ => return Err(StoreError::corrupt("revocation time without reason")),
    };
    Ok(CertificateRecord {
        serial: serial_col(row, "serial")?,
        issuer_generation: col(row, "issuer_generation")?,
        holder: holder_cols(row)?,
        not_before: time_col(row, "not_before")?,
        not_after: time_col(row, "not_after")?,
        sha256: col(row, "sha256")?,
        spki_sha256: col(row, "spki_sha256")?,
        der: Der(col(row, "der")?),
        status: parsed(row, "status")?,
        issued_at: time_col(row, "issued_at")?,
        revocation,
        renewed_from: opt_serial_col(row, "renewed_from")?,
        permit_id: col(row, "permit_id")?,
    })
}

const REVOKED_COLS: &str = "cert_id, issuer_generation, serial, corp_id, user_id, not_after, revoked_at, revocation_reason";

fn revoked_row(row: &SqliteRow) -> Result<RevokedCert, StoreError> {
    Ok(RevokedCert {
        issuer_generation: col(row, "issuer_generation")?,
        serial: serial_col(row, "serial")?,
        holder: holder_cols(row)?,
        not_after: time_col(row, "not_after")?,
        revoked_at: time_col(row, "revoked_at")?,
        reason: parsed(row, "revocation_reason")?,
    })
}

/// Decodes `RETURNING` rows of a revocation in issue order (RETURNING order is unspecified).
fn revoked_rows(mut rows: Vec<SqliteRow>) -> Result<Vec<RevokedCert>, StoreError> {
    rows.sort_by_key(|row| row.try_get::<i64, _>("cert_id").unwrap_or(i64::MAX));
    rows.iter().map(revoked_row).collect()
}

const AUDIT_COLS: &str = "audit_id, at, actor, action, corp_id, target, result, client_addr";

fn audit_row(row: &SqliteRow) -> Result<AuditEntry, StoreError> {
    Ok(AuditEntry {
        audit_id: col(row, "audit_id")?,
        at: time_col(row, "at")?,
        actor: col(row, "actor")?,
        action: col(row, "action")?,
        corp_id: col(row, "corp_id")?,
        target: col(row, "target")?,
        result: col(row, "result")?,
        client_addr: col(row, "client_addr")?,
    })
}

// --- statements shared by several operations ---

async fn insert_audit(conn: &mut SqliteConnection, audit: &NewAudit) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO audit (at, actor, action, corp_id, target, result, client_addr) \
         VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(to_unix(audit.at))
    .bind(&audit.actor)
    .bind(&audit.action)
    .bind(audit.corp_id.as_deref())
    .bind(&audit.target)
    .bind(&audit.result)
    .bind(audit.client_addr.as_deref())
    .execute(conn)
    .await
    .map_err(StoreError::db("write audit entry"))?;
    Ok(())
}

async fn fetch_corporation(
    conn: &mut SqliteConnection,
    corp_id: &str,
) -> Result<Option<Corporation>, StoreError> {
    sqlx::query(&format!(
        "SELECT {CORP_COLS} FROM corporations WHERE corp_id = ?"
    ))
    .bind(corp_id)
    .fetch_optional(conn)
    .await
    .map_err(StoreError::db("read corporation"))?
    .as_ref()
    .map(corporation_row)
    .transpose()
}

async fn fetch_user(
    conn: &mut SqliteConnection,
    corp_id: &str,
    user_id: &str,
) -> Result<Option<User>, StoreError> {
    sqlx::query(&format!(
        "SELECT {USER_COLS} FROM users WHERE corp_id = ? AND user_id = ?"
    ))
    .bind(corp_id)
    .bind(user_id)
    .fetch_optional(conn)
    .await
    .map_err(StoreError::db("read user"))?
    .as_ref()
    .map(user_row)
    .transpose()
}

async fn fetch_users(conn: &mut SqliteConnection, corp_id: &str) -> Result<Vec<User>, StoreError> {
    sqlx::query(&format!(
        "SELECT {USER_COLS} FROM users WHERE corp_id = ? ORDER BY user_id"
    ))
    .bind(corp_id)
    .fetch_all(conn)
    .await
    .map_err(StoreError::db("list users"))?
    .iter()
    .map(user_row)
    .collect()
}

/// Refuses a holder whose corporation (or user) is not registered, with a message naming it.
async fn require_holder(conn: &mut SqliteConnection, holder: &Holder) -> Result<(), StoreError> {
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
    conn: &mut SqliteConnection,
    permit_id: i64,
) -> Result<Option<Permit>, StoreError> {
    sqlx::query(&format!("{PERMIT_SELECT} WHERE p.permit_id = ?"))
        .bind(permit_id)
        .fetch_optional(conn)
        .await
        .map_err(StoreError::db("read permit"))?
        .as_ref()
        .map(permit_row)
        .transpose()
}

async fn fetch_certificate(
    conn: &mut SqliteConnection,
    serial: &Serial,
) -> Result<Option<CertificateRecord>, StoreError> {
    sqlx::query(&format!(
        "SELECT {CERT_COLS} FROM certificates WHERE serial = ?"
    ))
    .bind(serial.to_hex())
    .fetch_optional(conn)
    .await
    .map_err(StoreError::db("read certificate"))?
    .as_ref()
    .map(cert_row)
    .transpose()
}

async fn fetch_certificates(
    conn: &mut SqliteConnection,
    sql: &str,
    holder: &Holder,
    extra: Option<i64>,
) -> Result<Vec<CertificateRecord>, StoreError> {
    let mut query = sqlx::query(sql)
        .bind(&holder.corp_id)
        .bind(holder.user_id.as_deref());
    if let Some(value) = extra {
        query = query.bind(value);
    }
    query
        .fetch_all(conn)
        .await
        .map_err(StoreError::db("list certificates"))?
        .iter()
        .map(cert_row)
        .collect()
}

/// Revokes the holder's certificates that are neither revoked nor expired at `now`.
async fn revoke_holder_in(
    conn: &mut SqliteConnection,
    holder: &Holder,
    reason: RevocationReason,
    now: OffsetDateTime,
) -> Result<Vec<RevokedCert>, StoreError> {
    let rows = sqlx::query(&format!(
        "UPDATE certificates SET status = 'revoked', revoked_at = ?, revocation_reason = ? \
         WHERE corp_id = ? AND user_id IS ? AND status = 'active' AND not_after > ? \
         RETURNING {REVOKED_COLS}"
    ))
    .bind(to_unix(now))
    .bind(reason.as_str())
    .bind(&holder.corp_id)
    .bind(holder.user_id.as_deref())
    .bind(to_unix(now))
    .fetch_all(&mut *conn)
    .await
    .map_err(StoreError::db("revoke certificates"))?;
    let revoked = revoked_rows(rows)?;
    forget_files_of(conn, &revoked).await?;
    Ok(revoked)
}

/// A revoked certificate is never handed out again: its kept `certificate.p12` goes.
async fn forget_files_of(
    conn: &mut SqliteConnection,
    revoked: &[RevokedCert],
) -> Result<(), StoreError> {
    for cert in revoked {
        sqlx::query(
            "DELETE FROM enrollment_files WHERE permit_id = \
             (SELECT permit_id FROM certificates WHERE serial = ?)",
        )
        .bind(cert.serial.to_hex())
        .execute(&mut *conn)
        .await
        .map_err(StoreError::db("erase a kept certificate.p12"))?;
    }
    Ok(())
}

fn validate_issuance(issuance: &Issuance) -> Result<Issuance, StoreError> {
    let mut out = issuance.clone();
    let cert = &mut out.cert;
    validate_holder(&cert.holder)?;
    cert.sha256 = canonical_sha256("sha256", &cert.sha256)?;
    cert.spki_sha256 = canonical_sha256("spki_sha256", &cert.spki_sha256)?;
    if cert.issuer_generation.is_empty() {
        return Err(StoreError::invalid(
            "issuer_generation",
            "must not be empty",
        ));
    }
    if cert.der.is_empty() {
        return Err(StoreError::invalid("der", "must not be empty"));
    }
    if cert.not_after <= cert.not_before {
        return Err(StoreError::invalid("not_after", "must be after not_before"));
    }
    if cert.renewed_from == Some(cert.serial) {
        return Err(StoreError::invalid(
            "renewed_from",
            "a certificate cannot renew itself",
        ));
    }
    Ok(out)
}

#[async_trait]
impl Registry for SqliteRegistry {
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
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&corp.corp_id)
        .bind(&corp.name)
        .bind(&corp.admin_email)
        .bind(i64::from(corp.cert_required))
        .bind(to_unix(audit.at))
        .execute(&mut *tx)
        .await
        .map_err(StoreError::db("insert corporation"))?;
        insert_audit(&mut tx, audit).await?;
        let stored = fetch_corporation(&mut tx, &corp.corp_id)
            .await?
            .ok_or_else(|| StoreError::corrupt("corporation vanished after insert"))?;
        commit(tx).await?;
        Ok(stored)
    }

    async fn corporation(&self, corp_id: &str) -> Result<Option<Corporation>, StoreError> {
        let mut conn = self.conn().await?;
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
        .map(corporation_row)
        .collect()
    }

    async fn set_cert_required(
        &self,
        corp_id: &str,
        required: bool,
        audit: &NewAudit,
    ) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        let done = sqlx::query("UPDATE corporations SET cert_required = ? WHERE corp_id = ?")
            .bind(i64::from(required))
            .bind(corp_id)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::db("update corporation"))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::not_found(format!("corporation {corp_id}")));
        }
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
        let done = sqlx::query("UPDATE corporations SET status = ? WHERE corp_id = ?")
            .bind(status.as_str())
            .bind(corp_id)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::db("update corporation"))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::not_found(format!("corporation {corp_id}")));
        }
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
                "SELECT user_id FROM users WHERE corp_id = ? AND role = 'master'",
            )
            .bind(&user.corp_id)
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
        sqlx::query(
            "INSERT INTO users (corp_id, user_id, role, email, created_at) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&user.corp_id)
        .bind(&user.user_id)
        .bind(user.role.as_str())
        .bind(user.email.as_deref())
        .bind(to_unix(audit.at))
        .execute(&mut *tx)
        .await
        .map_err(StoreError::db("insert user"))?;
        insert_audit(&mut tx, audit).await?;
        let stored = fetch_user(&mut tx, &user.corp_id, &user.user_id)
            .await?
            .ok_or_else(|| StoreError::corrupt("user vanished after insert"))?;
        commit(tx).await?;
        Ok(stored)
    }

    async fn user(&self, corp_id: &str, user_id: &str) -> Result<Option<User>, StoreError> {
        let mut conn = self.conn().await?;
        fetch_user(&mut conn, corp_id, user_id).await
    }

    async fn list_users(&self, corp_id: &str) -> Result<Vec<User>, StoreError> {
        let mut conn = self.conn().await?;
        fetch_users(&mut conn, corp_id).await
    }

    async fn all_users(&self) -> Result<Vec<User>, StoreError> {
        sqlx::query(&format!(
            "SELECT {USER_COLS} FROM users ORDER BY corp_id, user_id"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::db("list users"))?
        .iter()
        .map(user_row)
        .collect()
    }

    async fn set_user_status(
        &self,
        corp_id: &str,
        user_id: &str,
        status: UserStatus,
        audit: &NewAudit,
    ) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        let done = sqlx::query("UPDATE users SET status = ? WHERE corp_id = ? AND user_id = ?")
            .bind(status.as_str())
            .bind(corp_id)
            .bind(user_id)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::db("update user"))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::not_found(format!("user {corp_id}/{user_id}")));
        }
        insert_audit(&mut tx, audit).await?;
        commit(tx).await
    }

    async fn issue_permit(
        &self,
        permit: &NewPermit,
        audit: &NewAudit,
    ) -> Result<PermitIssued, StoreError> {
        validate_holder(&permit.holder)?;
        // The value itself is never echoed: it is a (weak) secret.
        if !permit.pin_hash.starts_with('$') || permit.pin_hash.len() < 2 {
            return Err(StoreError::invalid("pin_hash", "must be a PHC string"));
        }
        if to_unix(permit.expires_at) <= to_unix(audit.at) {
            return Err(StoreError::invalid(
                "expires_at",
                "must be after the issue time",
            ));
        }
        let holder = &permit.holder;
        let mut tx = self.write().await?;
        require_holder(&mut tx, holder).await?;
        let mut superseded: Vec<i64> = sqlx::query_scalar(
            "UPDATE permits SET state = 'superseded' \
             WHERE corp_id = ? AND user_id IS ? AND state IN ('active', 'locked') \
             RETURNING permit_id",
        )
        .bind(&holder.corp_id)
        .bind(holder.user_id.as_deref())
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
             (SELECT permit_id FROM permits WHERE corp_id = ? AND user_id IS ?)",
        )
        .bind(&holder.corp_id)
        .bind(holder.user_id.as_deref())
        .execute(&mut *tx)
        .await
        .map_err(StoreError::db("erase kept certificate.p12 files"))?;
        let permit_id: i64 = sqlx::query_scalar(
            "INSERT INTO permits (corp_id, user_id, pin_hash, created_at, expires_at) \
             VALUES (?, ?, ?, ?, ?) RETURNING permit_id",
        )
        .bind(&holder.corp_id)
        .bind(holder.user_id.as_deref())
        .bind(&permit.pin_hash)
        .bind(to_unix(audit.at))
        .bind(to_unix(permit.expires_at))
        .fetch_one(&mut *tx)
        .await
        .map_err(StoreError::db("insert permit"))?;
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
        let mut conn = self.conn().await?;
        fetch_permit(&mut conn, permit_id).await
    }

    async fn latest_permit(&self, holder: &Holder) -> Result<Option<Permit>, StoreError> {
        sqlx::query(&format!(
            "{PERMIT_SELECT} WHERE p.corp_id = ? AND p.user_id IS ? \
             ORDER BY p.permit_id DESC LIMIT 1"
        ))
        .bind(&holder.corp_id)
        .bind(holder.user_id.as_deref())
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::db("read permit"))?
        .as_ref()
        .map(permit_row)
        .transpose()
    }

    async fn record_permit_failure(
        &self,
        permit_id: i64,
        max_failures: u32,
        audit: &NewAudit,
    ) -> Result<PermitFailure, StoreError> {
        if max_failures == 0 {
            return Err(StoreError::invalid("max_failures", "must be at least 1"));
        }
        let mut tx = self.write().await?;
        let permit = fetch_permit(&mut tx, permit_id)
            .await?
            .ok_or_else(|| StoreError::not_found("the permit"))?;
        if permit.state != PermitState::Active {
            // Locked, used or superseded meanwhile (a parallel attempt): nothing to count.
            return Ok(PermitFailure {
                failures: permit.failures,
                locked: permit.state == PermitState::Locked,
            });
        }
        let row = sqlx::query(
            "UPDATE permits SET failures = failures + 1, \
             state = CASE WHEN failures + 1 >= ? THEN 'locked' ELSE state END \
             WHERE permit_id = ? RETURNING failures, state",
        )
        .bind(i64::from(max_failures))
        .bind(permit_id)
        .fetch_one(&mut *tx)
        .await
        .map_err(StoreError::db("count a permit failure"))?;
        let failures: i64 = col(&row, "failures")?;
        let state: PermitState = parsed(&row, "state")?;
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
            "SELECT p12 FROM enrollment_files WHERE permit_id = ? AND expires_at > ?",
        )
        .bind(permit_id)
        .bind(to_unix(now))
        .fetch_optional(&mut *tx)
        .await
        .map_err(StoreError::db("read a kept certificate.p12"))?;
        Ok(Some(RetryInfo {
            permit_id,
            used_at,
            spki_sha256,
            certificate,
            p12: p12.map(Der),
        }))
    }

    async fn record_issuance(&self, issuance: &Issuance) -> Result<Issued, StoreError> {
        let issuance = validate_issuance(issuance)?;
        let cert = &issuance.cert;
        let now = issuance.audit.at;
        let mut tx = self.write().await?;

        if let Some(permit_id) = issuance.permit_id {
            let permit = fetch_permit(&mut tx, permit_id)
                .await?
                .ok_or_else(|| StoreError::not_found("the permit"))?;
            if permit.holder != cert.holder {
                return Err(StoreError::conflict(format!(
                    "the permit is for the {}, not the {}",
                    permit.holder, cert.holder
                )));
            }
            match permit.state {
                PermitState::Active if to_unix(now) >= to_unix(permit.expires_at) => {
                    return Err(StoreError::conflict("the permit has expired"));
                }
                PermitState::Active => {}
                PermitState::Used => {
                    return Err(StoreError::conflict("the permit was already used"));
                }
                PermitState::Locked => {
                    return Err(StoreError::conflict("the permit is locked"));
                }
                PermitState::Superseded => {
                    return Err(StoreError::conflict(
                        "the permit was superseded by a newer one",
                    ));
                }
            }
        } else {
            require_holder(&mut tx, &cert.holder).await?;
        }
        if let Some(parent) = &cert.renewed_from {
            let parent_cert = fetch_certificate(&mut tx, parent).await?.ok_or_else(|| {
                StoreError::not_found(format!("certificate {parent} (renewed from)"))
            })?;
            if parent_cert.holder != cert.holder {
                return Err(StoreError::conflict(format!(
                    "certificate {parent} belongs to the {}, not the {}",
                    parent_cert.holder, cert.holder
                )));
            }
        }

        // The new certificate is not in the ledger yet, so it cannot supersede itself; and
        // superseding does not cascade over renewals, which are all the same holder's anyway.
        let superseded = if issuance.supersede_active {
            revoke_holder_in(&mut tx, &cert.holder, RevocationReason::Superseded, now).await?
        } else {
            Vec::new()
        };

        sqlx::query(
            "INSERT INTO certificates (serial, issuer_generation, corp_id, user_id, not_before, \
             not_after, sha256, spki_sha256, der, issued_at, renewed_from, permit_id) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(cert.serial.to_hex())
        .bind(&cert.issuer_generation)
        .bind(&cert.holder.corp_id)
        .bind(cert.holder.user_id.as_deref())
        .bind(to_unix(cert.not_before))
        .bind(to_unix(cert.not_after))
        .bind(&cert.sha256)
        .bind(&cert.spki_sha256)
        .bind(cert.der.as_slice())
        .bind(to_unix(now))
        .bind(cert.renewed_from.map(|serial| serial.to_hex()))
        .bind(issuance.permit_id)
        .execute(&mut *tx)
        .await
        .map_err(|e| match StoreError::db("insert certificate")(e) {
            StoreError::Conflict { .. } => StoreError::conflict(format!(
                "certificate serial {} or its fingerprint is already in the ledger",
                cert.serial
            )),
            other => other,
        })?;

        if let Some(permit_id) = issuance.permit_id {
            let used = sqlx::query(
                "UPDATE permits SET state = 'used', used_at = ?, spki_sha256 = ? \
                 WHERE permit_id = ? AND state = 'active'",
            )
            .bind(to_unix(now))
            .bind(&cert.spki_sha256)
            .bind(permit_id)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::db("consume permit"))?;
            if used.rows_affected() != 1 {
                return Err(StoreError::conflict("the permit was used concurrently"));
            }
            if let Some(kept) = &issuance.kept_p12 {
                sqlx::query(
                    "INSERT INTO enrollment_files (permit_id, p12, expires_at) VALUES (?, ?, ?)",
                )
                .bind(permit_id)
                .bind(kept.file.as_slice())
                .bind(to_unix(kept.until))
                .execute(&mut *tx)
                .await
                .map_err(StoreError::db("keep certificate.p12"))?;
            }
        }
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
        let mut conn = self.conn().await?;
        fetch_certificate(&mut conn, serial).await
    }

    async fn active_certificates(
        &self,
        holder: &Holder,
        now: OffsetDateTime,
    ) -> Result<Vec<CertificateRecord>, StoreError> {
        let mut conn = self.conn().await?;
        let sql = format!(
            "SELECT {CERT_COLS} FROM certificates \
             WHERE corp_id = ? AND user_id IS ? AND status = 'active' AND not_after > ? \
             ORDER BY cert_id DESC"
        );
        fetch_certificates(&mut conn, &sql, holder, Some(to_unix(now))).await
    }

    async fn latest_certificate(
        &self,
        holder: &Holder,
    ) -> Result<Option<CertificateRecord>, StoreError> {
        let mut conn = self.conn().await?;
        let sql = format!(
            "SELECT {CERT_COLS} FROM certificates WHERE corp_id = ? AND user_id IS ? \
             ORDER BY cert_id DESC LIMIT 1"
        );
        Ok(fetch_certificates(&mut conn, &sql, holder, None)
            .await?
            .into_iter()
            .next())
    }

    async fn holder_certificates(
        &self,
        holder: &Holder,
    ) -> Result<Vec<CertificateRecord>, StoreError> {
        let mut conn = self.conn().await?;
        let sql = format!(
            "SELECT {CERT_COLS} FROM certificates WHERE corp_id = ? AND user_id IS ? \
             ORDER BY cert_id DESC"
        );
        fetch_certificates(&mut conn, &sql, holder, None).await
    }

    async fn corporation_certificates(
        &self,
        corp_id: &str,
    ) -> Result<Vec<CertificateRecord>, StoreError> {
        sqlx::query(&format!(
            "SELECT {CERT_COLS} FROM certificates WHERE corp_id = ? ORDER BY cert_id DESC"
        ))
        .bind(corp_id)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::db("list certificates"))?
        .iter()
        .map(cert_row)
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
                 SELECT ? \
                 UNION \
                 SELECT c.serial FROM certificates c JOIN chain ON c.renewed_from = chain.serial \
             ) \
             UPDATE certificates SET status = 'revoked', revoked_at = ?, revocation_reason = ? \
             WHERE serial IN (SELECT serial FROM chain) AND status = 'active' \
             RETURNING {REVOKED_COLS}"
        ))
        .bind(serial.to_hex())
        .bind(to_unix(audit.at))
        .bind(reason.as_str())
        .fetch_all(&mut *tx)
        .await
        .map_err(StoreError::db("revoke certificate"))?;
        let revoked = revoked_rows(rows)?;
        forget_files_of(&mut tx, &revoked).await?;
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
        insert_audit(&mut tx, audit).await?;
        commit(tx).await?;
        Ok(revoked)
    }

    async fn revoked_unexpired(&self, now: OffsetDateTime) -> Result<Vec<RevokedCert>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {REVOKED_COLS} FROM certificates \
             WHERE status = 'revoked' AND not_after > ? ORDER BY cert_id"
        ))
        .bind(to_unix(now))
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::db("list revoked certificates"))?;
        rows.iter().map(revoked_row).collect()
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
                 WHERE corp_id = ? AND user_id IS NOT NULL GROUP BY user_id)"
        ))
        .bind(corp_id)
        .fetch_all(&mut *tx)
        .await
        .map_err(StoreError::db("read latest certificates"))?;
        let mut by_user: HashMap<String, CertificateRecord> = HashMap::new();
        for row in &latest {
            let cert = cert_row(row)?;
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
        let mut conn = self.conn().await?;
        insert_audit(&mut conn, audit).await
    }

    async fn list_audit(
        &self,
        corp_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let by_corp = format!(
            "SELECT {AUDIT_COLS} FROM audit WHERE corp_id = ? \
             ORDER BY at DESC, audit_id DESC LIMIT ?"
        );
        let all = format!("SELECT {AUDIT_COLS} FROM audit ORDER BY at DESC, audit_id DESC LIMIT ?");
        let query = match corp_id {
            Some(corp_id) => sqlx::query(&by_corp).bind(corp_id),
            None => sqlx::query(&all),
        };
        query
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::db("list audit entries"))?
            .iter()
            .map(audit_row)
            .collect()
    }

    async fn forget_expired_files(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM enrollment_files WHERE expires_at <= ?")
            .bind(to_unix(now))
            .execute(&self.pool)
            .await
            .map_err(StoreError::db("erase expired certificate.p12 files"))?;
        Ok(done.rows_affected())
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}
