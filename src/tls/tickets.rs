//! TLS session tickets that every replica can open: the keys come from a file the replicas share
//! (`server.ticket_keys`), so a client that made its session with one replica resumes on another.
//!
//! The file holds up to three keys. The *current* one encrypts new tickets; *next* and *previous*
//! only decrypt. `certgate tickets rotate` moves them one stage along (a new key enters as next,
//! next becomes current, current becomes previous, previous is dropped), so whichever replica
//! reads the new file first, the others can already open the tickets it makes: a key always
//! spends one rotation decrypting before it encrypts. rustls cannot take key bytes for its own
//! ticketer, hence this one: AES-256-GCM, the key's name as associated data, a random nonce per
//! ticket. A ticket from an unknown or retired key is not opened, and the client makes a full
//! handshake.
//!
//! Without the file, each process makes its own keys ([`process_ticketer`]), sealed the same way:
//! one AES-256-GCM pass instead of rustls' default AES-CBC and a separate HMAC, with its key
//! schedule made once per key rather than once per ticket.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use rustls::crypto::GetRandomFailed;
use rustls::server::ProducesTickets;
use rustls::ticketer::TicketRotator;
use rustls_pki_types::UnixTime;
use zeroize::Zeroize as _;

use crate::config::ConfigError;

/// The stages a key goes through, in the file's order.
const STAGES: [&str; 3] = ["current", "next", "previous"];

/// Bytes of a key's name, at the start of every ticket.
const NAME_LEN: usize = 16;

/// One key: its name and its AES-256-GCM key.
struct TicketKey {
    name: [u8; NAME_LEN],
    key: LessSafeKey,
}

impl TicketKey {
    fn new(name: [u8; NAME_LEN], key: &[u8; 32]) -> Option<Self> {
        let key = UnboundKey::new(&AES_256_GCM, key).ok()?;
        Some(Self {
            name,
            key: LessSafeKey::new(key),
        })
    }
}

/// A new key's name and bytes, from the system's random generator.
fn random_name_and_key() -> Option<([u8; NAME_LEN], [u8; 32])> {
    let mut name = [0u8; NAME_LEN];
    let mut key = [0u8; 32];
    aws_lc_rs::rand::fill(&mut name).ok()?;
    aws_lc_rs::rand::fill(&mut key).ok()?;
    Some((name, key))
}

/// The keys of one reading of the file.
struct KeySet {
    current: TicketKey,
    /// Decrypt only (next, previous).
    others: Vec<TicketKey>,
}

/// The key file as text: one line per stage, `<stage> <name hex> <key hex>`.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyFile {
    /// (stage, name, key) in the order current, next, previous (next and previous optional).
    entries: Vec<(String, [u8; NAME_LEN], [u8; 32])>,
}

/// The stages and the start of each key's name, never a key.
impl std::fmt::Debug for KeyFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyFile")
            .field("stages", &self.stages())
            .finish_non_exhaustive()
    }
}

