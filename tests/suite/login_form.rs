//! The application's ID + PIN login form under attack, against a real PHP application: PHP reads
//! `corp.id`, `corp id`, `corp[id` and ` corp_id` as `corp_id`, the application trims what it
//! reads, and PHP runs `/login.php/anything` as `/login.php`. Without a certificate, no spelling
//! logs in a corporation that requires certificates. Before, each of these reached the
//! application, which logged the corporation in.

use crate::support::*;

const CERT_REQUIRED: &str = "11111111111111";
const OPEN_CORP: &str = "22222222222222";

async fn bank_with_php() -> (Bank, Program) {
    let php = php_app();
    let fixture = Fixture::new();
    let bank = Bank::open_with(
        fixture,
        &format!(
            "[login]\npath = \"/login.php\"\ncorp_field = \"corp_id\"\nuser_field = \"user_id\"\n\
             [[route]]\npath = \"/\"\nrequire_cert = false\n\
             [upstream]\nurl = \"http://{}\"\n",
            php.addr
        ),
    )
    .await;
    let operator = certgate::lifecycle::Context::operator();
    for (corp, required) in [(CERT_REQUIRED, true), (OPEN_CORP, false)] {
        bank.lifecycle
            .add_corporation(corp, "Corp", "admin@corp.example", &operator)
            .await
            .unwrap();
        bank.lifecycle
            .set_cert_required(corp, required, &operator)
            .await
            .unwrap();
    }
    (bank, php)
}

async fn post_form(bank: &Bank, path: &str, form: &str) -> (u16, String) {
    let (status, _, _, body) = bank
        .post(
            None,
            path,
            &[("content-type", "application/x-www-form-urlencoded")],
            form.to_owned(),
        )
        .await;
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn no_spelling_of_the_corporation_field_logs_in_without_a_certificate() {
    let (bank, _php) = bank_with_php().await;
    // Wait for the server to have read the corporations' standing.
    wait_until("the server applies cert_required", || async {
        post_form(
            &bank,
            "/login.php",
            &format!("corp_id={CERT_REQUIRED}&user_id=bob"),
        )
        .await
        .0 == 403
    })
    .await;
    for (path, form) in [
        ("/login.php", format!("corp.id={CERT_REQUIRED}&user_id=bob")),
        ("/login.php", format!("corp+id={CERT_REQUIRED}&user_id=bob")),
        ("/login.php", format!("corp[id={CERT_REQUIRED}&user_id=bob")),
        ("/login.php", format!("+corp_id={CERT_REQUIRED}&user_id=bob")),
        ("/login.php", format!("CORP_ID={CERT_REQUIRED}&user_id=bob")),
        ("/login.php", format!("corp_id={CERT_REQUIRED}+&user_id=bob")),
        ("/login.php", format!("corp_id=+{CERT_REQUIRED}&user_id=bob")),
        ("/login.php", format!("corp_id={CERT_REQUIRED}%0A&user_id=bob")),
        ("/login.php", format!("corp_id={CERT_REQUIRED}%00&user_id=bob")),
        ("/login.php", "corp_id=%EF%BC%91%EF%BC%91%EF%BC%91%EF%BC%91%EF%BC%91%EF%BC%91%EF%BC%91%EF%BC%91%EF%BC%91%EF%BC%91%EF%BC%91%EF%BC%91%EF%BC%91%EF%BC%91&user_id=bob".to_owned()),
        ("/login.php", format!("x=1;corp_id={CERT_REQUIRED}&user_id=bob")),
        ("/login.php", "user_id=bob".to_owned()),
        ("/login.php/x", format!("corp_id={CERT_REQUIRED}&user_id=bob")),
        ("/LOGIN.PHP/x/y", format!("corp_id={CERT_REQUIRED}&user_id=bob")),
        ("/public/../login.php/x", format!("corp_id={CERT_REQUIRED}&user_id=bob")),
    ] {
        let (status, body) = post_form(&bank, path, &form).await;
        assert!(
            status == 400 || status == 403,
            "{path} {form}: {status} {body}"
        );
        assert!(!body.contains("LOGIN corp="), "{path} {form}: the application ran: {body}");
    }
    // The twins: a corporation that does not require certificates logs in, and the form page
    // itself (no fields) is served.
    let (status, body) = post_form(
        &bank,
        "/login.php",
        &format!("corp_id={OPEN_CORP}&user_id=bob"),
    )
    .await;
    assert_eq!(
        (status, body.trim()),
        (200, format!("LOGIN corp={OPEN_CORP} user=bob").as_str())
    );
    let (status, body) = post_form(&bank, "/login.php", "").await;
    assert_eq!((status, body.trim()), (200, "LOGIN corp= user="));
}
