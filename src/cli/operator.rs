//! The operator's commands on the registry and the CA (bank staff, on the server's machine).
//! Operator actions are allowed on every holder, the master user and the administrator included.

use serde_json::{Value, json};

use super::args::{
    CaCommand, CertCommand, CorpCommand, PermitCommand, StandingCommand, UserCommand,
};
use super::output::Output;
use crate::config::Config;
use secrecy::ExposeSecret as _;

use crate::lifecycle::{Context, Lifecycle, LifecycleError, accepted_revocation_reasons};
use crate::model::{Holder, RevocationReason, Role, Serial, rfc3339};
use crate::store::{CertificateRecord, Corporation, UserStatus};

/// Any operator command but `init` (which runs without a registry).
#[derive(Debug)]
pub enum Operator {
    /// `corp …`.
    Corp(CorpCommand),
    /// `user …`.
    User(UserCommand),
    /// `permit …`.
    Permit(PermitCommand),
    /// `cert …`.
    Cert(CertCommand),
    /// `audit`.
    Audit {
        /// Only this corporation.
        corp_id: Option<String>,
        /// How many entries, newest first.
        limit: u32,
    },
    /// `ca …`.
    Ca(CaCommand),
    /// `crl`.
    Crl,
    /// `standing …`.
    Standing(StandingCommand),
}

fn time(at: time::OffsetDateTime) -> Value {
    Value::String(rfc3339(at))
}

fn corporation_record(corp: &Corporation) -> Vec<(&'static str, Value)> {
    vec![
        ("corp_id", json!(corp.corp_id)),
        ("name", json!(corp.name)),
        ("admin_email", json!(corp.admin_email)),
        ("status", json!(corp.status.as_str())),
        ("cert_required", json!(corp.cert_required)),
        ("created_at", time(corp.created_at)),
    ]
}

