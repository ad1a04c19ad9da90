//! The change feed pushed through Redis, so that every replica applies a change at once instead
//! of at its next poll of the registry.
//!
//! After a change commits, the process that made it (a replica or the operator's CLI) appends it
//! to the stream `certgate:changes` (`XADD … MAXLEN ~`), with its registry sequence number and
//! the number of the change before it. Every replica reads the stream on a connection of its own
//! (`XREAD BLOCK`) from the last entry it read, and applies an entry only when it follows the last
//! change it applied; otherwise (an entry missed while disconnected, a stream trimmed past its
//! position, a change whose maker died before publishing it) it reads the missing changes from the
//! registry's feed, which stays the truth. Redis unreachable: the replica polls the registry every
//! `revocation.poll` until Redis answers again.
//!
//! One Redis server (or a managed one behind a stable address); Sentinel and Cluster URLs are not
//! supported.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use redis::AsyncCommands as _;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use secrecy::{ExposeSecret as _, SecretString};
use time::OffsetDateTime;

use super::Standing;
use crate::model::{IssuerKey, RevocationReason, Role, Serial};
use crate::store::{Change, FeedEntry};

/// The stream every replica reads.
const STREAM: &str = "certgate:changes";

/// About how many entries the stream keeps (`MAXLEN ~`): a replica away for longer reads the
/// rest from the registry.
const KEEP: usize = 100_000;

/// How long one `XREAD` waits for an entry before asking again (each answer is a sign of life).
const BLOCK: Duration = Duration::from_secs(5);

/// How long to wait before reconnecting after a failure, at most.
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Why Redis cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("revocation.redis_url: {0}")]
pub struct RedisConfigError(String);

/// The Redis side of the feed: publishing changes and following the stream.
pub struct RedisFeed {
    client: redis::Client,
    /// Publishing shares one reconnecting connection; `None` until first used.
    publisher: tokio::sync::Mutex<Option<ConnectionManager>>,
    /// Whether the follower's last read succeeded (the registry is then polled less often).
    alive: Arc<AtomicBool>,
    shown: String,
}

impl std::fmt::Debug for RedisFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisFeed")
            .field("url", &self.shown)
            .finish()
    }
}

impl RedisFeed {
    /// The feed at `url` (`redis://`, `rediss://`, `redis+unix://`), with `password` when the URL
    /// has none. Connects lazily: certgate starts while Redis is down.
    pub fn new(url: &str, password: Option<&SecretString>) -> Result<Self, RedisConfigError> {
        let shown = crate::model::url_without_password(url);
        let mut parsed = url::Url::parse(url)
            .map_err(|err| RedisConfigError(format!("{shown} does not parse: {err}")))?;
        if parsed.password().is_none() {
            if let Some(password) = password {
                parsed
                    .set_password(Some(password.expose_secret()))
                    .map_err(|()| RedisConfigError(format!("{shown} cannot carry a password")))?;
            }
        }
        let client = redis::Client::open(parsed.as_str())
            .map_err(|err| RedisConfigError(format!("{shown}: {err}")))?;
        Ok(Self {
            client,
            publisher: tokio::sync::Mutex::new(None),
            alive: Arc::new(AtomicBool::new(false)),
            shown,
        })
    }

    /// Whether the stream was read successfully last time.
    pub fn alive(&self) -> Arc<AtomicBool> {
        self.alive.clone()
    }

