//! certgate with a registry of N users: start-up, memory, idle CPU, request latency with and
//! without a stream of revocations, and how long a revocation made by another process takes to
//! be refused. A benchmark, not a test: it prints numbers for BENCHMARKS.md.
//!
//! Shape: N users, 10 per corporation (the first a master, the second an admin, the rest general
//! users), one certificate each, 10 % of them revoked, seeded with bulk SQL into a registry made
//! by certgate's own migrations (SQLite file or a throw-away PostgreSQL database); then the
//! release binary serves it (client certificates required, the built-in echo upstream,
//! `revocation.poll = 1s`) and is measured from outside:
//!
//! - start-up: from spawning `certgate serve` to `/readyz` answering 200;
//! - RSS at ready and after the idle period, CPU used over the idle period (from `/proc`; the
//!   period starts 15 s after ready, once the fresh registry's first CRL is signed);
//! - request p50/p99 over one keep-alive HTTP/1.1 connection, one request at a time, alone and
//!   while this process revokes 20 certificates a second through the store's own API;
//! - revoke-to-refused: `certgate cert revoke` run as another process, and the time from its start
//!   until a request with that certificate is refused (polled every 5 ms), and how long the
//!   command itself took.
//!
//! Run (release build; pin the server and this process apart on a 2-core machine):
//!
//! ```sh
//! cargo build --release
//! taskset -c 1 cargo bench --bench registry_scale -- --users 100000 --backend sqlite --pin 0
//! taskset -c 1 cargo bench --bench registry_scale -- --users 1000000 --backend postgres --pin 0
//! ```
//!
//! Fan-out mode (`--fanout N [--redis]`): two servers on the registry (and a Redis of the bench's
//! own with `--redis`); N times, a corporation administrator revokes a user through the admin API
//! of the first, and the time from its answer to the first refusal of that user's certificate by
//! the second (a keep-alive connection polled every millisecond) is taken; p50/p99 printed.
//!
//! Options: `--users N` (10000), `--backend sqlite|postgres`, `--postgres URL` (the server for
//! the throw-away database, default `CERTGATE_TEST_POSTGRES` or the local one), `--idle-secs S`
//! (60), `--load-secs S` (10), `--revocations R` (20), `--soak-mins M` (0: after the measurements,
//! M more minutes of 20 changes a second, then RSS again), `--pin CPU` (run the server under
//! `taskset -c CPU`), `--certgate PATH` (target/release/certgate). `cargo test --all-targets`
//! only compiles it.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_precision_loss,
    reason = "a benchmark that cannot go on should stop at the line that could not"
)]

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use certgate::model::{IssuerKey, RevocationReason};
use certgate::store::{NewAudit, Registry};
use http_body_util::{BodyExt as _, Empty};
use sqlx::Connection as _;

/// What a run measures.
struct Options {
    users: usize,
    backend: String,
    postgres: String,
    idle: Duration,
    load: Duration,
    revocations: usize,
    soak: Duration,
    pin: Option<String>,
    certgate: PathBuf,
    /// `--fanout N`: measure the fan-out of N revocations between two servers instead.
    fanout: Option<usize>,
    /// `--redis`: with a Redis of the bench's own (fan-out mode).
    redis: bool,
}

fn options() -> Options {
    let args: Vec<String> = std::env::args().collect();
    let value = |name: &str| {
        args.iter()
            .position(|arg| arg == name)
            .and_then(|at| args.get(at + 1).cloned())
    };
    let number = |name: &str, default: u64| {
        value(name).map_or(default, |text| text.parse().expect("a number"))
    };
    Options {
        users: usize::try_from(number("--users", 10_000)).expect("users"),
        backend: value("--backend").unwrap_or_else(|| "sqlite".to_owned()),
        postgres: value("--postgres").unwrap_or_else(|| {
            std::env::var("CERTGATE_TEST_POSTGRES")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
        }),
        idle: Duration::from_secs(number("--idle-secs", 60)),
        load: Duration::from_secs(number("--load-secs", 10)),
        revocations: usize::try_from(number("--revocations", 20)).expect("revocations"),
        soak: Duration::from_secs(number("--soak-mins", 0) * 60),
        pin: value("--pin"),
        certgate: value("--certgate").map_or_else(
            || Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/certgate"),
            PathBuf::from,
        ),
        fanout: value("--fanout").map(|text| text.parse().expect("a number")),
        redis: args.iter().any(|arg| arg == "--redis"),
    }
}

