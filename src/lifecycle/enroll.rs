//! Enrollment with a permit (first certificate, re-issue) and renewal over the current certificate.

use rustls_pki_types::{CertificateDer, PrivatePkcs8KeyDer};
use secrecy::{ExposeSecret as _, SecretString};
use time::OffsetDateTime;

use super::{Context, Lifecycle, LifecycleError, pin};
use crate::model::{Der, Holder, Role, Serial, hex, rfc3339, sha256};
use crate::pki::{
    IssuedCertificate, LeafSubject, PKCS12_MIN_PASSWORD_CHARS, PublicKey, verify_csr,
};
use crate::store::{
    CertStatus, CertificateRecord, CorporationStatus, Issuance, IssueStatus, KeptP12,
    NewCertificate, Permit, PermitState, RetryInfo, UserStatus,
};

/// Where the new certificate's key comes from.
pub enum KeySource {
    /// A PKCS#10 request (DER, PEM or base64): the key stays on the client's machine.
    Csr(Vec<u8>),
    /// certgate makes the key and returns it in a PKCS#12 protected by this password.
    ServerKey {
        /// The PKCS#12 password (at least 8 characters).
        p12_password: SecretString,
    },
    /// certgate makes the key and returns it as PKCS#8 (EST `serverkeygen`).
    ServerKeyPkcs8,
}

impl std::fmt::Debug for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Csr(bytes) => write!(f, "Csr(<{} bytes>)", bytes.len()),
            Self::ServerKey { .. } => f.write_str("ServerKey { p12_password: <hidden> }"),
            Self::ServerKeyPkcs8 => f.write_str("ServerKeyPkcs8"),
        }
    }
}

/// A certificate issued (or, for a retried enrollment, issued before and returned again).
pub struct Enrolled {
    /// The leaf.
    pub certificate: CertificateDer<'static>,
    /// Its chain: the issuing generation, then the root.
    pub chain: Vec<CertificateDer<'static>>,
    /// Serial.
    pub serial: Serial,
    /// notAfter.
    pub not_after: OffsetDateTime,
    /// The server-made key (PKCS#8), for `ServerKeyPkcs8`.
    pub private_key: Option<PrivatePkcs8KeyDer<'static>>,
    /// `certificate.p12`, for `ServerKey`.
    pub p12: Option<Vec<u8>>,
    /// Whether this is the certificate of an earlier, interrupted attempt.
    pub repeated: bool,
}

impl std::fmt::Debug for Enrolled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Enrolled")
            .field("serial", &self.serial)
            .field("not_after", &self.not_after)
            .field("repeated", &self.repeated)
            .field(
                "private_key",
                &self.private_key.as_ref().map(|_| "<hidden>"),
            )
            .field(
                "p12",
                &self
                    .p12
                    .as_ref()
                    .map(|p12| format!("<{} bytes>", p12.len())),
            )
            .finish_non_exhaustive()
    }
}

/// What `GET /certgate/api/me` shows.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MeView {
    /// The corporation.
    pub corp_id: String,
    /// The user (absent for the administrator).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// `admin`, `master` or `general`.
    pub role: Role,
    /// The presented certificate's serial.
    pub serial: Serial,
    /// Its notAfter (RFC 3339).
    pub not_after: String,
    /// Whole days left.
    pub days_left: i64,
    /// `issued`, `renewable`, `expired`, `revoked`, or `external` for a certificate certgate did
    /// not issue.
    pub status: String,
    /// When renewal opens (RFC 3339); absent for external certificates.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub renewal_opens: Option<String>,
    /// Whether renewal is possible now.
    pub can_renew: bool,
}

/// What the registry says about one enrollment attempt, read before the PIN is checked.
struct Standing {
    corporation_active: bool,
    user_suspended: bool,
    permit: Permit,
}