    /// Appends `entries` to the stream. Failures are logged, never returned: the change is
    /// committed, and the replicas' poll of the registry brings it when Redis cannot.
    pub async fn publish(&self, entries: &[FeedEntry]) {
        if entries.is_empty() {
            return;
        }
        let mut guard = self.publisher.lock().await;
        if guard.is_none() {
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(Duration::from_secs(2)))
                .set_response_timeout(Some(Duration::from_secs(2)))
                .set_number_of_retries(1);
            match ConnectionManager::new_with_config(self.client.clone(), config).await {
                Ok(manager) => *guard = Some(manager),
                Err(err) => {
                    tracing::warn!(redis = %self.shown, error = %err, "cannot publish changes to Redis; replicas read them from the registry");
                    return;
                }
            }
        }
        let Some(connection) = guard.as_mut() else {
            return;
        };
        let mut pipe = redis::pipe();
        for entry in entries {
            let fields = encode(entry);
            pipe.cmd("XADD")
                .arg(STREAM)
                .arg("MAXLEN")
                .arg("~")
                .arg(KEEP)
                .arg("*")
                .arg(&fields)
                .ignore();
        }
        // A connection broken since its last use (Redis restarted) fails once, then the manager
        // has reconnected: one more try.
        if pipe.query_async::<()>(connection).await.is_err() {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if let Err(err) = pipe.query_async::<()>(connection).await {
                tracing::warn!(redis = %self.shown, error = %err, "cannot publish changes to Redis; replicas read them from the registry");
            }
        }
    }

    /// Follows the stream until the task is dropped, applying what it reads to `standing`.
    pub async fn follow(self: Arc<Self>, standing: Standing) {
        // Only what comes after now: the registry's load covered the past.
        let mut last_id = "$".to_owned();
        let mut backoff = Duration::from_millis(200);
        loop {
            let config = redis::AsyncConnectionConfig::new()
                .set_connection_timeout(Some(Duration::from_secs(2)))
                .set_response_timeout(Some(BLOCK + Duration::from_secs(5)));
            let mut connection = match self
                .client
                .get_multiplexed_async_connection_with_config(&config)
                .await
            {
                Ok(connection) => connection,
                Err(err) => {
                    self.down(&err);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    continue;
                }
            };
            if last_id == "$" {
                // Where the stream stands now, so that a reconnect resumes from there.
                let newest: redis::RedisResult<redis::streams::StreamRangeReply> =
                    connection.xrevrange_count(STREAM, "+", "-", 1).await;
                match newest {
                    Ok(reply) => {
                        last_id = reply
                            .ids
                            .first()
                            .map_or_else(|| "0-0".to_owned(), |id| id.id.clone());
                    }
                    Err(err) => {
                        self.down(&err);
                        tokio::time::sleep(backoff).await;
                        continue;
                    }
                }
                // Anything committed between the load and now is in the registry.
                if let Err(err) = standing.catch_up().await {
                    tracing::warn!(error = %err, "cannot read the registry's change feed");
                }
            }
            loop {
                let options = redis::streams::StreamReadOptions::default()
                    .block(usize::try_from(BLOCK.as_millis()).unwrap_or(5000))
                    .count(1000);
                let read: redis::RedisResult<Option<redis::streams::StreamReadReply>> = connection
                    .xread_options(&[STREAM], &[last_id.as_str()], &options)
                    .await;
                match read {
                    Ok(reply) => {
                        backoff = Duration::from_millis(200);
                        if !self.alive.swap(true, Ordering::AcqRel) {
                            tracing::info!(redis = %self.shown, "following the change stream in Redis");
                        }
                        standing.mark_redis_synced();
                        let mut entries = Vec::new();
                        for key in reply.map(|reply| reply.keys).unwrap_or_default() {
                            for id in key.ids {
                                last_id.clone_from(&id.id);
                                match decode(&id.map) {
                                    Some(entry) => entries.push(entry),
                                    None => {
                                        tracing::warn!(id = %id.id, "an entry of the change stream does not parse; reading the registry instead")
                                    }
                                }
                            }
                        }
                        if !entries.is_empty() {
                            if let Err(err) = standing.apply_pushed(entries).await {
                                tracing::warn!(error = %err, "cannot read the registry's change feed");
                            }
                        }
                    }
                    Err(err) => {
                        self.down(&err);
                        break;
                    }
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    fn down(&self, err: &redis::RedisError) {
        if self.alive.swap(false, Ordering::AcqRel) {
            tracing::warn!(redis = %self.shown, error = %err, "lost the change stream in Redis; polling the registry until it is back");
        } else {
            tracing::debug!(redis = %self.shown, error = %err, "Redis still unreachable");
        }
    }
}

/// An entry as the stream's field/value pairs.
fn encode(entry: &FeedEntry) -> Vec<(&'static str, String)> {
    let mut fields = vec![
        ("seq", entry.seq.to_string()),
        (
            "prev",
            entry
                .prev_seq
                .map_or_else(String::new, |prev| prev.to_string()),
        ),
    ];
    let flag = |value: bool| if value { "1" } else { "0" }.to_owned();
    match &entry.change {
        Change::Certificate {
            issuer,
            serial,
            generation,
            not_after,
            revoked,
            renewed,
        } => {
            fields.push(("kind", "certificate".to_owned()));
            fields.push(("issuer", issuer.to_stored().to_string()));
            fields.push(("serial", serial.to_hex()));
            fields.push(("generation", generation.clone()));
            fields.push(("not_after", not_after.unix_timestamp().to_string()));
            if let Some((at, reason)) = revoked {
                fields.push(("revoked_at", at.unix_timestamp().to_string()));
                fields.push(("reason", reason.as_str().to_owned()));
            }
            fields.push(("renewed", flag(*renewed)));
        }
        Change::User {
            corp_id,
            user_id,
            role,
            suspended,
            removed,
        } => {
            fields.push(("kind", "user".to_owned()));
            fields.push(("corp_id", corp_id.clone()));
            fields.push(("user_id", user_id.clone()));
            fields.push(("role", role.as_str().to_owned()));
            fields.push(("suspended", flag(*suspended)));
            fields.push(("removed", flag(*removed)));
        }
        Change::Corporation {
            corp_id,
            active,
            cert_required,
        } => {
            fields.push(("kind", "corporation".to_owned()));
            fields.push(("corp_id", corp_id.clone()));
            fields.push(("active", flag(*active)));
            fields.push(("cert_required", flag(*cert_required)));
        }
        Change::Reload => fields.push(("kind", "reload".to_owned())),
    }
    fields
}

/// An entry from the stream's field/value pairs; `None` for anything malformed.
fn decode(map: &HashMap<String, redis::Value>) -> Option<FeedEntry> {
    let text = |name: &str| -> Option<String> {
        match map.get(name)? {
            redis::Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
            redis::Value::SimpleString(text) => Some(text.clone()),
            _ => None,
        }
    };
    let number = |name: &str| -> Option<i64> { text(name)?.parse().ok() };
    let flag = |name: &str| -> Option<bool> {
        match text(name)?.as_str() {
            "1" => Some(true),
            "0" => Some(false),
            _ => None,
        }
    };
    let time = |name: &str| -> Option<OffsetDateTime> {
        OffsetDateTime::from_unix_timestamp(number(name)?).ok()
    };
    let change = match text("kind")?.as_str() {
        "certificate" => Change::Certificate {
            issuer: IssuerKey::from_stored(number("issuer")?),
            serial: Serial::from_canonical_hex(&text("serial")?).ok()?,
            generation: text("generation")?,
            not_after: time("not_after")?,
            revoked: match (time("revoked_at"), text("reason")) {
                (Some(at), Some(reason)) => Some((at, reason.parse::<RevocationReason>().ok()?)),
                (None, None) => None,
                _ => return None,
            },
            renewed: flag("renewed")?,
        },
        "user" => Change::User {
            corp_id: text("corp_id")?,
            user_id: text("user_id")?,
            role: text("role")?.parse::<Role>().ok()?,
            suspended: flag("suspended")?,
            removed: flag("removed")?,
        },
        "corporation" => Change::Corporation {
            corp_id: text("corp_id")?,
            active: flag("active")?,
            cert_required: flag("cert_required")?,
        },
        "reload" => Change::Reload,
        _ => return None,
    };
    let prev = text("prev")?;
    Some(FeedEntry {
        seq: number("seq")?,
        prev_seq: if prev.is_empty() {
            None
        } else {
            Some(prev.parse().ok()?)
        },
        change,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(entry: FeedEntry) {
        let map: HashMap<String, redis::Value> = encode(&entry)
            .into_iter()
            .map(|(name, value)| {
                (
                    name.to_owned(),
                    redis::Value::BulkString(value.into_bytes()),
                )
            })
            .collect();
        assert_eq!(decode(&map), Some(entry));
    }

    #[test]
    fn every_kind_of_change_survives_the_stream() {
        let at = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        round_trip(FeedEntry {
            seq: 12,
            prev_seq: Some(9),
            change: Change::Certificate {
                issuer: IssuerKey(u64::MAX - 3),
                serial: Serial::from_canonical_hex("7fa1").unwrap(),
                generation: "g2".into(),
                not_after: at,
                revoked: Some((at, RevocationReason::AaCompromise)),
                renewed: true,
            },
        });
        round_trip(FeedEntry {
            seq: 13,
            prev_seq: None,
            change: Change::Certificate {
                issuer: IssuerKey(1),
                serial: Serial::from_canonical_hex("01").unwrap(),
                generation: "g1".into(),
                not_after: at,
                revoked: None,
                renewed: true,
            },
        });
        round_trip(FeedEntry {
            seq: 14,
            prev_seq: Some(13),
            change: Change::User {
                corp_id: "12345678901234".into(),
                user_id: "taro".into(),
                role: Role::Admin,
                suspended: true,
                removed: false,
            },
        });
        round_trip(FeedEntry {
            seq: 15,
            prev_seq: Some(14),
            change: Change::Corporation {
                corp_id: "12345678901234".into(),
                active: false,
                cert_required: true,
            },
        });
        round_trip(FeedEntry {
            seq: 16,
            prev_seq: Some(15),
            change: Change::Reload,
        });
        let mut broken: HashMap<String, redis::Value> = HashMap::new();
        broken.insert("kind".into(), redis::Value::BulkString(b"user".to_vec()));
        assert_eq!(decode(&broken), None);
    }
}