fn main() {
    // `cargo test --all-targets` runs bench targets without `--bench`: compile only.
    if !std::env::args().any(|arg| arg == "--bench") {
        return;
    }
    let options = options();
    assert!(
        options.certgate.exists(),
        "{} is missing: cargo build --release",
        options.certgate.display()
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    if options.fanout.is_some() {
        runtime.block_on(fanout(options));
    } else {
        runtime.block_on(run(options));
    }
}

/// The bench's own CA, a server certificate, and client certificates of seeded users.
struct Pki {
    ca_pem: String,
    ca_issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    issuer_key: IssuerKey,
}

impl Pki {
    fn new() -> Self {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "registry-scale bench CA");
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let cert = params.self_signed(&key).unwrap();
        let (_, parsed) = x509_parser::parse_x509_certificate(cert.der()).unwrap();
        let issuer_key = IssuerKey::of_name(parsed.subject().as_raw());
        Self {
            ca_pem: cert.pem(),
            ca_issuer: rcgen::Issuer::new(params, key),
            issuer_key,
        }
    }

    fn leaf(&self, cn: &str, server: bool) -> (String, String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let names = if server {
            vec!["localhost".to_owned()]
        } else {
            Vec::new()
        };
        let mut params = rcgen::CertificateParams::new(names).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params.extended_key_usages = vec![if server {
            rcgen::ExtendedKeyUsagePurpose::ServerAuth
        } else {
            rcgen::ExtendedKeyUsagePurpose::ClientAuth
        }];
        let cert = params.signed_by(&key, &self.ca_issuer).unwrap();
        let (_, parsed) = x509_parser::parse_x509_certificate(cert.der()).unwrap();
        // The registry keeps serials canonical: without the leading zero byte DER may carry.
        let serial = certgate::model::Serial::from_be_bytes(parsed.raw_serial())
            .expect("a serial of at most 20 bytes")
            .to_hex();
        (cert.pem(), key.serialize_pem(), serial)
    }
}

fn corp_id(corporation: usize) -> String {
    format!("{:014}", corporation + 1)
}

