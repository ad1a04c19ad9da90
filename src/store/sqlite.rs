//! The SQLite backend: a file on this machine (WAL journal, `synchronous=FULL`, foreign keys,
//! a busy timeout), its migrations, and filling in what older rows lack.
//!
//! `synchronous=FULL`: each commit fsyncs the WAL. `NORMAL` would survive `kill -9` but could
//! lose the last commits on power loss, and a certificate whose bytes have left must stay in the
//! ledger. Writers queue on the busy timeout instead of failing.

use std::borrow::Cow;
use std::str::FromStr;
use std::time::Duration;

use futures_util::future::BoxFuture;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};

use super::StoreError;
use super::sql::{Dialect, SqlRegistry};

/// How long a writer waits for the write lock before giving up. Enrollments are short
/// transactions (a few statements and one fsync), so even a burst of 50 queues well inside it.
const BUSY_TIMEOUT: Duration = Duration::from_secs(15);

/// SQLite has one writer at a time; more connections only help concurrent readers.
const MAX_CONNECTIONS: u32 = 8;

/// The schema migrations, embedded at build time (`include_str!`, so that editing one triggers a
/// rebuild).
#[derive(Debug)]
struct Embedded;

impl MigrationSource<'static> for Embedded {
    fn resolve(self) -> BoxFuture<'static, Result<Vec<Migration>, sqlx::error::BoxDynError>> {
        Box::pin(async {
            let migration = |version, description, sql| {
                Migration::new(
                    version,
                    Cow::Borrowed(description),
                    MigrationType::Simple,
                    Cow::Borrowed(sql),
                    false,
                )
            };
            Ok(vec![
                migration(
                    1,
                    "registry",
                    include_str!("../../migrations/sqlite/0001_registry.sql"),
                ),
                migration(
                    2,
                    "enrollment files",
                    include_str!("../../migrations/sqlite/0002_enrollment_files.sql"),
                ),
                migration(
                    3,
                    "change feed",
                    include_str!("../../migrations/sqlite/0003_change_feed.sql"),
                ),
            ])
        })
    }
}

/// Opens (creating the file and its directory if needed) and migrates the database at `url`,
/// e.g. `sqlite://data/certgate.db`.
pub(super) async fn open(url: &str) -> Result<SqlRegistry, StoreError> {
    sqlx::any::install_default_drivers();
    let open_err = |source| StoreError::Open {
        url: url.to_owned(),
        source,
    };
    // The file and its directory are made here: the connection is opened read-write-create.
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    let path = path.split('?').next().unwrap_or(path);
    if let Some(dir) = std::path::Path::new(path).parent() {
        if !dir.as_os_str().is_empty() {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|source| StoreError::CreateDir {
                    path: dir.to_path_buf(),
                    source,
                })?;
        }
    }
    let with_mode = if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    };
    let options = AnyConnectOptions::from_str(&with_mode).map_err(open_err)?;
    let pool = AnyPoolOptions::new()
        .max_connections(MAX_CONNECTIONS)
        .after_connect(|conn, _| {
            Box::pin(async move {
                for pragma in [
                    "PRAGMA journal_mode = WAL",
                    "PRAGMA synchronous = FULL",
                    "PRAGMA foreign_keys = ON",
                    &format!("PRAGMA busy_timeout = {}", BUSY_TIMEOUT.as_millis()),
                ] {
                    sqlx::query(pragma).execute(&mut *conn).await?;
                }
                Ok(())
            })
        })
        .connect_with(options)
        .await
        .map_err(open_err)?;
    Migrator::new(Embedded).await?.run(&pool).await?;
    let registry = SqlRegistry::new(pool, Dialect::Sqlite);
    registry.fill_issuer_keys().await?;
    Ok(registry)
}
