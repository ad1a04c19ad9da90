//! The business rules of the certificate lifecycle (DOMAIN.md): permits and their temporary
//! PINs, enrollment (with a retry for an interrupted one), renewal inside its window, re-issue,
//! revocation, suspension, the status table, and the audit trail.
//!
//! Everything here is transport-free: `api` (EST, JSON, HTML) and the operator CLI call these
//! methods and map [`LifecycleError`] to their own answers. Each operation checks its caller's
//! rights itself, from the [`Context`] it is given. Truth lives in `store`; signing in `pki`.
//! Every change a caller is told about is committed before the method returns, and a change that
//! decides who is refused is announced to the [`ChangeListener`] (the revocation snapshot) before
//! the method returns too.

mod crl;
mod enroll;
mod error;
mod manage;
mod pin;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};

use prometheus_client::metrics::counter::Counter;
use time::OffsetDateTime;

use crate::config::{IdentityConfig, LifecycleConfig};
use crate::model::{Clock, Holder, RevocationReason, Serial, SystemClock};
use crate::pki::Pki;
use crate::store::{NewAudit, Registry};

/// The registry's types that the lifecycle's operations take and give, for the rooms above it
/// that may not name the registry.
pub use crate::store::{StatusRow, UserStatus, UserUpdate};
pub use crl::CrlWriter;
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
        /// Its serial.
        serial: Serial,
        /// Whether it was issued by a CA trusted for certgate's own operations (certgate's CA
        /// generations, or a `[[trust.ca]]` with `lifecycle = true`); a CA trusted for login
        /// only cannot manage the registry.
        lifecycle_ca: bool,
    },
    /// Someone presenting enrollment credentials (corporation, user, PIN).
    Enrollee(Holder),
}