impl Lifecycle {
    /// Enrolls `holder` with the temporary PIN of their permit.
    ///
    /// Until the PIN is verified, every refusal (unknown corporation or user, no permit, wrong
    /// PIN) is the same [`LifecycleError::BadCredentials`] after exactly one PIN verification,
    /// so that neither the answer nor its timing tells who exists. That a permit is locked by
    /// wrong PINs is also said only to the PIN's holder ([`LifecycleError::PermitLocked`] after a
    /// correct PIN): to anyone else, a locked permit answers like a missing one, so that locking
    /// a permit tells nobody that its holder exists. The other refusals (suspended,
    /// administrator first, expired, used) come only after a correct PIN.
    pub async fn enroll(
        &self,
        holder: Holder,
        pin: &SecretString,
        key: KeySource,
        ctx: &Context,
    ) -> Result<Enrolled, LifecycleError> {
        let result = self.enroll_checked(&holder, pin, key, ctx).await;
        match &result {
            // Not audited: a flood of them would flood the registry it protects.
            Err(LifecycleError::Busy { .. }) => {
                tracing::warn!(holder = %holder.key(), "enrollment attempt refused: too many at once");
            }
            Err(err) => self.audit_refusal(ctx, "enroll", Some(&holder), err).await,
            Ok(_) => {}
        }
        result
    }

    async fn enroll_checked(
        &self,
        holder: &Holder,
        pin: &SecretString,
        key: KeySource,
        ctx: &Context,
    ) -> Result<Enrolled, LifecycleError> {
        self.check_ids(holder)?;
        // Input first: a bad CSR or password must not cost a PIN attempt or touch the permit.
        let public_key = parse_key_source(&key)?;
        if pin.expose_secret().is_empty() {
            return Err(LifecycleError::CredentialsRequired);
        }
        let _slot = self.pin_slot().await?;
        let standing = self.enrollment_standing(holder).await?;
        let phc = standing.as_ref().map(|s| s.permit.pin_hash.clone());
        let matches = self.verify_pin(pin, phc).await?;
        let Some(standing) = standing else {
            return Err(LifecycleError::BadCredentials);
        };
        let permit = &standing.permit;
        if permit.state == PermitState::Locked {
            return Err(if matches {
                LifecycleError::PermitLocked
            } else {
                LifecycleError::BadCredentials
            });
        }
        if !matches {
            if permit.state == PermitState::Active {
                let audit = self.audit(
                    ctx,
                    "enroll",
                    Some(&holder.corp_id),
                    &holder.key(),
                    "refused: wrong PIN",
                );
                let failure = self
                    .store()
                    .record_permit_failure(permit.permit_id, self.rules().max_pin_failures, &audit)
                    .await?;
                if failure.locked {
                    tracing::warn!(holder = %holder.key(), "a permit is locked by wrong PINs");
                }
            }
            return Err(LifecycleError::BadCredentials);
        }
        // The PIN is right: from here on, the answers may say what is wrong.
        if permit.state == PermitState::Superseded {
            return Err(LifecycleError::PermitSuperseded);
        }
        if !standing.corporation_active {
            return Err(LifecycleError::Forbidden {
                why: format!("the service is stopped for corporation {}", holder.corp_id),
            });
        }
        if standing.user_suspended {
            return Err(LifecycleError::Suspended { user: holder.key() });
        }
        let at = self.now();
        if holder.user_id.is_some() {
            let administrator = Holder::admin(holder.corp_id.clone());
            if self
                .store()
                .active_certificates(&administrator, at)
                .await?
                .is_empty()
            {
                return Err(LifecycleError::AdministratorFirst {
                    corp_id: holder.corp_id.clone(),
                });
            }
        }
        if permit.state == PermitState::Used {
            return self
                .retry(holder, permit.permit_id, key, public_key.as_ref(), ctx)
                .await;
        }
        if at >= permit.expires_at {
            return Err(LifecycleError::PermitExpired {
                expired_at: rfc3339(permit.expires_at),
            });
        }
        self.issue_and_record(
            holder,
            key,
            public_key.as_ref(),
            Some(permit.permit_id),
            None,
            true,
            "enroll",
            ctx,
        )
        .await
    }

