//! Keeping each CA generation's CRL current, without making any answer wait on it: a background
//! writer keeps the revoked certificates of each generation in memory (loaded once, then kept
//! current from the registry's change feed, like the revocation snapshot) and re-signs a CRL when
//! its contents changed and on a schedule (at half of `pki.crl_validity`, so that a quiet week
//! never leaves relying parties with a CRL past its nextUpdate).
//!
//! With several certgate processes on one registry, one signs each generation's CRL at a time
//! (a lease in the registry, held while signing), the CRL number comes from the registry, and a
//! CRL is stored only if it includes at least the changes of the last one: relying parties never
//! see the number or the contents go backwards (RFC 5280 §5.2.3). A process whose feed position
//! the stored CRL already covers, and which is not yet due, signs nothing: the scheduled
//! re-signing happens once for all of them. Every process serves the last CRL signed, from the
//! registry; the signer also writes it to `pki.dir`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use time::OffsetDateTime;
use tokio::sync::Notify;

use super::{Lifecycle, LifecycleError};
use crate::model::{Der, RevocationReason, Serial};
use crate::pki::RevokedEntry;
use crate::store::{Change, SignedCrl};

/// The longest a process that died while signing keeps the others from signing. The lease is
/// otherwise held only while signing (seconds, for a CRL of a hundred thousand entries).
const LEASE: time::Duration = time::Duration::seconds(60);

/// When another process is signing a CRL right now, how soon to look again.
const BUSY_RETRY: Duration = Duration::from_secs(2);

/// How often the writer reads the feed when nobody wakes it.
const POLL: Duration = Duration::from_secs(1);

/// A revoked certificate as its CRL lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Listed {
    revoked_at: OffsetDateTime,
    reason: RevocationReason,
    not_after: OffsetDateTime,
}

/// Asks the background CRL task to look at the feed now. Cloning shares it.
#[derive(Clone)]
pub struct CrlWriter {
    wake: Arc<Notify>,
    /// Who holds the lease when this process signs: the host, the process, a random part.
    holder: Arc<str>,
}

impl Default for CrlWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl CrlWriter {
    /// A writer; [`Self::run`] it in a task.
    pub fn new() -> Self {
        let mut random = [0u8; 4];
        let _ = aws_lc_rs::rand::fill(&mut random);
        let host = std::fs::read_to_string("/etc/hostname")
            .map(|name| name.trim().to_owned())
            .unwrap_or_else(|_| "host".to_owned());
        Self {
            wake: Arc::new(Notify::new()),
            holder: format!(
                "{host}/{}/{}",
                std::process::id(),
                crate::model::hex(&random)
            )
            .into(),
        }
    }

    /// How often CRLs are re-signed without revocations: at half their validity, so that a
    /// relying party that fetched one just before it was replaced still holds a valid CRL for half
    /// of it.
    pub fn interval(crl_validity: time::Duration) -> Duration {
        Duration::try_from(crl_validity / 2).unwrap_or(Duration::from_secs(3600))
    }

    /// Look at the feed soon (a revocation was made through this process).
    pub fn request(&self) {
        self.wake.notify_one();
    }

    /// Loads the revoked certificates, then signs whatever is due, reads the feed, and again,
    /// until the task is dropped. Failures are logged and retried on the next round.
    pub async fn run(self, lifecycle: Lifecycle, every: Duration) {
        let mut lists = Lists::default();
        loop {
            if let Err(err) = self.round(&lifecycle, &mut lists, every).await {
                tracing::warn!(error = %err, "cannot keep the CRLs current; will retry");
            }
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep(POLL.min(every)) => {}
            }
        }
    }

    async fn round(
        &self,
        lifecycle: &Lifecycle,
        lists: &mut Lists,
        every: Duration,
    ) -> Result<(), LifecycleError> {
        if !lists.loaded {
            lists.load(lifecycle).await?;
        }
        lists.catch_up(lifecycle).await?;
        let refresh = lifecycle.crl_refresh();
        for generation in lifecycle.generation_names() {
            let due = match lists.signed_at.get(&generation) {
                None => true,
                Some(&(signed_at, again_after)) => {
                    let changed = lists.dirty.contains_key(&generation);
                    let since = signed_at.elapsed();
                    (changed && since >= refresh) || since >= again_after
                }
            };
            if !due {
                continue;
            }
            let entries = lists.entries(&generation, lifecycle.now());
            match lifecycle
                .sign_crl(&generation, &self.holder, entries, lists.seq, every)
                .await?
            {
                Signed::Now => {
                    lists
                        .signed_at
                        .insert(generation.clone(), (Instant::now(), every));
                    lists.dirty.remove(&generation);
                }
                // Another process is signing right now, perhaps without the changes read here:
                // look again shortly.
                Signed::ByAnother => {
                    lists
                        .signed_at
                        .insert(generation.clone(), (Instant::now(), BUSY_RETRY.min(every)));
                }
                // Another process signed everything known here recently: due when that one is.
                Signed::Current { due_in } => {
                    lists
                        .signed_at
                        .insert(generation.clone(), (Instant::now(), due_in));
                    lists.dirty.remove(&generation);
                }
                Signed::BehindTheFeed => {}
            }
        }
        Ok(())
    }
}

