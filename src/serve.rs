//! `certgate serve`: wires the rooms together, binds, serves, reloads on SIGHUP, drains on
//! SIGTERM/SIGINT.

use std::path::Path;
use std::sync::Arc;

use tokio::net::TcpListener;

use http::{Request, Response};

use crate::http::Body;
use hyper::body::Incoming;

use crate::api::Api;
use crate::api::pages::{PageKey, Pages, Templates};
use crate::config::{Config, ConfigError, LogConfig, LogFormat};
use crate::identity::Caller;
use crate::lifecycle::{Announced, ChangeListener, CrlWriter, Lifecycle, Wiring};
use crate::model::{Clock, SystemClock};
use crate::ops::{Metrics, Readiness, Signal, Signals};
use crate::proxy::{Answer, ConnectionLimits, OwnPaths, Proxy, serve_tls};
use crate::revocation::{RedisFeed, Standing};
use crate::tls::{HandshakeOutcome, ReloadableTls};

/// Why `serve` stopped with a failure.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The configuration (or a file it names) is unusable: exit code 2.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Something at run time (binding a port, a signal handler): exit code 1.
    #[error("{0}")]
    Runtime(String),
}

/// Loads the config and everything it names, making the development CA first when configured.
/// This is all of `check-config` and the first half of `serve`.
pub fn prepare(config_path: &Path) -> Result<Config, ServeError> {
    let config = Config::load(config_path)?;
    if let Some(dir) = &config.server.dev_ca {
        if !config.server.cert.exists() {
            let files = crate::pki::dev::create(dir, &config.server.cert, &config.server.key)
                .map_err(|err| {
                    ConfigError::new(
                        "server.dev_ca",
                        format!("{err}; check that {} is writable", dir.display()),
                    )
                })?;
            tracing::warn!(
                ca = %files.ca.display(),
                client_cert = %files.client_cert.display(),
                new_ca = files.new_ca,
                "development CA — not for production: made a localhost server certificate and a demo client certificate",
            );
        }
    }
    Ok(config)
}

/// `check-config`: the config, every file it names, and the trust it builds (certgate's own CA
/// generations included).
pub fn check_config(config_path: &Path) -> Result<(), ServeError> {
    let config = prepare(config_path)?;
    let anchors = match crate::pki::Pki::open(crate::pki::PkiSettings::from(&config.pki)) {
        Ok(pki) => pki.trust_anchors(crate::model::now()),
        Err(_) => Vec::new(),
    };
    let tickets = crate::tls::shared_ticketer(&config)?;
    crate::tls::server_config(&config, &anchors, tickets.as_ref())?;
    crate::proxy::Upstream::new(&config.upstream)?;
    Ok(())
}

/// The environment variable that carries PostgreSQL's password, so that it stays out of the
/// config file.
pub const STORE_PASSWORD_ENV: &str = "CERTGATE_STORE_PASSWORD";

/// Opens the registry named by `store.url` (with `CERTGATE_STORE_PASSWORD` when set). A failure
/// is a configuration error naming `store.url`, on one line, without the password.
pub async fn open_registry(config: &Config) -> Result<Arc<dyn crate::store::Registry>, ServeError> {
    let options = crate::store::StoreOptions {
        url: config.store.url.clone(),
        password: std::env::var(STORE_PASSWORD_ENV)
            .ok()
            .filter(|password| !password.is_empty())
            .map(secrecy::SecretString::from),
        pool: crate::store::PoolSettings {
            max_connections: config.store.max_connections,
            connect_timeout: config.store.connect_timeout,
        },
    };
    Ok(crate::store::open_with(&options).await.map_err(|err| {
        let hint = if config.store.url.starts_with("sqlite") {
            "check the path and that its directory is writable"
        } else {
            "check the host, port, database, user and password (CERTGATE_STORE_PASSWORD)"
        };
        // The store's messages already include their cause, once.
        let reason = err.to_string().replace(['\n', '\r'], " ");
        ConfigError::new("store.url", format!("{reason}; {hint}"))
    })?)
}

