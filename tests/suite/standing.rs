//! The registry's standing on the proxy path: roles from the registry, suspended users, and the
//! application's ID + PIN login form once a corporation requires certificates.

use crate::support::*;
use certgate::lifecycle::Context;
use certgate::model::Role;
use certgate::store::UserStatus;

const CORP_A: &str = "11111111111111";
const CORP_B: &str = "22222222222222";

const LOGIN: &str = "[login]\npath = \"/login\"\ncorp_field = \"corp\"\nuser_field = \"user\"\n\
                     [[route]]\npath = \"/login\"\nrequire_cert = false\n[[route]]\npath = \"/\"\nrequire_cert = true";

/// Seeds the registry the server will read, through the library on the same SQLite file.
async fn seed(fixture: &Fixture) {
    let lifecycle = fixture
        .open_lifecycle("client_auth = \"optional\"", LOGIN, false)
        .await;
    let operator = Context::operator();
    lifecycle
        .add_corporation(CORP_A, "A Trading", "admin@a.example", &operator)
        .await
        .unwrap();
    lifecycle
        .add_corporation(CORP_B, "B Foods", "admin@b.example", &operator)
        .await
        .unwrap();
    lifecycle
        .set_cert_required(CORP_A, true, &operator)
        .await
        .unwrap();
    lifecycle
        .add_user(CORP_A, "taro", Role::Master, None, &operator)
        .await
        .unwrap();
    lifecycle
        .add_user(CORP_A, "jiro", Role::General, None, &operator)
        .await
        .unwrap();
    lifecycle
        .add_user(CORP_A, "saburo", Role::General, None, &operator)
        .await
        .unwrap();
    lifecycle
        .set_user_status(&operator, CORP_A, "saburo", UserStatus::Suspended)
        .await
        .unwrap();
    lifecycle.store().close().await;
}

async fn post_form(
    server: &Server,
    config: std::sync::Arc<rustls::ClientConfig>,
    form: &str,
) -> (http::StatusCode, bytes::Bytes) {
    let mut conn = Conn::open(server.addr, config).await.unwrap();
    let request = http::Request::post("/login")
        .header("host", "localhost")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(http_body_util::BodyExt::boxed(http_body_util::Full::new(
            bytes::Bytes::from(form.to_owned()),
        )))
        .unwrap();
    let response = conn.send(request).await.unwrap();
    let status = response.status();
    (
        status,
        http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes(),
    )
}

#[tokio::test]
async fn login_form_without_certificate_is_refused_only_where_certificates_are_required() {
    let fixture = Fixture::new();
    seed(&fixture).await;
    let server = fixture.start("client_auth = \"optional\"", LOGIN);
    let anonymous = client_config(&fixture.ca, None, &[]);

    let (status, body) = post_form(
        &server,
        anonymous.clone(),
        &format!("corp={CORP_A}&user=taro&pin=1234"),
    )
    .await;
    assert_eq!(status, 403);
    assert!(String::from_utf8_lossy(&body).contains("login-needs-certificate"));

    let form = format!("corp={CORP_B}&user=hanako&pin=1234");
    let (status, body) = post_form(&server, anonymous, &form).await;
    assert_eq!(status, 200);
    // The form reached the application intact.
    assert_eq!(echoed(&body)["body_bytes"], form.len());
}

#[tokio::test]
async fn login_form_must_name_the_certificate_holder() {
    let fixture = Fixture::new();
    seed(&fixture).await;
    let server = fixture.start("client_auth = \"optional\"", LOGIN);
    let taro = client_config(
        &fixture.ca,
        Some(&fixture.ca.client(&format!("{CORP_A} taro"))),
        &[],
    );
    let (status, _) = post_form(
        &server,
        taro.clone(),
        &format!("corp={CORP_A}&user=taro&pin=1234"),
    )
    .await;
    assert_eq!(status, 200);
    for form in [
        format!("corp={CORP_A}&user=jiro&pin=1"),
        format!("corp={CORP_B}&user=taro&pin=1"),
    ] {
        let (status, body) = post_form(&server, taro.clone(), &form).await;
        assert_eq!(status, 403, "{form}");
        assert!(String::from_utf8_lossy(&body).contains("login-certificate-mismatch"));
    }
    let (status, _) = post_form(&server, taro, &"x=".repeat(40_000)).await;
    assert_eq!(status, 413);
}

#[tokio::test]
async fn role_comes_from_the_registry_and_suspended_users_are_refused() {
    let fixture = Fixture::new();
    seed(&fixture).await;
    let server = fixture.start("client_auth = \"optional\"", LOGIN);
    for (user, expected) in [
        ("taro", "master"),
        ("jiro", "general"),
        ("unknown", "general"),
    ] {
        let leaf = fixture.ca.client(&format!("{CORP_A} {user}"));
        let (status, _, body) = get_once(
            server.addr,
            client_config(&fixture.ca, Some(&leaf), &[]),
            "/app",
            &[],
        )
        .await
        .unwrap();
        assert_eq!(status, 200, "{user}");
        assert_eq!(
            echoed(&body)["headers"]["x-client-role"],
            expected,
            "{user}"
        );
    }
    let saburo = fixture.ca.client(&format!("{CORP_A} saburo"));
    let (status, _, body) = get_once(
        server.addr,
        client_config(&fixture.ca, Some(&saburo), &[]),
        "/app",
        &[],
    )
    .await
    .unwrap();
    assert_eq!(status, 403);
    assert!(String::from_utf8_lossy(&body).contains("user-suspended"));
}
