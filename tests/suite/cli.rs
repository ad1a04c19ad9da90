//! The operator CLI, run as the real binary on a real SQLite file and CA directory: every command,
//! its output (aligned columns, `--json`), and each bad value refused with one line, the right
//! exit code (1 refused, 2 bad input, 3 not found) and nothing changed.

use std::path::Path;
use std::process::Output;

use crate::support::*;
use certgate::lifecycle::{Actor, Context, KeySource, LifecycleError};
use certgate::model::Holder;

const CORP: &str = "88888888888888";

struct Cli {
    fixture: Fixture,
    config: std::path::PathBuf,
}

impl Cli {
    fn new() -> Self {
        let fixture = Fixture::new();
        let config = fixture.write(
            "certgate.toml",
            &fixture.config("client_auth = \"optional\"", ""),
        );
        Self { fixture, config }
    }

    fn run(&self, args: &[&str]) -> Output {
        certgate()
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut args = args.to_vec();
        args.push("--json");
        serde_json::from_str(&self.ok(&args)).unwrap()
    }

    /// Asserts a refusal: the exit code, one line on stderr containing `needle`, nothing on stdout.
    fn refused(&self, args: &[&str], code: i32, needle: &str) {
        let out = self.run(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("certgate: ") && stderr.contains(needle),
            "{args:?}: expected {needle:?} in {stderr:?}"
        );
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}: {:?}", out.stdout);
    }

    fn add_corp(&self) {
        self.ok(&[
            "corp",
            "add",
            "--corp-id",
            CORP,
            "--name",
            "Example Trading",
            "--admin-email",
            "admin@example.jp",
        ]);
    }

    fn permit(&self, user: Option<&str>) -> String {
        let mut args = vec!["permit", "issue", "--corp-id", CORP];
        if let Some(user) = user {
            args.extend(["--user-id", user]);
        }
        let out = self.run(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert_eq!(
            stdout.lines().count(),
            1,
            "only the PIN on stdout: {stdout:?}"
        );
        let pin = stdout.trim_end_matches('\n').to_owned();
        assert!(pin.len() >= 12 && !pin.contains(' '), "{pin:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("valid until"));
        pin
    }

    /// Enrolls through the library, as the server would; returns the serial.
    async fn enroll(&self, user: Option<&str>, pin: &str) -> Result<String, LifecycleError> {
        let config = certgate::config::Config::load(&self.config).unwrap();
        let lifecycle = certgate::serve::open_lifecycle(&config, Default::default())
            .await
            .unwrap();
        let holder = Holder {
            corp_id: CORP.into(),
            user_id: user.map(str::to_owned),
        };
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let csr = rcgen::CertificateParams::new(Vec::<String>::new())
            .unwrap()
            .serialize_request(&key)
            .unwrap()
            .pem()
            .unwrap();
        let ctx = Context {
            actor: Actor::Enrollee(holder.clone()),
            client_addr: None,
        };
        let result = lifecycle
            .enroll(
                holder,
                &pin.to_owned().into(),
                KeySource::Csr(csr.into_bytes()),
                &ctx,
            )
            .await
            .map(|enrolled| enrolled.serial.to_hex());
        lifecycle.store().close().await;
        result
    }
}

/// The row of a table whose first column is `first`.
fn row<'a>(table: &'a str, first: &str) -> &'a str {
    table
        .lines()
        .find(|line| line.split_whitespace().next() == Some(first))
        .unwrap_or_else(|| panic!("no row {first} in\n{table}"))
}

#[test]
fn init_makes_the_ca_once() {
    let cli = Cli::new();
    cli.refused(&["ca", "list"], 1, "certgate init");
    let made = cli.ok(&["init"]);
    assert!(made.contains("g1") && made.contains("pages.key"), "{made}");
    // The pages' form key is made beside the CA, readable by its owner only.
    let key = cli.fixture.dir.path().join("pki/pages.key");
    let text = std::fs::read_to_string(&key).unwrap();
    assert_eq!(text.trim().len(), 64, "32 bytes in hex");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let root = cli.fixture.dir.path().join("pki/root.pem");
    let before = std::fs::read(&root).unwrap();
    cli.refused(&["init"], 1, "pki.dir");
    assert_eq!(
        std::fs::read(&root).unwrap(),
        before,
        "a second init changes nothing"
    );

    let list = cli.ok(&["ca", "list"]);
    assert!(list.starts_with("name"), "a header row: {list}");
    assert!(row(&list, "g1").ends_with("true"), "{list}");
    assert!(cli.ok(&["ca", "rotate"]).contains("g2"));
    let list = cli.ok(&["ca", "list"]);
    assert!(row(&list, "g1").ends_with("false"), "{list}");
    let g2 = row(&list, "g2");
    assert!(
        g2.contains("Internet Banking CA-G2") && g2.ends_with("true"),
        "{list}"
    );
    let json = cli.json(&["ca", "list"]);
    assert_eq!(json[1]["name"], "g2");
    assert_eq!(json[1]["current"], true);
    assert_eq!(json[0]["current"], false);

    // `crl` rewrites every generation's CRL and prints where.
    let crl = cli.ok(&["crl"]);
    for generation in ["g1", "g2"] {
        let path = row(&crl, generation).split_whitespace().nth(1).unwrap();
        assert!(path.ends_with(&format!("{generation}.crl")), "{crl}");
        let der = std::fs::read(path).unwrap();
        assert!(x509_parser::parse_x509_crl(&der).is_ok(), "{path}");
    }
}

