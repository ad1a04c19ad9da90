//! Keeping each CA generation's CRL current: re-signed after a revocation (in the background, so
//! that no answer waits on signing a large CRL) and on a schedule (so that a quiet week never
//! leaves relying parties with a CRL past its nextUpdate).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use super::{Lifecycle, LifecycleError};
use crate::pki::RevokedEntry;

/// Asks the background CRL task to re-sign. Cloning shares it.
#[derive(Clone, Default)]
pub struct CrlWriter {
    wake: Arc<Notify>,
}

impl CrlWriter {
    /// A writer; [`Self::run`] it in a task.
    pub fn new() -> Self {
        Self::default()
    }

    /// How often CRLs are re-signed: at half their validity, so that a relying party that
    /// fetched one just before it was replaced still holds a valid CRL for half of it.
    pub fn interval(crl_validity: time::Duration) -> Duration {
        Duration::try_from(crl_validity / 2).unwrap_or(Duration::from_secs(3600))
    }

    /// Re-sign soon. Requests made while a write runs lead to one more write after it.
    pub fn request(&self) {
        self.wake.notify_one();
    }

    /// Re-signs at once, then whenever asked and every `every` (half of `pki.crl_validity`).
    pub async fn run(self, lifecycle: Lifecycle, every: Duration) {
        loop {
            lifecycle.write_crls().await;
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep(every) => {}
            }
        }
    }
}

impl Lifecycle {
    /// Rewrites every generation's CRL from the registry. A failure is logged and retried at the
    /// next revocation or on schedule (the registry stays the truth, and the proxy checks
    /// revocation from it, not from the CRL files).
    pub async fn write_crls(&self) {
        if let Err(err) = self.try_write_crls().await {
            tracing::error!(error = %err, "cannot rewrite the CRLs");
        }
    }

    /// Like [`Self::write_crls`], reporting the error (for `certgate crl`).
    pub async fn try_write_crls(&self) -> Result<Vec<String>, LifecycleError> {
        let _serialised = self.inner.crl_lock.lock().await;
        let at = self.now();
        let revoked = self.store().revoked_unexpired(at).await?;
        self.with_pki(|pki| {
            let mut written = Vec::new();
            for generation in pki.generations() {
                let entries: Vec<RevokedEntry> = revoked
                    .iter()
                    .filter(|cert| cert.issuer_generation == generation.name)
                    .map(|cert| RevokedEntry {
                        serial: cert.serial,
                        revoked_at: cert.revoked_at,
                        reason: cert.reason,
                    })
                    .collect();
                pki.write_crl(&generation.name, &entries, at)?;
                written.push(generation.name.clone());
            }
            Ok(written)
        })
    }

    /// `pki.crl_validity` of the CA in use.
    pub fn crl_validity(&self) -> time::Duration {
        self.with_pki(|pki| Ok(pki.settings().crl_validity))
            .unwrap_or(time::Duration::days(7))
    }

    /// The DER CRL of a generation, as last written.
    pub fn crl(&self, generation: &str) -> Result<Vec<u8>, LifecycleError> {
        let path = self.with_pki(|pki| Ok(pki.crl_path(generation)?))?;
        std::fs::read(&path).map_err(|_| LifecycleError::NotFound {
            what: format!("CRL of generation {generation}"),
        })
    }
}
