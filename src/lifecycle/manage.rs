//! Managing corporations, users, permits and certificates: the operator's commands and the
//! corporation managers' admin actions (re-issue, revoke, suspend, resume, status, audit).

use secrecy::{ExposeSecret as _, SecretString};

use super::{Actor, Context, Lifecycle, LifecycleError, check_revocation_reason, pin};
use crate::model::{Holder, RevocationReason, Role, Serial, rfc3339};
use crate::pki::Pki;
use crate::store::{
    AuditEntry, CertificateRecord, Corporation, CorporationStatus, NewCorporation, NewPermit,
    NewUser, RevokedCert, StatusRow, User, UserStatus, UserUpdate,
};

/// How many of a corporation's latest audit entries a holder's own history is looked for in.
const OWN_HISTORY_WINDOW: u32 = 2_000;

/// A permit just issued: the PIN is shown once and never stored in clear (`Debug` hides it).
#[derive(Debug, Clone)]
pub struct PermitView {
    /// `corp` or `corp/user`.
    pub holder: String,
    /// The temporary PIN.
    pub pin: SecretString,
    /// Until when it can be used (RFC 3339).
    pub expires_at: String,
}

/// One CA generation as `certgate ca list` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CaView {
    /// `g1`, `g2`, …
    pub name: String,
    /// Its OU.
    pub unit: String,
    /// Validity (RFC 3339).
    pub not_before: String,
    /// Validity (RFC 3339).
    pub not_after: String,
    /// Whether it signs new certificates now.
    pub current: bool,
}

impl Lifecycle {
    // --- operator: corporations and users ---------------------------------------------------

    /// Registers a corporation.
    pub async fn add_corporation(
        &self,
        corp_id: &str,
        name: &str,
        admin_email: &str,
        ctx: &Context,
    ) -> Result<Corporation, LifecycleError> {
        require_operator(ctx)?;
        self.check_ids(&Holder::admin(corp_id))?;
        let corp = NewCorporation {
            corp_id: corp_id.to_owned(),
            name: name.to_owned(),
            admin_email: admin_email.to_owned(),
            cert_required: false,
        };
        let audit = self.audit(ctx, "corp.add", Some(corp_id), corp_id, "ok");
        let added = self.store().add_corporation(&corp, &audit).await?;
        self.announce_standing().await;
        Ok(added)
    }

    /// Sets whether every user of the corporation must log in with a certificate.
    pub async fn set_cert_required(
        &self,
        corp_id: &str,
        required: bool,
        ctx: &Context,
    ) -> Result<(), LifecycleError> {
        require_operator(ctx)?;
        let audit = self.audit(
            ctx,
            "corp.set",
            Some(corp_id),
            corp_id,
            &format!("ok: cert_required={required}"),
        );
        self.store()
            .set_cert_required(corp_id, required, &audit)
            .await?;
        self.announce_standing().await;
        Ok(())
    }

    /// Stops a corporation's service (`active = false`: every certificate of it is refused on
    /// the next request, on every replica) or resumes it.
    pub async fn set_corporation_active(
        &self,
        corp_id: &str,
        active: bool,
        ctx: &Context,
    ) -> Result<(), LifecycleError> {
        require_operator(ctx)?;
        let (action, status) = if active {
            ("corp.resume", CorporationStatus::Active)
        } else {
            ("corp.stop", CorporationStatus::Suspended)
        };
        let audit = self.audit(ctx, action, Some(corp_id), corp_id, "ok");
        self.store()
            .set_corporation_status(corp_id, status, &audit)
            .await?;
        self.announce_standing().await;
        Ok(())
    }

    /// Every corporation.
    pub async fn corporations(&self) -> Result<Vec<Corporation>, LifecycleError> {
        Ok(self.store().list_corporations().await?)
    }

    /// One corporation.
    pub async fn corporation(&self, corp_id: &str) -> Result<Corporation, LifecycleError> {
        self.store()
            .corporation(corp_id)
            .await?
            .ok_or_else(|| LifecycleError::NotFound {
                what: format!("corporation {corp_id}"),
            })
    }

    /// Registers a user of a corporation.
    pub async fn add_user(
        &self,
        corp_id: &str,
        user_id: &str,
        role: Role,
        email: Option<&str>,
        ctx: &Context,
    ) -> Result<User, LifecycleError> {
        self.add_named_user(corp_id, user_id, None, role, email, ctx)
            .await
    }

