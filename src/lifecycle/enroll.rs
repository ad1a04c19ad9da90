//! Enrollment with a permit (first certificate, re-issue) and renewal over the current certificate.

use rustls_pki_types::{CertificateDer, PrivatePkcs8KeyDer};
use time::OffsetDateTime;

use super::error::rfc3339;
use super::{Context, Lifecycle, LifecycleError, holder_key, now, pin};
use crate::pki::{
    IssuedCertificate, LeafSubject, PKCS12_MIN_PASSWORD_CHARS, PublicKey, verify_csr,
};
use crate::store::{
    CertStatus, CertificateRecord, Holder, Issuance, IssueStatus, NewCertificate, PermitState,
    UserStatus,
};

/// Where the new certificate's key comes from.
#[derive(Clone)]
pub enum KeySource {
    /// A PKCS#10 request (DER, PEM or base64): the key stays on the client's machine.
    Csr(Vec<u8>),
    /// certgate makes the key and returns it in a PKCS#12 protected by this password.
    ServerKey {
        /// The PKCS#12 password (at least 8 characters).
        p12_password: String,
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
    /// Serial, lowercase hex.
    pub serial: String,
    /// notAfter.
    pub not_after: OffsetDateTime,
    /// The server-made key (PKCS#8), for `ServerKey*`.
    pub private_key: Option<PrivatePkcs8KeyDer<'static>>,
    /// `certificate.p12`, for `ServerKey`.
    pub p12: Option<Vec<u8>>,
    /// Whether this is the certificate of an earlier, interrupted attempt.
    pub repeated: bool,
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
    pub role: String,
    /// The presented certificate's serial.
    pub serial: String,
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

impl Lifecycle {
    /// Enrolls `holder` with the temporary PIN of their permit.
    pub async fn enroll(
        &self,
        holder: Holder,
        pin: &str,
        key: KeySource,
        ctx: &Context,
    ) -> Result<Enrolled, LifecycleError> {
        let result = self.enroll_checked(&holder, pin, key, ctx).await;
        if let Err(err) = &result {
            self.audit_refusal(ctx, "enroll", Some(&holder), err).await;
        }
        result
    }

    async fn enroll_checked(
        &self,
        holder: &Holder,
        pin: &str,
        key: KeySource,
        ctx: &Context,
    ) -> Result<Enrolled, LifecycleError> {
        self.check_ids(holder)?;
        // Input first: a bad CSR or password must not cost a PIN attempt or touch the permit.
        let public_key = parse_key_source(&key)?;
        if pin.is_empty() {
            return Err(LifecycleError::CredentialsRequired);
        }
        let store = self.store();
        let corporation = store
            .corporation(&holder.corp_id)
            .await?
            .ok_or(LifecycleError::BadCredentials)?;
        if corporation.status.as_str() != "active" {
            return Err(LifecycleError::Forbidden {
                why: format!(
                    "corporation {} is {}",
                    corporation.corp_id, corporation.status
                ),
            });
        }
        let at = now();
        if let Some(user_id) = &holder.user_id {
            let user = store
                .user(&holder.corp_id, user_id)
                .await?
                .ok_or(LifecycleError::BadCredentials)?;
            if user.status == UserStatus::Suspended {
                return Err(LifecycleError::Suspended {
                    user: holder_key(holder),
                });
            }
            let administrator = Holder {
                corp_id: holder.corp_id.clone(),
                user_id: None,
            };
            if store
                .active_certificates(&administrator, at)
                .await?
                .is_empty()
            {
                return Err(LifecycleError::AdministratorFirst {
                    corp_id: holder.corp_id.clone(),
                });
            }
        }
        let permit = store
            .latest_permit(holder)
            .await?
            .ok_or(LifecycleError::BadCredentials)?;
        if permit.state == PermitState::Locked {
            return Err(LifecycleError::PermitLocked);
        }
        if permit.state == PermitState::Superseded {
            return Err(LifecycleError::BadCredentials);
        }
        let phc = permit.pin_hash.clone();
        let typed = pin.to_owned();
        let matches = tokio::task::spawn_blocking(move || pin::verify(&typed, &phc))
            .await
            .map_err(|err| LifecycleError::Internal(format!("PIN check failed: {err}")))??;
        if !matches {
            if permit.state == PermitState::Active {
                let audit = ctx.audit(
                    "enroll",
                    Some(&holder.corp_id),
                    &holder_key(holder),
                    "refused: wrong PIN",
                );
                let failure = store
                    .record_permit_failure(permit.permit_id, self.rules().max_pin_failures, &audit)
                    .await?;
                if failure.locked {
                    return Err(LifecycleError::PermitLocked);
                }
            }
            return Err(LifecycleError::BadCredentials);
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

    /// The permit was used: within the retry window and with the same key, the same certificate
    /// comes back (the client lost the first answer). A server-made key cannot be returned again
    /// (certgate never keeps private keys), so that retry gets a fresh key and certificate which
    /// supersedes the lost one.
    async fn retry(
        &self,
        holder: &Holder,
        permit_id: i64,
        key: KeySource,
        public_key: Option<&PublicKey>,
        ctx: &Context,
    ) -> Result<Enrolled, LifecycleError> {
        let retry = self
            .store()
            .find_retry(permit_id)
            .await?
            .ok_or(LifecycleError::PermitUsed)?;
        let window = time::Duration::try_from(self.rules().retry_window)
            .unwrap_or(time::Duration::minutes(10));
        if now() > retry.used_at + window || retry.certificate.status != CertStatus::Active {
            return Err(LifecycleError::PermitUsed);
        }
        match public_key {
            Some(public_key) => {
                if crate::pki::hex(public_key.sha256()) != retry.certificate.spki_sha256 {
                    return Err(LifecycleError::RetryKeyMismatch);
                }
                let chain =
                    self.with_pki(|pki| Ok(pki.chain(&retry.certificate.issuer_generation)?))?;
                let audit = ctx.audit(
                    "enroll",
                    Some(&holder.corp_id),
                    &retry.certificate.serial,
                    "ok: repeated",
                );
                self.store().append_audit(&audit).await?;
                Ok(Enrolled {
                    certificate: CertificateDer::from(retry.certificate.der.clone()),
                    chain,
                    serial: retry.certificate.serial.clone(),
                    not_after: retry.certificate.not_after,
                    private_key: None,
                    p12: None,
                    repeated: true,
                })
            }
            None => {
                self.issue_and_record(holder, key, None, None, None, true, "enroll.retry", ctx)
                    .await
            }
        }
    }

    /// Renews the certificate the caller presented over mTLS (identified by its serial).
    pub async fn renew(
        &self,
        holder: Holder,
        serial: &str,
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
        serial: &str,
        key: KeySource,
        ctx: &Context,
    ) -> Result<Enrolled, LifecycleError> {
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
                return Err(LifecycleError::Suspended {
                    user: holder_key(holder),
                });
            }
        }
        let at = now();
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
    #[allow(clippy::too_many_arguments)]
    async fn issue_and_record(
        &self,
        holder: &Holder,
        key: KeySource,
        public_key: Option<&PublicKey>,
        permit_id: Option<i64>,
        renewed_from: Option<String>,
        supersede: bool,
        action: &str,
        ctx: &Context,
    ) -> Result<Enrolled, LifecycleError> {
        let subject = LeafSubject {
            common_name: self.common_name(holder),
        };
        let at = now();
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
            Some(public_key) => crate::pki::hex(public_key.sha256()),
            None => spki_sha256_of(issued.der.as_ref())?,
        };
        let result = if supersede {
            "ok"
        } else {
            "ok: previous certificate kept until it expires"
        };
        let issuance = Issuance {
            permit_id,
            cert: NewCertificate {
                serial: issued.serial_hex.clone(),
                issuer_generation: issued.generation.clone(),
                holder: holder.clone(),
                not_before: issued.not_before,
                not_after: issued.not_after,
                sha256: crate::pki::hex(&issued.sha256),
                spki_sha256,
                der: issued.der.as_ref().to_vec(),
                renewed_from,
            },
            supersede_active: supersede,
            audit: ctx.audit(action, Some(&holder.corp_id), &issued.serial_hex, result),
        };
        let recorded = self.store().record_issuance(&issuance).await?;
        if !recorded.superseded.is_empty() {
            self.write_crls().await;
        }
        let p12 = match (&key, &private_key) {
            (KeySource::ServerKey { p12_password }, Some(private_key)) => Some(crate::pki::pkcs12(
                private_key,
                &issued.der,
                &chain,
                p12_password,
                &subject.common_name,
            )?),
            _ => None,
        };
        tracing::info!(holder = %holder_key(holder), serial = %issued.serial_hex, generation = %issued.generation, action, "certificate issued");
        Ok(Enrolled {
            certificate: issued.der,
            chain,
            serial: issued.serial_hex,
            not_after: issued.not_after,
            private_key,
            p12,
            repeated: false,
        })
    }

    /// What a certificate holder sees about their own certificate.
    pub async fn me(
        &self,
        holder: &Holder,
        serial: &str,
        role: &str,
        not_after_unix: i64,
    ) -> Result<MeView, LifecycleError> {
        let at = now();
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
            role: role.to_owned(),
            serial: serial.to_owned(),
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
            if p12_password.chars().count() < PKCS12_MIN_PASSWORD_CHARS {
                return Err(LifecycleError::BadP12Password(format!(
                    "must be at least {PKCS12_MIN_PASSWORD_CHARS} characters"
                )));
            }
            Ok(None)
        }
        KeySource::ServerKeyPkcs8 => Ok(None),
    }
}

fn spki_sha256_of(der: &[u8]) -> Result<String, LifecycleError> {
    use x509_parser::prelude::{FromDer as _, X509Certificate};
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|err| LifecycleError::Internal(format!("issued certificate: {err}")))?;
    Ok(crate::pki::hex(&crate::identity::fingerprint(
        cert.public_key().raw,
    )))
}
