//! Who is refused right now: the hot-path snapshot of the registry's standing, checked on every
//! request with hash lookups and no I/O.
//!
//! The snapshot holds what the hot path needs and no more, under compact keys: the revoked and
//! the renewed certificates by (issuer, serial); the users who are not general users in good
//! standing (their role, their suspension); the corporations not in service or requiring
//! certificates. Everyone else is a general user of an active corporation by default, so a
//! registry of a million ordinary users costs nothing here.
//!
//! It is loaded once at start, streaming from the registry, and then kept current from the
//! registry's change feed: [`Standing::catch_up`] applies the changes after the last one it
//! saw, polled every `revocation.poll` and at once after every change made through this process
//! (the lifecycle announces them before answering). Applying a change copies only the shard of
//! the set it touches, never the whole set, and the new snapshot is swapped in whole: readers
//! never wait. A full reload happens at start, on SIGHUP and when an operator asks for one
//! (`certgate standing reload`).

mod crls;
mod redis;
mod shards;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::watch;

use crate::model::{Clock, IssuerKey, Role, Serial, StandingKey};
use crate::store::{Change, FeedEntry, Registry, StoreError};

pub use crls::{ExternalCrls, ExternalSet};
pub use redis::{RedisConfigError, RedisFeed};
use shards::Sharded;

/// How many changes are read from the feed at a time.
const BATCH: u32 = 10_000;

/// How often expired entries leave the snapshot.
const PRUNE_EVERY: i64 = 3600;

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

/// One consistent view of the registry's standing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// Revoked, unexpired certificates, with their notAfter (Unix seconds).
    revoked: Sharded<(IssuerKey, Serial), i64>,
    /// Certificates replaced by a renewal, unexpired, with their notAfter.
    renewed: Sharded<(IssuerKey, Serial), i64>,
    /// Users who are not general users in good standing.
    users: Sharded<StandingKey, UserStanding>,
    /// Corporations not in service or requiring certificates.
    corporations: Sharded<StandingKey, CorporationStanding>,
    /// What the external CAs' CRLs say (shared, replaced whole when a CRL file changes).
    external: Arc<ExternalSet>,
}

impl Snapshot {
    /// Whether the certificate is revoked (in the registry, or in its external CA's CRL).
    pub fn is_revoked(&self, issuer: IssuerKey, serial: &Serial) -> bool {
        self.revoked.contains(&(issuer, *serial)) || self.external.is_revoked(issuer, serial)
    }

    /// Whether the CRL of the certificate's external CA is past its nextUpdate.
    pub fn crl_is_stale(&self, issuer: IssuerKey, now_unix: i64) -> bool {
        self.external.is_stale(issuer, now_unix)
    }

    /// Whether a renewal replaced the certificate.
    pub fn is_renewed(&self, issuer: IssuerKey, serial: &Serial) -> bool {
        self.renewed.contains(&(issuer, *serial))
    }

    /// A user's standing, if it differs from a general user in good standing.
    pub fn user(&self, key: StandingKey) -> Option<UserStanding> {
        self.users.get(&key).copied()
    }

    /// A corporation's standing, if it differs from an active one without certificate login.
    pub fn corporation(&self, key: StandingKey) -> Option<CorporationStanding> {
        self.corporations.get(&key).copied()
    }

    /// How many revoked certificates are held.
    pub fn revoked_count(&self) -> usize {
        self.revoked.len()
    }