/// Opens the registry and, when `certgate init` has made it, the CA; with `server.dev_ca` set
/// (development), a missing CA is made here too, with a warning.
pub async fn open_lifecycle(config: &Config, wiring: Wiring) -> Result<Lifecycle, ServeError> {
    let store = open_registry(config).await?;
    lifecycle_over(config, store, wiring)
}

fn lifecycle_over(
    config: &Config,
    store: Arc<dyn crate::store::Registry>,
    wiring: Wiring,
) -> Result<Lifecycle, ServeError> {
    let settings = crate::pki::PkiSettings::from(&config.pki);
    let pki = match crate::pki::Pki::open(settings.clone()) {
        Ok(pki) => Some(pki),
        Err(crate::pki::PkiError::NotInitialised { .. }) if config.server.dev_ca.is_some() => {
            let pki = crate::pki::Pki::init(settings, wiring.clock.now())
                .map_err(|err| ConfigError::new("pki.dir", format!("{err}")))?;
            tracing::warn!(dir = %config.pki.dir.display(), "development issuing CA made in pki.dir — not for production; run `certgate init` on a real deployment");
            Some(pki)
        }
        Err(crate::pki::PkiError::NotInitialised { .. }) => None,
        Err(err) => return Err(ConfigError::new("pki.dir", format!("{err}")).into()),
    };
    Ok(Lifecycle::new(
        store,
        pki,
        config.lifecycle.clone(),
        config.identity.clone(),
        wiring,
    ))
}

/// The revocation snapshot hears of the lifecycle's changes: it re-reads the registry before the
/// change's caller is answered, and hands what it read to Redis for the other replicas.
struct CatchUp {
    standing: Standing,
    redis: Option<Arc<RedisFeed>>,
}

impl ChangeListener for CatchUp {
    fn standing_changed(&self) -> Announced<'_> {
        Box::pin(async {
            match self.standing.catch_up_read().await {
                Ok(read) => {
                    if let Some(redis) = &self.redis {
                        redis.publish(&read).await;
                    }
                }
                Err(err) => {
                    tracing::error!(error = %err, "cannot read the change feed after a change; the next poll will");
                }
            }
        })
    }
}

/// The operator CLI's changes, handed to Redis for the running replicas: the feed from where it
/// stood when the command started.
struct PublishSince {
    store: Arc<dyn crate::store::Registry>,
    seen: tokio::sync::Mutex<i64>,
    redis: RedisFeed,
}

impl ChangeListener for PublishSince {
    fn standing_changed(&self) -> Announced<'_> {
        Box::pin(async {
            let mut seen = self.seen.lock().await;
            match self.store.changes_since(*seen, 10_000).await {
                Ok(read) => {
                    if let Some(last) = read.last() {
                        *seen = last.seq;
                    }
                    self.redis.publish(&read).await;
                }
                Err(err) => {
                    tracing::warn!(error = %err, "cannot read the change feed to publish it; the replicas' poll will");
                }
            }
        })
    }
}

/// The Redis feed of `[revocation] redis_url`, if set (password from `CERTGATE_REDIS_PASSWORD`
/// when the URL has none).
pub fn redis_feed(config: &Config) -> Result<Option<RedisFeed>, ConfigError> {
    let Some(url) = &config.revocation.redis_url else {
        return Ok(None);
    };
    let password = std::env::var(REDIS_PASSWORD_ENV)
        .ok()
        .filter(|password| !password.is_empty())
        .map(secrecy::SecretString::from);
    RedisFeed::new(url, password.as_ref())
        .map(Some)
        .map_err(|err| ConfigError::new("revocation.redis_url", err.to_string()))
}

/// The environment variable with the Redis password, so that it stays out of the config file.
pub const REDIS_PASSWORD_ENV: &str = "CERTGATE_REDIS_PASSWORD";

