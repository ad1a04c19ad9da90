//! When the registry cannot be read, certgate does not go on trusting its last revocation set
//! forever: past `revocation.max_staleness`, certificate-authenticated requests get 503 with
//! `on_stale = "reject"` (and `/readyz` says not ready), or are served with `on_stale = "serve"`
//! (and `/readyz` stays ready, or every replica would leave the balancer at once). Reading again
//! brings it back. Before, a failed re-read silently kept the last set forever.

use crate::support::*;

const OPEN_ROOT: &str = "[[route]]\npath = \"/public\"\nrequire_cert = false\n";

async fn status_of(
    server: &Server,
    config: std::sync::Arc<rustls::ClientConfig>,
    path: &str,
) -> u16 {
    get_once(server.addr, config, path, &[])
        .await
        .unwrap()
        .0
        .as_u16()
}

#[tokio::test]
async fn a_registry_that_cannot_be_read_makes_certificate_requests_503_until_it_can() {
    let fixture = Fixture::new();
    let server = fixture.start(
        "client_auth = \"optional\"",
        &format!("{OPEN_ROOT}[revocation]\npoll = \"200ms\"\nmax_staleness = \"1s\"\n"),
    );
    let leaf = fixture.ca.client("12345678901234 taro");
    let holder = client_config(&fixture.ca, Some(&leaf), &[b"http/1.1"]);
    let anonymous = client_config(&fixture.ca, None, &[b"http/1.1"]);
    assert_eq!(status_of(&server, holder.clone(), "/app").await, 200);
    assert_eq!(server.ops_get("/readyz").await.0, 200);

    let lock = RegistryLock::hold(&fixture.dir.path().join("certgate.db"));
    wait_until("/readyz says not ready", || async {
        server.ops_get("/readyz").await.0 == 503
    })
    .await;
    let (status, headers, body) = get_once(server.addr, holder.clone(), "/app", &[])
        .await
        .unwrap();
    assert_eq!(status, 503, "{}", String::from_utf8_lossy(&body));
    assert_eq!(headers["retry-after"], "30");
    assert!(String::from_utf8_lossy(&body).contains("revocation-state-stale"));
    assert!(server.metric("certgate_revocation_age_seconds").await > 1.0);
    // A visitor without a certificate on an open route does not depend on revocations.
    assert_eq!(status_of(&server, anonymous, "/public").await, 200);

    drop(lock);
    wait_until("/readyz says ready again", || async {
        server.ops_get("/readyz").await.0 == 200
    })
    .await;
    assert_eq!(status_of(&server, holder, "/app").await, 200);
}

#[tokio::test]
async fn with_on_stale_serve_requests_go_on_and_readyz_stays_ready() {
    let fixture = Fixture::new();
    let server = fixture.start(
        "",
        "[revocation]\npoll = \"200ms\"\nmax_staleness = \"1s\"\non_stale = \"serve\"\n",
    );
    let leaf = fixture.ca.client("12345678901234 taro");
    let holder = client_config(&fixture.ca, Some(&leaf), &[b"http/1.1"]);
    let lock = RegistryLock::hold(&fixture.dir.path().join("certgate.db"));
    wait_until("the revocation set is stale", || async {
        server.metric("certgate_revocation_age_seconds").await > 1.0
    })
    .await;
    assert_eq!(server.ops_get("/readyz").await.0, 200);
    assert_eq!(status_of(&server, holder, "/app").await, 200);
    drop(lock);
}
