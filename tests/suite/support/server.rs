//! The real `certgate` binary, started on port 0 with a temporary config in a temporary directory.

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::*;

/// A temporary directory with a CA, a server certificate, and a config to start from.
pub(crate) struct Fixture {
    pub dir: tempfile::TempDir,
    pub ca: Ca,
    pub ca_path: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// Whether the test CA's `[[trust.ca]]` says `lifecycle = true` (default false: its
    /// certificates log in to the application but cannot use certgate's own operations).
    pub ca_for_lifecycle: std::sync::atomic::AtomicBool,
    /// `[store] url`; a SQLite file in the directory unless set.
    pub store_url: std::sync::Mutex<Option<String>>,
}

impl Fixture {
    pub(crate) fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::new("g1");
        let server = ca.server();
        let fixture = Self {
            ca_path: dir.path().join("ca-g1.pem"),
            server_cert: dir.path().join("server.pem"),
            server_key: dir.path().join("server.key"),
            dir,
            ca,
            ca_for_lifecycle: std::sync::atomic::AtomicBool::new(false),
            store_url: std::sync::Mutex::new(None),
        };
        std::fs::write(&fixture.ca_path, &fixture.ca.cert_pem).unwrap();
        std::fs::write(&fixture.server_cert, &server.cert_pem).unwrap();
        std::fs::write(&fixture.server_key, &server.key_pem).unwrap();
        fixture
    }

    pub(crate) fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    /// A config: `server_extra` lines go under `[server]`; `rest` is appended (more tables).
    pub(crate) fn config(&self, server_extra: &str, rest: &str) -> String {
        format!(
            r#"
[server]
listen = "127.0.0.1:0"
cert = "{cert}"
key = "{key}"
shutdown_grace = "5s"
{server_extra}

[[trust.ca]]
name = "g1"
cert = "{ca}"
{lifecycle}

[ops]
listen = "127.0.0.1:0"

[log]
format = "json"
level = "info"

[store]
url = "{store}"
{pool}

[pki]
dir = "{dir}/pki"
crl_refresh = "1s"

{rest}
"#,
            cert = self.server_cert.display(),
            key = self.server_key.display(),
            ca = self.ca_path.display(),
            lifecycle = if self
                .ca_for_lifecycle
                .load(std::sync::atomic::Ordering::Relaxed)
            {
                "lifecycle = true"
            } else {
                ""
            },
            dir = self.dir.path().display(),
            // Several servers and the test itself share the machine's PostgreSQL: small pools.
            pool = if self.store_url.lock().unwrap().is_some() {
                "max_connections = 4"
            } else {
                ""
            },
            store = self
                .store_url
                .lock()
                .unwrap()
                .clone()
                .unwrap_or_else(|| format!("sqlite://{}/certgate.db", self.dir.path().display())),
        )
    }

    pub(crate) fn start(&self, server_extra: &str, rest: &str) -> Server {
        self.start_named("certgate.toml", server_extra, rest)
    }

    /// The lifecycle over this fixture's registry (and its CA, made here when `with_ca`), as the
    /// config with `server_extra` and `rest` says: how a test seeds the registry a server reads.
    pub(crate) async fn open_lifecycle(
        &self,
        server_extra: &str,
        rest: &str,
        with_ca: bool,
    ) -> certgate::lifecycle::Lifecycle {
        let config = certgate::config::Config::parse(&self.config(server_extra, rest)).unwrap();
        if with_ca {
            certgate::pki::Pki::init(
                certgate::pki::PkiSettings::from(&config.pki),
                certgate::model::now(),
            )
            .unwrap();
        }
        certgate::serve::open_lifecycle(&config, Default::default())
            .await
            .unwrap()
    }

    /// Like `start`, with the config written under `name` (for a second server in one test).
    pub(crate) fn start_named(&self, name: &str, server_extra: &str, rest: &str) -> Server {
        let path = self.write(name, &self.config(server_extra, rest));
        Server::start(&path)
    }
}

pub(crate) fn certgate() -> Command {
    Command::new(env!("CARGO_BIN_EXE_certgate"))
}