/// The lifecycle for an operator command: its changes reach the running replicas through Redis
/// when one is configured (and through their poll of the registry in any case).
pub async fn open_operator_lifecycle(config: &Config) -> Result<Lifecycle, ServeError> {
    let store = open_registry(config).await?;
    let mut wiring = Wiring::default();
    if let Some(redis) = redis_feed(config)? {
        let seen = store.feed_head().await.map_err(|err| {
            ServeError::Runtime(format!("cannot read the registry's change feed: {err}"))
        })?;
        wiring.changes = Arc::new(PublishSince {
            store: store.clone(),
            seen: tokio::sync::Mutex::new(seen),
            redis,
        });
    }
    lifecycle_over(config, store, wiring)
}

/// The pages for people: their templates (with the bank's overrides) and the key of their
/// forms, made on first start when missing.
fn pages(config: &Config) -> Result<Pages, ServeError> {
    let path = &config.pages.secret_file;
    let (key, created) = PageKey::load_or_create(path).map_err(|err| {
        ServeError::Config(ConfigError::new("pages.secret_file", err.to_string()))
    })?;
    if created {
        tracing::info!(file = %path.display(), "made the key of the pages' forms (pages.secret_file); replicas share it, as they share the CA");
    }
    Ok(Pages::new(
        key,
        Templates::new(config.pages.templates.as_deref()),
    ))
}

/// certgate's own paths, as the proxy sees them.
impl OwnPaths for Api {
    fn owns(&self, path: &str) -> bool {
        Api::owns(path)
    }

    fn answer<'a>(&'a self, caller: Caller<'a>, request: Request<Incoming>) -> Answer<'a> {
        // Boxed: the API's future is large and would otherwise make every proxied request's
        // future as large.
        Box::pin(self.handle(caller, request))
    }

    fn notice(&self, caller: Caller<'_>, request: &Request<Incoming>) -> Option<Response<Body>> {
        self.renewal_notice(caller, request)
    }
}

