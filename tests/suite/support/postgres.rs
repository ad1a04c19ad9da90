//! PostgreSQL for the tests: a throw-away database on the machine's server
//! (`CERTGATE_TEST_POSTGRES`, by default the local one, which trusts loopback), or a server of
//! the test's own (`initdb` + `pg_ctl` on a free port, with password authentication) for tests
//! that stop it or need a password checked. `psql` creates and drops the databases.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use super::free_port;

/// The server the tests' throw-away databases live on.
pub(crate) fn test_postgres() -> String {
    std::env::var("CERTGATE_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

fn psql(admin: &str, sql: &str) -> Result<(), String> {
    let out = Command::new("psql")
        .args([admin, "-v", "ON_ERROR_STOP=1", "-q", "-c", sql])
        .output()
        .map_err(|err| format!("cannot run psql ({err}); install postgresql-client"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// A database of its own on the test server, dropped (with its connections) on drop.
pub(crate) struct ScratchDatabase {
    pub url: String,
    pub name: String,
    admin: String,
}

impl ScratchDatabase {
    pub(crate) fn create() -> Self {
        Self::create_on(&test_postgres())
    }

    pub(crate) fn create_on(admin: &str) -> Self {
        static COUNT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "certgate_suite_{}_{}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::Relaxed)
        );
        psql(admin, &format!("CREATE DATABASE {name}")).unwrap_or_else(|err| {
            panic!("no PostgreSQL at CERTGATE_TEST_POSTGRES={admin} (scripts/test.sh starts one): {err}")
        });
        let mut url = url::Url::parse(admin).unwrap();
        url.set_path(&name);
        Self {
            url: url.to_string(),
            name,
            admin: admin.to_owned(),
        }
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        let dropped = psql(
            &self.admin,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
        if let Err(err) = dropped {
            if !std::thread::panicking() {
                panic!("could not drop {}: {err}", self.name);
            }
        }
    }
}

/// Where `initdb` and `pg_ctl` are: on the PATH, else Debian's versioned directory.
fn postgres_bin() -> PathBuf {
    let on_path = Command::new("sh")
        .args(["-c", "command -v initdb"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    if let Some(initdb) = on_path {
        return initdb.parent().unwrap().to_owned();
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dir| {
            dir.filter_map(Result::ok)
                .map(|entry| entry.path().join("bin"))
                .collect()
        })
        .unwrap_or_default();
    versions.sort();
    versions
        .pop()
        .filter(|bin| bin.join("initdb").exists())
        .unwrap_or_else(|| {
            panic!("no initdb; install the Debian package postgresql (scripts/test.sh does)")
        })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A PostgreSQL server of the test's own on a free loopback port; its superuser `postgres` logs
/// in with `password` (scram-sha-256). Stopped and deleted on drop.
pub(crate) struct OwnPostgres {
    pub port: u16,
    pub password: String,
    data: PathBuf,
    bin: PathBuf,
    as_postgres: bool,
    _dir: tempfile::TempDir,
}

impl OwnPostgres {
    pub(crate) fn start(password: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let bin = postgres_bin();
        // initdb and postgres refuse to run as root: as the postgres user, in a directory it owns.
        let as_postgres = is_root();
        std::fs::write(dir.path().join("pw"), password).unwrap();
        if as_postgres {
            let status = Command::new("chown")
                .args(["-R", "postgres:"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(status.success());
        }
        let server = Self {
            port: free_port(),
            password: password.to_owned(),
            data: dir.path().join("data"),
            bin,
            as_postgres,
            _dir: dir,
        };
        let pwfile = server.data.parent().unwrap().join("pw");
        let out = server
            .command("initdb")
            .args(["-U", "postgres", "--auth=scram-sha-256", "-D"])
            .arg(&server.data)
            .arg(format!("--pwfile={}", pwfile.display()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        server.resume();
        server
    }

    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if self.as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(path);
            command
        } else {
            Command::new(path)
        }
    }

    fn data(&self) -> &Path {
        &self.data
    }

    /// Starts the server (again), waiting until it accepts connections.
    pub(crate) fn resume(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.data().parent().unwrap().display()
        );
        let out = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(self.data().parent().unwrap().join("log"))
            .args(["-o", &options, "-w", "-t", "60", "start"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl start: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Stops the server at once (connections are cut, as when its machine fails).
    pub(crate) fn stop(&self) {
        let _ = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "-w", "stop"])
            .output();
    }

    /// A URL for `database` as `postgres`, with `password` in it if given.
    pub(crate) fn url(&self, database: &str, password: Option<&str>) -> String {
        match password {
            Some(password) => format!(
                "postgres://postgres:{password}@127.0.0.1:{}/{database}",
                self.port
            ),
            None => format!("postgres://postgres@127.0.0.1:{}/{database}", self.port),
        }
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        self.stop();
    }
}