    /// Like [`Self::add_user`], with the user's name (利用者名): printable text, at most 64
    /// characters.
    pub async fn add_named_user(
        &self,
        corp_id: &str,
        user_id: &str,
        name: Option<&str>,
        role: Role,
        email: Option<&str>,
        ctx: &Context,
    ) -> Result<User, LifecycleError> {
        let name = user_name(name)?;
        let holder = Holder::user(corp_id, user_id);
        self.require_manager(ctx, corp_id).await?;
        if role == Role::Master && ctx.actor != Actor::Operator {
            return Err(LifecycleError::Forbidden {
                why: "the master user is registered by the bank".to_owned(),
            });
        }
        self.check_ids(&holder)?;
        let user = NewUser {
            corp_id: corp_id.to_owned(),
            user_id: user_id.to_owned(),
            role,
            email: email.map(str::to_owned),
            name: name.map(str::to_owned),
        };
        let audit = self.audit(
            ctx,
            "user.add",
            Some(corp_id),
            &holder.key(),
            &format!("ok: role {}", role.as_str()),
        );
        let added = self.store().add_user(&user, &audit).await?;
        self.announce_standing().await;
        Ok(added)
    }

    /// The status table of a corporation's users (seed 004): unissued, issued, renewable,
    /// expired, revoked.
    pub async fn status_table(
        &self,
        ctx: &Context,
        corp_id: &str,
    ) -> Result<Vec<StatusRow>, LifecycleError> {
        self.require_manager(ctx, corp_id).await?;
        self.corporation(corp_id).await?;
        let window = time::Duration::days(i64::from(self.rules().renew_window_days));
        Ok(self
            .store()
            .user_statuses(corp_id, self.now(), window)
            .await?)
    }

    /// Issues a permit (the bank's operator): a temporary PIN for the holder's next enrollment.
    /// Older unused permits of the same holder stop working.
    pub async fn issue_permit(
        &self,
        holder: &Holder,
        ctx: &Context,
    ) -> Result<PermitView, LifecycleError> {
        require_operator(ctx)?;
        self.new_permit(holder, false, ctx).await
    }

    /// A permit for `holder`; `revoke_current` also revokes the holder's certificates in the
    /// same transaction (re-issue). The caller has checked the rights.
    async fn new_permit(
        &self,
        holder: &Holder,
        revoke_current: bool,
        ctx: &Context,
    ) -> Result<PermitView, LifecycleError> {
        self.check_ids(holder)?;
        self.corporation(&holder.corp_id).await?;
        if let Some(user_id) = &holder.user_id {
            self.store()
                .user(&holder.corp_id, user_id)
                .await?
                .ok_or_else(|| LifecycleError::NotFound {
                    what: format!("user {}", holder.key()),
                })?;
        }
        let pin = pin::generate()?;
        let typed = pin.clone();
        let pin_hash = tokio::task::spawn_blocking(move || pin::hash(&typed))
            .await
            .map_err(|err| LifecycleError::Internal(format!("PIN hashing failed: {err}")))??;
        let ttl =
            time::Duration::try_from(self.rules().permit_ttl).unwrap_or(time::Duration::days(7));
        let at = self.now();
        let permit = NewPermit {
            holder: holder.clone(),
            pin_hash,
            expires_at: at + ttl,
            revoke_active: revoke_current.then_some(RevocationReason::Superseded),
        };
        let action = if revoke_current {
            "reissue"
        } else {
            "permit.issue"
        };
        let audit = self.audit(ctx, action, Some(&holder.corp_id), &holder.key(), "ok");
        let issued = self.store().issue_permit(&permit, &audit).await?;
        if !issued.revoked.is_empty() {
            self.announce_standing().await;
            self.revocations_changed();
        }
        Ok(PermitView {
            holder: holder.key(),
            pin: SecretString::from(pin),
            expires_at: rfc3339(issued.permit.expires_at),
        })
    }

    // --- corporation managers (admin API) -----------------------------------------------------