/// The revoked certificates of each generation, as this process has read them.
#[derive(Default)]
struct Lists {
    loaded: bool,
    by_generation: HashMap<String, BTreeMap<Serial, Listed>>,
    /// The feed position they include.
    seq: i64,
    /// Generations whose list changed since they were last signed.
    dirty: HashMap<String, ()>,
    /// When each generation's CRL was last signed (by this process or seen signed by another),
    /// on this process's monotonic clock (the schedule is elapsed time, whatever the wall says),
    /// and how long after that it is due again.
    signed_at: HashMap<String, (Instant, Duration)>,
}

impl Lists {
    fn add(&mut self, change: &Change) {
        if let Change::Certificate {
            serial,
            generation,
            not_after,
            revoked: Some((revoked_at, reason)),
            ..
        } = change
        {
            self.by_generation
                .entry(generation.clone())
                .or_default()
                .insert(
                    *serial,
                    Listed {
                        revoked_at: *revoked_at,
                        reason: *reason,
                        not_after: *not_after,
                    },
                );
            self.dirty.insert(generation.clone(), ());
        }
    }

    async fn load(&mut self, lifecycle: &Lifecycle) -> Result<(), LifecycleError> {
        let mut loaded = Lists::default();
        let seq = lifecycle
            .store()
            .load_standing(lifecycle.now(), &mut |change| loaded.add(&change))
            .await?;
        self.by_generation = loaded.by_generation;
        self.seq = seq;
        self.loaded = true;
        Ok(())
    }

    async fn catch_up(&mut self, lifecycle: &Lifecycle) -> Result<(), LifecycleError> {
        loop {
            let entries = lifecycle.store().changes_since(self.seq, 10_000).await?;
            let Some(last) = entries.last() else {
                return Ok(());
            };
            self.seq = last.seq;
            for entry in &entries {
                if entry.change == Change::Reload {
                    self.loaded = false;
                    return Box::pin(self.load(lifecycle)).await;
                }
                self.add(&entry.change);
            }
        }
    }

    /// The entries of a generation's CRL at `now`: revoked and not expired.
    fn entries(&mut self, generation: &str, now: OffsetDateTime) -> Vec<RevokedEntry> {
        let Some(list) = self.by_generation.get_mut(generation) else {
            return Vec::new();
        };
        list.retain(|_, listed| listed.not_after > now);
        list.iter()
            .map(|(serial, listed)| RevokedEntry {
                serial: *serial,
                revoked_at: listed.revoked_at,
                reason: listed.reason,
            })
            .collect()
    }
}

/// What became of one signing.
enum Signed {
    /// Signed and stored by this process.
    Now,
    /// Another process holds the lease; it signs.
    ByAnother,
    /// The CRL stored already includes changes this process has not read yet.
    BehindTheFeed,
    /// The CRL stored includes every change this process has read and is not due yet.
    Current {
        /// When it is.
        due_in: Duration,
    },
}

impl Lifecycle {
    /// The names of the CA generations (none without a CA).
    fn generation_names(&self) -> Vec<String> {
        self.with_pki(|pki| {
            Ok(pki
                .generations()
                .iter()
                .map(|generation| generation.name.clone())
                .collect())
        })
        .unwrap_or_default()
    }