/// Seeds `users` users (10 per corporation), one certificate each, every tenth revoked, in
/// multi-row INSERTs of a thousand rows.
async fn seed(url: &str, users: usize, issuer_key: IssuerKey) {
    // certgate's migrations make the schema.
    certgate::store::open(url).await.unwrap().close().await;
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(url).await.unwrap();
    if url.starts_with("sqlite") {
        for pragma in ["PRAGMA synchronous = OFF", "PRAGMA journal_mode = WAL"] {
            sqlx::query(pragma).execute(&mut conn).await.unwrap();
        }
    }
    let now = certgate::model::now().unix_timestamp();
    let started = Instant::now();
    let corporations = users.div_ceil(10);
    for chunk in (0..corporations).collect::<Vec<_>>().chunks(1000) {
        let mut sql = String::from(
            "INSERT INTO corporations (corp_id, name, admin_email, cert_required, status, created_at) VALUES ",
        );
        for (row, corporation) in chunk.iter().enumerate() {
            if row > 0 {
                sql.push(',');
            }
            sql.push_str(&format!(
                "('{}', 'Corporation {corporation}', 'admin@c{corporation}.example', 0, 'active', {now})",
                corp_id(*corporation)
            ));
        }
        sqlx::query(&sql).execute(&mut conn).await.unwrap();
    }
    let mut tx = conn.begin().await.unwrap();
    for chunk in (0..users).collect::<Vec<_>>().chunks(1000) {
        let mut user_sql = String::from(
            "INSERT INTO users (corp_id, user_id, role, email, status, created_at) VALUES ",
        );
        let mut cert_sql = String::from(
            "INSERT INTO certificates (serial, issuer_generation, corp_id, user_id, not_before, \
             not_after, sha256, spki_sha256, der, status, issued_at, revoked_at, \
             revocation_reason, issuer_key) VALUES ",
        );
        for (row, user) in chunk.iter().enumerate() {
            if row > 0 {
                user_sql.push(',');
                cert_sql.push(',');
            }
            let role = match user % 10 {
                0 => "master",
                1 => "admin",
                _ => "general",
            };
            let corp = corp_id(user / 10);
            user_sql.push_str(&format!(
                "('{corp}', 'u{user}', '{role}', NULL, 'active', {now})"
            ));
            let revoked = user % 10 == 5;
            let der = if url.starts_with("sqlite") {
                "X'3000'"
            } else {
                "'\\x3000'::bytea"
            };
            cert_sql.push_str(&format!(
                "('7f{user:030x}', 'g1', '{corp}', 'u{user}', {}, {}, '{user:064x}', '{:064x}', {der}, '{}', {}, {}, {}, {})",
                now - 10 * 86_400,
                now + 355 * 86_400,
                user + (1 << 40),
                if revoked { "revoked" } else { "active" },
                now - 10 * 86_400,
                if revoked { (now - 86_400).to_string() } else { "NULL".to_owned() },
                if revoked { "'keyCompromise'" } else { "NULL" },
                issuer_key.to_stored(),
            ));
        }
        sqlx::query(&user_sql).execute(&mut *tx).await.unwrap();
        sqlx::query(&cert_sql).execute(&mut *tx).await.unwrap();
        if chunk[0] % 100_000 == 0 {
            eprint!("\rseeding: {} of {users} users", chunk[0]);
        }
    }
    tx.commit().await.unwrap();
    if url.starts_with("postgres") {
        sqlx::query("ANALYZE").execute(&mut conn).await.unwrap();
    }
    eprintln!(
        "\rseeded {users} users, {corporations} corporations, {} revoked, in {:.1} s",
        users / 10,
        started.elapsed().as_secs_f64()
    );
}

/// Registers the bench's client certificates in the ledger, so that the CLI can revoke them.
async fn register_clients(url: &str, clients: &[Client], issuer_key: IssuerKey) {
    let mut conn = sqlx::AnyConnection::connect(url).await.unwrap();
    let now = certgate::model::now().unix_timestamp();
    for (index, client) in clients.iter().enumerate() {
        sqlx::query(
            "INSERT INTO certificates (serial, issuer_generation, corp_id, user_id, not_before, \
             not_after, sha256, spki_sha256, der, status, issued_at, issuer_key) \
             VALUES ($1, 'g1', $2, $3, $4, $5, $6, $7, $8, 'active', $4, $9)",
        )
        .bind(client.serial.clone())
        .bind(client.corp.clone())
        .bind(client.user.clone())
        .bind(now - 60)
        .bind(now + 86_400)
        .bind(format!("{:064x}", (1u64 << 50) + index as u64))
        .bind(format!("{:064x}", (1u64 << 51) + index as u64))
        .bind(vec![0x30u8, 0x00])
        .bind(issuer_key.to_stored())
        .execute(&mut conn)
        .await
        .unwrap();
    }
}

/// A seeded user with a certificate of the bench CA.
struct Client {
    corp: String,
    user: String,
    serial: String,
    config: Arc<rustls::ClientConfig>,
}