#[test]
fn corporations() {
    let cli = Cli::new();
    cli.add_corp();
    let list = cli.ok(&["corp", "list"]);
    assert!(list.starts_with("corp_id"), "{list}");
    assert!(row(&list, CORP).ends_with("Example Trading"), "{list}");

    // A duplicate: refused, and the first registration is untouched.
    cli.refused(
        &[
            "corp",
            "add",
            "--corp-id",
            CORP,
            "--name",
            "Again",
            "--admin-email",
            "other@example.jp",
        ],
        1,
        "already exists",
    );
    let json = cli.json(&["corp", "list"]);
    assert_eq!(json.as_array().unwrap().len(), 1);
    assert_eq!(json[0]["name"], "Example Trading");
    assert_eq!(json[0]["admin_email"], "admin@example.jp");

    // Malformed values: exit 2, nothing registered.
    for (corp_id, email, needle) in [
        ("12-34", "a@example.jp", "corp_id"),
        ("1234", "a@example.jp", "corp_id"),
        ("77777777777777", "not-an-email", "admin_email"),
    ] {
        cli.refused(
            &[
                "corp",
                "add",
                "--corp-id",
                corp_id,
                "--name",
                "Bad",
                "--admin-email",
                email,
            ],
            2,
            needle,
        );
    }
    assert_eq!(cli.json(&["corp", "list"]).as_array().unwrap().len(), 1);

    let show = cli.ok(&["corp", "show", "--corp-id", CORP]);
    assert!(show.contains("cert_required: false"), "{show}");
    assert!(show.contains("name:          Example Trading"), "{show}");
    cli.ok(&["corp", "set", "--corp-id", CORP, "--cert-required", "true"]);
    assert_eq!(
        cli.json(&["corp", "show", "--corp-id", CORP])["cert_required"],
        true
    );
    let out = cli.run(&["corp", "set", "--corp-id", CORP, "--cert-required", "maybe"]);
    assert_eq!(out.status.code(), Some(2), "clap refuses a bad boolean");
    assert!(String::from_utf8_lossy(&out.stderr).contains("maybe"));
    cli.refused(
        &["corp", "show", "--corp-id", "99999999999999"],
        3,
        "not found",
    );
    // clap's own refusals (missing or unknown flags) exit 2 too.
    assert_eq!(
        cli.run(&["corp", "add", "--corp-id", CORP]).status.code(),
        Some(2)
    );
}

