//! certgate's pages in Debian's Chromium, driven by Playwright (`tests/browser/flow.mjs`): the
//! administrator enrolls, downloads `certificate.p12`, opens the application with it, adds a user
//! on the admin page and re-issues; the user enrolls, meets the renewal notice and renews. Screenshots of every page, in Japanese and English, are kept under
//! `target/pages-screenshots/`. `scripts/test.sh` installs Chromium and Playwright.

use crate::support::*;
use certgate::lifecycle::Context;
use certgate::model::Holder;
use secrecy::ExposeSecret as _;

const CORP_C: &str = "77777777777777";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_enroll_log_in_and_renew_in_chromium() {
    let browser_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    assert!(
        browser_dir.join("node_modules/playwright-core").is_dir(),
        "Playwright is missing: scripts/test.sh installs it (npm ci in tests/browser)"
    );
    // Every certificate is inside its renewal window, and /top is the page after login.
    let bank =
        Bank::open("[lifecycle]\nrenew_window_days = 3650\n\n[notice]\npaths = [\"/top\"]\n").await;
    let operator = Context::operator();
    bank.lifecycle
        .add_corporation(CORP_C, "Browser Co", "admin@browser.example", &operator)
        .await
        .unwrap();
    let admin_pin = bank
        .lifecycle
        .issue_permit(&Holder::admin(CORP_C), &Context::operator())
        .await
        .unwrap()
        .pin
        .expose_secret()
        .to_owned();
    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("pages-screenshots");
    let mut node = std::process::Command::new("node");
    node.arg("flow.mjs")
        .current_dir(&browser_dir)
        .env(
            "BASE",
            format!("https://localhost:{}", bank.server.addr.port()),
        )
        .env("CORP", CORP_C)
        .env("ADMIN_PIN", &admin_pin)
        .env("USER_ID", "hanako")
        .env("SHOTS", &shots);
    let out = tokio::task::spawn_blocking(move || node.output())
        .await
        .unwrap()
        .expect("node runs (scripts/test.sh installs it)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the browser flow failed:\n{stdout}\n{}\ncertgate:\n{}",
        String::from_utf8_lossy(&out.stderr),
        bank.server.logs()
    );
    let seen: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(seen["admin"]["corp"], CORP_C);
    assert_eq!(seen["user"]["user"], "hanako");
    assert_eq!(
        seen["user"]["noticed"], true,
        "the renewal notice came first"
    );
    assert!(
        seen["user"]["daysLeft"]
            .as_str()
            .is_some_and(|days| days.parse::<i64>().is_ok())
    );
    // The application saw the renewed certificate's serial.
    let served = seen["renewed"]["servedSerial"]
        .as_str()
        .unwrap()
        .to_ascii_lowercase();
    let shown = seen["renewed"]["serial"]
        .as_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(
        served.replace(':', "").trim_start_matches('0') == shown.trim_start_matches('0'),
        "{served} vs {shown}"
    );
    assert_eq!(
        seen["revoked"]["status"], 403,
        "the revoked user's next page load"
    );
    for page in [
        "enroll-ja",
        "enroll-en",
        "enroll-refused-ja",
        "enroll-refused-en",
        "enrolled-admin-ja",
        "enrolled-user-en",
        "admin-ja",
        "admin-en",
        "reissued-ja",
        "reissued-en",
        "edit-user-ja",
        "edit-user-en",
        "notice-ja",
        "notice-en",
        "me-ja",
        "me-en",
        "renew-ja",
        "renew-en",
        "renew-cancelled-ja",
        "renew-cancelled-en",
        "renewed-en",
        "renewed-ja",
        "confirmation-set-ja",
        "confirmation-set-en",
        "revoke-ja",
        "revoke-en",
        "revoked-ja",
        "revoked-en",
    ] {
        assert!(
            shots.join(format!("{page}.png")).is_file(),
            "no screenshot of {page}"
        );
    }
}
