//! The PostgreSQL backend, for several certgate processes sharing one registry: the URL and its
//! password (kept out of every message), the pool, the migrations. Writers to the change feed
//! take an advisory lock (see `sql.rs`), and claims are single conditional updates, which
//! PostgreSQL serialises per row.

use std::str::FromStr;
use std::time::Duration;

use secrecy::ExposeSecret as _;
use sqlx::Connection as _;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;

use super::sql::{Dialect, EmbeddedMigration, EmbeddedMigrations, SqlRegistry};
use super::{StoreError, StoreOptions};

/// `[store]` pool settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSettings {
    /// `max_connections`, default 16 (PostgreSQL; SQLite uses 8 whatever this says).
    pub max_connections: u32,
    /// `connect_timeout`: how long to wait for a connection, default 5 s.
    pub connect_timeout: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            max_connections: 16,
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// This backend's schema migrations, embedded at build time (`include_str!`, so that editing
/// one triggers a rebuild).
const MIGRATIONS: &[EmbeddedMigration] = &[
    (
        1,
        "registry",
        include_str!("../../migrations/postgres/0001_registry.sql"),
    ),
    (
        2,
        "feed chain",
        include_str!("../../migrations/postgres/0002_feed_chain.sql"),
    ),
    (
        3,
        "user name",
        include_str!("../../migrations/postgres/0003_user_name.sql"),
    ),
    (
        4,
        "confirmations",
        include_str!("../../migrations/postgres/0004_confirmations.sql"),
    ),
    (
        5,
        "notices",
        include_str!("../../migrations/postgres/0005_notices.sql"),
    ),
];

/// Connects, migrates and returns the registry.
pub(super) async fn open(options: &StoreOptions) -> Result<SqlRegistry, StoreError> {
    sqlx::any::install_default_drivers();
    let shown = crate::model::url_without_password(&options.url);
    let open_err = |source| StoreError::Open {
        url: shown.clone(),
        source,
    };
    let mut url = url::Url::parse(&options.url).map_err(|err| StoreError::Open {
        url: shown.clone(),
        source: sqlx::Error::Configuration(err.to_string().into()),
    })?;
    if url.password().is_none() {
        if let Some(password) = &options.password {
            url.set_password(Some(password.expose_secret()))
                .map_err(|()| StoreError::Open {
                    url: shown.clone(),
                    source: sqlx::Error::Configuration("the URL cannot carry a password".into()),
                })?;
        }
    }
    let connect = AnyConnectOptions::from_str(url.as_str()).map_err(open_err)?;
    // One connection first: the pool retries until its timeout and then reports only that it
    // timed out, while the operator needs to read "connection refused" or "password
    // authentication failed".
    let first = tokio::time::timeout(
        options.pool.connect_timeout,
        sqlx::AnyConnection::connect_with(&connect),
    )
    .await
    .map_err(|_| StoreError::Open {
        url: shown.clone(),
        source: sqlx::Error::Configuration(
            format!(
                "no answer within {} s",
                options.pool.connect_timeout.as_secs_f32()
            )
            .into(),
        ),
    })?
    .map_err(open_err)?;
    let _ = first.close().await;
    let pool = AnyPoolOptions::new()
        .max_connections(options.pool.max_connections)
        .acquire_timeout(options.pool.connect_timeout)
        .connect_with(connect.clone())
        .await
        .map_err(open_err)?;
    // The change feed's own connections (see `SqlRegistry`).
    let feed = AnyPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(options.pool.connect_timeout)
        .connect_with(connect)
        .await
        .map_err(open_err)?;
    Migrator::new(EmbeddedMigrations(MIGRATIONS))
        .await?
        .run(&pool)
        .await?;
    let registry = SqlRegistry::new(pool, feed, Dialect::Postgres);
    registry.fill_issuer_keys().await?;
    Ok(registry)
}

#[cfg(test)]
mod tests {
    use crate::model::url_without_password as redacted;

    #[test]
    fn a_password_never_shows() {
        assert_eq!(
            redacted("postgres://bank:s3cret@db.example:5432/certgate"),
            "postgres://bank:***@db.example:5432/certgate"
        );
        assert!(!redacted("postgres://bank:s3cret@db/x?sslmode=require").contains("s3cret"));
        assert_eq!(redacted("not a url"), "(the URL does not parse)");
    }
}