/// Installs the log subscriber for `[log]`; logs go to stderr so stdout stays for command output.
pub fn init_logging(log: &LogConfig) {
    let filter = tracing_subscriber::EnvFilter::try_new(&log.level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only for a person at a terminal: a log file or a pipe gets plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match log.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
}

/// Runs the server until SIGTERM/SIGINT and a drain.
pub async fn serve(config_path: &Path) -> Result<(), ServeError> {
    // Signals first: a SIGTERM that arrives while binding must not kill the process undrained.
    let mut signals = Signals::register()
        .map_err(|err| ServeError::Runtime(format!("cannot install signal handlers: {err}")))?;
    let config = prepare(config_path)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let store = open_registry(&config).await?;
    let standing = Standing::load(store.clone(), clock.clone())
        .await
        .map_err(|err| {
            ServeError::Runtime(format!(
                "cannot read revocations and users from the registry: {err}"
            ))
        })?;
    let redis = redis_feed(&config)?.map(Arc::new);
    let external_crls = crate::revocation::ExternalCrls::load(&config.trust)?.map(Arc::new);
    if let Some(crls) = &external_crls {
        standing.set_external(crls.set()).await;
    }
    let recheck_crls = Arc::new(tokio::sync::Notify::new());
    let labels = HandshakeOutcome::ALL.map(HandshakeOutcome::label);
    let metrics = Arc::new(Metrics::new(&labels));
    let crl_writer = CrlWriter::new();
    let lifecycle = lifecycle_over(
        &config,
        store,
        Wiring {
            clock,
            changes: Arc::new(CatchUp {
                standing: standing.clone(),
                redis: redis.clone(),
            }),
            pin_checks: metrics.pin_verifications.clone(),
            crl_writer: Some(crl_writer.clone()),
        },
    )?;
    let tickets = crate::tls::shared_ticketer(&config)?;
    let tls = Arc::new(ReloadableTls::new(
        crate::tls::server_config(&config, &lifecycle.trust_anchors(), tickets.as_ref())?,
        tickets.clone(),
    ));
    let ticket_watch = tickets.map(|tickets| tokio::spawn(tickets.watch()));
    let api: Arc<dyn OwnPaths> = Arc::new(Api::new(lifecycle.clone(), pages(&config)?));
    let proxy = Arc::new(Proxy::new(
        &config,
        metrics.clone(),
        api,
        standing.clone(),
        lifecycle.clock().clone(),
    )?);
    let readiness = Readiness::default();

    let listener = TcpListener::bind(config.server.listen)
        .await
        .map_err(|err| {
            ServeError::Runtime(format!(
                "server.listen: cannot bind {}: {err}",
                config.server.listen
            ))
        })?;
    let address = listener
        .local_addr()
        .map_err(|err| ServeError::Runtime(err.to_string()))?;
    let scheduler = match tokio::runtime::Handle::current().runtime_flavor() {
        tokio::runtime::RuntimeFlavor::CurrentThread => "single-threaded",
        _ => "multi-threaded",
    };
    tracing::info!(listener = "https", %address, scheduler, "listening");
    if let Some(ops_address) = config.ops.listen {
        let ops = TcpListener::bind(ops_address).await.map_err(|err| {
            ServeError::Runtime(format!("ops.listen: cannot bind {ops_address}: {err}"))
        })?;
        let address = ops
            .local_addr()
            .map_err(|err| ServeError::Runtime(err.to_string()))?;
        tracing::info!(listener = "ops", %address, "listening");
        tokio::spawn(crate::ops::serve(ops, metrics.clone(), readiness.clone()));
    }
    let notifier = crate::notify::Notifier::new(
        &config.notify,
        lifecycle.store().clone(),
        lifecycle.clock().clone(),
    )?
    .map(|notifier| tokio::spawn(notifier.run()));
    let refresher = tokio::spawn(standing.clone().poll_periodically(
        config.revocation.poll,
        config.revocation.resync,
        redis.as_ref().map(|redis| redis.alive()),
    ));
    let follower = redis
        .clone()
        .map(|redis| tokio::spawn(redis.follow(standing.clone())));
    let crl_watch = external_crls
        .map(|crls| tokio::spawn(standing.clone().watch_crls(crls, recheck_crls.clone())));
    let freshness = tokio::spawn(watch_freshness(
        standing.clone(),
        lifecycle.clock().clone(),
        config.revocation.clone(),
        metrics.clone(),
        readiness.clone(),
    ));
    let crl_every = CrlWriter::interval(lifecycle.crl_validity());
    let crls = tokio::spawn(crl_writer.run(lifecycle.clone(), crl_every));
    let sweeper = tokio::spawn(forget_expired_files(lifecycle.clone()));

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let limits = ConnectionLimits::from_config(&config.server);
    let accepting = tokio::spawn(serve_tls(listener, tls.clone(), proxy, limits, async {
        let _ = stopped.await;
    }));
    readiness.set(true);
    if let Some(dev) = &config.server.dev_ca {
        print_next_steps(dev, address.port());
    }

    while signals.recv().await == Signal::Reload {
        reload(config_path, &tls, &lifecycle);
        recheck_crls.notify_one();
        // The whole standing too, in the background: requests keep the current one meanwhile.
        let standing = standing.clone();
        tokio::spawn(async move {
            match standing.reload().await {
                Ok(()) => tracing::info!("reloaded the whole standing from the registry"),
                Err(err) => {
                    tracing::error!(error = %err, "cannot reload the standing; the current one stays")
                }
            }
        });
    }
    readiness.set(false);
    tracing::info!(grace = ?config.server.shutdown_grace, "shutting down: no new connections, draining open ones");
    let _ = stop.send(());
    let graceful = accepting
        .await
        .map_err(|err| ServeError::Runtime(format!("accept loop failed: {err}")))?;
    match tokio::time::timeout(config.server.shutdown_grace, graceful.shutdown()).await {
        Ok(()) => tracing::info!("all connections closed"),
        Err(_) => tracing::warn!("shutdown_grace is over; closing the remaining connections"),
    }
    refresher.abort();
    if let Some(notifier) = notifier {
        notifier.abort();
    }
    for task in [follower, ticket_watch, crl_watch].into_iter().flatten() {
        task.abort();
    }
    freshness.abort();
    crls.abort();
    sweeper.abort();
    lifecycle.store().close().await;
    Ok(())
}

/// SIGHUP: re-reads the config file, the certificate, key and CA files it names, and the CA
/// generations in `pki.dir` (a `certgate ca rotate` made by the operator); anything broken is
/// refused and the running state stays. (The standing is reloaded beside it.)
fn reload(config_path: &Path, tls: &ReloadableTls, lifecycle: &crate::lifecycle::Lifecycle) {
    let result = Config::load(config_path).and_then(|config| {
        lifecycle
            .reload_ca(crate::pki::PkiSettings::from(&config.pki))
            .map_err(|err| ConfigError::new("pki.dir", err.to_string()))?;
        tls.reload(&config, &lifecycle.trust_anchors())
    });
    match result {
        Ok(()) => tracing::info!("reloaded the server certificate, key and trusted CAs"),
        Err(err) => {
            tracing::error!(error = %err, "reload refused; the previous certificates and CAs stay in use")
        }
    }
}

/// Erases the `certificate.p12` files kept for retries once their window has closed.
async fn forget_expired_files(lifecycle: Lifecycle) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
    loop {
        tick.tick().await;
        if let Err(err) = lifecycle
            .store()
            .forget_expired_files(lifecycle.now())
            .await
        {
            tracing::warn!(error = %err, "cannot erase expired certificate.p12 files; will retry");
        }
    }
}