    /// How many entries are held in all, for the size metric.
    pub fn len(&self) -> usize {
        self.revoked.len()
            + self.renewed.len()
            + self.users.len()
            + self.corporations.len()
            + self.external.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Applies one change; returns whether it was a request to reload everything.
    fn apply(&mut self, change: &Change) -> bool {
        match change {
            Change::Certificate {
                issuer,
                serial,
                not_after,
                revoked,
                renewed,
                ..
            } => {
                let key = (*issuer, *serial);
                let until = not_after.unix_timestamp();
                if revoked.is_some() {
                    self.revoked.insert(key, until);
                }
                if *renewed {
                    self.renewed.insert(key, until);
                }
            }
            Change::User {
                corp_id,
                user_id,
                role,
                suspended,
                removed,
            } => {
                let key = StandingKey::user(corp_id, user_id);
                if *removed || (*role == Role::General && !*suspended) {
                    self.users.remove(&key);
                } else {
                    self.users.insert(
                        key,
                        UserStanding {
                            role: *role,
                            suspended: *suspended,
                        },
                    );
                }
            }
            Change::Corporation {
                corp_id,
                active,
                cert_required,
            } => {
                let key = StandingKey::corporation(corp_id);
                if *active && !*cert_required {
                    self.corporations.remove(&key);
                } else {
                    self.corporations.insert(
                        key,
                        CorporationStanding {
                            cert_required: *cert_required,
                            active: *active,
                        },
                    );
                }
            }
            Change::Reload => return true,
        }
        false
    }

    /// Drops certificates past their notAfter (a request with one is refused as expired anyway).
    fn prune(&mut self, now_unix: i64) {
        self.revoked.retain(|_, not_after| *not_after > now_unix);
        self.renewed.retain(|_, not_after| *not_after > now_unix);
    }

    /// A snapshot with the given revoked certificates only (benchmarks, tests).
    pub fn with_revoked(keys: impl IntoIterator<Item = (IssuerKey, Serial)>) -> Self {
        let mut snapshot = Self::default();
        for key in keys {
            snapshot.revoked.insert(key, i64::MAX);
        }
        snapshot
    }

    /// This snapshot with one more corporation (tests).
    pub fn with_corporation(mut self, corp_id: &str, standing: CorporationStanding) -> Self {
        self.corporations
            .insert(StandingKey::corporation(corp_id), standing);
        self
    }

    /// This snapshot with one more user (tests).
    pub fn with_user(mut self, corp_id: &str, user_id: &str, standing: UserStanding) -> Self {
        self.users
            .insert(StandingKey::user(corp_id, user_id), standing);
        self
    }
}

/// Where applying the feed stands.
struct Applied {
    /// The last sequence number applied.
    seq: i64,
    /// When expired entries last left the snapshot.
    pruned_at: i64,
}

/// The current snapshot and how to keep it current. Cloning shares it.
#[derive(Clone)]
pub struct Standing {
    current: Arc<ArcSwap<Snapshot>>,
    store: Arc<dyn Registry>,
    clock: Arc<dyn Clock>,
    /// Held while applying: changes are applied by one task at a time, in order.
    applied: Arc<tokio::sync::Mutex<Applied>>,
    /// Unix seconds of the last successful read of the registry.
    synced_at: Arc<AtomicI64>,
    /// Unix seconds of the last successful read of the Redis stream (0: never).
    redis_synced_at: Arc<AtomicI64>,
    /// Changes applied, read from the registry and from Redis.
    applied_from: Arc<[AtomicU64; 2]>,
    /// Counts swaps, so that open tunnels can re-check their certificate when one happens.
    version: Arc<watch::Sender<u64>>,
}

impl Standing {
    /// Loads the standing from the registry.
    pub async fn load(store: Arc<dyn Registry>, clock: Arc<dyn Clock>) -> Result<Self, StoreError> {
        let standing = Self {
            current: Arc::new(ArcSwap::from_pointee(Snapshot::default())),
            store,
            clock,
            applied: Arc::new(tokio::sync::Mutex::new(Applied {
                seq: 0,
                pruned_at: 0,
            })),
            synced_at: Arc::new(AtomicI64::new(0)),
            redis_synced_at: Arc::new(AtomicI64::new(0)),
            applied_from: Arc::new([AtomicU64::new(0), AtomicU64::new(0)]),
            version: Arc::new(watch::channel(0).0),
        };
        standing.reload().await?;
        Ok(standing)
    }

    /// The snapshot for this request.
    pub fn snapshot(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.current.load()
    }

    /// The last sequence number of the feed applied.
    pub async fn applied_seq(&self) -> i64 {
        self.applied.lock().await.seq
    }

    /// Seconds since the standing was last brought up to date, from the registry or from Redis,
    /// at `now_unix`.
    pub fn age(&self, now_unix: i64) -> i64 {
        let registry = self.synced_at.load(Ordering::Acquire);
        let redis = self.redis_synced_at.load(Ordering::Acquire);
        now_unix - registry.max(redis)
    }

    /// Seconds since the last successful read of the registry, and of Redis (`None`: never).
    pub fn sync_ages(&self, now_unix: i64) -> (i64, Option<i64>) {
        let redis = self.redis_synced_at.load(Ordering::Acquire);
        (
            now_unix - self.synced_at.load(Ordering::Acquire),
            (redis > 0).then(|| now_unix - redis),
        )
    }

