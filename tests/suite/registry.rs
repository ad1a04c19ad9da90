//! The registry as operators and replicas meet it: `store.url` values that cannot work are refused
//! at start with one line naming `store.url` and never the password; PostgreSQL with a password
//! from the environment; two servers on one PostgreSQL registry (a change made through one, or by
//! the CLI, is applied by the other from the change feed; one permit at both at once gives one
//! certificate); `certgate standing reload` after a hand-made change the feed cannot see; a
//! registry that stops answering and comes back.

use std::net::SocketAddr;

use certgate::model::Holder;

use crate::support::*;

/// Starts `certgate serve` on `config`, expecting it to refuse: returns (exit code, stderr).
fn refused_start(config: &std::path::Path, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let out = certgate()
        .args(["serve", "--config"])
        .arg(config)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn store_urls_that_cannot_work_exit_2_naming_store_url_and_never_the_password() {
    let postgres = OwnPostgres::start("Right-pw-4821");
    let fixture = Fixture::new();
    let unreachable = free_port();
    let cases: Vec<(String, &str, &str)> = vec![
        (
            "mysql://bank:Wrong-pw-1@db/certgate".into(),
            "",
            "\"mysql\"",
        ),
        (
            format!("postgres://bank:Wrong-pw-1@127.0.0.1:{unreachable}/certgate"),
            "",
            "refused",
        ),
        (
            postgres.url("postgres", Some("Wrong-pw-1")),
            "",
            "password authentication failed",
        ),
        (
            postgres.url("postgres", None),
            "Wrong-pw-1",
            "password authentication failed",
        ),
        (
            postgres.url("no_such_db", Some("Right-pw-4821")),
            "",
            "\"no_such_db\" does not exist",
        ),
    ];
    for (url, env_password, says) in cases {
        *fixture.store_url.lock().unwrap() = Some(url.clone());
        let config = fixture.write("certgate.toml", &fixture.config("", ""));
        let env: &[(&str, &str)] = if env_password.is_empty() {
            &[]
        } else {
            &[("CERTGATE_STORE_PASSWORD", env_password)]
        };
        let (code, stderr) = refused_start(&config, env);
        assert_eq!(code, Some(2), "{url}: {stderr}");
        let errors: Vec<&str> = stderr
            .lines()
            .filter(|line| line.starts_with("certgate: "))
            .collect();
        assert_eq!(errors.len(), 1, "{url}: {stderr}");
        assert!(errors[0].starts_with("certgate: store.url: "), "{stderr}");
        assert!(errors[0].contains(says), "{url}: {stderr}");
        assert!(!stderr.contains("pw-"), "a password shows: {stderr}");
    }

    // The reject twins: the right password, from the environment or in the URL, opens it.
    *fixture.store_url.lock().unwrap() = Some(postgres.url("postgres", None));
    let config = fixture.write("certgate.toml", &fixture.config("", ""));
    let server = Server::start_with_env(&config, &[("CERTGATE_STORE_PASSWORD", "Right-pw-4821")]);
    assert!(!server.logs().contains("Right-pw"), "{}", server.logs());
    drop(server);
    *fixture.store_url.lock().unwrap() = Some(postgres.url("postgres", Some("Right-pw-4821")));
    let config = fixture.write("certgate.toml", &fixture.config("", ""));
    let server = Server::start(&config);
    assert!(!server.logs().contains("Right-pw"), "{}", server.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_one_postgres_registry_apply_each_others_changes() {
    let replicas = Replicas::open("[lifecycle]\nrenew_window_days = 400").await;
    let (first, second) = (replicas.first(), replicas.second.addr);

    // Enrolled through the first, accepted by both.
    let taro = replicas.enroll_at(first, "taro").await;
    assert_eq!(replicas.status_at(first, &taro).await, 200);
    assert_eq!(replicas.status_at(second, &taro).await, 200);

    // Renewed through the second: the new certificate is accepted by the first.
    let (csr_pem, key) = csr();
    let (status, _, json, _) = replicas
        .bank
        .post_to(
            second,
            Some(&taro),
            "/certgate/api/renew",
            &[("content-type", "application/json")],
            serde_json::json!({ "csr": csr_pem }).to_string(),
        )
        .await;
    assert_eq!(status, 200, "{json}");
    let renewed = leaf_from(&json, key);
    assert_eq!(replicas.status_at(first, &renewed).await, 200);
    // The renewal is a change of the feed: the first server logs the old certificate off too.
    assert_eq!(
        replicas.status_at(second, &taro).await,
        403,
        "at once where it was made"
    );
    replicas
        .wait_status(
            first,
            &taro,
            403,
            "the first server logs the old certificate off",
        )
        .await;
    let (_, _, body) = get_once(first, replicas.bank.client(Some(&taro)), "/app", &[])
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&body).contains("certificate-renewed"));

    // Revoked through the first (the administrator's API): the second refuses it.
    let (status, json) = replicas
        .bank
        .admin_action(
            first,
            "taro",
            "revoke",
            &with_confirmation(r#"{"reason": "keyCompromise"}"#),
        )
        .await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(
        replicas.status_at(first, &renewed).await,
        403,
        "at once where it was made"
    );
    replicas
        .wait_status(
            second,
            &renewed,
            403,
            "the second server refuses the revoked certificate",
        )
        .await;

    // Suspended by the operator's CLI: both refuse; resumed: both accept.
    let hana = replicas.enroll_at(second, "hana").await;
    let config = replicas.bank.fixture.dir.path().join("certgate.toml");
    let cli = |action: &str| {
        let out = certgate()
            .args([
                "user",
                action,
                "--corp-id",
                CORP_A,
                "--user-id",
                "hana",
                "--config",
            ])
            .arg(&config)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    cli("suspend");
    for server in [first, second] {
        replicas
            .wait_status(server, &hana, 403, "the CLI's suspension is applied")
            .await;
    }
    cli("resume");
    for server in [first, second] {
        replicas
            .wait_status(server, &hana, 200, "the CLI's resumption is applied")
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_permit_at_two_servers_at_once_gives_one_certificate() {
    let replicas = Replicas::open("").await;
    for round in 0..6 {
        let user = format!("racer{round}");
        replicas
            .bank
            .lifecycle
            .add_user(
                CORP_A,
                &user,
                certgate::model::Role::General,
                None,
                &certgate::lifecycle::Context::operator(),
            )
            .await
            .unwrap();
        let pin = replicas.bank.permit(CORP_A, Some(&user)).await;
        let attempt = |server: SocketAddr| {
            let body = serde_json::json!({
                "corp_id": CORP_A, "user_id": user, "pin": pin, "csr": csr().0
            })
            .to_string();
            let bank = &replicas.bank;
            async move {
                bank.post_to(
                    server,
                    None,
                    "/certgate/api/enroll",
                    &[("content-type", "application/json")],
                    body,
                )
                .await
            }
        };
        let (a, b) = tokio::join!(attempt(replicas.first()), attempt(replicas.second.addr));
        let mut statuses = [a.0, b.0];
        statuses.sort_unstable();
        // The loser presented the used PIN with another key: refused as a conflict.
        assert_eq!(statuses, [200, 409], "{} / {}", a.2, b.2);
        let certificates = replicas
            .bank
            .lifecycle
            .store()
            .holder_certificates(&Holder::user(CORP_A, user.as_str()))
            .await
            .unwrap();
        assert_eq!(certificates.len(), 1, "round {round}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standing_reload_applies_a_change_made_to_the_database_by_hand() {
    let replicas = Replicas::open("").await;
    let taro = replicas.enroll_at(replicas.first(), "taro").await;
    assert_eq!(replicas.status_at(replicas.second.addr, &taro).await, 200);
    // Behind certgate's back (a restore, a hand-made fix): no entry in the feed.
    let database = replicas
        .bank
        .fixture
        .store_url
        .lock()
        .unwrap()
        .clone()
        .unwrap();
    let out = std::process::Command::new("psql")
        .args([
            database.as_str(),
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            &format!("UPDATE users SET status = 'suspended' WHERE corp_id = '{CORP_A}' AND user_id = 'taro'"),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A change made through certgate after it reaches the second server from the feed; the
    // hand-made one, not in the feed, does not.
    let hana = replicas.enroll_at(replicas.first(), "hana").await;
    let (status, json) = replicas
        .bank
        .admin_action(replicas.first(), "hana", "suspend", "")
        .await;
    assert_eq!(status, 200, "{json}");
    replicas
        .wait_status(
            replicas.second.addr,
            &hana,
            403,
            "the feed's suspension is applied",
        )
        .await;
    assert_eq!(replicas.status_at(replicas.second.addr, &taro).await, 200);

    let config = replicas.bank.fixture.dir.path().join("certgate.toml");
    let out = certgate()
        .args(["standing", "reload", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for server in [replicas.first(), replicas.second.addr] {
        replicas
            .wait_status(
                server,
                &taro,
                403,
                "the reloaded standing has the suspension",
            )
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_registry_that_stops_makes_certificate_requests_503_until_it_is_back() {
    let postgres = OwnPostgres::start("Right-pw-4821");
    let fixture = Fixture::new();
    *fixture.store_url.lock().unwrap() = Some(postgres.url("postgres", Some("Right-pw-4821")));
    let server = fixture.start(
        "",
        "[revocation]\npoll = \"200ms\"\nmax_staleness = \"1s\"\n",
    );
    let leaf = fixture.ca.client("12345678901234 taro");
    let holder = client_config(&fixture.ca, Some(&leaf), &[b"http/1.1"]);
    let status = || async {
        get_once(server.addr, holder.clone(), "/app", &[])
            .await
            .unwrap()
            .0
            .as_u16()
    };
    assert_eq!(status().await, 200);
    postgres.stop();
    wait_until("/readyz says not ready", || async {
        server.ops_get("/readyz").await.0 == 503
    })
    .await;
    assert_eq!(status().await, 503);
    postgres.resume();
    wait_until("/readyz says ready again", || async {
        server.ops_get("/readyz").await.0 == 200
    })
    .await;
    assert_eq!(status().await, 200);
}
