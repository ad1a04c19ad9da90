//! The business rules of the certificate lifecycle (DOMAIN.md): permits and their temporary
//! PINs, enrollment (with a retry for an interrupted one), renewal inside its window, re-issue,
//! revocation, suspension, the status table, and the audit trail.
//!
//! Everything here is transport-free: `api` (EST, JSON, HTML) and the operator CLI call these
//! methods and map [`LifecycleError`] to their own answers. Truth lives in `store`; signing in
//! `pki`. Every change a caller is told about is committed before the method returns.

mod enroll;
mod error;
mod manage;
mod pin;

use std::sync::{Arc, RwLock};

use time::OffsetDateTime;

use crate::config::{IdentityConfig, LifecycleConfig};
use crate::pki::Pki;
use crate::store::{Holder, NewAudit, Registry};

pub use enroll::{Enrolled, KeySource, MeView};
pub use error::LifecycleError;
pub use manage::{CaView, PermitView};

/// Who is acting, for authorization and the audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// Bank staff on the registry through the operator CLI.
    Operator,
    /// A caller identified by a verified client certificate.
    Certificate {
        /// Whose certificate.
        holder: Holder,
        /// Its serial (lowercase hex).
        serial: String,
    },
    /// Someone presenting enrollment credentials (corporation, user, PIN).
    Enrollee(Holder),
}

impl Actor {
    fn audit_name(&self) -> String {
        match self {
            Self::Operator => "operator".to_owned(),
            Self::Certificate { holder, .. } => format!("cert:{}", holder_key(holder)),
            Self::Enrollee(holder) => format!("enrollee:{}", holder_key(holder)),
        }
    }
}

/// The caller and where the request came from.
#[derive(Debug, Clone)]
pub struct Context {
    /// Who.
    pub actor: Actor,
    /// The client's address, when the request came over the network.
    pub client_addr: Option<String>,
}

impl Context {
    /// The operator CLI.
    pub fn operator() -> Self {
        Self {
            actor: Actor::Operator,
            client_addr: None,
        }
    }

    fn audit(&self, action: &str, corp_id: Option<&str>, target: &str, result: &str) -> NewAudit {
        NewAudit {
            at: now(),
            actor: self.actor.audit_name(),
            action: action.to_owned(),
            corp_id: corp_id.map(str::to_owned),
            target: target.to_owned(),
            result: result.to_owned(),
            client_addr: self.client_addr.clone(),
        }
    }
}

/// `corp` or `corp/user`.
pub fn holder_key(holder: &Holder) -> String {
    match &holder.user_id {
        Some(user_id) => format!("{}/{}", holder.corp_id, user_id),
        None => holder.corp_id.clone(),
    }
}

/// The current time, to the second (what certificates and the registry store).
pub fn now() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(0).unwrap_or(now)
}

/// The lifecycle service. Cloning shares it.
#[derive(Clone)]
pub struct Lifecycle {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Registry>,
    /// `None` until `certgate init` has made the CA: certgate then proxies only.
    pki: RwLock<Option<Pki>>,
    rules: LifecycleConfig,
    identity: IdentityConfig,
    /// CRLs are rewritten from the registry under this lock, so the last writer has the last word.
    crl_lock: tokio::sync::Mutex<()>,
}