    /// The corporation, user and newest permit of an enrollment, or `None` when any is
    /// missing (an answer that must not say which).
    async fn enrollment_standing(
        &self,
        holder: &Holder,
    ) -> Result<Option<Standing>, LifecycleError> {
        let store = self.store();
        let Some(corporation) = store.corporation(&holder.corp_id).await? else {
            return Ok(None);
        };
        let user_suspended = match &holder.user_id {
            Some(user_id) => match store.user(&holder.corp_id, user_id).await? {
                Some(user) => user.status == UserStatus::Suspended,
                None => return Ok(None),
            },
            None => false,
        };
        let Some(permit) = store.latest_permit(holder).await? else {
            return Ok(None);
        };
        Ok(Some(Standing {
            corporation_active: corporation.status == CorporationStatus::Active,
            user_suspended,
            permit,
        }))
    }

    /// One argon2 verification, against the permit's hash or, when there is no permit, against
    /// a hash of a random PIN that nobody knows: the same work either way.
    async fn verify_pin(
        &self,
        pin: &SecretString,
        phc: Option<String>,
    ) -> Result<bool, LifecycleError> {
        let typed = pin.clone();
        self.inner.wiring.pin_checks.inc();
        tokio::task::spawn_blocking(move || {
            let phc = match phc {
                Some(phc) => phc,
                None => pin::unknown_holder_hash()?.to_owned(),
            };
            pin::verify(typed.expose_secret(), &phc)
        })
        .await
        .map_err(|err| LifecycleError::Internal(format!("PIN check failed: {err}")))?
    }

    /// The permit was used: within the retry window, an interrupted enrollment gets back exactly
    /// what the first attempt gave, and nothing else: the same certificate for the same key
    /// (CSR), the very same `certificate.p12` when the same password opens it. Anything else is
    /// refused, audited, and changes nothing.
    async fn retry(
        &self,
        holder: &Holder,
        permit_id: i64,
        key: KeySource,
        public_key: Option<&PublicKey>,
        ctx: &Context,
    ) -> Result<Enrolled, LifecycleError> {
        let retry: RetryInfo = self
            .store()
            .find_retry(permit_id, self.now())
            .await?
            .ok_or(LifecycleError::PermitUsed)?;
        let window = time::Duration::try_from(self.rules().retry_window)
            .unwrap_or(time::Duration::minutes(10));
        if self.now() > retry.used_at + window || retry.certificate.status != CertStatus::Active {
            return Err(LifecycleError::PermitUsed);
        }
        let p12 = match (&key, public_key) {
            (KeySource::Csr(_), Some(public_key)) => {
                if hex(public_key.sha256()) != retry.certificate.spki_sha256 {
                    return Err(LifecycleError::RetryKeyMismatch);
                }
                None
            }
            (KeySource::ServerKey { p12_password }, _) => {
                let Some(Der(p12)) = retry.p12 else {
                    return Err(LifecycleError::RetryKeyMismatch);
                };
                let password = p12_password.clone();
                let file = p12.clone();
                let opens = tokio::task::spawn_blocking(move || {
                    crate::pki::pkcs12_opens(&file, password.expose_secret())
                })
                .await
                .map_err(|err| LifecycleError::Internal(format!("PKCS#12 check failed: {err}")))?;
                if !opens {
                    return Err(LifecycleError::RetryPasswordMismatch);
                }
                Some(p12)
            }
            // A bare server-made key is never kept, so it cannot be given again.
            _ => return Err(LifecycleError::PermitUsed),
        };
        let chain = self.with_pki(|pki| Ok(pki.chain(&retry.certificate.issuer_generation)?))?;
        let audit = self.audit(
            ctx,
            "enroll",
            Some(&holder.corp_id),
            &retry.certificate.serial.to_hex(),
            "ok: repeated",
        );
        self.store().append_audit(&audit).await?;
        Ok(Enrolled {
            certificate: CertificateDer::from(retry.certificate.der.0.clone()),
            chain,
            serial: retry.certificate.serial,
            not_after: retry.certificate.not_after,
            private_key: None,
            p12,
            repeated: true,
        })
    }

    /// Renews the certificate the caller presented over mTLS (identified by its serial).
    pub async fn renew(
        &self,
        holder: Holder,
        serial: &Serial,
        key: KeySource,
        ctx: &Context,
    ) -> Result<Enrolled, LifecycleError> {
        let result = self.renew_checked(&holder, serial, key, ctx).await;
        if let Err(err) = &result {
            self.audit_refusal(ctx, "renew", Some(&holder), err).await;
        }
        result
    }