    /// Signs `generation`'s CRL listing `entries` (which include the feed up to `seq`), under the
    /// registry's lease for `holder`, stores it in the registry and writes it to `pki.dir`;
    /// unless the CRL stored already includes `seq` and is younger than `every`.
    async fn sign_crl(
        &self,
        generation: &str,
        holder: &str,
        entries: Vec<RevokedEntry>,
        seq: i64,
        every: Duration,
    ) -> Result<Signed, LifecycleError> {
        let now = self.now();
        let Some(claim) = self
            .store()
            .claim_crl(generation, holder, now, LEASE)
            .await?
        else {
            return Ok(Signed::ByAnother);
        };
        if claim.seq > seq {
            self.store().release_crl(generation, holder).await?;
            return Ok(Signed::BehindTheFeed);
        }
        if let Some(signed_at) = claim.signed_at {
            let age = Duration::try_from(now - signed_at).unwrap_or_default();
            if claim.seq == seq && age < every {
                self.store().release_crl(generation, holder).await?;
                return Ok(Signed::Current {
                    due_in: every - age,
                });
            }
        }
        // A CRL file from before numbers were kept in the registry may have a larger number.
        let on_disk = self.with_pki(|pki| Ok(pki.crl_number_on_disk(generation)))?;
        let number = claim.number.max(on_disk.unwrap_or(0)) + 1;
        let der = self.with_pki(|pki| Ok(pki.crl_numbered(generation, &entries, now, number)?))?;
        let signed = SignedCrl {
            number,
            seq,
            der: Der(der),
        };
        if !self
            .store()
            .store_crl(generation, holder, &signed, now)
            .await?
        {
            return Ok(Signed::ByAnother);
        }
        self.with_pki(|pki| Ok(pki.write_crl_file(generation, &signed.der.0)?))?;
        tracing::debug!(generation, number, entries = entries.len(), "CRL signed");
        Ok(Signed::Now)
    }

    /// `certgate crl`: signs every generation's CRL now, including every revocation made so far
    /// (or, while a running certgate holds the lease, waits until it has signed one that does),
    /// and writes each to `pki.dir`; returns the generations.
    pub async fn try_write_crls(&self) -> Result<Vec<String>, LifecycleError> {
        let holder = format!("cli/{}", std::process::id());
        let head = self.store().feed_head().await?;
        let mut lists = Lists::default();
        lists.load(self).await?;
        lists.catch_up(self).await?;
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut written = Vec::new();
        for generation in self.generation_names() {
            loop {
                let entries = lists.entries(&generation, self.now());
                match self
                    .sign_crl(&generation, &holder, entries, lists.seq, Duration::ZERO)
                    .await?
                {
                    Signed::Now => break,
                    Signed::Current { .. } => {
                        if let Some(signed) = self.store().signed_crl(&generation).await? {
                            self.with_pki(|pki| {
                                Ok(pki.write_crl_file(&generation, &signed.der.0)?)
                            })?;
                        }
                        break;
                    }
                    Signed::ByAnother | Signed::BehindTheFeed => {
                        if let Some(signed) = self.store().signed_crl(&generation).await? {
                            if signed.seq >= head {
                                self.with_pki(|pki| {
                                    Ok(pki.write_crl_file(&generation, &signed.der.0)?)
                                })?;
                                break;
                            }
                        }
                        if Instant::now() > deadline {
                            return Err(LifecycleError::Internal(format!(
                                "the CRL of {generation} is signed by another process, which has not caught up with the latest revocations within 30 s"
                            )));
                        }
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        lists.catch_up(self).await?;
                    }
                }
            }
            written.push(generation);
        }
        Ok(written)
    }

    /// The DER CRL of a generation as last signed by any process (or as written to `pki.dir`
    /// before the first one was).
    pub async fn crl(&self, generation: &str) -> Result<Vec<u8>, LifecycleError> {
        if let Some(signed) = self.store().signed_crl(generation).await? {
            return Ok(signed.der.0);
        }
        let path = self.with_pki(|pki| Ok(pki.crl_path(generation)?))?;
        std::fs::read(&path).map_err(|_| LifecycleError::NotFound {
            what: format!("CRL of generation {generation}"),
        })
    }

    /// `pki.crl_refresh` of the CA in use.
    fn crl_refresh(&self) -> Duration {
        self.with_pki(|pki| Ok(pki.settings().crl_refresh))
            .unwrap_or(Duration::from_secs(60))
    }

    /// `pki.crl_validity` of the CA in use.
    pub fn crl_validity(&self) -> time::Duration {
        self.with_pki(|pki| Ok(pki.settings().crl_validity))
            .unwrap_or(time::Duration::days(7))
    }
}