impl KeyFile {
    /// Parses the file's text; the error says what is wrong, never showing key bytes.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut entries = Vec::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [stage, name, key] = fields.as_slice() else {
                return Err(format!(
                    "line {}: expected `<stage> <name> <key>`",
                    number + 1
                ));
            };
            if !STAGES.contains(stage) {
                return Err(format!(
                    "line {}: unknown stage {stage:?}; use current, next or previous",
                    number + 1
                ));
            }
            if entries.iter().any(|(seen, _, _)| seen == stage) {
                return Err(format!("line {}: a second {stage} key", number + 1));
            }
            let name: [u8; NAME_LEN] = decode_hex(name)
                .and_then(|bytes| bytes.try_into().ok())
                .ok_or_else(|| format!("line {}: the name is not 32 hex digits", number + 1))?;
            let key: [u8; 32] = decode_hex(key)
                .and_then(|bytes| bytes.try_into().ok())
                .ok_or_else(|| format!("line {}: the key is not 64 hex digits", number + 1))?;
            entries.push(((*stage).to_owned(), name, key));
        }
        if !entries.iter().any(|(stage, _, _)| stage == "current") {
            return Err("no current key; make the file with `certgate tickets rotate`".to_owned());
        }
        let mut names: Vec<_> = entries.iter().map(|(_, name, _)| *name).collect();
        names.sort_unstable();
        names.dedup();
        if names.len() != entries.len() {
            return Err("two keys share a name".to_owned());
        }
        entries.sort_by_key(|(stage, _, _)| STAGES.iter().position(|known| known == stage));
        Ok(Self { entries })
    }

    /// The file after one rotation: a fresh key as next, next as current, current as previous.
    /// From no file: a current and a next key.
    pub fn rotated(previous: Option<&Self>) -> Result<Self, String> {
        let fresh =
            || random_name_and_key().ok_or_else(|| "the system random generator failed".to_owned());
        let stage = |file: &Self, wanted: &str| {
            file.entries
                .iter()
                .find(|(stage, _, _)| stage == wanted)
                .map(|(_, name, key)| (*name, *key))
        };
        let mut entries = Vec::new();
        match previous {
            None => {
                let (name, key) = fresh()?;
                entries.push(("current".to_owned(), name, key));
                let (name, key) = fresh()?;
                entries.push(("next".to_owned(), name, key));
            }
            Some(file) => {
                let current = stage(file, "current");
                // Without a next key (a file written by hand), the current one stays current
                // for one more rotation rather than a key nobody can open yet.
                let promoted = stage(file, "next").or(current);
                if let Some((name, key)) = promoted {
                    entries.push(("current".to_owned(), name, key));
                }
                let (name, key) = fresh()?;
                entries.push(("next".to_owned(), name, key));
                if let Some((name, key)) =
                    current.filter(|(name, _)| Some(*name) != promoted.map(|p| p.0))
                {
                    entries.push(("previous".to_owned(), name, key));
                }
            }
        }
        Ok(Self { entries })
    }

    /// The stages present, with the first hex digits of each key's name (for the operator).
    pub fn stages(&self) -> Vec<String> {
        self.entries
            .iter()
            .map(|(stage, name, _)| format!("{stage} {}…", crate::model::hex(&name[..4])))
            .collect()
    }

    /// The file's text.
    pub fn render(&self) -> String {
        let mut text = String::from(
            "# certgate TLS session ticket keys, shared by every replica (server.ticket_keys).\n\
             # current encrypts; next and previous only decrypt. Rotate with\n\
             # `certgate tickets rotate --file PATH`; never edit by hand.\n",
        );
        for (stage, name, key) in &self.entries {
            text.push_str(&format!(
                "{stage} {} {}\n",
                crate::model::hex(name),
                crate::model::hex(key)
            ));
        }
        text
    }

    fn key_set(&self) -> Result<KeySet, String> {
        let mut current = None;
        let mut others = Vec::new();
        for (stage, name, key) in &self.entries {
            let ticket_key =
                TicketKey::new(*name, key).ok_or_else(|| "a key cannot be used".to_owned())?;
            if stage == "current" {
                current = Some(ticket_key);
            } else {
                others.push(ticket_key);
            }
        }
        Ok(KeySet {
            current: current.ok_or("no current key")?,
            others,
        })
    }
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(text.get(at..at + 2)?, 16).ok())
        .collect()
}

/// Reads and checks the key file at `path`.
pub fn read_key_file(path: &Path) -> Result<KeyFile, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|err| {
        ConfigError::new(
            "server.ticket_keys",
            format!(
                "cannot read {}: {err}; make it with `certgate tickets rotate --file {}`",
                path.display(),
                path.display()
            ),
        )
    })?;
    KeyFile::parse(&text)
        .map_err(|why| ConfigError::new("server.ticket_keys", format!("{}: {why}", path.display())))
}