    async fn renew_checked(
        &self,
        holder: &Holder,
        serial: &Serial,
        key: KeySource,
        ctx: &Context,
    ) -> Result<Enrolled, LifecycleError> {
        if let super::Actor::Certificate {
            lifecycle_ca: false,
            ..
        } = &ctx.actor
        {
            return Err(super::manage::not_a_lifecycle_ca());
        }
        let public_key = parse_key_source(&key)?;
        let current = self.store().certificate(serial).await?.ok_or_else(|| {
            LifecycleError::NotRenewable {
                why: "it was not issued by certgate; obtain a certificate by enrollment".to_owned(),
            }
        })?;
        if current.holder != *holder {
            return Err(LifecycleError::NotRenewable {
                why: "it does not belong to the caller".to_owned(),
            });
        }
        if current.status == CertStatus::Revoked {
            return Err(LifecycleError::NotRenewable {
                why: "it is revoked".to_owned(),
            });
        }
        if let Some(user_id) = &holder.user_id {
            let user = self.store().user(&holder.corp_id, user_id).await?;
            if user.is_none_or(|user| user.status == UserStatus::Suspended) {
                return Err(LifecycleError::Suspended { user: holder.key() });
            }
        }
        let at = self.now();
        let opens =
            current.not_after - time::Duration::days(i64::from(self.rules().renew_window_days));
        if at < opens {
            return Err(LifecycleError::RenewalNotOpen {
                opens_at: rfc3339(opens),
                window_days: self.rules().renew_window_days,
            });
        }
        let supersede = self.rules().revoke_old_on_renew;
        self.issue_and_record(
            holder,
            key,
            public_key.as_ref(),
            None,
            Some(current.serial),
            supersede,
            "renew",
            ctx,
        )
        .await
    }