impl Lifecycle {
    /// The service over an open registry and (if initialised) the CA.
    pub fn new(
        store: Arc<dyn Registry>,
        pki: Option<Pki>,
        rules: LifecycleConfig,
        identity: IdentityConfig,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                pki: RwLock::new(pki),
                rules,
                identity,
                crl_lock: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// The registry.
    pub fn store(&self) -> &Arc<dyn Registry> {
        &self.inner.store
    }

    /// The rules in force.
    pub fn rules(&self) -> &LifecycleConfig {
        &self.inner.rules
    }

    /// Runs `f` with the CA, or refuses when there is none.
    fn with_pki<T>(
        &self,
        f: impl FnOnce(&Pki) -> Result<T, LifecycleError>,
    ) -> Result<T, LifecycleError> {
        let guard = self
            .inner
            .pki
            .read()
            .map_err(|_| LifecycleError::Internal("the CA lock is poisoned".into()))?;
        match guard.as_ref() {
            Some(pki) => f(pki),
            None => Err(LifecycleError::NoCa),
        }
    }

    /// Re-reads the CA from `pki.dir` (after `certgate ca rotate` in another process); on error
    /// the CA in use stays.
    pub fn reload_ca(&self, settings: crate::pki::PkiSettings) -> Result<(), LifecycleError> {
        let fresh = match crate::pki::Pki::open(settings) {
            Ok(pki) => Some(pki),
            Err(crate::pki::PkiError::NotInitialised { .. }) => None,
            Err(err) => return Err(err.into()),
        };
        let mut guard = self
            .inner
            .pki
            .write()
            .map_err(|_| LifecycleError::Internal("the CA lock is poisoned".into()))?;
        *guard = fresh;
        Ok(())
    }

    /// The CA certificates a client needs (EST `cacerts`): the root and every valid generation.
    pub fn ca_certs(
        &self,
    ) -> Result<Vec<rustls_pki_types::CertificateDer<'static>>, LifecycleError> {
        self.with_pki(|pki| Ok(pki.ca_certs(now())))
    }

    /// The DER of every CA certificate certgate's generations need trusted (for the verifier).
    pub fn trust_anchors(&self) -> Vec<rustls_pki_types::CertificateDer<'static>> {
        self.with_pki(|pki| Ok(pki.trust_anchors(now())))
            .unwrap_or_default()
    }

    /// The issuer DN (RFC 4514, as the identity room writes it) of each generation, by name.
    pub fn generation_issuers(&self) -> Vec<(String, String)> {
        self.with_pki(|pki| {
            Ok(pki
                .generations()
                .iter()
                .filter_map(|generation| {
                    use x509_parser::prelude::FromDer as _;
                    let (_, cert) = x509_parser::prelude::X509Certificate::from_der(
                        generation.cert_der.as_ref(),
                    )
                    .ok()?;
                    Some((
                        generation.name.clone(),
                        crate::identity::rfc4514(cert.subject()),
                    ))
                })
                .collect())
        })
        .unwrap_or_default()
    }

    /// Checks an ID against the configured field regex.
    fn check_ids(&self, holder: &Holder) -> Result<(), LifecycleError> {
        if !self.inner.identity.corp_id.is_match(&holder.corp_id) {
            return Err(LifecycleError::Invalid {
                field: "corp_id",
                reason: format!("{:?} is not a corporation ID of this bank", holder.corp_id),
            });
        }
        if let Some(user_id) = &holder.user_id {
            if !self.inner.identity.user_id.is_match(user_id) {
                return Err(LifecycleError::Invalid {
                    field: "user_id",
                    reason: format!("{user_id:?} is not a user ID of this bank"),
                });
            }
        }
        Ok(())
    }

    /// The CN a holder's certificate carries: the corporation ID alone for the administrator.
    fn common_name(&self, holder: &Holder) -> String {
        match &holder.user_id {
            Some(user_id) => self
                .inner
                .identity
                .template
                .render(&holder.corp_id, user_id),
            None => holder.corp_id.clone(),
        }
    }

    /// Records a refusal in the audit trail; a failure to write it is logged, not raised, so
    /// that the caller still gets the refusal.
    async fn audit_refusal(
        &self,
        ctx: &Context,
        action: &str,
        holder: Option<&Holder>,
        err: &LifecycleError,
    ) {
        let target = holder.map(holder_key).unwrap_or_default();
        let corp = holder.map(|h| h.corp_id.as_str());
        let audit = ctx.audit(
            action,
            corp,
            &target,
            &format!("refused: {}", err.audit_reason()),
        );
        if let Err(store_err) = self.inner.store.append_audit(&audit).await {
            tracing::error!(error = %store_err, action, "cannot write the audit entry of a refusal");
        }
    }
}