/// Every second: exports the revocation set's age, and with `on_stale = "reject"` reports the
/// process not ready while that age is past `max_staleness` (with `serve` it stays ready, or
/// every replica would leave the balancer at once).
async fn watch_freshness(
    standing: Standing,
    clock: Arc<dyn Clock>,
    policy: crate::config::RevocationConfig,
    metrics: Arc<Metrics>,
    readiness: Readiness,
) {
    let max = i64::try_from(policy.max_staleness.as_secs()).unwrap_or(i64::MAX);
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    let mut was_fresh = true;
    let gauges = &metrics.revocation;
    let (registry_age, redis_age) = (gauges.sync_age("registry"), gauges.sync_age("redis"));
    let (from_registry, from_redis) = (gauges.applied("registry"), gauges.applied("redis"));
    let mut counted = (0, 0);
    loop {
        tick.tick().await;
        let now = clock.unix();
        let age = standing.age(now);
        metrics.revocation_age.set(age);
        let (registry, redis) = standing.sync_ages(now);
        registry_age.set(registry);
        redis_age.set(redis.unwrap_or(-1));
        let applied = standing.applied_counts();
        from_registry.inc_by(applied.0.saturating_sub(counted.0));
        from_redis.inc_by(applied.1.saturating_sub(counted.1));
        counted = applied;
        gauges
            .entries
            .set(i64::try_from(standing.snapshot().len()).unwrap_or(i64::MAX));
        let fresh = age <= max;
        gauges.stale.set(i64::from(!fresh));
        if fresh != was_fresh {
            if fresh {
                tracing::info!(age, "the revocation set is fresh again");
            } else {
                tracing::error!(age, max_staleness = max, on_stale = ?policy.on_stale, "the revocation set is stale: neither the registry nor Redis can be read");
            }
            was_fresh = fresh;
        }
        if policy.on_stale == crate::config::OnStale::Reject {
            readiness.set_fresh(fresh);
        }
    }
}

/// On the development start, what a newcomer runs next (README.md's walk-through goes on from
/// there).
fn print_next_steps(dev: &Path, port: u16) {
    let dev = dev.display();
    tracing::info!(
        "next: curl --cert {dev}/client.pem --key {dev}/client.key --cacert {dev}/ca.pem https://localhost:{port}/"
    );
    tracing::info!(
        "next: cargo run --release -- corp add --corp-id 12345678901234 --name \"Example Trading\" --admin-email admin@example.jp"
    );
    tracing::info!("next: README.md, section \"Walk-through\", goes on from there");
}