    /// Signs, records (atomically, before anything is returned), and packs the answer.
    #[expect(
        clippy::too_many_arguments,
        reason = "one private step shared by enrollment and renewal; a struct would only rename the list"
    )]
    async fn issue_and_record(
        &self,
        holder: &Holder,
        key: KeySource,
        public_key: Option<&PublicKey>,
        permit_id: Option<i64>,
        renewed_from: Option<Serial>,
        supersede: bool,
        action: &str,
        ctx: &Context,
    ) -> Result<Enrolled, LifecycleError> {
        let subject = LeafSubject {
            common_name: self.common_name(holder),
        };
        let at = self.now();
        let (private_key, issued, chain) = self.with_pki(|pki| {
            let (private_key, issued): (Option<PrivatePkcs8KeyDer<'static>>, IssuedCertificate) =
                match public_key {
                    Some(public_key) => (None, pki.issue(public_key, &subject, at)?),
                    None => {
                        let (private_key, issued) = pki.issue_with_server_key(&subject, at)?;
                        (Some(private_key), issued)
                    }
                };
            let chain = pki.chain(&issued.generation)?;
            Ok((private_key, issued, chain))
        })?;
        let spki_sha256 = match public_key {
            Some(public_key) => hex(public_key.sha256()),
            None => spki_sha256_of(issued.der.as_ref())?,
        };
        // The PKCS#12 is made before the ledger entry so that it can be kept with it: a retry
        // of an interrupted enrollment, on any replica, gets these very bytes.
        let p12 = match (&key, &private_key) {
            (KeySource::ServerKey { p12_password }, Some(private_key)) => {
                let private_key = private_key.clone_key();
                let der = issued.der.clone();
                let chain = chain.clone();
                let password = p12_password.clone();
                let name = subject.common_name.clone();
                Some(
                    tokio::task::spawn_blocking(move || {
                        crate::pki::pkcs12(
                            &private_key,
                            &der,
                            &chain,
                            password.expose_secret(),
                            &name,
                        )
                    })
                    .await
                    .map_err(|err| LifecycleError::Internal(format!("PKCS#12 failed: {err}")))??,
                )
            }
            _ => None,
        };
        let retry_window = time::Duration::try_from(self.rules().retry_window)
            .unwrap_or(time::Duration::minutes(10));
        let renewal = renewed_from.is_some();
        let result = if supersede {
            "ok"
        } else {
            "ok: previous certificate kept until it expires"
        };
        let issuance = Issuance {
            permit_id,
            cert: NewCertificate {
                serial: issued.serial,
                issuer_generation: issued.generation.clone(),
                issuer: issuer_key_of(issued.der.as_ref())?,
                holder: holder.clone(),
                not_before: issued.not_before,
                not_after: issued.not_after,
                sha256: hex(&issued.sha256),
                spki_sha256,
                der: Der(issued.der.as_ref().to_vec()),
                renewed_from,
            },
            supersede_active: supersede,
            kept_p12: p12
                .clone()
                .filter(|_| permit_id.is_some())
                .map(|p12| KeptP12 {
                    file: Der(p12),
                    until: at + retry_window,
                }),
            audit: self.audit(
                ctx,
                action,
                Some(&holder.corp_id),
                &issued.serial.to_hex(),
                result,
            ),
        };
        let recorded = self.store().record_issuance(&issuance).await?;
        // A renewal or a superseded certificate changes who is refused.
        if renewal || !recorded.superseded.is_empty() {
            self.announce_standing().await;
        }
        if !recorded.superseded.is_empty() {
            self.revocations_changed();
        }
        tracing::info!(holder = %holder.key(), serial = %issued.serial, generation = %issued.generation, action, "certificate issued");
        Ok(Enrolled {
            certificate: issued.der,
            chain,
            serial: issued.serial,
            not_after: issued.not_after,
            private_key: match key {
                KeySource::ServerKeyPkcs8 => private_key,
                _ => None,
            },
            p12,
            repeated: false,
        })
    }

    /// What a certificate holder sees about their own certificate.
    pub async fn me(
        &self,
        holder: &Holder,
        serial: &Serial,
        role: Role,
        not_after_unix: i64,
    ) -> Result<MeView, LifecycleError> {
        let at = self.now();
        let window = time::Duration::days(i64::from(self.rules().renew_window_days));
        let record: Option<CertificateRecord> = self.store().certificate(serial).await?;
        let not_after = OffsetDateTime::from_unix_timestamp(not_after_unix).unwrap_or(at);
        let (status, renewal_opens, can_renew) = match &record {
            Some(record) => {
                let status = IssueStatus::of(Some(record), at, window);
                let opens = record.not_after - window;
                let can = matches!(status, IssueStatus::Renewable);
                (status.as_str().to_owned(), Some(rfc3339(opens)), can)
            }
            None => ("external".to_owned(), None, false),
        };
        Ok(MeView {
            corp_id: holder.corp_id.clone(),
            user_id: holder.user_id.clone(),
            role,
            serial: *serial,
            not_after: rfc3339(not_after),
            days_left: (not_after - at).whole_seconds().div_euclid(86_400),
            status,
            renewal_opens,
            can_renew,
        })
    }
}

fn parse_key_source(key: &KeySource) -> Result<Option<PublicKey>, LifecycleError> {
    match key {
        KeySource::Csr(bytes) => Ok(Some(verify_csr(bytes)?.public_key().clone())),
        KeySource::ServerKey { p12_password } => {
            if p12_password.expose_secret().chars().count() < PKCS12_MIN_PASSWORD_CHARS {
                return Err(LifecycleError::BadP12Password(format!(
                    "must be at least {PKCS12_MIN_PASSWORD_CHARS} characters"
                )));
            }
            Ok(None)
        }
        KeySource::ServerKeyPkcs8 => Ok(None),
    }
}

/// The issuer of a certificate certgate just made, as the revocation snapshot keys it.
fn issuer_key_of(der: &[u8]) -> Result<crate::model::IssuerKey, LifecycleError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|err| LifecycleError::Internal(format!("issued certificate: {err}")))?;
    Ok(crate::model::IssuerKey::of_name(cert.issuer().as_raw()))
}

fn spki_sha256_of(der: &[u8]) -> Result<String, LifecycleError> {
    use x509_parser::prelude::{FromDer as _, X509Certificate};
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|err| LifecycleError::Internal(format!("issued certificate: {err}")))?;
    Ok(hex(&sha256(cert.public_key().raw)))
}