    /// Checks that the caller manages `corp_id`: the operator, the corporation's administrator
    /// certificate, or a master or admin user of it who is not suspended, with a certificate of
    /// a CA trusted for certgate's own operations.
    pub async fn require_manager(
        &self,
        ctx: &Context,
        corp_id: &str,
    ) -> Result<(), LifecycleError> {
        if let Actor::Certificate {
            lifecycle_ca: false,
            ..
        } = &ctx.actor
        {
            return Err(not_a_lifecycle_ca());
        }
        let Actor::Certificate { holder, .. } = &ctx.actor else {
            return if ctx.actor == Actor::Operator {
                Ok(())
            } else {
                Err(LifecycleError::Forbidden {
                    why: "a client certificate is required".to_owned(),
                })
            };
        };
        let refusal = |why: String| LifecycleError::Forbidden { why };
        if holder.corp_id != corp_id {
            return Err(refusal(format!(
                "a certificate of corporation {} cannot manage corporation {corp_id}",
                holder.corp_id
            )));
        }
        let Some(user_id) = &holder.user_id else {
            return Ok(());
        };
        let user = self.store().user(corp_id, user_id).await?;
        match user {
            Some(user) if user.status == UserStatus::Suspended => {
                Err(LifecycleError::Suspended { user: holder.key() })
            }
            Some(user) if user.role.manages_users() => Ok(()),
            _ => Err(refusal(
                "only the corporation's administrator, master user or admin users manage users"
                    .to_owned(),
            )),
        }
    }

    /// A user the caller may act on: of the caller's corporation, and not the master user,
    /// whose certificate only the bank handles (operator CLI).
    async fn managed_user(
        &self,
        ctx: &Context,
        corp_id: &str,
        user_id: &str,
    ) -> Result<User, LifecycleError> {
        self.require_manager(ctx, corp_id).await?;
        let user =
            self.store()
                .user(corp_id, user_id)
                .await?
                .ok_or_else(|| LifecycleError::NotFound {
                    what: format!("user {corp_id}/{user_id}"),
                })?;
        if user.role == Role::Master && ctx.actor != Actor::Operator {
            return Err(LifecycleError::Forbidden {
                why: "the master user's certificate is handled by the bank; ask at your branch"
                    .to_owned(),
            });
        }
        Ok(user)
    }

    /// Re-issue: a new permit for the user, whose current certificates are revoked.
    pub async fn reissue(
        &self,
        ctx: &Context,
        corp_id: &str,
        user_id: &str,
    ) -> Result<PermitView, LifecycleError> {
        let holder = Holder::user(corp_id, user_id);
        let result = async {
            self.managed_user(ctx, corp_id, user_id).await?;
            if let Actor::Certificate { holder: caller, .. } = &ctx.actor {
                if *caller == holder {
                    return Err(LifecycleError::Forbidden {
                        why: "a manager cannot re-issue their own certificate; another manager of the corporation (or the bank) must do it".to_owned(),
                    });
                }
            }
            self.new_permit(&holder, true, ctx).await
        }
        .await;
        if let Err(err) = &result {
            self.audit_refusal(ctx, "reissue", Some(&holder), err).await;
        }
        result
    }

    /// Revokes every unexpired certificate of a user. A manager confirms it with their
    /// confirmation password (seed 004); the bank's operator does not.
    pub async fn revoke_user(
        &self,
        ctx: &Context,
        corp_id: &str,
        user_id: &str,
        reason: RevocationReason,
        confirmation: Option<&SecretString>,
    ) -> Result<Vec<RevokedCert>, LifecycleError> {
        let holder = Holder::user(corp_id, user_id);
        let result = async {
            check_revocation_reason(reason)?;
            self.managed_user(ctx, corp_id, user_id).await?;
            self.confirm(ctx, confirmation).await?;
            let audit = self.audit(
                ctx,
                "revoke",
                Some(corp_id),
                &holder.key(),
                &format!("ok: {}", reason.as_str()),
            );
            let revoked = self.store().revoke_holder(&holder, reason, &audit).await?;
            if revoked.is_empty() {
                return Err(LifecycleError::NotFound {
                    what: format!("an unexpired certificate of user {}", holder.key()),
                });
            }
            self.announce_standing().await;
            self.revocations_changed();
            Ok(revoked)
        }
        .await;
        if let Err(err) = &result {
            self.audit_refusal(ctx, "revoke", Some(&holder), err).await;
        }
        result
    }