fn as_object(fields: Vec<(&'static str, Value)>) -> Value {
    Value::Object(fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

/// Runs one command; the caller prints the output.
pub(super) async fn operate(
    lifecycle: &Lifecycle,
    config: &Config,
    command: Operator,
) -> Result<Output, LifecycleError> {
    let ctx = Context::operator();
    Ok(match command {
        Operator::Corp(CorpCommand::Add {
            corp_id,
            name,
            admin_email,
        }) => {
            let corp = lifecycle
                .add_corporation(&corp_id, &name, &admin_email, &ctx)
                .await?;
            Output::Done {
                text: format!("added corporation {} ({})", corp.corp_id, corp.name),
                json: as_object(corporation_record(&corp)),
            }
        }
        Operator::Corp(CorpCommand::Set {
            corp_id,
            cert_required,
        }) => {
            lifecycle
                .set_cert_required(&corp_id, cert_required, &ctx)
                .await?;
            let corp = lifecycle.corporation(&corp_id).await?;
            Output::Done {
                text: format!("corporation {corp_id}: cert_required = {cert_required}"),
                json: as_object(corporation_record(&corp)),
            }
        }
        Operator::Corp(CorpCommand::Stop { corp_id }) => {
            corp_status(lifecycle, &ctx, &corp_id, false).await?
        }
        Operator::Corp(CorpCommand::Resume { corp_id }) => {
            corp_status(lifecycle, &ctx, &corp_id, true).await?
        }
        Operator::Corp(CorpCommand::List) => Output::Table {
            columns: &["corp_id", "status", "cert_required", "admin_email", "name"],
            rows: lifecycle
                .corporations()
                .await?
                .iter()
                .map(|corp| {
                    vec![
                        json!(corp.corp_id),
                        json!(corp.status.as_str()),
                        json!(corp.cert_required),
                        json!(corp.admin_email),
                        json!(corp.name),
                    ]
                })
                .collect(),
        },
        Operator::Corp(CorpCommand::Show { corp_id }) => {
            Output::Record(corporation_record(&lifecycle.corporation(&corp_id).await?))
        }
        Operator::User(UserCommand::Add {
            corp_id,
            user_id,
            role,
            email,
            name,
        }) => {
            let role = parse_role(&role)?;
            let user = lifecycle
                .add_named_user(
                    &corp_id,
                    &user_id,
                    name.as_deref(),
                    role,
                    email.as_deref(),
                    &ctx,
                )
                .await?;
            Output::Done {
                text: format!(
                    "added user {}/{} ({})",
                    user.corp_id,
                    user.user_id,
                    user.role.as_str()
                ),
                json: json!({
                    "corp_id": user.corp_id,
                    "user_id": user.user_id,
                    "role": user.role.as_str(),
                    "email": user.email,
                    "name": user.name,
                    "status": user.status.as_str(),
                }),
            }
        }
        Operator::User(UserCommand::List { corp_id }) => Output::Table {
            columns: &[
                "user_id",
                "name",
                "role",
                "status",
                "certificate",
                "serial",
                "not_after",
                "email",
            ],
            rows: lifecycle
                .status_table(&ctx, &corp_id)
                .await?
                .iter()
                .map(|row| {
                    vec![
                        json!(row.user.user_id),
                        json!(row.user.name),
                        json!(row.user.role.as_str()),
                        json!(row.user.status.as_str()),
                        json!(row.status.as_str()),
                        row.latest
                            .as_ref()
                            .map_or(Value::Null, |cert| json!(cert.serial)),
                        row.latest
                            .as_ref()
                            .map_or(Value::Null, |cert| time(cert.not_after)),
                        json!(row.user.email),
                    ]
                })
                .collect(),
        },
        Operator::User(UserCommand::ResetConfirmation { corp_id, user_id }) => {
            let holder = Holder {
                corp_id: corp_id.clone(),
                user_id: user_id.clone(),
            };
            lifecycle.reset_confirmation(&ctx, &holder).await?;
            Output::Done {
                text: format!(
                    "reset the confirmation password of {}; they set a new one on the admin page",
                    holder.key()
                ),
                json: json!({ "corp_id": corp_id, "user_id": user_id, "confirmation": "reset" }),
            }
        }
        Operator::User(UserCommand::Suspend { corp_id, user_id }) => {
            lifecycle
                .set_user_status(&ctx, &corp_id, &user_id, UserStatus::Suspended)
                .await?;
            Output::Done {
                text: format!("suspended {corp_id}/{user_id}"),
                json: json!({ "corp_id": corp_id, "user_id": user_id, "status": "suspended" }),
            }
        }
        Operator::User(UserCommand::Resume { corp_id, user_id }) => {
            lifecycle
                .set_user_status(&ctx, &corp_id, &user_id, UserStatus::Active)
                .await?;
            Output::Done {
                text: format!("resumed {corp_id}/{user_id}"),
                json: json!({ "corp_id": corp_id, "user_id": user_id, "status": "active" }),
            }
        }
        Operator::Permit(PermitCommand::Issue { corp_id, user_id }) => {
            let permit = lifecycle
                .issue_permit(&Holder { corp_id, user_id }, &ctx)
                .await?;
            // The PIN alone on stdout, so that a script can capture it; the rest on stderr.
            eprintln!(
                "temporary PIN for {} (valid until {}; any earlier PIN of this holder no longer works):",
                permit.holder, permit.expires_at
            );
            Output::Done {
                json: json!({
                    "holder": permit.holder,
                    "pin": permit.pin.expose_secret(),
                    "expires_at": permit.expires_at,
                }),
                text: permit.pin.expose_secret().to_owned(),
            }
        }
        Operator::Cert(CertCommand::List { corp_id }) => {
            let corp_ids = match corp_id {
                Some(corp_id) => {
                    lifecycle.corporation(&corp_id).await?;
                    vec![corp_id]
                }
                None => lifecycle
                    .corporations()
                    .await?
                    .into_iter()
                    .map(|corp| corp.corp_id)
                    .collect(),
            };
            let mut rows = Vec::new();
            for corp_id in corp_ids {
                for cert in lifecycle.certificates(&ctx, &corp_id).await? {
                    rows.push(vec![
                        json!(cert.serial),
                        json!(cert.holder.key()),
                        json!(cert.issuer_generation),
                        time(cert.not_after),
                        json!(cert_status(&cert)),
                    ]);
                }
            }
            Output::Table {
                columns: &["serial", "holder", "ca", "not_after", "status"],
                rows,
            }
        }
        Operator::Cert(CertCommand::Show { serial }) => {
            let cert = lifecycle.certificate(&parse_serial(&serial)?).await?;
            let subject = x509_parser::parse_x509_certificate(cert.der.as_slice())
                .map(|(_, parsed)| json!(parsed.subject().to_string()))
                .unwrap_or(Value::Null);
            Output::Record(vec![
                ("serial", json!(cert.serial)),
                ("holder", json!(cert.holder.key())),
                ("subject", subject),
                ("ca", json!(cert.issuer_generation)),
                ("not_before", time(cert.not_before)),
                ("not_after", time(cert.not_after)),
                ("issued_at", time(cert.issued_at)),
                ("status", json!(cert_status(&cert))),
                (
                    "revoked_at",
                    cert.revocation.map_or(Value::Null, |r| time(r.at)),
                ),
                (
                    "reason",
                    cert.revocation
                        .map_or(Value::Null, |r| json!(r.reason.as_str())),
                ),
                ("renewed_from", json!(cert.renewed_from)),
                ("sha256", json!(cert.sha256)),
            ])
        }
        Operator::Cert(CertCommand::Revoke { serial, reason }) => {
            let reason = parse_reason(&reason)?;
            let serial = parse_serial(&serial)?;
            let revoked = lifecycle.revoke_serial(&serial, reason, &ctx).await?;
            Output::Done {
                text: revoked
                    .iter()
                    .map(|cert| {
                        format!(
                            "revoked {} of {} ({})",
                            cert.serial,
                            cert.holder.key(),
                            cert.reason.as_str()
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n"),
                json: Value::Array(
                    revoked
                        .iter()
                        .map(|cert| {
                            json!({
                                "serial": cert.serial,
                                "holder": cert.holder.key(),
                                "reason": cert.reason.as_str(),
                                "revoked_at": time(cert.revoked_at),
                            })
                        })
                        .collect(),
                ),
            }
        }
        Operator::Audit { corp_id, limit } => Output::Table {
            columns: &[
                "at",
                "actor",
                "action",
                "corp_id",
                "target",
                "result",
                "client_addr",
            ],
            rows: lifecycle
                .audit_trail(&ctx, corp_id.as_deref(), limit)
                .await?
                .into_iter()
                .map(|entry| {
                    vec![
                        time(entry.at),
                        json!(entry.actor),
                        json!(entry.action),
                        json!(entry.corp_id),
                        json!(entry.target),
                        json!(entry.result),
                        json!(entry.client_addr),
                    ]
                })
                .collect(),
        },
        Operator::Ca(CaCommand::Rotate) => {
            let generation = lifecycle.rotate_ca(&ctx)?;
            Output::Done {
                text: format!(
                    "generation {} ({}) signs from now on; send SIGHUP to `certgate serve` so that it trusts and uses it",
                    generation.name, generation.unit
                ),
                json: serde_json::to_value(&generation).unwrap_or(Value::Null),
            }
        }
        Operator::Ca(CaCommand::List) => Output::Table {
            columns: &["name", "unit", "not_before", "not_after", "current"],
            rows: lifecycle
                .ca_list()?
                .into_iter()
                .map(|g| {
                    vec![
                        json!(g.name),
                        json!(g.unit),
                        json!(g.not_before),
                        json!(g.not_after),
                        json!(g.current),
                    ]
                })
                .collect(),
        },
        Operator::Standing(StandingCommand::Reload) => {
            lifecycle.request_standing_reload(&ctx).await?;
            Output::Done {
                text: "asked every certgate on this registry to load the whole standing again"
                    .to_owned(),
                json: json!({ "reload": "requested" }),
            }
        }
        Operator::Crl => {
            let written = lifecycle.try_write_crls().await?;
            let pki = crate::pki::Pki::open(crate::pki::PkiSettings::from(&config.pki))?;
            let mut rows = Vec::new();
            for generation in written {
                let path = pki.crl_path(&generation)?;
                rows.push(vec![json!(generation), json!(path.display().to_string())]);
            }
            Output::Table {
                columns: &["generation", "crl"],
                rows,
            }
        }
    })
}

fn parse_role(role: &str) -> Result<Role, LifecycleError> {
    role.parse().map_err(|_| LifecycleError::Invalid {
        field: "role",
        reason: format!("{role:?} is not a role; use master, admin or general"),
    })
}

/// An RFC 5280 reason name, in any case; which reasons a revocation may give is the
/// lifecycle's rule.
fn parse_reason(reason: &str) -> Result<RevocationReason, LifecycleError> {
    RevocationReason::from_name_ignoring_case(reason).ok_or_else(|| LifecycleError::Invalid {
        field: "reason",
        reason: format!(
            "{reason:?} is not an RFC 5280 revocation reason; use one of {}",
            accepted_revocation_reasons().join(", ")
        ),
    })
}

/// A serial as people type it: `3A:1F…`, `0x3a1f…` or `3a1f…`.
fn parse_serial(serial: &str) -> Result<Serial, LifecycleError> {
    serial
        .parse()
        .map_err(|err: crate::model::SerialError| LifecycleError::Invalid {
            field: "serial",
            reason: err.to_string(),
        })
}

fn cert_status(cert: &CertificateRecord) -> String {
    match &cert.revocation {
        Some(revocation) => format!("revoked ({})", revocation.reason.as_str()),
        None if cert.not_after <= crate::model::now() => "expired".to_owned(),
        None => "active".to_owned(),
    }
}

/// `corp stop` / `corp resume`.
async fn corp_status(
    lifecycle: &Lifecycle,
    ctx: &Context,
    corp_id: &str,
    active: bool,
) -> Result<Output, LifecycleError> {
    lifecycle
        .set_corporation_active(corp_id, active, ctx)
        .await?;
    let corp = lifecycle.corporation(corp_id).await?;
    Ok(Output::Done {
        text: format!("corporation {corp_id}: {}", corp.status.as_str()),
        json: as_object(corporation_record(&corp)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_in_any_common_spelling() {
        for spelling in ["3a1f", "3A:1F", "0x3A1F", " 3a1f "] {
            assert_eq!(
                parse_serial(spelling).ok().map(|s| s.to_hex()).as_deref(),
                Some("3a1f")
            );
        }
        for bad in ["", "xyz", "0x", "12 34"] {
            assert!(parse_serial(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn reasons_by_rfc_5280_name() {
        assert_eq!(
            parse_reason("keyCompromise").ok(),
            Some(RevocationReason::KeyCompromise)
        );
        assert_eq!(
            parse_reason("keycompromise").ok(),
            Some(RevocationReason::KeyCompromise)
        );
        assert!(parse_reason("boredom").is_err());
    }
}