/// Writes `file` to `path` atomically, readable by its owner only.
pub fn write_key_file(path: &Path, file: &KeyFile) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let dir = path
        .parent()
        .filter(|dir| !dir.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut random = [0u8; 6];
    let _ = aws_lc_rs::rand::fill(&mut random);
    let temporary = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name()
            .map_or_else(|| "ticket-keys".into(), |name| name.to_string_lossy()),
        crate::model::hex(&random)
    ));
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temporary)?;
    out.write_all(file.render().as_bytes())?;
    out.sync_all()?;
    drop(out);
    std::fs::rename(&temporary, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&temporary);
    })
}

/// The ticketer over the shared key file; the keys are swapped in place when the file changes, so
/// listener configs built before and after share it.
pub struct SharedTicketer {
    keys: ArcSwap<KeySet>,
    path: PathBuf,
    read_at: std::sync::Mutex<Option<SystemTime>>,
}

impl std::fmt::Debug for SharedTicketer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedTicketer")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SharedTicketer {
    /// Reads the keys at `path`.
    pub fn open(path: &Path) -> Result<Arc<Self>, ConfigError> {
        let file = read_key_file(path)?;
        let keys = file
            .key_set()
            .map_err(|why| ConfigError::new("server.ticket_keys", why))?;
        Ok(Arc::new(Self {
            keys: ArcSwap::from_pointee(keys),
            path: path.to_owned(),
            read_at: std::sync::Mutex::new(modified(path)),
        }))
    }

    /// Reads the file again if it changed since last read; a broken file is refused with a log
    /// line and the keys in use stay.
    pub fn reload_if_changed(&self) {
        let now = modified(&self.path);
        {
            let mut read_at = self
                .read_at
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if now == *read_at {
                return;
            }
            *read_at = now;
        }
        match read_key_file(&self.path).and_then(|file| {
            file.key_set()
                .map_err(|why| ConfigError::new("server.ticket_keys", why))
        }) {
            Ok(keys) => {
                self.keys.store(Arc::new(keys));
                tracing::info!(file = %self.path.display(), "session ticket keys reloaded");
            }
            Err(err) => {
                tracing::error!(error = %err, "session ticket keys refused; the keys in use stay");
            }
        }
    }

    /// Watches the file until the task is dropped.
    pub async fn watch(self: Arc<Self>) {
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        loop {
            tick.tick().await;
            self.reload_if_changed();
        }
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path)
        .and_then(|meta| meta.modified())
        .ok()
}

impl ProducesTickets for SharedTicketer {
    fn enabled(&self) -> bool {
        true
    }

    /// Unused: [`Dated`] announces `server.ticket_lifetime`.
    fn lifetime(&self) -> u32 {
        0
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        seal(&self.keys.load().current, plain)
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        let keys = self.keys.load();
        open(
            std::iter::once(&keys.current).chain(keys.others.iter()),
            cipher,
        )
    }
}

/// A ticket: the key's name, a random nonce, then `plain` sealed with the name as associated data.
fn seal(key: &TicketKey, plain: &[u8]) -> Option<Vec<u8>> {
    let mut nonce = [0u8; NONCE_LEN];
    aws_lc_rs::rand::fill(&mut nonce).ok()?;
    let mut sealed = Vec::with_capacity(NAME_LEN + NONCE_LEN + plain.len() + AES_256_GCM.tag_len());
    sealed.extend_from_slice(&key.name);
    sealed.extend_from_slice(&nonce);
    sealed.extend_from_slice(plain);
    let tag = key
        .key
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(&key.name),
            sealed.get_mut(NAME_LEN + NONCE_LEN..)?,
        )
        .ok()?;
    sealed.extend_from_slice(tag.as_ref());
    Some(sealed)
}