#[tokio::test]
async fn users_permits_and_the_status_table() {
    let cli = Cli::new();
    cli.ok(&["init"]);
    cli.add_corp();
    for (user, role) in [("boss", "master"), ("clerk", "admin"), ("taro", "general")] {
        let out = cli.ok(&[
            "user",
            "add",
            "--corp-id",
            CORP,
            "--user-id",
            user,
            "--role",
            role,
            "--email",
            "u@example.jp",
        ]);
        assert!(out.contains(role), "{out}");
    }
    let add = |user: &str, role: &str| {
        [
            "user",
            "add",
            "--corp-id",
            CORP,
            "--user-id",
            user,
            "--role",
            role,
        ]
        .map(str::to_owned)
    };
    let refused = |args: [String; 8], code, needle| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cli.refused(&args, code, needle);
    };
    refused(add("x", "king"), 2, "role");
    refused(add("taro", "general"), 1, "taro");
    refused(add("boss2", "master"), 1, "master");
    refused(add("bad-id", "general"), 2, "user_id");
    cli.refused(
        &[
            "user",
            "add",
            "--corp-id",
            "99999999999999",
            "--user-id",
            "x",
            "--role",
            "general",
        ],
        3,
        "not found",
    );
    let users = cli.json(&["user", "list", "--corp-id", CORP]);
    assert_eq!(users.as_array().unwrap().len(), 3, "{users}");
    assert_eq!(users[0]["certificate"], "unissued");

    // A second permit supersedes the first: only the newer PIN enrolls.
    let first = cli.permit(None);
    let second = cli.permit(None);
    assert_ne!(first, second);
    assert!(matches!(
        cli.enroll(None, &first).await,
        Err(LifecycleError::BadCredentials)
    ));
    cli.enroll(None, &second).await.unwrap();
    cli.refused(
        &["permit", "issue", "--corp-id", CORP, "--user-id", "ghost"],
        3,
        "not found",
    );
    let pin = cli.permit(Some("taro"));
    cli.enroll(Some("taro"), &pin).await.unwrap();

    let table = cli.ok(&["user", "list", "--corp-id", CORP]);
    assert!(table.starts_with("user_id"), "{table}");
    assert!(row(&table, "taro").contains(" issued "), "{table}");
    assert!(row(&table, "clerk").contains("unissued"), "{table}");
    cli.ok(&["user", "suspend", "--corp-id", CORP, "--user-id", "taro"]);
    assert!(row(&cli.ok(&["user", "list", "--corp-id", CORP]), "taro").contains("suspended"));
    // The operator may act on the master user too.
    cli.ok(&["user", "suspend", "--corp-id", CORP, "--user-id", "boss"]);
    cli.ok(&["user", "resume", "--corp-id", CORP, "--user-id", "boss"]);
    cli.ok(&["user", "resume", "--corp-id", CORP, "--user-id", "taro"]);
    cli.refused(
        &["user", "suspend", "--corp-id", CORP, "--user-id", "ghost"],
        3,
        "not found",
    );

    let audit = cli.ok(&["audit", "--corp-id", CORP]);
    assert!(audit.starts_with("at "), "a header row: {audit}");
    for action in [
        "corp.add",
        "user.add",
        "permit.issue",
        "enroll",
        "suspend",
        "resume",
    ] {
        assert!(audit.contains(action), "{action} missing from {audit}");
    }
    assert!(!audit.contains(&second), "no PIN in the audit trail");
    let latest = cli.json(&["audit", "--corp-id", CORP, "--limit", "2"]);
    assert_eq!(latest.as_array().unwrap().len(), 2);
    // Newest first; the refused suspension is in the trail too.
    assert_eq!(latest[0]["action"], "suspend");
    assert_eq!(latest[0]["target"], format!("{CORP}/ghost"));
    assert!(latest[0]["result"].as_str().unwrap().contains("not found"));
    assert_eq!(latest[1]["action"], "resume");
    assert_eq!(latest[1]["target"], format!("{CORP}/taro"));
}

#[tokio::test]
async fn certificates_revocation_and_bad_serials() {
    let cli = Cli::new();
    cli.ok(&["init"]);
    cli.add_corp();
    assert_eq!(
        cli.ok(&["cert", "list", "--corp-id", CORP]).lines().count(),
        1,
        "header only"
    );
    cli.ok(&[
        "user",
        "add",
        "--corp-id",
        CORP,
        "--user-id",
        "taro",
        "--role",
        "general",
    ]);
    let pin = cli.permit(None);
    let admin = cli.enroll(None, &pin).await.unwrap();
    let pin = cli.permit(Some("taro"));
    let taro = cli.enroll(Some("taro"), &pin).await.unwrap();

    let list = cli.ok(&["cert", "list"]);
    assert!(list.starts_with("serial"), "{list}");
    assert!(row(&list, &admin).contains("active"), "{list}");
    assert!(
        row(&list, &taro).contains(&format!("{CORP}/taro")),
        "{list}"
    );
    assert_eq!(
        cli.json(&["cert", "list", "--corp-id", CORP])
            .as_array()
            .unwrap()
            .len(),
        2
    );
    cli.refused(
        &["cert", "list", "--corp-id", "99999999999999"],
        3,
        "not found",
    );

    // Serials as openssl prints them are accepted.
    let colons = taro
        .to_ascii_uppercase()
        .as_bytes()
        .chunks(2)
        .map(|pair| std::str::from_utf8(pair).unwrap())
        .collect::<Vec<_>>()
        .join(":");
    let show = cli.ok(&["cert", "show", &colons]);
    assert!(show.contains(&format!("CN={CORP} taro")), "{show}");
    assert!(show.contains("status:       active"), "{show}");

    cli.refused(&["cert", "show", "abcdef"], 3, "not found");
    cli.refused(&["cert", "show", "not-hex"], 2, "serial");
    cli.refused(
        &["cert", "revoke", "abcdef", "--reason", "keyCompromise"],
        3,
        "not found",
    );
    cli.refused(
        &["cert", "revoke", &taro, "--reason", "boredom"],
        2,
        "keyCompromise",
    );
    assert_eq!(cli.json(&["cert", "show", &taro])["status"], "active");

    let revoked = cli.ok(&["cert", "revoke", &taro, "--reason", "keyCompromise"]);
    assert!(
        revoked.contains(&taro) && revoked.contains("keyCompromise"),
        "{revoked}"
    );
    let shown = cli.json(&["cert", "show", &taro]);
    assert_eq!(shown["status"], "revoked (keyCompromise)");
    assert_eq!(shown["reason"], "keyCompromise");
    cli.refused(&["cert", "revoke", &taro], 1, "already revoked");
    assert!(
        row(&cli.ok(&["user", "list", "--corp-id", CORP]), "taro").contains("revoked"),
        "the status table shows the revocation"
    );
    // The default reason is unspecified.
    let revoked = cli.json(&["cert", "revoke", &admin]);
    assert_eq!(revoked[0]["reason"], "unspecified");

    // The CRL lists both.
    let crl = cli.ok(&["crl"]);
    let path = row(&crl, "g1").split_whitespace().nth(1).unwrap();
    assert_crl_lists(Path::new(path), &[&admin, &taro]);
    assert!(cli.ok(&["audit"]).contains("cert.revoke"));
}

