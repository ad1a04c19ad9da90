//! The SQLite backend: a file on this machine (WAL journal, `synchronous=FULL`, foreign keys,
//! a busy timeout), its migrations, and filling in what older rows lack.
//!
//! `synchronous=FULL`: each commit fsyncs the WAL. `NORMAL` would survive `kill -9` but could
//! lose the last commits on power loss, and a certificate whose bytes have left must stay in the
//! ledger. Writers queue on the busy timeout instead of failing.

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;

use super::StoreError;
use super::sql::{Dialect, EmbeddedMigration, EmbeddedMigrations, SqlRegistry};

/// How long a writer waits for the write lock before giving up. Enrollments are short
/// transactions (a few statements and one fsync), so even a burst of 50 queues well inside it.
const BUSY_TIMEOUT: Duration = Duration::from_secs(15);

/// SQLite has one writer at a time; more connections only help concurrent readers.
const MAX_CONNECTIONS: u32 = 8;

/// Connections of the change feed's own pool (see `SqlRegistry`).
const FEED_CONNECTIONS: u32 = 2;

/// The registry holds PIN hashes and, for a few minutes, the `certificate.p12` files sent: only
/// its owner may read it, whatever the umask (its WAL and shared-memory files are created with
/// the database's mode).
fn restrict_to_owner(path: &str) {
    use std::os::unix::fs::PermissionsExt as _;
    for file in [
        path.to_owned(),
        format!("{path}-wal"),
        format!("{path}-shm"),
    ] {
        if let Ok(metadata) = std::fs::metadata(&file) {
            let mut permissions = metadata.permissions();
            if permissions.mode() & 0o077 != 0 {
                permissions.set_mode(permissions.mode() & 0o700);
                if let Err(err) = std::fs::set_permissions(&file, permissions) {
                    tracing::warn!(file, error = %err, "cannot make the registry readable by its owner only");
                }
            }
        }
    }
}

/// This backend's schema migrations, embedded at build time (`include_str!`, so that editing
/// one triggers a rebuild).
pub(super) const MIGRATIONS: &[EmbeddedMigration] = &[
    (
        1,
        "registry",
        include_str!("../../migrations/sqlite/0001_registry.sql"),
    ),
    (
        2,
        "enrollment files",
        include_str!("../../migrations/sqlite/0002_enrollment_files.sql"),
    ),
    (
        3,
        "change feed",
        include_str!("../../migrations/sqlite/0003_change_feed.sql"),
    ),
    (
        4,
        "feed chain",
        include_str!("../../migrations/sqlite/0004_feed_chain.sql"),
    ),
    (
        5,
        "user name",
        include_str!("../../migrations/sqlite/0005_user_name.sql"),
    ),
    (
        6,
        "confirmations",
        include_str!("../../migrations/sqlite/0006_confirmations.sql"),
    ),
    (
        7,
        "notices",
        include_str!("../../migrations/sqlite/0007_notices.sql"),
    ),
];

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
            // Owner only, like the database in it.
            tokio::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
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
    let pool_of = |size: u32| {
        AnyPoolOptions::new()
            .max_connections(size)
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
            .connect_with(options.clone())
    };
    let pool = pool_of(MAX_CONNECTIONS).await.map_err(open_err)?;
    restrict_to_owner(path);
    let feed = pool_of(FEED_CONNECTIONS).await.map_err(open_err)?;
    Migrator::new(EmbeddedMigrations(MIGRATIONS))
        .await?
        .run(&pool)
        .await?;
    let registry = SqlRegistry::new(pool, feed, Dialect::Sqlite);
    registry.fill_issuer_keys().await?;
    Ok(registry)
}
