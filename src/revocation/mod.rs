//! Who is refused right now: the hot-path snapshot of the registry's standing, checked on every
//! request with hash lookups and no I/O.
//!
//! The snapshot holds the serials of revoked, unexpired certificates, each user's role and
//! suspension, and which corporations require certificates. It is rebuilt from the registry and
//! swapped in whole (readers never wait): right after every change made through this process
//! (the API calls [`Standing::refresh`] before answering, so a revocation takes effect on the very
//! next request of every connection), and every [`REFRESH_INTERVAL`] for changes made elsewhere
//! (the operator CLI, another replica).
//!
//! Revoked certificates are keyed by serial alone: certgate's serials are 16 random bytes, so a
//! collision with another CA's serial is out of reach, and one would only refuse, never admit.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use std::sync::atomic::{AtomicI64, Ordering};

use arc_swap::ArcSwap;
use tokio::sync::watch;

use crate::model::{Clock, Role, Serial};
use crate::store::{CorporationStatus, Registry, StoreError, UserStatus};

/// A user's standing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserStanding {
    /// Their role in the registry.
    pub role: Role,
    /// Whether the master user suspended them.
    pub suspended: bool,
}

/// A corporation's standing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CorporationStanding {
    /// Whether every user must log in with a certificate.
    pub cert_required: bool,
    /// Whether the corporation is in service.
    pub active: bool,
}

/// One consistent view of the registry.
#[derive(Debug, Default)]
pub struct Snapshot {
    revoked: HashSet<Serial>,
    users: HashMap<Box<str>, HashMap<Box<str>, UserStanding>>,
    corporations: HashMap<Box<str>, CorporationStanding>,
}

impl Snapshot {
    /// Whether the certificate with this serial is revoked.
    pub fn is_revoked(&self, serial: &Serial) -> bool {
        self.revoked.contains(serial)
    }

    /// A user's standing, if the registry knows the user.
    pub fn user(&self, corp_id: &str, user_id: &str) -> Option<UserStanding> {
        self.users
            .get(corp_id)
            .and_then(|users| users.get(user_id))
            .copied()
    }

    /// A corporation's standing, if the registry knows it.
    pub fn corporation(&self, corp_id: &str) -> Option<CorporationStanding> {
        self.corporations.get(corp_id).copied()
    }

    /// How many revoked serials are held.
    pub fn revoked_count(&self) -> usize {
        self.revoked.len()
    }

    /// A snapshot with the given revoked serials only (benchmarks, tests).
    pub fn with_revoked(serials: impl IntoIterator<Item = Serial>) -> Self {
        Self {
            revoked: serials.into_iter().collect(),
            ..Self::default()
        }
    }

    /// This snapshot with one more corporation (tests).
    pub fn with_corporation(mut self, corp_id: &str, standing: CorporationStanding) -> Self {
        self.corporations.insert(corp_id.into(), standing);
        self
    }

    /// This snapshot with one more user (tests).
    pub fn with_user(mut self, corp_id: &str, user_id: &str, standing: UserStanding) -> Self {
        self.users
            .entry(corp_id.into())
            .or_default()
            .insert(user_id.into(), standing);
        self
    }
}

/// The current snapshot and how to rebuild it. Cloning shares it.
#[derive(Clone)]
pub struct Standing {
    current: Arc<ArcSwap<Snapshot>>,
    store: Arc<dyn Registry>,
    clock: Arc<dyn Clock>,
    refreshing: Arc<tokio::sync::Mutex<()>>,
    /// Unix seconds of the last successful read of the registry.
    synced_at: Arc<AtomicI64>,
    /// Counts swaps, so that open tunnels can re-check their certificate when one happens.
    version: Arc<watch::Sender<u64>>,
}

impl Standing {
    /// Loads the first snapshot.
    pub async fn load(store: Arc<dyn Registry>, clock: Arc<dyn Clock>) -> Result<Self, StoreError> {
        let standing = Self {
            current: Arc::new(ArcSwap::from_pointee(Snapshot::default())),
            store,
            clock,
            refreshing: Arc::new(tokio::sync::Mutex::new(())),
            synced_at: Arc::new(AtomicI64::new(0)),
            version: Arc::new(watch::channel(0).0),
        };
        standing.refresh().await?;
        Ok(standing)
    }

    /// The snapshot for this request.
    pub fn snapshot(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.current.load()
    }

    /// Seconds since the registry was last read successfully, at `now_unix`.
    pub fn age(&self, now_unix: i64) -> i64 {
        now_unix - self.synced_at.load(Ordering::Acquire)
    }

    /// Changes each time a new snapshot is swapped in (an upgraded tunnel waits on it to re-check
    /// its certificate, having no next request to check).
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    /// Re-reads the registry and swaps the new snapshot in. Concurrent calls are serialised so
    /// that an older read never replaces a newer one.
    pub async fn refresh(&self) -> Result<(), StoreError> {
        let _one_at_a_time = self.refreshing.lock().await;
        let now = self.clock.now();
        let revoked = self.store.revoked_unexpired(now).await?;
        let users = self.store.all_users().await?;
        let corporations = self.store.list_corporations().await?;
        let mut snapshot = Snapshot {
            revoked: revoked.into_iter().map(|cert| cert.serial).collect(),
            ..Snapshot::default()
        };
        for user in users {
            snapshot
                .users
                .entry(user.corp_id.into_boxed_str())
                .or_default()
                .insert(
                    user.user_id.into_boxed_str(),
                    UserStanding {
                        role: user.role,
                        suspended: user.status == UserStatus::Suspended,
                    },
                );
        }
        for corporation in corporations {
            snapshot.corporations.insert(
                corporation.corp_id.into_boxed_str(),
                CorporationStanding {
                    cert_required: corporation.cert_required,
                    active: corporation.status == CorporationStatus::Active,
                },
            );
        }
        self.current.store(Arc::new(snapshot));
        self.synced_at.store(self.clock.unix(), Ordering::Release);
        self.version.send_modify(|version| *version += 1);
        Ok(())
    }

    /// Re-reads every `every` (`revocation.poll`) until the task is dropped; a failed read keeps
    /// the previous snapshot, is logged, and lets the snapshot age (see [`Self::age`]).
    pub async fn refresh_periodically(self, every: Duration) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(err) = self.refresh().await {
                tracing::warn!(error = %err, "cannot re-read revocations and user status; keeping the previous set");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revoked_lookup_is_by_serial() {
        let serial = |hex: &str| Serial::from_canonical_hex(hex).unwrap();
        let snapshot = Snapshot::with_revoked([serial("8f01")]);
        assert!(snapshot.is_revoked(&serial("8f01")));
        assert!(!snapshot.is_revoked(&serial("8f02")));
        assert_eq!(snapshot.revoked_count(), 1);
    }
}