    /// A manager changes a user's name, role (admin or general) and e-mail. The master user is
    /// the bank's to change.
    pub async fn update_user(
        &self,
        ctx: &Context,
        corp_id: &str,
        user_id: &str,
        update: UserUpdate,
    ) -> Result<User, LifecycleError> {
        let holder = Holder::user(corp_id, user_id);
        let result = async {
            self.managed_user(ctx, corp_id, user_id).await?;
            let name = user_name(update.name.as_deref())?;
            let update = UserUpdate {
                name: name.map(str::to_owned),
                role: update.role,
                email: update.email.filter(|email| !email.trim().is_empty()),
            };
            let audit = self.audit(
                ctx,
                "user.update",
                Some(corp_id),
                &holder.key(),
                &format!("ok: role {}", update.role.as_str()),
            );
            let user = self
                .store()
                .update_user(corp_id, user_id, &update, &audit)
                .await?;
            self.announce_standing().await;
            Ok(user)
        }
        .await;
        if let Err(err) = &result {
            self.audit_refusal(ctx, "user.update", Some(&holder), err)
                .await;
        }
        result
    }

    /// Whether a manager has set their confirmation password yet.
    pub async fn has_confirmation(&self, ctx: &Context) -> Result<bool, LifecycleError> {
        let holder = manager_holder(ctx)?;
        Ok(self.store().confirmation(&holder).await?.is_some())
    }

    /// A manager sets their confirmation password, once (the bank resets it): 8 to 128
    /// characters, stored as an argon2 hash.
    pub async fn set_confirmation(
        &self,
        ctx: &Context,
        password: &SecretString,
    ) -> Result<(), LifecycleError> {
        let holder = manager_holder(ctx)?;
        self.require_manager(ctx, &holder.corp_id).await?;
        let chars = password.expose_secret().chars().count();
        if !(8..=128).contains(&chars) {
            return Err(LifecycleError::Invalid {
                field: "confirmation",
                reason: "a confirmation password has 8 to 128 characters".to_owned(),
            });
        }
        let typed = password.clone();
        let hash = tokio::task::spawn_blocking(move || pin::hash(typed.expose_secret()))
            .await
            .map_err(|err| LifecycleError::Internal(format!("hashing failed: {err}")))??;
        let audit = self.audit(
            ctx,
            "confirmation.set",
            Some(&holder.corp_id),
            &holder.key(),
            "ok",
        );
        self.store()
            .set_confirmation(&holder, &hash, &audit)
            .await
            .map_err(|err| match LifecycleError::from(err) {
                LifecycleError::Conflict { .. } => LifecycleError::Conflict {
                    what: "your confirmation password is already set; the bank resets it"
                        .to_owned(),
                },
                other => other,
            })
    }

    /// The bank resets a manager's confirmation password, so that they set a new one.
    pub async fn reset_confirmation(
        &self,
        ctx: &Context,
        holder: &Holder,
    ) -> Result<(), LifecycleError> {
        require_operator(ctx)?;
        let audit = self.audit(
            ctx,
            "confirmation.reset",
            Some(&holder.corp_id),
            &holder.key(),
            "ok",
        );
        if self.store().reset_confirmation(holder, &audit).await? {
            Ok(())
        } else {
            Err(LifecycleError::NotFound {
                what: format!("a confirmation password of {}", holder.key()),
            })
        }
    }

    /// A manager's action confirmed by their confirmation password; the operator needs none.
    /// One argon2 verification per try, in a PIN slot; wrong tries count and lock.
    async fn confirm(
        &self,
        ctx: &Context,
        confirmation: Option<&SecretString>,
    ) -> Result<(), LifecycleError> {
        if ctx.actor == Actor::Operator {
            return Ok(());
        }
        let holder = manager_holder(ctx)?;
        let Some(stored) = self.store().confirmation(&holder).await? else {
            return Err(LifecycleError::ConfirmationRequired {
                why: "set your confirmation password first (on the admin page)".to_owned(),
            });
        };
        if stored.locked {
            return Err(LifecycleError::ConfirmationLocked);
        }
        let Some(typed) = confirmation.filter(|typed| !typed.expose_secret().is_empty()) else {
            return Err(LifecycleError::ConfirmationRequired {
                why: "confirmation: this action needs your confirmation password".to_owned(),
            });
        };
        let _slot = self.pin_slot().await?;
        let typed = typed.clone();
        let hash = stored.hash.clone();
        let right = tokio::task::spawn_blocking(move || pin::verify(typed.expose_secret(), &hash))
            .await
            .map_err(|err| {
                LifecycleError::Internal(format!("confirmation check failed: {err}"))
            })??;
        if right {
            self.store().confirmation_succeeded(&holder).await?;
            return Ok(());
        }
        let max = self.rules().max_pin_failures;
        let audit = self.audit(
            ctx,
            "confirmation",
            Some(&holder.corp_id),
            &holder.key(),
            "refused: wrong confirmation password",
        );
        if self
            .store()
            .confirmation_failed(&holder, max, &audit)
            .await?
        {
            Err(LifecycleError::ConfirmationLocked)
        } else {
            Err(LifecycleError::ConfirmationWrong {
                left: max.saturating_sub(stored.failures + 1),
            })
        }
    }

