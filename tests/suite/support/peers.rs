//! Real programs the tests talk to, where behaviour depends on them: nginx (it normalises
//! paths), a WSGI server (it maps `_` and `-` to the same variable). Each is started on a free
//! loopback port in a temporary directory and killed when dropped; a missing program fails the
//! test with the package to install (`scripts/test.sh` installs them).

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A program started by a test, killed on drop.
pub(crate) struct Program {
    pub child: Child,
    pub addr: SocketAddr,
    _dir: Option<tempfile::TempDir>,
}

impl Drop for Program {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port nothing listens on right now.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until `addr` accepts connections (the program is up), failing fast if it exited.
pub(crate) fn wait_listening(child: &mut Child, addr: SocketAddr, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if std::net::TcpStream::connect(addr).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited with {status} before listening on {addr}");
        }
        assert!(Instant::now() < deadline, "{what} did not listen on {addr}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn spawn(program: &str, package: &str, command: &mut Command) -> Child {
    command.spawn().unwrap_or_else(|err| {
        panic!("cannot run {program} ({err}); install the Debian package {package} (scripts/test.sh does)")
    })
}

/// nginx as a plain-HTTP application that normalises paths as nginx does: `location = /secret`
/// answers `SECRET`, `location /login` answers `LOGIN <uri>`, anything else
/// `DEFAULT uri=<uri> request_uri=<request_uri>`.
pub(crate) fn nginx() -> Program {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let d = dir.path().display();
    let conf = format!(
        r#"daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 64; }}
http {{
  access_log {d}/access.log;
  client_body_temp_path {d}/client_body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  default_type text/plain;
  server {{
    listen 127.0.0.1:{port};
    location = /secret {{ return 200 "SECRET\n"; }}
    location /login {{ return 200 "LOGIN $uri\n"; }}
    location / {{ return 200 "DEFAULT uri=$uri request_uri=$request_uri\n"; }}
  }}
}}
"#
    );
    let conf_path = dir.path().join("nginx.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let nginx = if Path::new("/usr/sbin/nginx").exists() {
        "/usr/sbin/nginx"
    } else {
        "nginx"
    };
    let mut child = spawn(
        "nginx",
        "nginx",
        Command::new(nginx)
            .arg("-p")
            .arg(dir.path())
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .arg("-c")
            .arg(&conf_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_listening(&mut child, addr, "nginx");
    Program {
        child,
        addr,
        _dir: Some(dir),
    }
}

/// The WSGI application of `peers/wsgi_echo.py` on Python's wsgiref.
pub(crate) fn wsgi_echo() -> Program {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/suite/peers/wsgi_echo.py");
    let mut child = spawn(
        "python3",
        "python3",
        Command::new("python3")
            .arg(script)
            .arg("0")
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
    );
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let port: u16 = first
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("the WSGI server printed {first:?}, not its port"));
    Program {
        child,
        addr: format!("127.0.0.1:{port}").parse().unwrap(),
        _dir: None,
    }
}

/// `peers/asgi_echo.py` on hypercorn, which honours `Upgrade: h2c`.
pub(crate) fn hypercorn_echo() -> Program {
    let peers = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/suite/peers");
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut child = spawn(
        "python3 -m hypercorn",
        "python3-hypercorn",
        Command::new("python3")
            .args([
                "-m",
                "hypercorn",
                "--bind",
                &addr.to_string(),
                "asgi_echo:app",
            ])
            .current_dir(peers)
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    wait_listening(&mut child, addr, "hypercorn");
    Program {
        child,
        addr,
        _dir: None,
    }
}

/// PHP's built-in server on `peers/php` (the login form of a PHP application).
pub(crate) fn php_app() -> Program {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/suite/peers/php");
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut child = spawn(
        "php",
        "php-cli",
        Command::new("php")
            .args(["-S", &addr.to_string(), "-t"])
            .arg(root)
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    wait_listening(&mut child, addr, "php -S");
    Program {
        child,
        addr,
        _dir: None,
    }
}

/// A `redis-server` of the test's own on a free port (no persistence), stopped on drop; it can be
/// killed and started again on the same port.
pub(crate) struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    /// Certificate and key files when it speaks TLS only.
    tls: Option<(std::path::PathBuf, std::path::PathBuf)>,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    pub(crate) fn start() -> Self {
        Self::started(None)
    }

    /// A Redis that speaks TLS only, with this server certificate and key (PEM).
    pub(crate) fn start_tls(cert_pem: &str, key_pem: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("redis.pem"), dir.path().join("redis.key"));
        std::fs::write(&cert, cert_pem).unwrap();
        std::fs::write(&key, key_pem).unwrap();
        let server = Self::started(Some((cert, key)));
        drop(dir);
        server
    }

    fn started(tls: Option<(std::path::PathBuf, std::path::PathBuf)>) -> Self {
        let mut server = Self {
            port: free_port(),
            child: None,
            tls,
            _dir: tempfile::tempdir().unwrap(),
        };
        if let Some((cert, key)) = server.tls.take() {
            // Kept beside the server's own files, which outlive this call.
            let (kept_cert, kept_key) = (
                server._dir.path().join("redis.pem"),
                server._dir.path().join("redis.key"),
            );
            std::fs::copy(cert, &kept_cert).unwrap();
            std::fs::copy(key, &kept_key).unwrap();
            server.tls = Some((kept_cert, kept_key));
        }
        server.resume();
        server
    }

    pub(crate) fn url(&self) -> String {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://127.0.0.1:{}/0", self.port)
    }

    /// Starts it (again), waiting until it listens.
    pub(crate) fn resume(&mut self) {
        let addr: SocketAddr = format!("127.0.0.1:{}", self.port).parse().unwrap();
        let mut command = Command::new("redis-server");
        match &self.tls {
            None => {
                command.args(["--port", &self.port.to_string()]);
            }
            Some((cert, key)) => {
                command
                    .args(["--port", "0", "--tls-port", &self.port.to_string()])
                    .arg("--tls-cert-file")
                    .arg(cert)
                    .arg("--tls-key-file")
                    .arg(key)
                    .args(["--tls-auth-clients", "no"]);
            }
        }
        let mut child = spawn(
            "redis-server",
            "redis-server",
            command
                .args(["--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(self._dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        );
        wait_listening(&mut child, addr, "redis-server");
        self.child = Some(child);
    }

    /// Kills it at once.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Holds the SQLite registry at `db` unreadable (see `peers/lock_sqlite.py`) until dropped.
pub(crate) struct RegistryLock {
    child: Child,
}

impl RegistryLock {
    pub(crate) fn hold(db: &Path) -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/suite/peers/lock_sqlite.py");
        let mut child = spawn(
            "python3",
            "python3",
            Command::new("python3")
                .arg(script)
                .arg(db)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit()),
        );
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        assert_eq!(first.trim(), "locked", "the registry lock was not taken");
        Self { child }
    }
}

impl Drop for RegistryLock {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// A real SMTP server (aiosmtpd, `peers/smtp_sink.py`) that keeps every message it accepts as a
/// file; it can be stopped and started again on the same port (an outage).
pub(crate) struct SmtpSink {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl SmtpSink {
    pub(crate) fn start() -> Self {
        let mut sink = Self {
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
            child: None,
        };
        sink.resume();
        sink
    }

    /// `notify.smtp_url` for it: plain SMTP on loopback, said explicitly.
    pub(crate) fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}?tls=none", self.port)
    }

    /// Starts it (again), waiting until it listens.
    pub(crate) fn resume(&mut self) {
        let peers = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/suite/peers");
        let addr: SocketAddr = format!("127.0.0.1:{}", self.port).parse().unwrap();
        let mut child = spawn(
            "python3 smtp_sink.py",
            "aiosmtpd (pip)",
            Command::new("python3")
                .arg("smtp_sink.py")
                .args(["127.0.0.1", &self.port.to_string()])
                .arg(self.dir.path())
                .current_dir(peers)
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        );
        wait_listening(&mut child, addr, "the SMTP sink");
        self.child = Some(child);
    }

    pub(crate) fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Every message received so far, oldest first.
    pub(crate) fn messages(&self) -> Vec<String> {
        let mut files: Vec<(u64, std::path::PathBuf)> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .filter_map(|entry| {
                let path = entry.ok()?.path();
                let number = path.file_stem()?.to_str()?.parse().ok()?;
                (path.extension()? == "eml").then_some((number, path))
            })
            .collect();
        files.sort();
        files
            .into_iter()
            .map(|(_, path)| std::fs::read_to_string(path).unwrap())
            .collect()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.stop();
    }
}
