//! Who may use certgate's own operations. A CA trusted in `[[trust.ca]]` for logging in to the
//! application (an external managed PKI) does not make its certificates managers of certgate's
//! registry: certgate's admin API and renewal accept certificates of certgate's own CA
//! generations, or of a `[[trust.ca]]` that says `lifecycle = true`. Before, an external
//! certificate whose CN was a corporation ID had full admin rights.

use crate::support::*;

async fn admin_users(bank: &Bank, leaf: &Leaf) -> (u16, serde_json::Value) {
    let (status, _, body) = get_once(
        bank.server.addr,
        bank.client(Some(leaf)),
        "/certgate/api/admin/users",
        &[],
    )
    .await
    .unwrap();
    (
        status.as_u16(),
        serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
    )
}

#[tokio::test]
async fn an_external_ca_trusted_for_login_cannot_manage_the_registry() {
    let bank = Bank::open("").await;
    // The test CA is a [[trust.ca]] without `lifecycle`: its certificates log in...
    let outsider = bank.fixture.ca.client(CORP_A);
    let (status, _, _) = get_once(bank.server.addr, bank.client(Some(&outsider)), "/app", &[])
        .await
        .unwrap();
    assert_eq!(status, 200, "it logs in to the application");
    // ...but are no administrator of certgate's registry, whatever their CN says.
    let (status, json) = admin_users(&bank, &outsider).await;
    assert_eq!(status, 403, "{json}");
    assert!(
        json["detail"]
            .as_str()
            .unwrap()
            .contains("lifecycle = true"),
        "{json}"
    );
    let (status, _, json, _) = bank
        .post(
            Some(&outsider),
            "/certgate/api/admin/users/taro/reissue",
            &[],
            "",
        )
        .await;
    assert_eq!(status, 403, "{json}");
    // certgate's own administrator certificate may.
    let (status, json) = admin_users(&bank, &bank.admin_a).await;
    assert_eq!(status, 200, "{json}");
}

#[tokio::test]
async fn an_external_ca_with_lifecycle_true_may() {
    let fixture = Fixture::new();
    fixture
        .ca_for_lifecycle
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let bank = Bank::open_with(fixture, "").await;
    let insider = bank.fixture.ca.client(CORP_A);
    let (status, json) = admin_users(&bank, &insider).await;
    assert_eq!(status, 200, "{json}");
}