    /// Suspends or resumes a user.
    pub async fn set_user_status(
        &self,
        ctx: &Context,
        corp_id: &str,
        user_id: &str,
        status: UserStatus,
    ) -> Result<(), LifecycleError> {
        let holder = Holder::user(corp_id, user_id);
        let action = if status == UserStatus::Suspended {
            "suspend"
        } else {
            "resume"
        };
        let result = async {
            self.managed_user(ctx, corp_id, user_id).await?;
            let audit = self.audit(ctx, action, Some(corp_id), &holder.key(), "ok");
            self.store()
                .set_user_status(corp_id, user_id, status, &audit)
                .await?;
            self.announce_standing().await;
            Ok(())
        }
        .await;
        if let Err(err) = &result {
            self.audit_refusal(ctx, action, Some(&holder), err).await;
        }
        result
    }

    /// Suspends (`true`) or resumes a user; returns the new status, `suspended` or `active`.
    pub async fn suspend(
        &self,
        ctx: &Context,
        corp_id: &str,
        user_id: &str,
        suspend: bool,
    ) -> Result<&'static str, LifecycleError> {
        let status = if suspend {
            UserStatus::Suspended
        } else {
            UserStatus::Active
        };
        self.set_user_status(ctx, corp_id, user_id, status).await?;
        Ok(status.as_str())
    }

    /// The audit trail, newest first: the operator's of any corporation or of all, a
    /// manager's of their own corporation.
    pub async fn audit_trail(
        &self,
        ctx: &Context,
        corp_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, LifecycleError> {
        match corp_id {
            Some(corp_id) => self.require_manager(ctx, corp_id).await?,
            None => require_operator(ctx)?,
        }
        Ok(self.store().list_audit(corp_id, limit).await?)
    }

    /// A certificate holder's own history, newest first: what they did, and what was done to
    /// them or to their certificates. Anyone with a certificate may read their own.
    pub async fn own_history(
        &self,
        ctx: &Context,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, LifecycleError> {
        let Actor::Certificate { holder, .. } = &ctx.actor else {
            return Err(LifecycleError::Forbidden {
                why: "one's own history is read with one's certificate".to_owned(),
            });
        };
        let key = holder.key();
        let serials: std::collections::HashSet<String> = self
            .store()
            .holder_certificates(holder)
            .await?
            .iter()
            .map(|certificate| certificate.serial.to_hex())
            .collect();
        let as_actor = [format!("cert:{key}"), format!("enrollee:{key}")];
        // A corporation's recent trail holds its users' entries; the holder's are filtered out
        // of it rather than indexed, since the trail of one corporation is short.
        let entries = self
            .store()
            .list_audit(Some(&holder.corp_id), OWN_HISTORY_WINDOW)
            .await?;
        Ok(entries
            .into_iter()
            .filter(|entry| {
                as_actor.contains(&entry.actor)
                    || entry.target == key
                    || serials.contains(&entry.target)
            })
            .take(limit)
            .collect())
    }

    // --- operator: certificates and the CA ------------------------------------------------------

    /// Certificates of a corporation.
    pub async fn certificates(
        &self,
        ctx: &Context,
        corp_id: &str,
    ) -> Result<Vec<CertificateRecord>, LifecycleError> {
        require_operator(ctx)?;
        Ok(self.store().corporation_certificates(corp_id).await?)
    }

    /// One certificate by serial.
    pub async fn certificate(&self, serial: &Serial) -> Result<CertificateRecord, LifecycleError> {
        self.store()
            .certificate(serial)
            .await?
            .ok_or_else(|| LifecycleError::NotFound {
                what: format!("certificate {serial}"),
            })
    }

    /// Revokes one certificate (and every certificate renewed from it).
    pub async fn revoke_serial(
        &self,
        serial: &Serial,
        reason: RevocationReason,
        ctx: &Context,
    ) -> Result<Vec<RevokedCert>, LifecycleError> {
        require_operator(ctx)?;
        check_revocation_reason(reason)?;
        let certificate = self.certificate(serial).await?;
        let audit = self.audit(
            ctx,
            "cert.revoke",
            Some(&certificate.holder.corp_id),
            &serial.to_hex(),
            &format!("ok: {}", reason.as_str()),
        );
        let revoked = self
            .store()
            .revoke_certificate(serial, reason, &audit)
            .await?;
        self.announce_standing().await;
        self.revocations_changed();
        Ok(revoked)
    }

    /// `certgate standing reload`: asks every certgate process on this registry to load the
    /// whole standing again (after the registry was restored from a backup or edited by hand,
    /// which the change feed does not see).
    pub async fn request_standing_reload(&self, ctx: &Context) -> Result<(), LifecycleError> {
        require_operator(ctx)?;
        self.store().request_reload(self.now()).await?;
        let audit = self.audit(ctx, "standing.reload", None, "registry", "ok");
        self.store().append_audit(&audit).await?;
        self.announce_standing().await;
        Ok(())
    }

    /// Makes the next CA generation, which signs from now on.
    pub fn rotate_ca(&self, ctx: &Context) -> Result<CaView, LifecycleError> {
        require_operator(ctx)?;
        let mut guard = self
            .inner
            .pki
            .write()
            .map_err(|_| LifecycleError::Internal("the CA lock is poisoned".into()))?;
        let pki = guard.as_mut().ok_or(LifecycleError::NoCa)?;
        pki.rotate(self.now())?;
        ca_views(pki).pop().ok_or(LifecycleError::NoCa)
    }

    /// Every CA generation.
    pub fn ca_list(&self) -> Result<Vec<CaView>, LifecycleError> {
        self.with_pki(|pki| Ok(ca_views(pki)))
    }
}

fn ca_views(pki: &Pki) -> Vec<CaView> {
    let current = pki.current().name.clone();
    pki.generations()
        .iter()
        .map(|generation| CaView {
            name: generation.name.clone(),
            unit: generation.unit.clone(),
            not_before: rfc3339(generation.not_before),
            not_after: rfc3339(generation.not_after),
            current: generation.name == current,
        })
        .collect()
}

/// Only the bank's operator (the CLI on the server's machine).
fn require_operator(ctx: &Context) -> Result<(), LifecycleError> {
    if ctx.actor == Actor::Operator {
        Ok(())
    } else {
        Err(LifecycleError::Forbidden {
            why: "only the bank's operator may do this".to_owned(),
        })
    }
}

pub(super) fn not_a_lifecycle_ca() -> LifecycleError {
    LifecycleError::Forbidden {
        why: "this certificate's CA is trusted for logging in to the application only; certgate's own operations need a certificate issued by certgate (or by a [[trust.ca]] entry with lifecycle = true)".to_owned(),
    }
}

/// The certificate holder acting as a manager (their confirmation password is theirs).
fn manager_holder(ctx: &Context) -> Result<Holder, LifecycleError> {
    match &ctx.actor {
        Actor::Certificate { holder, .. } => Ok(holder.clone()),
        _ => Err(LifecycleError::Forbidden {
            why: "a confirmation password belongs to a manager's certificate".to_owned(),
        }),
    }
}

/// A user's name (利用者名) as typed: trimmed, empty meaning none, printable text of at most 64
/// characters.
fn user_name(name: Option<&str>) -> Result<Option<&str>, LifecycleError> {
    let name = name.map(str::trim).filter(|name| !name.is_empty());
    if name.is_some_and(|name| name.chars().count() > 64 || name.chars().any(char::is_control)) {
        return Err(LifecycleError::Invalid {
            field: "name",
            reason: "must be printable text of at most 64 characters".to_owned(),
        });
    }
    Ok(name)
}
