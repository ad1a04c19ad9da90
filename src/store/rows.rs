//! Reading rows back into the registry's types, the same way from either database (both hand
//! back integers as `i64`, text as `String`, bytes as `Vec<u8>`).

use std::str::FromStr;

use sqlx::Row as _;
use sqlx::any::AnyRow;
use time::OffsetDateTime;

use super::types::from_unix;
use super::{
    AuditEntry, CertificateRecord, Change, Corporation, Holder, Permit, Revocation, RevokedCert,
    StoreError, User,
};
use crate::model::{Der, IssuerKey, RevocationReason, Serial};

pub(super) fn col<'r, T>(row: &'r AnyRow, name: &str) -> Result<T, StoreError>
where
    T: sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    row.try_get(name)
        .map_err(|e| StoreError::corrupt(format!("column {name}: {e}")))
}

pub(super) fn flag(row: &AnyRow, name: &str) -> Result<bool, StoreError> {
    Ok(col::<i64>(row, name)? != 0)
}

pub(super) fn opt_flag(row: &AnyRow, name: &str) -> Result<Option<bool>, StoreError> {
    Ok(col::<Option<i64>>(row, name)?.map(|value| value != 0))
}

pub(super) fn parsed<T: FromStr>(row: &AnyRow, name: &str) -> Result<T, StoreError> {
    let text: String = col(row, name)?;
    text.parse()
        .map_err(|_| StoreError::corrupt(format!("column {name}: unknown value `{text}`")))
}

pub(super) fn time(row: &AnyRow, name: &str) -> Result<OffsetDateTime, StoreError> {
    from_unix(name, col(row, name)?)
}

pub(super) fn opt_time(row: &AnyRow, name: &str) -> Result<Option<OffsetDateTime>, StoreError> {
    col::<Option<i64>>(row, name)?
        .map(|secs| from_unix(name, secs))
        .transpose()
}

pub(super) fn serial(row: &AnyRow, name: &str) -> Result<Serial, StoreError> {
    let text: String = col(row, name)?;
    Serial::from_canonical_hex(&text)
        .map_err(|e| StoreError::corrupt(format!("column {name}: {e}")))
}

pub(super) fn opt_serial(row: &AnyRow, name: &str) -> Result<Option<Serial>, StoreError> {
    col::<Option<String>>(row, name)?
        .map(|text| {
            Serial::from_canonical_hex(&text)
                .map_err(|e| StoreError::corrupt(format!("column {name}: {e}")))
        })
        .transpose()
}

pub(super) fn holder(row: &AnyRow) -> Result<Holder, StoreError> {
    Ok(Holder {
        corp_id: col(row, "corp_id")?,
        user_id: col(row, "user_id")?,
    })
}

pub(super) const CORP_COLS: &str = "corp_id, name, admin_email, cert_required, status, created_at";

pub(super) fn corporation(row: &AnyRow) -> Result<Corporation, StoreError> {
    Ok(Corporation {
        corp_id: col(row, "corp_id")?,
        name: col(row, "name")?,
        admin_email: col(row, "admin_email")?,
        cert_required: flag(row, "cert_required")?,
        status: parsed(row, "status")?,
        created_at: time(row, "created_at")?,
    })
}

pub(super) const USER_COLS: &str = "corp_id, user_id, role, email, status, created_at, name";

pub(super) fn user(row: &AnyRow) -> Result<User, StoreError> {
    Ok(User {
        corp_id: col(row, "corp_id")?,
        user_id: col(row, "user_id")?,
        role: parsed(row, "role")?,
        email: col(row, "email")?,
        status: parsed(row, "status")?,
        created_at: time(row, "created_at")?,
        name: col(row, "name")?,
    })
}

/// The serial a permit produced is read through the certificate's `permit_id`, so it has one
/// source of truth.
pub(super) const PERMIT_SELECT: &str = "SELECT p.permit_id, p.corp_id, p.user_id, p.pin_hash, \
     p.created_at, p.expires_at, p.failures, p.state, p.used_at, p.spki_sha256, c.serial \
     FROM permits p LEFT JOIN certificates c ON c.permit_id = p.permit_id";

pub(super) fn permit(row: &AnyRow) -> Result<Permit, StoreError> {
    let failures: i64 = col(row, "failures")?;
    Ok(Permit {
        permit_id: col(row, "permit_id")?,
        holder: holder(row)?,
        pin_hash: col(row, "pin_hash")?,
        created_at: time(row, "created_at")?,
        expires_at: time(row, "expires_at")?,
        failures: u32::try_from(failures)
            .map_err(|_| StoreError::corrupt(format!("permit failures {failures}")))?,
        state: parsed(row, "state")?,
        used_at: opt_time(row, "used_at")?,
        spki_sha256: col(row, "spki_sha256")?,
        serial: opt_serial(row, "serial")?,
    })
}

pub(super) const CERT_COLS: &str = "cert_id, serial, issuer_generation, corp_id, user_id, \
     not_before, not_after, sha256, spki_sha256, der, status, issued_at, revoked_at, \
     revocation_reason, renewed_from, permit_id, renewed_at";