fn client_config(ca_pem: &str, cert_pem: &str, key_pem: &str) -> Arc<rustls::ClientConfig> {
    use rustls_pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls_pki_types::CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
        .unwrap();
    let chain =
        vec![rustls_pki_types::CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap()];
    let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_client_auth_cert(chain, key)
    .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

async fn connect(addr: SocketAddr, config: Arc<rustls::ClientConfig>) -> Sender {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _ = tcp.set_nodelay(true);
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .unwrap();
    let (sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(connection);
    sender
}

async fn get(sender: &mut Sender) -> u16 {
    sender.ready().await.unwrap();
    let request = http::Request::get("/app")
        .header("host", "localhost")
        .body(Empty::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status().as_u16();
    response.into_body().collect().await.unwrap();
    status
}

/// Requests one after the other for `period`: their latencies, sorted.
async fn latencies(sender: &mut Sender, period: Duration) -> Vec<Duration> {
    let mut seen = Vec::new();
    let until = Instant::now() + period;
    while Instant::now() < until {
        let started = Instant::now();
        assert_eq!(get(sender).await, 200);
        seen.push(started.elapsed());
    }
    seen.sort_unstable();
    seen
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    #[expect(
        clippy::cast_possible_truncation,
        reason = "the rounded value is a whole number; there is no try_from for floats, `as` saturates and the min bounds it to an index"
    )]
    let at = (((sorted.len() as f64 - 1.0) * p).round() as usize).min(sorted.len() - 1);
    sorted[at]
}

fn ms(duration: Duration) -> String {
    format!("{:.2}", duration.as_secs_f64() * 1000.0)
}

/// RSS (KiB) and CPU ticks (user + system) of a process.
fn usage(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap_or(0);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    (rss, ticks)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A throw-away PostgreSQL database, dropped at the end.
struct Database {
    admin: String,
    name: String,
}

impl Drop for Database {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args([
                &self.admin,
                "-qc",
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            ])
            .status();
    }
}

struct Server {
    child: Child,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn run(options: Options) {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let (url, _database) = if options.backend == "postgres" {
        let name = format!("certgate_scale_{}", std::process::id());
        let status = Command::new("psql")
            .args([&options.postgres, "-qc", &format!("CREATE DATABASE {name}")])
            .status()
            .unwrap();
        assert!(
            status.success(),
            "cannot create a database on {}",
            options.postgres
        );
        let mut url = url::Url::parse(&options.postgres).unwrap();
        url.set_path(&name);
        (
            url.to_string(),
            Some(Database {
                admin: options.postgres.clone(),
                name,
            }),
        )
    } else {
        (
            format!("sqlite://{}/certgate.db", dir.path().display()),
            None,
        )
    };
    seed(&url, options.users, pki.issuer_key).await;

    // Clients: general users of the first corporations, one per corporation.
    let clients: Vec<Client> = (0..options.revocations + 1)
        .map(|index| {
            let user = index * 10 + 2;
            let corp = corp_id(user / 10);
            let user = format!("u{user}");
            let (cert, key, serial) = pki.leaf(&format!("{corp} {user}"), false);
            Client {
                config: client_config(&pki.ca_pem, &cert, &key),
                corp,
                user,
                serial,
            }
        })
        .collect();
    register_clients(&url, &clients, pki.issuer_key).await;

    let (server_cert, server_key, _) = pki.leaf("localhost", true);
    std::fs::write(dir.path().join("ca.pem"), &pki.ca_pem).unwrap();
    std::fs::write(dir.path().join("server.pem"), server_cert).unwrap();
    std::fs::write(dir.path().join("server.key"), server_key).unwrap();
    let (port, ops_port) = (free_port(), free_port());
    let config = dir.path().join("certgate.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\ncert = \"{d}/server.pem\"\nkey = \"{d}/server.key\"\n\
             [[trust.ca]]\nname = \"bench\"\ncert = \"{d}/ca.pem\"\n\
             [upstream]\nurl = \"builtin:echo\"\n[ops]\nlisten = \"127.0.0.1:{ops_port}\"\n\
             [log]\nlevel = \"warn\"\naccess = false\n[store]\nurl = \"{url}\"\n\
             [pki]\ndir = \"{d}/pki\"\n[revocation]\npoll = \"1s\"\n",
            d = dir.path().display()
        ),
    )
    .unwrap();

    let spawned = Instant::now();
    let mut command = match &options.pin {
        Some(cpu) => {
            let mut command = Command::new("taskset");
            command.args(["-c", cpu]).arg(&options.certgate);
            command
        }
        None => Command::new(&options.certgate),
    };
    let server = Server {
        child: command
            .args(["serve", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    };
    let ops: SocketAddr = format!("127.0.0.1:{ops_port}").parse().unwrap();
    loop {
        if let Ok(mut tcp) = std::net::TcpStream::connect(ops) {
            let _ = tcp.write_all(b"GET /readyz HTTP/1.0\r\n\r\n");
            let mut answer = String::new();
            let _ = std::io::Read::read_to_string(&mut tcp, &mut answer);
            if answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200") {
                break;
            }
        }
        assert!(
            spawned.elapsed() < Duration::from_secs(600),
            "certgate never got ready"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let startup = spawned.elapsed();
    let pid = server.child.id();
    let rss_ready = usage(pid).0;
    // The first CRL of a fresh registry is signed right after start (once in a deployment's
    // life): the idle period starts after it.
    tokio::time::sleep(Duration::from_secs(15)).await;
    let ticks_before = usage(pid).1;
    eprintln!(
        "ready in {:.2} s; idle for {} s",
        startup.as_secs_f64(),
        options.idle.as_secs()
    );
    tokio::time::sleep(options.idle).await;
    let (rss_idle, ticks_after) = usage(pid);
    let idle_cpu = (ticks_after - ticks_before) as f64 / 100.0 / options.idle.as_secs_f64() * 100.0;

    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let steady = &clients[options.revocations];
    let mut sender = connect(addr, steady.config.clone()).await;
    let _ = latencies(&mut sender, Duration::from_secs(1)).await;
    let quiet = latencies(&mut sender, options.load).await;

    // The same while this process revokes 20 certificates a second through the store's API.
    let store = certgate::store::open(&url).await.unwrap();
    let stream = tokio::spawn(revoke_stream(store.clone(), options.users, 0));
    let busy = latencies(&mut sender, options.load).await;
    stream.abort();

    let mut refused_after = Vec::new();
    let mut command_took = Vec::new();
    for client in &clients[..options.revocations] {
        let mut sender = connect(addr, client.config.clone()).await;
        assert_eq!(get(&mut sender).await, 200);
        let started = Instant::now();
        let mut cli = Command::new(&options.certgate)
            .args([
                "cert",
                "revoke",
                &client.serial,
                "--reason",
                "keyCompromise",
                "--config",
            ])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut done = None;
        loop {
            if done.is_none() {
                if let Some(status) = cli.try_wait().unwrap() {
                    assert!(status.success(), "certgate cert revoke failed");
                    done = Some(started.elapsed());
                }
            }
            if get(&mut sender).await == 403 {
                refused_after.push(started.elapsed());
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(60), "never refused");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let status = cli.wait().unwrap();
        assert!(status.success());
        command_took.push(done.unwrap_or_else(|| started.elapsed()));
    }
    refused_after.sort_unstable();
    command_took.sort_unstable();

    let mut soak_rss = None;
    if !options.soak.is_zero() {
        eprintln!(
            "soak: {} min of 20 changes a second",
            options.soak.as_secs() / 60
        );
        let stream = tokio::spawn(revoke_stream(store.clone(), options.users, 1));
        tokio::time::sleep(options.soak).await;
        stream.abort();
        soak_rss = Some(usage(pid).0);
    }
    store.close().await;

    println!(
        "| {} | {} | {:.2} s | {} | {} | {:.2} % | {} / {} | {} / {} | {:.2} | {} / {} | {} / {} |{}",
        options.backend,
        options.users,
        startup.as_secs_f64(),
        mib(rss_ready),
        mib(rss_idle),
        idle_cpu,
        ms(percentile(&quiet, 0.5)),
        ms(percentile(&quiet, 0.99)),
        ms(percentile(&busy, 0.5)),
        ms(percentile(&busy, 0.99)),
        percentile(&busy, 0.99).as_secs_f64() / percentile(&quiet, 0.99).as_secs_f64().max(1e-9),
        ms(percentile(&refused_after, 0.5)),
        ms(percentile(&refused_after, 0.99)),
        ms(percentile(&command_took, 0.5)),
        ms(percentile(&command_took, 0.99)),
        soak_rss.map_or(String::new(), |rss| format!(" RSS after soak {}", mib(rss))),
    );
    drop(server);
}

fn mib(kib: u64) -> String {
    format!("{:.0} MiB", kib as f64 / 1024.0)
}

/// Revokes active seeded certificates, 20 a second, until aborted: users `offset`, `offset + 10`,
/// … (none of them revoked by the seed, none of them the bench's clients).
async fn revoke_stream(store: Arc<dyn Registry>, users: usize, offset: usize) {
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let mut user = 3 + offset;
    loop {
        tick.tick().await;
        if user >= users {
            return;
        }
        let serial =
            certgate::model::Serial::from_canonical_hex(&format!("7f{user:030x}")).unwrap();
        let audit = NewAudit {
            at: certgate::model::now(),
            actor: "bench".into(),
            action: "cert.revoke".into(),
            corp_id: Some(corp_id(user / 10)),
            target: serial.to_hex(),
            result: "ok".into(),
            client_addr: None,
        };
        let _ = store
            .revoke_certificate(&serial, RevocationReason::KeyCompromise, &audit)
            .await;
        user += 10;
    }
}

/// Starts `certgate serve` on `config`, waits for `/readyz` on `ops`.
async fn start_server(options: &Options, config: &Path, ops: SocketAddr) -> Server {
    let mut command = match &options.pin {
        Some(cpu) => {
            let mut command = Command::new("taskset");
            command.args(["-c", cpu]).arg(&options.certgate);
            command
        }
        None => Command::new(&options.certgate),
    };
    let server = Server {
        child: command
            .args(["serve", "--config"])
            .arg(config)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    };
    let started = Instant::now();
    loop {
        if let Ok(mut tcp) = std::net::TcpStream::connect(ops) {
            let _ = tcp.write_all(b"GET /readyz HTTP/1.0\r\n\r\n");
            let mut answer = String::new();
            let _ = std::io::Read::read_to_string(&mut tcp, &mut answer);
            if answer.contains(" 200 ") {
                return server;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "certgate never got ready"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A POST of the admin API with `config`'s certificate; its status.
async fn admin_post(
    sender: &mut hyper::client::conn::http1::SendRequest<http_body_util::Full<Bytes>>,
    path: &str,
    body: &str,
) -> u16 {
    sender.ready().await.unwrap();
    let request = http::Request::post(path)
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status().as_u16();
    response.into_body().collect().await.unwrap();
    status
}

async fn fanout(options: Options) {
    let count = options.fanout.unwrap_or(1000);
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let name = format!("certgate_fanout_{}", std::process::id());
    let status = Command::new("psql")
        .args([&options.postgres, "-qc", &format!("CREATE DATABASE {name}")])
        .status()
        .unwrap();
    assert!(
        status.success(),
        "cannot create a database on {}",
        options.postgres
    );
    let _database = Database {
        admin: options.postgres.clone(),
        name: name.clone(),
    };
    let mut url = url::Url::parse(&options.postgres).unwrap();
    url.set_path(&name);
    let url = url.to_string();
    let users = (count * 10).max(options.users.min(count * 10));
    seed(&url, users, pki.issuer_key).await;
    // The users revoked: a general user of each corporation in turn.
    let clients: Vec<Client> = (0..count)
        .map(|index| {
            let user = index * 10 + 2;
            let corp = corp_id(user / 10);
            let user = format!("u{user}");
            let (cert, key, serial) = pki.leaf(&format!("{corp} {user}"), false);
            Client {
                config: client_config(&pki.ca_pem, &cert, &key),
                corp,
                user,
                serial,
            }
        })
        .collect();
    register_clients(&url, &clients, pki.issuer_key).await;

    let redis = options.redis.then(|| {
        let port = free_port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server");
        (Server { child }, port)
    });
    let (server_cert, server_key, _) = pki.leaf("localhost", true);
    std::fs::write(dir.path().join("ca.pem"), &pki.ca_pem).unwrap();
    std::fs::write(dir.path().join("server.pem"), server_cert).unwrap();
    std::fs::write(dir.path().join("server.key"), server_key).unwrap();
    let mut servers = Vec::new();
    let mut addrs = Vec::new();
    for which in ["a", "b"] {
        let (port, ops_port) = (free_port(), free_port());
        let config = dir.path().join(format!("{which}.toml"));
        std::fs::write(
            &config,
            format!(
                "[server]\nlisten = \"127.0.0.1:{port}\"\ncert = \"{d}/server.pem\"\nkey = \"{d}/server.key\"\n\
                 [[trust.ca]]\nname = \"bench\"\ncert = \"{d}/ca.pem\"\nlifecycle = true\n\
                 [upstream]\nurl = \"builtin:echo\"\n[ops]\nlisten = \"127.0.0.1:{ops_port}\"\n\
                 [log]\nlevel = \"warn\"\naccess = false\n[store]\nurl = \"{url}\"\n\
                 [pki]\ndir = \"{d}/pki\"\n[revocation]\npoll = \"1s\"\n{redis}",
                d = dir.path().display(),
                redis = redis
                    .as_ref()
                    .map(|(_, port)| format!("redis_url = \"redis://127.0.0.1:{port}/0\"\n"))
                    .unwrap_or_default(),
            ),
        )
        .unwrap();
        let ops: SocketAddr = format!("127.0.0.1:{ops_port}").parse().unwrap();
        servers.push(start_server(&options, &config, ops).await);
        addrs.push(format!("127.0.0.1:{port}").parse::<SocketAddr>().unwrap());
    }
    // Let the second server follow the stream before the first revocation.
    tokio::time::sleep(Duration::from_secs(6)).await;

    let mut latencies = Vec::with_capacity(count);
    let mut admins: std::collections::HashMap<
        String,
        hyper::client::conn::http1::SendRequest<http_body_util::Full<Bytes>>,
    > = std::collections::HashMap::new();
    for client in &clients {
        let admin = match admins.get_mut(&client.corp) {
            Some(admin) => admin,
            None => {
                let (cert, key, _) = pki.leaf(&client.corp, false);
                let config = client_config(&pki.ca_pem, &cert, &key);
                let tcp = tokio::net::TcpStream::connect(addrs[0]).await.unwrap();
                let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
                let tls = tokio_rustls::TlsConnector::from(config)
                    .connect(name, tcp)
                    .await
                    .unwrap();
                let (sender, connection) =
                    hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                        .await
                        .unwrap();
                tokio::spawn(connection);
                let admin = admins.entry(client.corp.clone()).or_insert(sender);
                // A manager confirms a revocation with their confirmation password, set once.
                let status = admin_post(
                    admin,
                    "/certgate/api/admin/confirmation",
                    r#"{"password":"bench-confirmation"}"#,
                )
                .await;
                assert!(status == 200 || status == 409, "confirmation: {status}");
                admin
            }
        };
        let mut watcher = connect(addrs[1], client.config.clone()).await;
        assert_eq!(get(&mut watcher).await, 200);
        let path = format!("/certgate/api/admin/users/{}/revoke", client.user);
        let status = admin_post(
            admin,
            &path,
            r#"{"reason":"keyCompromise","confirmation":"bench-confirmation"}"#,
        )
        .await;
        assert_eq!(status, 200, "revoke {}", client.user);
        let answered = Instant::now();
        loop {
            if get(&mut watcher).await == 403 {
                latencies.push(answered.elapsed());
                break;
            }
            assert!(
                answered.elapsed() < Duration::from_secs(60),
                "never refused"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        // Only the first corporation's administrator is kept: at most one connection per corp.
        if admins.len() > 64 {
            admins.clear();
        }
    }
    latencies.sort_unstable();
    println!(
        "| fan-out {} | {} revocations | p50 {} ms | p99 {} ms | max {} ms |",
        if options.redis {
            "with Redis"
        } else {
            "without Redis (poll 1s)"
        },
        count,
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99)),
        ms(latencies.last().copied().unwrap_or_default()),
    );
    drop(servers);
    drop(redis);
}