/// A session ticket key file made in `dir` by `certgate tickets rotate`, as an operator makes it.
pub(crate) fn ticket_key_file(dir: &std::path::Path) -> std::path::PathBuf {
    let keys = dir.join("tickets.keys");
    let out = certgate()
        .args(["tickets", "rotate", "--file"])
        .arg(&keys)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    keys
}

/// A running `certgate serve`; killed on drop.
pub(crate) struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    pub ops: SocketAddr,
    logs: Arc<Mutex<Vec<String>>>,
}

impl Server {
    pub(crate) fn start(config: &Path) -> Self {
        Self::start_in(config, None)
    }

    /// Starts in working directory `cwd` (where relative paths in the config resolve).
    pub(crate) fn start_in(config: &Path, cwd: Option<&Path>) -> Self {
        let mut command = certgate();
        if let Some(cwd) = cwd {
            command.current_dir(cwd);
        }
        Self::start_command(command, config)
    }

    /// Starts with these environment variables set.
    pub(crate) fn start_with_env(config: &Path, env: &[(&str, &str)]) -> Self {
        let mut command = certgate();
        command.envs(env.iter().copied());
        Self::start_command(command, config)
    }

    /// Starts with the process allowed only `cpus` (`taskset`'s list, such as `0` or `0,1`), as
    /// an affinity mask or a container's CPU quota would allow it.
    pub(crate) fn start_on_cpus(config: &Path, cpus: &str) -> Self {
        let mut command = Command::new("taskset");
        command
            .args(["--cpu-list", cpus])
            .arg(env!("CARGO_BIN_EXE_certgate"));
        Self::start_command(command, config)
    }

    fn start_command(mut command: Command, config: &Path) -> Self {
        let mut child = command
            .args(["serve", "--config"])
            .arg(config)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        let (mut addr, mut ops) = (None, None);
        while addr.is_none() || ops.is_none() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "certgate exited with {status}: {}",
                    logs.lock().unwrap().join("\n")
                );
            }
            assert!(
                Instant::now() < deadline,
                "certgate did not start: {}",
                logs.lock().unwrap().join("\n")
            );
            for line in logs.lock().unwrap().iter() {
                let Ok(json) = serde_json::from_str::<serde_json::Value>(line) else {
                    continue;
                };
                if json["message"] == "listening" {
                    let address = json["address"].as_str().unwrap().parse().unwrap();
                    match json["listener"].as_str() {
                        Some("https") => addr = Some(address),
                        Some("ops") => ops = Some(address),
                        _ => {}
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Self {
            child,
            addr: addr.unwrap(),
            ops: ops.unwrap(),
            logs,
        }
    }

    pub(crate) fn logs(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    /// Waits until a log line contains `needle`.
    pub(crate) fn wait_for_log(&self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.logs().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "no log line with {needle:?}:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub(crate) fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// `GET` on the ops listener.
    pub(crate) async fn ops_get(&self, path: &str) -> (StatusCode, String) {
        let stream = TcpStream::connect(self.ops).await.unwrap();
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        let response = send
            .send_request(
                Request::get(path)
                    .header("host", "ops")
                    .body(Full::new(Bytes::new()))
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    /// The value of one metric line, e.g. `certgate_tls_handshakes_total{result="ok"}`.
    pub(crate) async fn metric(&self, series: &str) -> f64 {
        let (_, text) = self.ops_get("/metrics").await;
        text.lines()
            .find_map(|line| {
                line.strip_prefix(series)
                    .and_then(|rest| rest.trim().parse().ok())
            })
            .unwrap_or(0.0)
    }

    /// The CPU time (user and system, all threads) the server has used so far.
    pub(crate) fn cpu_time(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        // The fields after the command name, which is in parentheses and may hold spaces:
        // utime and stime are the 12th and 13th of them, in clock ticks (USER_HZ, 100 on Linux).
        let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 1..]
            .split_whitespace()
            .collect();
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        Duration::from_millis(ticks * 10)
    }

    pub(crate) fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    /// Waits for the process to exit and returns its exit code.
    pub(crate) fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "certgate did not exit:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
