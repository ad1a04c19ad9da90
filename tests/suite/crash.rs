//! Crash safety: `kill -9` of the server during 50 parallel enrollments. After a restart, every
//! certificate a client received is in the ledger, and no permit is half-used.

use std::sync::Arc;

use crate::support::*;
use certgate::lifecycle::Context;
use certgate::model::{Holder, Role};
use certgate::store::PermitState;
use secrecy::ExposeSecret as _;

const CORP: &str = "33333333333333";
const USERS: usize = 50;

#[tokio::test]
async fn kill_9_during_parallel_enrollments_loses_nothing_a_client_received() {
    let fixture = Fixture::new();

    // The registry: a corporation whose administrator is enrolled, and 50 users with permits.
    let lifecycle = fixture
        .open_lifecycle("client_auth = \"optional\"", "", true)
        .await;
    let operator = Context::operator();
    lifecycle
        .add_corporation(CORP, "Crash Test Co", "admin@crash.example", &operator)
        .await
        .unwrap();
    enroll_admin(&lifecycle, CORP).await;
    let mut pins = Vec::new();
    for index in 0..USERS {
        let user_id = format!("user{index}");
        lifecycle
            .add_user(CORP, &user_id, Role::General, None, &operator)
            .await
            .unwrap();
        let holder = Holder {
            corp_id: CORP.into(),
            user_id: Some(user_id.clone()),
        };
        pins.push((
            user_id,
            lifecycle
                .issue_permit(&holder, &operator)
                .await
                .unwrap()
                .pin
                .expose_secret()
                .to_owned(),
        ));
    }
    lifecycle.store().close().await;

    let mut server = fixture.start("client_auth = \"optional\"", "");
    let client = client_config(&fixture.ca, None, &[]);
    let received = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut tasks = Vec::new();
    for (user_id, pin) in pins {
        let (addr, client, received) = (server.addr, client.clone(), received.clone());
        tasks.push(tokio::spawn(async move {
            let body = serde_json::json!({ "corp_id": CORP, "user_id": user_id, "pin": pin, "csr": csr().0 });
            let Ok(mut conn) = Conn::open(addr, client).await else { return };
            let request = http::Request::post("/certgate/api/enroll")
                .header("host", "localhost")
                .header("content-type", "application/json")
                .body(http_body_util::BodyExt::boxed(http_body_util::Full::new(bytes::Bytes::from(body.to_string()))))
                .unwrap();
            let Ok(response) = conn.send(request).await else { return };
            if response.status() != 200 {
                return;
            }
            let Ok(collected) = http_body_util::BodyExt::collect(response.into_body()).await else { return };
            let answer: serde_json::Value = serde_json::from_slice(&collected.to_bytes()).unwrap();
            received.lock().unwrap().push(answer["serial"].as_str().unwrap().to_owned());
        }));
    }
    // Let some enrollments complete, then kill the server in the middle of the rest.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while received.lock().unwrap().len() < 10 {
        assert!(
            std::time::Instant::now() < deadline,
            "no enrollment completed:\n{}",
            server.logs()
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    server.child.kill().unwrap();
    server.wait_exit(std::time::Duration::from_secs(10));
    for task in tasks {
        let _ = task.await;
    }
    let received = received.lock().unwrap().clone();
    assert!(received.len() >= 10 && received.len() <= USERS);

    // Restart: the ledger has every certificate a client received, and permits are whole.
    let restarted = fixture.start("client_auth = \"optional\"", "");
    let lifecycle = fixture
        .open_lifecycle("client_auth = \"optional\"", "", false)
        .await;
    for serial in &received {
        let record = lifecycle
            .certificate(&serial.parse().unwrap())
            .await
            .unwrap();
        assert_eq!(record.holder.corp_id, CORP);
    }
    let mut used = 0;
    for index in 0..USERS {
        let holder = Holder {
            corp_id: CORP.into(),
            user_id: Some(format!("user{index}")),
        };
        let permit = lifecycle
            .store()
            .latest_permit(&holder)
            .await
            .unwrap()
            .unwrap();
        let certificates = lifecycle
            .store()
            .holder_certificates(&holder)
            .await
            .unwrap();
        match permit.state {
            PermitState::Used => {
                used += 1;
                assert_eq!(
                    certificates.len(),
                    1,
                    "a used permit has exactly its certificate"
                );
                assert_eq!(permit.serial, Some(certificates[0].serial));
            }
            PermitState::Active => assert!(
                certificates.is_empty(),
                "an unused permit has no certificate"
            ),
            other => panic!("permit of user{index} is {other:?}"),
        }
    }
    assert!(used >= received.len());
    drop(restarted);
}