fn assert_crl_lists(path: &Path, serials: &[&str]) {
    let der = std::fs::read(path).unwrap();
    let (_, crl) = x509_parser::parse_x509_crl(&der).unwrap();
    let listed: Vec<String> = crl
        .iter_revoked_certificates()
        .map(|revoked| hex(revoked.raw_serial()))
        .collect();
    for serial in serials {
        assert!(
            listed
                .iter()
                .any(|l| l.trim_start_matches('0') == serial.trim_start_matches('0')),
            "{serial} not in {listed:?}"
        );
    }
}

#[test]
fn a_bad_config_exits_2() {
    let cli = Cli::new();
    let text = std::fs::read_to_string(&cli.config)
        .unwrap()
        .replace("url = \"sqlite://", "url = \"mysql://");
    std::fs::write(&cli.config, text).unwrap();
    cli.refused(&["corp", "list"], 2, "store.url");
    let out = certgate()
        .args(["corp", "list", "--config", "/nonexistent/certgate.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--config"));
}

#[test]
fn users_have_names_and_the_bank_stops_and_resumes_a_corporation() {
    let cli = Cli::new();
    cli.add_corp();
    let added = cli.json(&[
        "user",
        "add",
        "--corp-id",
        CORP,
        "--user-id",
        "taro",
        "--role",
        "general",
        "--name",
        "山田 太郎",
    ]);
    assert_eq!(added["name"], "山田 太郎");
    let listed = cli.ok(&["user", "list", "--corp-id", CORP]);
    assert!(listed.contains("山田 太郎"), "{listed}");
    let long = "x".repeat(65);
    cli.refused(
        &[
            "user",
            "add",
            "--corp-id",
            CORP,
            "--user-id",
            "jiro",
            "--role",
            "general",
            "--name",
            &long,
        ],
        2,
        "name",
    );
    assert!(
        !cli.ok(&["user", "list", "--corp-id", CORP])
            .contains("jiro")
    );

    let stopped = cli.json(&["corp", "stop", "--corp-id", CORP]);
    assert_eq!(stopped["status"], "suspended");
    let resumed = cli.json(&["corp", "resume", "--corp-id", CORP]);
    assert_eq!(resumed["status"], "active");
    cli.refused(&["corp", "stop", "--corp-id", "12345"], 3, "12345");
}

#[tokio::test]
async fn a_corporation_the_bank_stops_is_refused_by_the_running_server_until_resumed() {
    let bank = Bank::open("").await;
    let config = bank.fixture.dir.path().join("certgate.toml");
    let app = |leaf: &Leaf| {
        let (addr, client) = (bank.server.addr, bank.client(Some(leaf)));
        async move {
            get_once(addr, client, "/app", &[])
                .await
                .unwrap()
                .0
                .as_u16()
        }
    };
    assert_eq!(app(&bank.admin_a).await, 200);
    let corp = |action: &str| {
        let out = certgate()
            .args(["corp", action, "--corp-id", CORP_A, "--config"])
            .arg(&config)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    corp("stop");
    wait_until("the stop reaches the server", || async {
        app(&bank.admin_a).await == 403
    })
    .await;
    assert_eq!(app(&bank.admin_b).await, 200, "another corporation goes on");
    corp("resume");
    wait_until("the resumption reaches the server", || async {
        app(&bank.admin_a).await == 200
    })
    .await;
}