/// The session in `cipher`, if one of `keys` sealed it and it is whole.
fn open<'a>(mut keys: impl Iterator<Item = &'a TicketKey>, cipher: &[u8]) -> Option<Vec<u8>> {
    let name = cipher.get(..NAME_LEN)?;
    let nonce: [u8; NONCE_LEN] = cipher
        .get(NAME_LEN..NAME_LEN + NONCE_LEN)?
        .try_into()
        .ok()?;
    let body = cipher.get(NAME_LEN + NONCE_LEN..)?;
    let key = keys.find(|key| key.name == name)?;
    let mut opened = body.to_vec();
    let plain_len = key
        .key
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(&key.name),
            &mut opened,
        )
        .ok()?
        .len();
    opened.truncate(plain_len);
    Some(opened)
}

/// Ticket keys of this process alone, for a server without `server.ticket_keys`: a key made at
/// random seals tickets for half of `lifetime`, then only opens them for the other half, while
/// its successor seals (rustls' `TicketRotator`, which also erases a key once retired). The
/// rotator moves only when a handshake comes, so after a quiet night the evening's key still
/// opens the evening's tickets: [`Dated`] bounds a ticket's age, not this.
pub(super) fn process_ticketer(
    lifetime: Duration,
) -> Result<Arc<dyn ProducesTickets>, ConfigError> {
    // The rotator announces twice its period; [`Dated`] announces `lifetime` itself.
    let half = u32::try_from(lifetime.as_secs() / 2)
        .unwrap_or(u32::MAX / 2)
        .clamp(1, u32::MAX / 2);
    TicketRotator::new(half, ProcessKey::fresh)
        .map(|rotator| Arc::new(rotator) as Arc<dyn ProducesTickets>)
        .map_err(|err| {
            ConfigError::new(
                "server",
                format!("cannot create the session ticket key: {err}"),
            )
        })
}

/// Bytes of the time a ticket was made, sealed at the start of its session.
const MADE_AT_LEN: usize = 8;

/// Tickets that carry, sealed with the session, the second they were made, and that are refused
/// once older than `lifetime` (or dated further ahead than that, by a replica whose clock is
/// wrong). Nothing else bounds a ticket's age: rustls checks none, and keys are retired only as
/// handshakes come (the process's own) or as the operator rotates them (shared ones).
pub(super) struct Dated {
    inner: Arc<dyn ProducesTickets>,
    lifetime: u64,
}

impl Dated {
    /// `inner`'s tickets, refused once older than `lifetime`.
    pub(super) fn new(inner: Arc<dyn ProducesTickets>, lifetime: Duration) -> Self {
        Self {
            inner,
            lifetime: lifetime.as_secs(),
        }
    }

    fn fresh(&self, made_at: u64, now: u64) -> bool {
        now.saturating_sub(made_at) <= self.lifetime && made_at.saturating_sub(now) <= self.lifetime
    }
}

impl std::fmt::Debug for Dated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dated")
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

impl ProducesTickets for Dated {
    fn enabled(&self) -> bool {
        self.inner.enabled()
    }

    fn lifetime(&self) -> u32 {
        u32::try_from(self.lifetime).unwrap_or(u32::MAX)
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        let mut dated = Vec::with_capacity(MADE_AT_LEN + plain.len());
        dated.extend_from_slice(&UnixTime::now().as_secs().to_be_bytes());
        dated.extend_from_slice(plain);
        let sealed = self.inner.encrypt(&dated);
        // The session holds its resumption secret.
        dated.zeroize();
        sealed
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        let mut opened = self.inner.decrypt(cipher)?;
        let made_at = opened
            .get(..MADE_AT_LEN)
            .and_then(|bytes| <[u8; MADE_AT_LEN]>::try_from(bytes).ok())
            .map(u64::from_be_bytes);
        if !made_at.is_some_and(|made_at| self.fresh(made_at, UnixTime::now().as_secs())) {
            opened.zeroize();
            return None;
        }
        opened.drain(..MADE_AT_LEN);
        Some(opened)
    }
}

/// One of [`process_ticketer`]'s keys.
struct ProcessKey(TicketKey);