    /// Changes applied so far, read from the registry and from Redis.
    pub fn applied_counts(&self) -> (u64, u64) {
        (
            self.applied_from[0].load(Ordering::Relaxed),
            self.applied_from[1].load(Ordering::Relaxed),
        )
    }

    /// The Redis stream was read successfully just now.
    pub fn mark_redis_synced(&self) {
        self.redis_synced_at
            .store(self.clock.unix(), Ordering::Release);
    }

    /// Changes each time a new snapshot is swapped in (an upgraded tunnel waits on it to re-check
    /// its certificate, having no next request to check).
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    /// Replaces what the external CAs' CRLs say.
    pub async fn set_external(&self, external: ExternalSet) {
        let _applied = self.applied.lock().await;
        let mut snapshot = Snapshot::clone(&self.current.load());
        snapshot.external = Arc::new(external);
        self.publish(snapshot);
    }

    /// Reads the external CRL files again when they change (checked every 2 s, and at once when
    /// `recheck` is notified, on SIGHUP), until the task is dropped.
    pub async fn watch_crls(self, crls: Arc<ExternalCrls>, recheck: Arc<tokio::sync::Notify>) {
        loop {
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(2)) => {}
                () = recheck.notified() => {}
            }
            let crls = crls.clone();
            let changed = tokio::task::spawn_blocking(move || crls.refresh().then(|| crls.set()))
                .await
                .ok()
                .flatten();
            if let Some(set) = changed {
                self.set_external(set).await;
            }
        }
    }

    /// Loads the whole standing again and swaps it in.
    pub async fn reload(&self) -> Result<(), StoreError> {
        let mut applied = self.applied.lock().await;
        let now = self.clock.now();
        let mut snapshot = Snapshot {
            external: self.current.load().external.clone(),
            ..Snapshot::default()
        };
        let seq = self
            .store
            .load_standing(now, &mut |change| {
                snapshot.apply(&change);
            })
            .await?;
        applied.seq = seq;
        applied.pruned_at = now.unix_timestamp();
        self.publish(snapshot);
        drop(applied);
        // Changes committed while the load ran.
        self.catch_up().await.map(|_| ())
    }

    /// Applies the changes after the last one applied, reading the feed until it is exhausted;
    /// returns how many were applied.
    pub async fn catch_up(&self) -> Result<usize, StoreError> {
        self.catch_up_keeping(None).await
    }

    /// [`Self::catch_up`], also returning the changes it read (to publish them to Redis).
    pub async fn catch_up_read(&self) -> Result<Vec<FeedEntry>, StoreError> {
        let mut read = Vec::new();
        self.catch_up_keeping(Some(&mut read)).await?;
        Ok(read)
    }

    async fn catch_up_keeping(
        &self,
        mut keep: Option<&mut Vec<FeedEntry>>,
    ) -> Result<usize, StoreError> {
        let mut applied = self.applied.lock().await;
        let mut count = 0;
        loop {
            let entries = self.store.changes_since(applied.seq, BATCH).await?;
            let now = self.clock.unix();
            if entries.is_empty() {
                self.synced_at.store(now, Ordering::Release);
                if now - applied.pruned_at > PRUNE_EVERY {
                    let mut snapshot = Snapshot::clone(&self.current.load());
                    snapshot.prune(now);
                    applied.pruned_at = now;
                    self.publish(snapshot);
                }
                return Ok(count);
            }
            let mut snapshot = Snapshot::clone(&self.current.load());
            let mut reload = false;
            for entry in &entries {
                reload |= snapshot.apply(&entry.change);
                applied.seq = entry.seq;
            }
            count += entries.len();
            self.applied_from[0].fetch_add(entries.len() as u64, Ordering::Relaxed);
            if let Some(keep) = keep.as_deref_mut() {
                keep.extend(entries);
            }
            if reload {
                drop(applied);
                tracing::info!("reloading the whole standing, as an operator asked");
                Box::pin(self.reload()).await?;
                return Ok(count);
            }
            self.publish(snapshot);
        }
    }

    /// Applies changes pushed through Redis: each one that follows the last change applied, at
    /// once; at the first that does not (one was missed), the rest come from the registry.
    pub async fn apply_pushed(&self, entries: Vec<FeedEntry>) -> Result<(), StoreError> {
        let mut applied = self.applied.lock().await;
        let mut snapshot: Option<Snapshot> = None;
        let mut count = 0u64;
        let mut missed = false;
        let mut reload = false;
        for entry in &entries {
            if entry.seq <= applied.seq {
                continue;
            }
            if entry.prev_seq != Some(applied.seq) {
                missed = true;
                break;
            }
            let current = snapshot.get_or_insert_with(|| Snapshot::clone(&self.current.load()));
            reload |= current.apply(&entry.change);
            applied.seq = entry.seq;
            count += 1;
            if reload {
                break;
            }
        }
        self.applied_from[1].fetch_add(count, Ordering::Relaxed);
        if let Some(snapshot) = snapshot {
            if !reload {
                self.publish(snapshot);
            }
        }
        drop(applied);
        if reload {
            tracing::info!("reloading the whole standing, as an operator asked");
            return self.reload().await;
        }
        if missed {
            tracing::debug!(
                "a change pushed through Redis does not follow the last one applied; reading the registry"
            );
            self.catch_up().await?;
        }
        Ok(())
    }

    fn publish(&self, snapshot: Snapshot) {
        self.current.store(Arc::new(snapshot));
        self.synced_at.store(self.clock.unix(), Ordering::Release);
        self.version.send_modify(|version| *version += 1);
    }

    /// Catches up from the registry until the task is dropped: every `poll`, or every `resync`
    /// while Redis pushes changes (`redis_alive`). A failed read keeps the snapshot, is logged,
    /// and lets it age (see [`Self::age`]).
    pub async fn poll_periodically(
        self,
        poll: Duration,
        resync: Duration,
        redis_alive: Option<Arc<AtomicBool>>,
    ) {
        let mut last = tokio::time::Instant::now();
        loop {
            let pushed = redis_alive
                .as_ref()
                .is_some_and(|alive| alive.load(Ordering::Acquire));
            let every = if pushed { resync } else { poll };
            // Checked often, so that Redis going away shortens the wait at once.
            tokio::time::sleep(poll.min(every)).await;
            if last.elapsed() < every {
                continue;
            }
            last = tokio::time::Instant::now();
            if let Err(err) = self.catch_up().await {
                tracing::warn!(error = %err, "cannot read the registry's change feed; keeping the current standing");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serial(hex: &str) -> Serial {
        Serial::from_canonical_hex(hex).unwrap()
    }

    #[test]
    fn revoked_lookup_is_by_issuer_and_serial() {
        let ours = IssuerKey(1);
        let theirs = IssuerKey(2);
        let snapshot = Snapshot::with_revoked([(ours, serial("8f01"))]);
        assert!(snapshot.is_revoked(ours, &serial("8f01")));
        assert!(!snapshot.is_revoked(ours, &serial("8f02")));
        assert!(
            !snapshot.is_revoked(theirs, &serial("8f01")),
            "another CA's serial does not collide"
        );
        assert_eq!(snapshot.revoked_count(), 1);
    }

    #[test]
    fn only_exceptions_are_held_and_changes_are_idempotent() {
        let mut snapshot = Snapshot::default();
        let user = |role, suspended| Change::User {
            corp_id: "1".into(),
            user_id: "u".into(),
            role,
            suspended,
            removed: false,
        };
        snapshot.apply(&user(Role::General, false));
        assert!(
            snapshot.is_empty(),
            "a general user in good standing costs nothing"
        );
        snapshot.apply(&user(Role::General, true));
        snapshot.apply(&user(Role::General, true));
        assert_eq!(
            snapshot.user(StandingKey::user("1", "u")),
            Some(UserStanding {
                role: Role::General,
                suspended: true
            })
        );
        snapshot.apply(&user(Role::General, false));
        assert!(snapshot.is_empty(), "resumed: back to the default");
        snapshot.apply(&Change::Corporation {
            corp_id: "1".into(),
            active: true,
            cert_required: true,
        });
        assert!(
            snapshot
                .corporation(StandingKey::corporation("1"))
                .is_some()
        );
        assert!(snapshot.apply(&Change::Reload));
    }

    #[test]
    fn expired_certificates_are_pruned() {
        let mut snapshot = Snapshot::default();
        for (hex, until) in [("01", 100), ("02", 300)] {
            snapshot.apply(&Change::Certificate {
                issuer: IssuerKey(1),
                serial: serial(hex),
                generation: "g1".into(),
                not_after: time::OffsetDateTime::from_unix_timestamp(until).unwrap(),
                revoked: Some((
                    time::OffsetDateTime::UNIX_EPOCH,
                    crate::model::RevocationReason::KeyCompromise,
                )),
                renewed: false,
            });
        }
        snapshot.prune(200);
        assert!(!snapshot.is_revoked(IssuerKey(1), &serial("01")));
        assert!(snapshot.is_revoked(IssuerKey(1), &serial("02")));
    }

    /// A registry with a corporation of `users` general users, each holding one certificate.
    async fn seeded(reg: &dyn Registry, at: time::OffsetDateTime, users: usize) {
        use crate::model::{Der, Holder};
        use crate::store::{Issuance, NewAudit, NewCertificate, NewCorporation, NewUser};
        let audit = |target: &str| NewAudit {
            at,
            actor: "operator".into(),
            action: "seed".into(),
            corp_id: Some("11111111111111".into()),
            target: target.into(),
            result: "ok".into(),
            client_addr: None,
        };
        reg.add_corporation(
            &NewCorporation {
                corp_id: "11111111111111".into(),
                name: "A".into(),
                admin_email: "a@example.com".into(),
                cert_required: false,
            },
            &audit("corp"),
        )
        .await
        .unwrap();
        for i in 0..users {
            let user = format!("user{i}");
            reg.add_user(
                &NewUser {
                    corp_id: "11111111111111".into(),
                    user_id: user.clone(),
                    role: Role::General,
                    email: None,
                    name: None,
                },
                &audit(&user),
            )
            .await
            .unwrap();
            let serial = format!("{:04x}", 0x1000 + i);
            reg.record_issuance(&Issuance {
                permit_id: None,
                cert: NewCertificate {
                    serial: Serial::from_canonical_hex(&serial).unwrap(),
                    issuer_generation: "g1".into(),
                    issuer: IssuerKey(1),
                    holder: Holder::user("11111111111111", user.as_str()),
                    not_before: at,
                    not_after: at + time::Duration::days(365),
                    sha256: format!("{serial:0>64}"),
                    spki_sha256: format!("{serial:f>64}"),
                    der: Der(vec![0x30, 0x00]),
                    renewed_from: None,
                },
                supersede_active: false,
                kept_p12: None,
                audit: audit(&serial),
            })
            .await
            .unwrap();
        }
    }

    /// One change of the stream: a revocation, a suspension, a resumption or a role change.
    async fn change_number(reg: &dyn Registry, at: time::OffsetDateTime, i: usize) {
        use crate::store::{NewAudit, UserStatus};
        let audit = NewAudit {
            at,
            actor: "operator".into(),
            action: "stream".into(),
            corp_id: Some("11111111111111".into()),
            target: i.to_string(),
            result: "ok".into(),
            client_addr: None,
        };
        let user = format!("user{}", i % 40);
        match i % 4 {
            0 => {
                let serial =
                    Serial::from_canonical_hex(&format!("{:04x}", 0x1000 + i / 4)).unwrap();
                reg.revoke_certificate(
                    &serial,
                    crate::model::RevocationReason::KeyCompromise,
                    &audit,
                )
                .await
                .unwrap();
            }
            1 | 3 => {
                let status = if i % 4 == 1 {
                    UserStatus::Suspended
                } else {
                    UserStatus::Active
                };
                reg.set_user_status("11111111111111", &user, status, &audit)
                    .await
                    .unwrap();
            }
            _ => {
                reg.set_cert_required("11111111111111", i % 8 == 2, &audit)
                    .await
                    .unwrap();
            }
        }
    }

    /// A process that loads in the middle of a stream of changes, and one that ran through it,
    /// end with the same snapshot as a fresh load.
    async fn restarted_mid_stream_equals_a_fresh_load(reg: Arc<dyn Registry>) {
        let clock = crate::model::ManualClock::starting_now();
        let at = clock.now();
        seeded(&*reg, at, 60).await;
        let clock: Arc<dyn Clock> = Arc::new(clock);
        let running = Standing::load(reg.clone(), clock.clone()).await.unwrap();
        // Two writers at once, as two replicas would be: on PostgreSQL their feed rows must
        // still become visible in sequence order, or a follower would skip one for ever.
        let (halfway, reached) = tokio::sync::oneshot::channel();
        let mut halfway = Some(halfway);
        let writers: Vec<_> = (0..2)
            .map(|writer| {
                let reg = reg.clone();
                let halfway = if writer == 0 { halfway.take() } else { None };
                tokio::spawn(async move {
                    let mut halfway = halfway;
                    for i in (writer..200).step_by(2) {
                        change_number(&*reg, at, i).await;
                        if i >= 100 {
                            if let Some(halfway) = halfway.take() {
                                let _ = halfway.send(());
                            }
                        }
                    }
                })
            })
            .collect();
        let follower = {
            let running = running.clone();
            tokio::spawn(async move {
                loop {
                    running.catch_up().await.unwrap();
                    tokio::task::yield_now().await;
                }
            })
        };
        reached.await.unwrap();
        let restarted = Standing::load(reg.clone(), clock.clone()).await.unwrap();
        for writer in writers {
            writer.await.unwrap();
        }
        follower.abort();
        running.catch_up().await.unwrap();
        restarted.catch_up().await.unwrap();
        let fresh = Standing::load(reg.clone(), clock).await.unwrap();
        assert_eq!(fresh.snapshot().revoked_count(), 50);
        assert!(fresh.snapshot().len() > 50, "suspensions are held too");
        assert_eq!(**running.snapshot(), **fresh.snapshot());
        assert_eq!(**restarted.snapshot(), **fresh.snapshot());
        assert_eq!(running.applied_seq().await, fresh.applied_seq().await);
        assert_eq!(restarted.applied_seq().await, fresh.applied_seq().await);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn restarted_mid_stream_equals_a_fresh_load_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/r.db", dir.path().display());
        restarted_mid_stream_equals_a_fresh_load(crate::store::open(&url).await.unwrap()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn restarted_mid_stream_equals_a_fresh_load_on_postgres() {
        let database = crate::store::testing::ScratchDatabase::create().await;
        restarted_mid_stream_equals_a_fresh_load(crate::store::open(&database.url).await.unwrap())
            .await;
    }

    /// A change whose transaction rolled back never reaches a running process.
    #[tokio::test]
    async fn a_refused_change_never_reaches_the_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/r.db", dir.path().display());
        let reg = crate::store::open(&url).await.unwrap();
        let clock = crate::model::ManualClock::starting_now();
        let at = clock.now();
        seeded(&*reg, at, 2).await;
        let standing = Standing::load(reg.clone(), Arc::new(clock)).await.unwrap();
        change_number(&*reg, at, 0).await;
        let before = standing.applied_seq().await;
        // Revoking the same certificate again is refused inside its transaction.
        let again = reg
            .revoke_certificate(
                &Serial::from_canonical_hex("1000").unwrap(),
                crate::model::RevocationReason::Superseded,
                &crate::store::NewAudit {
                    at,
                    actor: "operator".into(),
                    action: "again".into(),
                    corp_id: None,
                    target: "1000".into(),
                    result: "ok".into(),
                    client_addr: None,
                },
            )
            .await;
        assert!(again.is_err());
        assert_eq!(
            standing.catch_up().await.unwrap(),
            1,
            "only the first revocation"
        );
        assert!(standing.applied_seq().await > before);
        assert_eq!(standing.snapshot().revoked_count(), 1);
    }

    #[tokio::test]
    async fn pushed_changes_apply_in_chain_and_a_missed_one_is_read_from_the_registry() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/r.db", dir.path().display());
        let reg = crate::store::open(&url).await.unwrap();
        let clock = crate::model::ManualClock::starting_now();
        let at = clock.now();
        seeded(&*reg, at, 10).await;
        let standing = Standing::load(reg.clone(), Arc::new(clock)).await.unwrap();
        let head = standing.applied_seq().await;
        for i in [0, 4, 1] {
            change_number(&*reg, at, i).await;
        }
        let pushed = reg.changes_since(head, 10).await.unwrap();
        assert_eq!(pushed.len(), 3);
        // The first was missed: the rest cannot be applied from the push alone.
        standing.apply_pushed(pushed[1..].to_vec()).await.unwrap();
        assert_eq!(
            standing.applied_counts(),
            (3, 0),
            "all three from the registry"
        );
        assert_eq!(standing.snapshot().revoked_count(), 2);
        // Pushed again (a replay after a reconnect): nothing happens twice.
        standing.apply_pushed(pushed.clone()).await.unwrap();
        assert_eq!(standing.applied_counts(), (3, 0));
        // The next one follows the last applied: taken from the push.
        change_number(&*reg, at, 8).await;
        let next = reg.changes_since(pushed[2].seq, 10).await.unwrap();
        assert_eq!(next[0].prev_seq, Some(pushed[2].seq));
        standing.apply_pushed(next).await.unwrap();
        assert_eq!(standing.applied_counts(), (3, 1));
        assert_eq!(standing.snapshot().revoked_count(), 3);
    }
}