impl Actor {
    fn audit_name(&self) -> String {
        match self {
            Self::Operator => "operator".to_owned(),
            Self::Certificate { holder, .. } => format!("cert:{}", holder.key()),
            Self::Enrollee(holder) => format!("enrollee:{}", holder.key()),
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
}

/// A boxed future, for the listener's methods.
pub type Announced<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// Who hears about changes the lifecycle committed. `serve` wires this to the revocation
/// snapshot, so that a change is in force on this process's next request before the caller is
/// answered; the lifecycle never names that room.
pub trait ChangeListener: Send + Sync {
    /// A change that decides who is refused or with what role was committed (revocation,
    /// renewal, suspension, a user added or changed, a corporation's flags).
    fn standing_changed(&self) -> Announced<'_>;
}

/// Hears nothing (the operator CLI, whose process ends right away; tests).
pub struct NoListener;

impl ChangeListener for NoListener {
    fn standing_changed(&self) -> Announced<'_> {
        Box::pin(async {})
    }
}

/// What the lifecycle is wired to besides its registry and CA.
#[derive(Clone)]
pub struct Wiring {
    /// Where "now" comes from.
    pub clock: Arc<dyn Clock>,
    /// Who hears about changes.
    pub changes: Arc<dyn ChangeListener>,
    /// Counts every PIN verification (argon2): the same work whoever asks.
    pub pin_checks: Counter,
    /// Asked to re-sign the CRLs after a revocation; `None` signs them before answering (CLI).
    pub crl_writer: Option<CrlWriter>,
}

impl Default for Wiring {
    fn default() -> Self {
        Self {
            clock: Arc::new(SystemClock),
            changes: Arc::new(NoListener),
            pin_checks: Counter::default(),
            crl_writer: None,
        }
    }
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
    wiring: Wiring,
    /// Enrollment attempts checked at once (each costs one argon2 verification, about 19 MiB
    /// and 20 ms of a core, and a few registry statements): a flood of attempts queues here
    /// instead of exhausting memory and the registry's connections.
    pin_slots: tokio::sync::Semaphore,
}

/// How long an enrollment attempt waits for a slot before it is told to come back.
const PIN_SLOT_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

impl Lifecycle {
    /// The service over an open registry and (if initialised) the CA.
    pub fn new(
        store: Arc<dyn Registry>,
        pki: Option<Pki>,
        rules: LifecycleConfig,
        identity: IdentityConfig,
        wiring: Wiring,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                pki: RwLock::new(pki),
                rules,
                identity,
                wiring,
                pin_slots: tokio::sync::Semaphore::new(
                    std::thread::available_parallelism().map_or(2, |cores| cores.get() * 2),
                ),
            }),
        }
    }

    /// A slot for checking one PIN, or [`LifecycleError::Busy`] when too many are being checked.
    pub(crate) async fn pin_slot(
        &self,
    ) -> Result<tokio::sync::SemaphorePermit<'_>, LifecycleError> {
        match tokio::time::timeout(PIN_SLOT_WAIT, self.inner.pin_slots.acquire()).await {
            Ok(Ok(slot)) => Ok(slot),
            _ => Err(LifecycleError::Busy {
                retry_after_secs: 5,
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

    /// The time now, by the lifecycle's clock.
    pub fn now(&self) -> OffsetDateTime {
        self.inner.wiring.clock.now()
    }

    /// The clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.wiring.clock
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
        self.with_pki(|pki| Ok(pki.ca_certs(self.now())))
    }

    /// The DER of every CA certificate certgate's generations need trusted (for the verifier).
    pub fn trust_anchors(&self) -> Vec<rustls_pki_types::CertificateDer<'static>> {
        self.with_pki(|pki| Ok(pki.trust_anchors(self.now())))
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

    /// An audit entry of `ctx` at the lifecycle's time.
    fn audit(
        &self,
        ctx: &Context,
        action: &str,
        corp_id: Option<&str>,
        target: &str,
        result: &str,
    ) -> NewAudit {
        NewAudit {
            at: self.now(),
            actor: ctx.actor.audit_name(),
            action: action.to_owned(),
            corp_id: corp_id.map(str::to_owned),
            target: target.to_owned(),
            result: result.to_owned(),
            client_addr: ctx.client_addr.clone(),
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
        let target = holder.map(Holder::key).unwrap_or_default();
        let corp = holder.map(|h| h.corp_id.as_str());
        let audit = self.audit(
            ctx,
            action,
            corp,
            &target,
            &format!("refused: {}", err.audit_reason()),
        );
        if let Err(store_err) = self.inner.store.append_audit(&audit).await {
            tracing::error!(error = %store_err, action, "cannot write the audit entry of a refusal");
        }
    }

    /// Tells the listener that who is refused may have changed; returns once it has applied it.
    async fn announce_standing(&self) {
        self.inner.wiring.changes.standing_changed().await;
    }

    /// The CRLs must show a revocation: asks this process's background writer to look at the
    /// feed now. Without one (the CLI), the writer of a running server catches up from the feed
    /// within a second; nobody waits for a multi-megabyte CRL to be signed.
    fn revocations_changed(&self) {
        if let Some(writer) = &self.inner.wiring.crl_writer {
            writer.request();
        }
    }
}

/// The revocation reasons a revocation may give, in the CLI and the API alike: RFC 5280's, except
/// `removeFromCRL` (delta CRLs only) and `certificateHold` (a hold promises a release that
/// certgate's final revocations never give; suspending the user is the reversible action).
pub fn check_revocation_reason(reason: RevocationReason) -> Result<(), LifecycleError> {
    if is_final(reason) {
        return Ok(());
    }
    Err(LifecycleError::Invalid {
        field: "reason",
        reason: format!(
            "{reason} is not a final revocation; suspend the user for a temporary stop, or use one of {}",
            accepted_revocation_reasons().join(", ")
        ),
    })
}

fn is_final(reason: RevocationReason) -> bool {
    !matches!(
        reason,
        RevocationReason::RemoveFromCrl | RevocationReason::CertificateHold
    )
}

/// Every reason [`check_revocation_reason`] accepts, by name.
pub fn accepted_revocation_reasons() -> Vec<&'static str> {
    RevocationReason::ALL
        .into_iter()
        .filter(|reason| is_final(*reason))
        .map(RevocationReason::as_str)
        .collect()
}