pub(super) fn certificate(row: &AnyRow) -> Result<CertificateRecord, StoreError> {
    let revoked_at = opt_time(row, "revoked_at")?;
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
        serial: serial(row, "serial")?,
        issuer_generation: col(row, "issuer_generation")?,
        holder: holder(row)?,
        not_before: time(row, "not_before")?,
        not_after: time(row, "not_after")?,
        sha256: col(row, "sha256")?,
        spki_sha256: col(row, "spki_sha256")?,
        der: Der(col(row, "der")?),
        status: parsed(row, "status")?,
        issued_at: time(row, "issued_at")?,
        revocation,
        renewed_from: opt_serial(row, "renewed_from")?,
        permit_id: col(row, "permit_id")?,
        renewed_at: opt_time(row, "renewed_at")?,
    })
}

pub(super) const REVOKED_COLS: &str = "cert_id, issuer_generation, serial, corp_id, user_id, \
     not_after, revoked_at, revocation_reason, issuer_key";

pub(super) fn revoked(row: &AnyRow) -> Result<RevokedCert, StoreError> {
    Ok(RevokedCert {
        issuer_generation: col(row, "issuer_generation")?,
        issuer: IssuerKey::from_stored(col(row, "issuer_key")?),
        serial: serial(row, "serial")?,
        holder: holder(row)?,
        not_after: time(row, "not_after")?,
        revoked_at: time(row, "revoked_at")?,
        reason: parsed(row, "revocation_reason")?,
    })
}

/// Decodes `RETURNING` rows of a revocation in issue order (RETURNING order is unspecified).
pub(super) fn revoked_in_order(mut rows: Vec<AnyRow>) -> Result<Vec<RevokedCert>, StoreError> {
    rows.sort_by_key(|row| row.try_get::<i64, _>("cert_id").unwrap_or(i64::MAX));
    rows.iter().map(revoked).collect()
}

pub(super) const AUDIT_COLS: &str =
    "audit_id, at, actor, action, corp_id, target, result, client_addr";

pub(super) fn audit(row: &AnyRow) -> Result<AuditEntry, StoreError> {
    Ok(AuditEntry {
        audit_id: col(row, "audit_id")?,
        at: time(row, "at")?,
        actor: col(row, "actor")?,
        action: col(row, "action")?,
        corp_id: col(row, "corp_id")?,
        target: col(row, "target")?,
        result: col(row, "result")?,
        client_addr: col(row, "client_addr")?,
    })
}

pub(super) const CHANGE_COLS: &str = "seq, prev_seq, kind, corp_id, user_id, role, suspended, removed, \
     active, cert_required, issuer_key, serial, generation, not_after, revoked_at, reason, renewed";

/// A row of the feed (or of the standing loaded at start, which has the same columns).
pub(super) fn change(row: &AnyRow) -> Result<Change, StoreError> {
    let kind: String = col(row, "kind")?;
    let missing = |what: &str| StoreError::corrupt(format!("a {kind} change without {what}"));
    Ok(match kind.as_str() {
        "certificate" => {
            let revoked = match (
                opt_time(row, "revoked_at")?,
                col::<Option<String>>(row, "reason")?,
            ) {
                (Some(at), Some(reason)) => Some((
                    at,
                    reason
                        .parse::<RevocationReason>()
                        .map_err(|_| StoreError::corrupt(format!("reason `{reason}`")))?,
                )),
                _ => None,
            };
            Change::Certificate {
                issuer: IssuerKey::from_stored(
                    col::<Option<i64>>(row, "issuer_key")?.ok_or_else(|| missing("issuer"))?,
                ),
                serial: opt_serial(row, "serial")?.ok_or_else(|| missing("serial"))?,
                generation: col(row, "generation")?,
                not_after: opt_time(row, "not_after")?.ok_or_else(|| missing("not_after"))?,
                revoked,
                renewed: opt_flag(row, "renewed")?.unwrap_or(false),
            }
        }
        "user" => Change::User {
            corp_id: col::<Option<String>>(row, "corp_id")?.ok_or_else(|| missing("corp_id"))?,
            user_id: col::<Option<String>>(row, "user_id")?.ok_or_else(|| missing("user_id"))?,
            role: col::<Option<String>>(row, "role")?
                .ok_or_else(|| missing("role"))?
                .parse()
                .map_err(|_| missing("a known role"))?,
            suspended: opt_flag(row, "suspended")?.unwrap_or(false),
            removed: opt_flag(row, "removed")?.unwrap_or(false),
        },
        "corporation" => Change::Corporation {
            corp_id: col::<Option<String>>(row, "corp_id")?.ok_or_else(|| missing("corp_id"))?,
            active: opt_flag(row, "active")?.unwrap_or(true),
            cert_required: opt_flag(row, "cert_required")?.unwrap_or(false),
        },
        "reload" => Change::Reload,
        other => {
            return Err(StoreError::corrupt(format!(
                "unknown change kind `{other}`"
            )));
        }
    })
}