/// Never the key: its name only, which every ticket shows anyway.
impl std::fmt::Debug for ProcessKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessKey")
            .field("name", &crate::model::hex(&self.0.name))
            .finish_non_exhaustive()
    }
}

impl ProcessKey {
    fn fresh() -> Result<Box<dyn ProducesTickets>, GetRandomFailed> {
        let (name, key) = random_name_and_key().ok_or(GetRandomFailed)?;
        let key = TicketKey::new(name, &key).ok_or(GetRandomFailed)?;
        Ok(Box::new(Self(key)))
    }
}

impl ProducesTickets for ProcessKey {
    fn enabled(&self) -> bool {
        true
    }

    /// Unused: [`Dated`] announces `server.ticket_lifetime`.
    fn lifetime(&self) -> u32 {
        0
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        seal(&self.0, plain)
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        open(std::iter::once(&self.0), cipher)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ticketer(file: &KeyFile) -> SharedTicketer {
        SharedTicketer {
            keys: ArcSwap::from_pointee(file.key_set().unwrap()),
            path: PathBuf::from("/nonexistent"),
            read_at: std::sync::Mutex::new(None),
        }
    }

    #[test]
    fn a_key_decrypts_one_rotation_before_it_encrypts_and_one_after() {
        let first = KeyFile::rotated(None).unwrap();
        let second = KeyFile::rotated(Some(&first)).unwrap();
        let third = KeyFile::rotated(Some(&second)).unwrap();
        let fourth = KeyFile::rotated(Some(&third)).unwrap();
        // A replica still on the first file opens what one on the second made, and back.
        let made_on_second = ticketer(&second).encrypt(b"session").unwrap();
        assert_eq!(
            ticketer(&first).decrypt(&made_on_second).unwrap(),
            b"session"
        );
        let made_on_first = ticketer(&first).encrypt(b"session").unwrap();
        assert_eq!(
            ticketer(&second).decrypt(&made_on_first).unwrap(),
            b"session"
        );
        assert_eq!(
            ticketer(&third).decrypt(&made_on_second).unwrap(),
            b"session"
        );
        // Two rotations on, a key is retired: a full handshake.
        assert_eq!(ticketer(&third).decrypt(&made_on_first), None);
        assert_eq!(ticketer(&fourth).decrypt(&made_on_second), None);
        // The file round-trips; the text never shows anything but hex.
        assert_eq!(KeyFile::parse(&third.render()).unwrap(), third);
        // Its Debug shows the stages, never a key.
        let debug = format!("{third:?}");
        assert!(debug.contains("current"), "{debug}");
        for line in third.render().lines().filter(|line| !line.starts_with('#')) {
            let key = line.split_whitespace().nth(2).unwrap();
            assert!(!debug.contains(key), "{debug}");
        }
    }

    #[test]
    fn forged_and_damaged_tickets_are_not_opened() {
        let file = KeyFile::rotated(None).unwrap();
        let ticketer = ticketer(&file);
        let mut ticket = ticketer.encrypt(b"session").unwrap();
        let last = ticket.len() - 1;
        ticket[last] ^= 1;
        assert_eq!(ticketer.decrypt(&ticket), None);
        assert_eq!(ticketer.decrypt(&[]), None);
        assert_eq!(ticketer.decrypt(&[0u8; 20]), None);
        let other = self::ticketer(&KeyFile::rotated(None).unwrap());
        assert_eq!(other.decrypt(&ticketer.encrypt(b"session").unwrap()), None);
    }

    #[test]
    fn a_process_opens_its_own_tickets_and_no_forged_or_foreign_one() {
        let ticketer = process_ticketer(Duration::from_secs(3600)).unwrap();
        let ticket = ticketer.encrypt(b"session").unwrap();
        assert_eq!(ticketer.decrypt(&ticket).unwrap(), b"session");
        // Each ticket has its own nonce.
        assert_ne!(ticketer.encrypt(b"session").unwrap(), ticket);
        for damaged_at in [0, NAME_LEN, NAME_LEN + NONCE_LEN, ticket.len() - 1] {
            let mut damaged = ticket.clone();
            damaged[damaged_at] ^= 1;
            assert_eq!(
                ticketer.decrypt(&damaged),
                None,
                "byte {damaged_at} flipped"
            );
        }
        assert_eq!(ticketer.decrypt(&ticket[..ticket.len() - 1]), None);
        assert_eq!(ticketer.decrypt(&[]), None);
        // Another process (or this one after a reload), and the shared keys, open none of them.
        let other = process_ticketer(Duration::from_secs(3600)).unwrap();
        assert_eq!(other.decrypt(&ticket), None);
        let shared = self::ticketer(&KeyFile::rotated(None).unwrap());
        assert_eq!(shared.decrypt(&ticket), None);
        assert_eq!(ticketer.decrypt(&shared.encrypt(b"session").unwrap()), None);
    }

    #[test]
    fn tickets_announce_the_configured_lifetime() {
        for seconds in [1, 2, 3601, 12 * 3600, 24 * 3600] {
            let lifetime = Duration::from_secs(seconds);
            let dated = Dated::new(process_ticketer(lifetime).unwrap(), lifetime);
            assert_eq!(u64::from(dated.lifetime()), seconds);
        }
    }

    /// A session sealed by the keys as `Dated` seals it, but made `made_at`.
    fn made_at(keys: &Arc<dyn ProducesTickets>, made_at: u64) -> Vec<u8> {
        let mut plain = made_at.to_be_bytes().to_vec();
        plain.extend_from_slice(b"session");
        keys.encrypt(&plain).unwrap()
    }

    #[test]
    fn a_ticket_opens_within_its_lifetime_and_not_after() {
        let hour = Duration::from_secs(3600);
        let shared: Arc<dyn ProducesTickets> = Arc::new(ticketer(&KeyFile::rotated(None).unwrap()));
        for keys in [process_ticketer(hour).unwrap(), shared] {
            let dated = Dated::new(keys.clone(), hour);
            let ticket = dated.encrypt(b"session").unwrap();
            assert_eq!(dated.decrypt(&ticket).unwrap(), b"session");
            let now = UnixTime::now().as_secs();
            // Made 59 minutes ago, or a minute ahead (a replica's clock): opens.
            for at in [now - 3540, now + 60] {
                assert_eq!(dated.decrypt(&made_at(&keys, at)).unwrap(), b"session");
            }
            // Made 61 minutes ago (say, before a quiet night, by a key not yet retired), or
            // further ahead than the lifetime: a full handshake.
            for at in [now - 3660, now + 3660, 0] {
                assert_eq!(dated.decrypt(&made_at(&keys, at)), None, "made at {at}");
            }
            // Sealed by the keys but without a date (shorter than one): not opened.
            assert_eq!(dated.decrypt(&keys.encrypt(b"short").unwrap()), None);
        }
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        for (text, says) in [
            ("", "no current key"),
            ("current 00 11", "name is not 32 hex"),
            ("later 000102030405060708090a0b0c0d0e0f 00", "unknown stage"),
            (
                "current 000102030405060708090a0b0c0d0e0f 0011",
                "key is not 64 hex",
            ),
            ("current a b c d", "expected"),
        ] {
            let err = KeyFile::parse(text).unwrap_err();
            assert!(err.contains(says), "{text:?}: {err}");
        }
        let key = "00".repeat(32);
        let name = "0f".repeat(16);
        let twice = format!("current {name} {key}\nnext {name} {key}\n");
        assert!(KeyFile::parse(&twice).unwrap_err().contains("share a name"));
    }

    #[test]
    fn the_file_is_written_for_its_owner_only() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tickets.keys");
        write_key_file(&path, &KeyFile::rotated(None).unwrap()).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(read_key_file(&path).is_ok());
    }
}
