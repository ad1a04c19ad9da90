//! The pages for people in a browser, over real TLS: enrollment gives a `certificate.p12` that
//! openssl opens and that logs in; renewal runs Execute and Cancel; every page carries the
//! security headers and both languages; forms refuse bad input, other sites' posts and missing
//! or foreign tokens, and then change nothing in the registry.

use crate::support::*;
use bytes::Bytes;
use certgate::store::PermitState;
use http_body_util::BodyExt as _;

/// A GET of `path` with `headers`: status, headers and the body as text.
async fn get(
    bank: &Bank,
    leaf: Option<&Leaf>,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, http::HeaderMap, String) {
    let mut conn = Conn::open(bank.server.addr, bank.client(leaf))
        .await
        .unwrap();
    let mut request = http::Request::get(path).header("host", "localhost");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = conn.send(request.body(empty()).unwrap()).await.unwrap();
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    (
        parts.status.as_u16(),
        parts.headers,
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

/// A form post as a browser on certgate's own page sends it.
async fn post_form(
    bank: &Bank,
    leaf: Option<&Leaf>,
    path: &str,
    fields: &[(&str, &str)],
    extra_headers: &[(&str, &str)],
) -> (u16, http::HeaderMap, String) {
    let body: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish();
    let mut headers = vec![("content-type", "application/x-www-form-urlencoded")];
    headers.extend_from_slice(extra_headers);
    let (status, headers, _, bytes) = bank.post(leaf, path, &headers, Bytes::from(body)).await;
    (
        status,
        headers,
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

/// The hidden token of the page's form.
fn token_of(html: &str) -> String {
    let at = html
        .find("name=\"token\" value=\"")
        .expect("the page has a form token")
        + 20;
    html[at..].split('"').next().unwrap().to_owned()
}

/// The text of the element with `id` (its first text, markup-escaped as the page has it).
fn text_of<'a>(html: &'a str, id: &str) -> &'a str {
    let at = html
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id} in {html}"));
    let rest = &html[at..];
    let start = rest.find('>').unwrap() + 1;
    rest[start..].split('<').next().unwrap().trim()
}

fn unescape(text: &str) -> String {
    text.replace("&#x2f;", "/")
        .replace("&#x27;", "'")
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The `certificate.p12` of a result page, opened with openssl: the leaf certificate and key.
fn leaf_from_page(html: &str, password: &str) -> Leaf {
    use base64::Engine as _;
    let marker = "href=\"data:application/x-pkcs12;base64,";
    let at = html.find(marker).expect("the page offers certificate.p12") + marker.len();
    let encoded = unescape(html[at..].split('"').next().unwrap());
    let p12 = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("certificate.p12"), p12).unwrap();
    let pass = format!("pass:{password}");
    let cert_pem = run_in(
        dir.path(),
        "openssl",
        &[
            "pkcs12",
            "-in",
            "certificate.p12",
            "-passin",
            &pass,
            "-clcerts",
            "-nokeys",
        ],
    );
    let key_pem = run_in(
        dir.path(),
        "openssl",
        &[
            "pkcs12",
            "-in",
            "certificate.p12",
            "-passin",
            &pass,
            "-nocerts",
            "-noenc",
        ],
    );
    let begin = cert_pem.find("-----BEGIN CERTIFICATE-----").unwrap();
    let cert_pem = cert_pem[begin..].to_owned();
    let key_begin = key_pem.find("-----BEGIN").unwrap();
    Leaf {
        der: Vec::new(),
        serial: Vec::new(),
        key_pem: key_pem[key_begin..].to_owned(),
        cert_pem,
    }
}

fn assert_page_headers(headers: &http::HeaderMap, what: &str) {
    assert_eq!(
        headers["content-type"], "text/html; charset=utf-8",
        "{what}"
    );
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"),
        "{what}: {csp}"
    );
    assert!(!csp.contains("unsafe-inline"), "{what}: {csp}");
    assert_eq!(headers["x-frame-options"], "DENY", "{what}");
    assert_eq!(headers["referrer-policy"], "no-referrer", "{what}");
    assert_eq!(headers["cache-control"], "no-store", "{what}");
}

const PASSWORD: &str = "correct horse battery";

#[tokio::test]
async fn a_user_enrolls_on_the_page_and_the_downloaded_file_logs_in() {
    let bank = Bank::open("").await;
    let pin = bank.permit(CORP_A, Some("taro")).await;

    let (status, headers, form) = get(&bank, None, "/certgate/enroll", &[]).await;
    assert_eq!(status, 200);
    assert_page_headers(&headers, "enroll form");
    assert!(form.contains("<html lang=\"ja\">") && form.contains("電子証明書取得"));
    assert!(
        unescape(&form).contains("href=\"/certgate/enroll?lang=en\""),
        "the language switch"
    );
    let (_, _, english) = get(&bank, None, "/certgate/enroll?lang=en", &[]).await;
    assert!(english.contains("<html lang=\"en\">") && english.contains("Get your certificate"));
    let (_, _, by_header) = get(
        &bank,
        None,
        "/certgate/enroll",
        &[("accept-language", "en-GB,en;q=0.9")],
    )
    .await;
    assert!(by_header.contains("<html lang=\"en\">"));

    let (status, headers, result) = post_form(
        &bank,
        None,
        "/certgate/enroll?lang=en",
        &[
            ("token", &token_of(&english)),
            ("corp_id", CORP_A),
            ("user_id", "taro"),
            ("pin", &pin),
            ("password", PASSWORD),
            ("password2", PASSWORD),
        ],
        &[
            ("origin", "https://localhost"),
            ("sec-fetch-site", "same-origin"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{result}");
    assert_page_headers(&headers, "enrollment result");
    assert_eq!(text_of(&result, "cn"), format!("{CORP_A} taro"));
    assert!(!text_of(&result, "o").is_empty() && !text_of(&result, "ou").is_empty());
    assert!(text_of(&result, "not-after").ends_with("JST"));
    let serial = text_of(&result, "serial").to_owned();

    // The file opens with the password chosen, and its certificate is the one shown.
    let leaf = leaf_from_page(&result, PASSWORD);
    let shown_serial = openssl_x509(&leaf.cert_pem, &["-serial"]);
    assert!(
        shown_serial
            .trim()
            .to_ascii_lowercase()
            .ends_with(&serial.trim_start_matches('0')),
        "{shown_serial} vs {serial}"
    );
    // It logs in: the user's own page shows them, their certificate and their enrollment.
    let (status, headers, me) = get(&bank, Some(&leaf), "/certgate/me?lang=en", &[]).await;
    assert_eq!(status, 200, "{me}");
    assert_page_headers(&headers, "me");
    assert_eq!(text_of(&me, "corp-id"), CORP_A);
    assert_eq!(text_of(&me, "user-id"), "taro");
    assert_eq!(text_of(&me, "serial"), serial);
    assert_eq!(text_of(&me, "status"), "issued");
    assert!(
        me.contains("<td>enroll</td>"),
        "the history shows the enrollment: {me}"
    );
    // Without a certificate the page says what is needed.
    let (status, _, anonymous) = get(&bank, None, "/certgate/me", &[]).await;
    assert_eq!(status, 401);
    assert!(anonymous.contains("電子証明書が必要です"));
    // The style sheet is certgate's own.
    let (status, headers, css) = get(&bank, None, "/certgate/static/certgate.css", &[]).await;
    assert_eq!(
        (status, headers["content-type"].to_str().unwrap()),
        (200, "text/css; charset=utf-8")
    );
    assert!(css.contains("body"));
}

/// What is wrong, the fields changed from a good form, extra headers, the status, what the page
/// says.
type BadForm = (
    &'static str,
    Vec<(&'static str, String)>,
    &'static [(&'static str, &'static str)],
    u16,
    &'static str,
);

#[tokio::test]
async fn bad_enrollment_forms_show_the_form_again_and_change_nothing() {
    let bank = Bank::open("").await;
    let pin = bank.permit(CORP_A, Some("taro")).await;
    let (_, _, english) = get(&bank, None, "/certgate/enroll?lang=en", &[]).await;
    let token = token_of(&english);
    // The same form shown to someone presenting a certificate is bound to that certificate.
    let (_, _, foreign_page) =
        get(&bank, Some(&bank.admin_a), "/certgate/enroll?lang=en", &[]).await;
    let cases: Vec<BadForm> = vec![
        (
            "empty corporation",
            vec![("corp_id", String::new())],
            &[],
            400,
            "Corporation ID is required",
        ),
        (
            "corporation too long",
            vec![("corp_id", "1".repeat(31))],
            &[],
            400,
            "must be 1 to 30 letters",
        ),
        (
            "non-ASCII corporation",
            vec![("corp_id", "５５５".into())],
            &[],
            400,
            "must be 1 to 30 letters",
        ),
        (
            "non-ASCII user",
            vec![("user_id", "太郎".into())],
            &[],
            400,
            "must be 1 to 30 letters",
        ),
        (
            "empty PIN",
            vec![("pin", String::new())],
            &[],
            400,
            "Temporary PIN is required",
        ),
        (
            "PIN too long",
            vec![("pin", "9".repeat(129))],
            &[],
            400,
            "Temporary PIN is too long",
        ),
        (
            "short password",
            vec![("password", "short".into()), ("password2", "short".into())],
            &[],
            400,
            "at least 8 characters",
        ),
        (
            "passwords differ",
            vec![("password2", "another password".into())],
            &[],
            400,
            "The two passwords differ",
        ),
        (
            "no token",
            vec![("token", String::new())],
            &[],
            403,
            "has expired or is not valid",
        ),
        (
            "a forged token",
            vec![("token", format!("{}.AAAA", i64::MAX))],
            &[],
            403,
            "has expired or is not valid",
        ),
        (
            "another caller's token",
            vec![("token", token_of(&foreign_page))],
            &[],
            403,
            "has expired or is not valid",
        ),
        (
            "another site's origin",
            vec![],
            &[("origin", "https://evil.example")],
            403,
            "sent from another site",
        ),
        (
            "a cross-site fetch",
            vec![],
            &[("sec-fetch-site", "cross-site")],
            403,
            "sent from another site",
        ),
        (
            "an opaque origin without the token",
            vec![("token", String::new())],
            &[("origin", "null")],
            403,
            "has expired or is not valid",
        ),
    ];
    for (what, changes, headers, status, says) in cases {
        let mut fields: Vec<(&str, String)> = vec![
            ("token", token.clone()),
            ("corp_id", CORP_A.into()),
            ("user_id", "taro".into()),
            ("pin", pin.clone()),
            ("password", PASSWORD.into()),
            ("password2", PASSWORD.into()),
        ];
        for (name, value) in changes {
            fields.retain(|(field, _)| *field != name);
            fields.push((name, value));
        }
        let pairs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (got, page_headers, page) =
            post_form(&bank, None, "/certgate/enroll?lang=en", &pairs, headers).await;
        assert_eq!(got, status, "{what}: {page}");
        assert_page_headers(&page_headers, what);
        assert!(page.contains(says), "{what}: expected {says:?} in {page}");
        assert!(
            page.contains("name=\"pin\""),
            "{what}: the form is shown again"
        );
        assert!(!page.contains(&pin), "{what}: the PIN is never shown again");
        assert!(!page.contains(PASSWORD), "{what}: nor the password");
        assert_eq!(
            bank.permit_state(CORP_A, Some("taro")).await,
            (PermitState::Active, 0),
            "{what}: nothing changed in the registry"
        );
    }
    // Not a web form at all.
    let (status, _, _, body) = bank
        .post(
            None,
            "/certgate/enroll",
            &[("content-type", "application/json")],
            "{}",
        )
        .await;
    assert_eq!(status, 415, "{}", String::from_utf8_lossy(&body));

    // Before the PIN is checked, one refusal for a wrong PIN and for nobody at all; the typed
    // IDs are kept in the form.
    let attempt = |corp: &'static str, user: &'static str| {
        let token = token.clone();
        let bank = &bank;
        async move {
            post_form(
                bank,
                None,
                "/certgate/enroll?lang=en",
                &[
                    ("token", &token),
                    ("corp_id", corp),
                    ("user_id", user),
                    ("pin", "WRONG-PIN-123"),
                    ("password", PASSWORD),
                    ("password2", PASSWORD),
                ],
                &[],
            )
            .await
        }
    };
    let (wrong_status, _, wrong) = attempt(CORP_A, "taro").await;
    let (nobody_status, _, nobody) = attempt("12345678901234", "nobody").await;
    assert_eq!((wrong_status, nobody_status), (401, 401));
    assert_eq!(text_of(&wrong, "error"), text_of(&nobody, "error"));
    assert_eq!(
        text_of(&wrong, "error"),
        "The corporation ID, user ID or PIN is wrong."
    );
    assert!(wrong.contains(&format!("value=\"{CORP_A}\"")) && wrong.contains("value=\"taro\""));
}

#[tokio::test]
async fn renewal_on_the_page_cancels_and_executes_and_its_form_belongs_to_one_certificate() {
    let bank = Bank::open("[lifecycle]\nrenew_window_days = 3650\n").await;
    let (status, headers, page) =
        get(&bank, Some(&bank.admin_a), "/certgate/renew?lang=en", &[]).await;
    assert_eq!(status, 200, "{page}");
    assert_page_headers(&headers, "renew");
    assert!(
        page.contains("id=\"execute\"") && page.contains("id=\"cancel\""),
        "{page}"
    );
    assert_eq!(text_of(&page, "cn"), CORP_A);
    let token = token_of(&page);

    // Cancel: "renewal interrupted", the certificate unchanged.
    let (status, _, cancelled) = post_form(
        &bank,
        Some(&bank.admin_a),
        "/certgate/renew?lang=en",
        &[("token", &token), ("do", "cancel")],
        &[],
    )
    .await;
    assert_eq!(status, 200, "{cancelled}");
    assert!(cancelled.contains("Renewal interrupted"), "{cancelled}");
    // Another corporation's administrator cannot use this certificate's form.
    let (status, _, foreign) = post_form(
        &bank,
        Some(&bank.admin_b),
        "/certgate/renew?lang=en",
        &[
            ("token", &token),
            ("do", "execute"),
            ("password", PASSWORD),
            ("password2", PASSWORD),
        ],
        &[],
    )
    .await;
    assert_eq!(status, 403, "{foreign}");
    let (status, _, cross) = post_form(
        &bank,
        Some(&bank.admin_a),
        "/certgate/renew?lang=en",
        &[
            ("token", &token),
            ("do", "execute"),
            ("password", PASSWORD),
            ("password2", PASSWORD),
        ],
        &[("origin", "https://evil.example")],
    )
    .await;
    assert_eq!(status, 403, "{cross}");
    let (status, _, differ) = post_form(
        &bank,
        Some(&bank.admin_a),
        "/certgate/renew?lang=en",
        &[
            ("token", &token),
            ("do", "execute"),
            ("password", PASSWORD),
            ("password2", "something else"),
        ],
        &[],
    )
    .await;
    assert_eq!(status, 400, "{differ}");
    assert_eq!(
        bank.lifecycle
            .store()
            .holder_certificates(&certgate::model::Holder::admin(CORP_A))
            .await
            .unwrap()
            .len(),
        1,
        "no refused form issued anything"
    );

    // Execute: a new certificate, and the note about the old one.
    let (status, _, renewed) = post_form(
        &bank,
        Some(&bank.admin_a),
        "/certgate/renew?lang=en",
        &[
            ("token", &token),
            ("do", "execute"),
            ("password", PASSWORD),
            ("password2", PASSWORD),
        ],
        &[("sec-fetch-site", "same-origin")],
    )
    .await;
    assert_eq!(status, 200, "{renewed}");
    assert!(renewed.contains("id=\"old-certificate\""));
    let new_leaf = leaf_from_page(&renewed, PASSWORD);
    let (status, _, me) = get(&bank, Some(&new_leaf), "/certgate/me?lang=en", &[]).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(text_of(&me, "serial"), text_of(&renewed, "serial"));
}

#[tokio::test]
async fn outside_the_window_the_renewal_page_says_when_it_opens() {
    let bank = Bank::open_configured(Fixture::new(), "", "[notice]\npaths = [\"/top\"]\n").await;
    // Nor does the renewal notice stand before the application's page.
    let (status, _, top) = get(
        &bank,
        Some(&bank.admin_a),
        "/top",
        &[("accept", "text/html")],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(echoed(&Bytes::from(top))["path"], "/top");
    let (status, _, page) = get(&bank, Some(&bank.admin_a), "/certgate/renew", &[]).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("id=\"not-open\""), "{page}");
    assert!(!page.contains("id=\"execute\""));
    let (status, _, anonymous) = get(&bank, None, "/certgate/renew", &[]).await;
    assert_eq!(status, 401, "{anonymous}");
}

#[tokio::test]
async fn a_bank_brands_a_page_and_a_broken_override_falls_back() {
    let fixture = Fixture::new();
    let templates = fixture.dir.path().join("templates");
    std::fs::create_dir(&templates).unwrap();
    std::fs::write(
        templates.join("enroll.html"),
        "{% extends \"layout.html\" %}{% block main %}<p id=\"brand\">First Bank: {{ t.enroll_title }}</p>{% endblock %}",
    )
    .unwrap();
    std::fs::write(templates.join("me.html"), "{% if %}broken").unwrap();
    let bank = Bank::open_configured(
        fixture,
        "",
        &format!("[pages]\ntemplates = \"{}\"\n", templates.display()),
    )
    .await;
    let (status, headers, branded) = get(&bank, None, "/certgate/enroll?lang=en", &[]).await;
    assert_eq!(status, 200);
    assert_page_headers(&headers, "branded");
    assert_eq!(
        text_of(&branded, "brand"),
        "First Bank: Get your certificate"
    );
    let (status, _, me) = get(&bank, Some(&bank.admin_a), "/certgate/me?lang=en", &[]).await;
    assert_eq!(status, 200);
    assert!(me.contains("Your certificate"), "the built-in page: {me}");
    bank.server
        .wait_for_log("pages.templates: this override does not parse");
}

#[test]
fn bad_pages_settings_are_refused_naming_the_key() {
    let fixture = Fixture::new();
    let not_a_key = fixture.write("pages.key", "0123\n");
    for (rest, says) in [
        (
            format!("[pages]\nsecret_file = \"{}\"\n", not_a_key.display()),
            "pages.secret_file",
        ),
        (
            format!(
                "[pages]\ntemplates = \"{}/missing\"\n",
                fixture.dir.path().display()
            ),
            "pages.templates",
        ),
        ("[pages]\nsecret = \"x\"\n".to_owned(), "pages.secret"),
    ] {
        let config = fixture.write("bad.toml", &fixture.config("", &rest));
        let out = certgate()
            .args(["serve", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{rest}: {stderr}");
        assert!(stderr.contains(says), "{rest}: {stderr}");
        assert!(
            !stderr.contains("0123"),
            "never the key's contents: {stderr}"
        );
    }
}

#[tokio::test]
async fn the_renewal_notice_stands_before_the_page_until_next_and_a_renewed_certificate_is_logged_off()
 {
    let bank = Bank::open_configured(
        Fixture::new(),
        "",
        "[lifecycle]\nrenew_window_days = 3650\n\n[notice]\npaths = [\"/top\"]\n",
    )
    .await;
    let html = [("accept", "text/html")];
    let (status, headers, notice) = get(&bank, Some(&bank.admin_a), "/top?lang=en", &html).await;
    assert_eq!(status, 200, "{notice}");
    assert_page_headers(&headers, "notice");
    assert!(notice.contains("Certificate renewal notice"), "{notice}");
    assert!(text_of(&notice, "not-after").ends_with("JST"));
    assert!(unescape(&notice).contains("href=\"/certgate/renew?lang=en\""));
    // Other application pages, and certificates certgate does not renew, pass as before; the
    // application always learns the days left.
    let (status, _, other) = get(&bank, Some(&bank.admin_a), "/other", &html).await;
    assert_eq!(status, 200);
    assert!(echoed(&Bytes::from(other))["headers"]["x-client-cert-days-left"].is_string());
    let external = bank.fixture.ca.client(&format!("{CORP_A} taro"));
    let (status, _, passed) = get(&bank, Some(&external), "/top", &html).await;
    assert_eq!(status, 200);
    assert!(!passed.contains("notice"), "{passed}");

    let token = token_of(&notice);
    // Next from another site, or with a forged token: refused.
    let next = |token: String, extra: &'static [(&'static str, &'static str)], leaf: &Leaf| {
        let bank = &bank;
        let leaf = leaf.clone();
        async move {
            let body = form_urlencoded::Serializer::new(String::new())
                .extend_pairs([
                    ("token", token.as_str()),
                    ("next", "/top?lang=en"),
                    ("remind", "on"),
                ])
                .finish();
            let mut headers = vec![("content-type", "application/x-www-form-urlencoded")];
            headers.extend_from_slice(extra);
            bank.post(Some(&leaf), "/certgate/notice", &headers, body)
                .await
        }
    };
    let (status, _, _, _) = next(
        token.clone(),
        &[("sec-fetch-site", "cross-site")],
        &bank.admin_a,
    )
    .await;
    assert_eq!(status, 403);
    let (status, _, _, _) = next(token.clone(), &[], &bank.admin_b).await;
    assert_eq!(status, 403, "the token belongs to admin A's certificate");
    // Next: a cookie bound to the certificate, and the page asked for.
    let (status, headers, _, _) = next(token, &[], &bank.admin_a).await;
    assert_eq!(status, 303);
    assert_eq!(headers["location"], "/top?lang=en");
    let cookie = headers["set-cookie"].to_str().unwrap().to_owned();
    for attribute in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    assert!(
        !cookie.contains("Max-Age"),
        "reminded at the next login: a session cookie"
    );
    let pair = cookie.split(';').next().unwrap().to_owned();
    let (status, _, page) = get(
        &bank,
        Some(&bank.admin_a),
        "/top",
        &[("accept", "text/html"), ("cookie", &pair)],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(echoed(&Bytes::from(page))["path"], "/top");
    // The cookie is the certificate's own: another certificate, or a forged one, gets the notice.
    let (_, _, theirs) = get(
        &bank,
        Some(&bank.admin_b),
        "/top?lang=en",
        &[("accept", "text/html"), ("cookie", &pair)],
    )
    .await;
    assert!(theirs.contains("Certificate renewal notice"));
    let forged = format!("certgate_notice={}.AAAA", i64::MAX);
    let (_, _, forged_page) = get(
        &bank,
        Some(&bank.admin_a),
        "/top?lang=en",
        &[("accept", "text/html"), ("cookie", &forged)],
    )
    .await;
    assert!(forged_page.contains("Certificate renewal notice"));

    // Renew now: afterwards the old certificate is logged off with a page saying what to do.
    let (_, _, renew) = get(&bank, Some(&bank.admin_a), "/certgate/renew?lang=en", &[]).await;
    let (status, _, renewed) = post_form(
        &bank,
        Some(&bank.admin_a),
        "/certgate/renew?lang=en",
        &[
            ("token", &token_of(&renew)),
            ("do", "execute"),
            ("password", PASSWORD),
            ("password2", PASSWORD),
        ],
        &[],
    )
    .await;
    assert_eq!(status, 200, "{renewed}");
    let (status, _, logged_off) = get(&bank, Some(&bank.admin_a), "/other", &html).await;
    assert_eq!(status, 403, "{logged_off}");
    assert!(
        logged_off.contains("close every browser window"),
        "{logged_off}"
    );
    let new_leaf = leaf_from_page(&renewed, PASSWORD);
    let (status, _, _) = get(&bank, Some(&new_leaf), "/other", &html).await;
    assert_eq!(status, 200, "the new certificate works");
}

#[test]
fn bad_notice_paths_are_refused_naming_the_key() {
    let fixture = Fixture::new();
    for (paths, says) in [
        ("[\"top\"]", "notice.paths[0]"),
        ("[\"/top\", \"//evil\"]", "notice.paths[1]"),
        ("[\"/top?x=1\"]", "notice.paths[0]"),
        ("[\"/certgate/me\"]", "certgate's own paths"),
        ("[\"/a/../b\"]", "notice.paths[0]"),
        ("\"/top\"", "notice.paths"),
    ] {
        let config = fixture.write(
            "bad.toml",
            &fixture.config("", &format!("[notice]\npaths = {paths}\n")),
        );
        let out = certgate()
            .args(["check-config", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{paths}: {stderr}");
        assert!(stderr.contains(says), "{paths}: {stderr}");
    }
}

#[tokio::test]
async fn the_administrator_manages_users_on_the_admin_page_and_general_users_may_not() {
    let bank = Bank::open("").await;
    let (status, headers, page) =
        get(&bank, Some(&bank.admin_a), "/certgate/admin?lang=en", &[]).await;
    assert_eq!(status, 200, "{page}");
    assert_page_headers(&headers, "admin");
    assert_eq!(text_of(&page, "corp-id"), CORP_A);
    assert!(page.contains("id=\"user-taro\"") && page.contains("id=\"user-boss\""));
    assert!(
        !page.contains(CORP_B),
        "only the administrator's own corporation"
    );
    let token = token_of(&page);
    let act = |fields: Vec<(&'static str, String)>,
               leaf: Leaf,
               extra: &'static [(&'static str, &'static str)]| {
        let bank = &bank;
        async move {
            let pairs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
            post_form(bank, Some(&leaf), "/certgate/admin?lang=en", &pairs, extra).await
        }
    };
    // Add a user with a name; the table shows it.
    let (status, headers, _) = act(
        vec![
            ("token", token.clone()),
            ("do", "add".into()),
            ("user_id", "hanako".into()),
            ("name", "佐藤 花子".into()),
            ("role", "general".into()),
            ("email", "hanako@example.jp".into()),
        ],
        bank.admin_a.clone(),
        &[],
    )
    .await;
    assert_eq!(status, 303);
    assert_eq!(headers["location"], "/certgate/admin?lang=en");
    let (_, _, page) = get(
        &bank,
        Some(&bank.admin_a),
        "/certgate/admin?lang=en&sort=name",
        &[],
    )
    .await;
    assert!(
        page.contains("id=\"user-hanako\"") && page.contains("佐藤 花子"),
        "{page}"
    );
    // Bad input shows the page again with the reason and changes nothing.
    for (what, fields, status, says) in [
        (
            "a master user",
            vec![("role", "master")],
            400,
            "Choose a role",
        ),
        ("a bad ID", vec![("user_id", "花子")], 400, "user_id"),
        ("a taken ID", vec![("user_id", "taro")], 409, "taro"),
    ] {
        let mut form = vec![
            ("token", token.clone()),
            ("do", "add".to_owned()),
            ("user_id", "jiro".to_owned()),
            ("role", "general".to_owned()),
        ];
        for (name, value) in fields {
            form.retain(|(field, _)| *field != name);
            form.push((name, value.to_owned()));
        }
        let (got, _, page) = act(form, bank.admin_a.clone(), &[]).await;
        assert_eq!(got, status, "{what}: {page}");
        assert!(page.contains(says), "{what}: {says:?} in {page}");
    }
    let (_, _, page) = get(&bank, Some(&bank.admin_a), "/certgate/admin", &[]).await;
    assert!(
        !page.contains("id=\"user-jiro\""),
        "nothing was added by a refused form"
    );
    // A form from another site, or without its token, does nothing.
    let suspend = vec![
        ("token", token.clone()),
        ("do", "suspend".into()),
        ("user_id", "taro".into()),
    ];
    let (status, _, _) = act(
        suspend.clone(),
        bank.admin_a.clone(),
        &[("sec-fetch-site", "cross-site")],
    )
    .await;
    assert_eq!(status, 403);
    let (status, _, _) = act(
        vec![("do", "suspend".into()), ("user_id", "taro".into())],
        bank.admin_a.clone(),
        &[],
    )
    .await;
    assert_eq!(status, 403);
    let taro = bank.enrolled("taro").await;
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
    assert_eq!(app(&taro).await, 200);
    // Suspend: refused at once; resume: back.
    let (status, _, _) = act(suspend, bank.admin_a.clone(), &[]).await;
    assert_eq!(status, 303);
    assert_eq!(app(&taro).await, 403);
    let (_, _, page) = get(&bank, Some(&bank.admin_a), "/certgate/admin?lang=en", &[]).await;
    assert!(page.contains("id=\"resume-taro\""), "{page}");
    let (status, _, _) = act(
        vec![
            ("token", token.clone()),
            ("do", "resume".into()),
            ("user_id", "taro".into()),
        ],
        bank.admin_a.clone(),
        &[],
    )
    .await;
    assert_eq!(status, 303);
    assert_eq!(app(&taro).await, 200);
    // Re-issue: the new PIN is shown once, and it enrolls.
    let (status, _, reissued) = act(
        vec![
            ("token", token.clone()),
            ("do", "reissue".into()),
            ("user_id", "hanako".into()),
        ],
        bank.admin_a.clone(),
        &[],
    )
    .await;
    assert_eq!(status, 200, "{reissued}");
    let pin = text_of(&reissued, "pin").to_owned();
    let (status, json) = bank
        .enroll_json(CORP_A, Some("hanako"), &pin, &csr().0)
        .await;
    assert_eq!(status, 200, "{json}");
    // The history, filtered by user and by action.
    let (_, _, history) = get(
        &bank,
        Some(&bank.admin_a),
        "/certgate/admin?lang=en&user=taro",
        &[],
    )
    .await;
    for action in ["user.add", "suspend", "resume"] {
        assert!(
            history.contains(&format!("<td>{action}</td>")),
            "{action}: {history}"
        );
    }
    let trail = &history[history.find("id=\"history\"").unwrap()..];
    assert!(!trail.contains("hanako"), "filtered by user: {trail}");
    let (_, _, suspensions) = get(
        &bank,
        Some(&bank.admin_a),
        "/certgate/admin?lang=en&user=taro&action=suspend",
        &[],
    )
    .await;
    assert!(suspensions.contains("<td>suspend</td>"));
    assert!(
        !suspensions.contains("<td>resume</td>") && !suspensions.contains("<td>user.add</td>"),
        "filtered by action: {suspensions}"
    );
    // A general user may not manage: the page refuses them, and no token of theirs is an admin
    // form's.
    let (status, _, refused) = get(&bank, Some(&taro), "/certgate/admin?lang=en", &[]).await;
    assert_eq!(status, 403, "{refused}");
    let (_, _, taro_page) = get(&bank, Some(&taro), "/certgate/enroll", &[]).await;
    let (status, _, _) = act(
        vec![
            ("token", token_of(&taro_page)),
            ("do", "suspend".into()),
            ("user_id", "boss".into()),
        ],
        taro.clone(),
        &[],
    )
    .await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn on_the_admin_page_a_revocation_is_confirmed_with_the_managers_own_password() {
    let bank = Bank::open("").await;
    let taro = bank.enrolled("taro").await;
    // The bank reset the administrator's confirmation password: the page asks to set one first.
    let config = bank.fixture.dir.path().join("certgate.toml");
    let out = certgate()
        .args([
            "user",
            "reset-confirmation",
            "--corp-id",
            CORP_A,
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
    let (_, _, admin) = get(&bank, Some(&bank.admin_a), "/certgate/admin?lang=en", &[]).await;
    assert!(admin.contains("id=\"revoke-taro\""));
    let (status, headers, page) = get(
        &bank,
        Some(&bank.admin_a),
        "/certgate/admin/revoke?lang=en&user=taro",
        &[],
    )
    .await;
    assert_eq!(status, 200, "{page}");
    assert_page_headers(&headers, "revoke");
    assert!(page.contains("id=\"set-intro\""), "{page}");
    let token = token_of(&page);
    let post = |fields: Vec<(&'static str, &'static str)>| {
        let (bank, token) = (&bank, token.clone());
        async move {
            let mut all = vec![("token", token.as_str()), ("user_id", "taro")];
            all.extend(fields);
            post_form(
                bank,
                Some(&bank.admin_a),
                "/certgate/admin/revoke?lang=en",
                &all,
                &[],
            )
            .await
        }
    };
    let (status, _, differ) = post(vec![
        ("do", "set_confirmation"),
        ("password", "page-confirmation"),
        ("password2", "page-confirmatio"),
    ])
    .await;
    assert_eq!(status, 400);
    assert!(differ.contains("The two confirmation passwords differ"));
    let (status, _, set) = post(vec![
        ("do", "set_confirmation"),
        ("password", "page-confirmation"),
        ("password2", "page-confirmation"),
    ])
    .await;
    assert_eq!(status, 200, "{set}");
    assert!(
        set.contains("id=\"done\"") && set.contains("id=\"confirmation\""),
        "{set}"
    );
    // A wrong confirmation password: the page again, nothing revoked.
    let (status, _, wrong) = post(vec![
        ("do", "revoke"),
        ("reason", "keyCompromise"),
        ("confirmation", "not-the-one"),
    ])
    .await;
    assert_eq!(status, 403, "{wrong}");
    assert!(
        wrong.contains("The confirmation password is wrong"),
        "{wrong}"
    );
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
    assert_eq!(app(&taro).await, 200);
    // A reason outside the list is refused.
    let (status, _, _) = post(vec![
        ("do", "revoke"),
        ("reason", "certificateHold"),
        ("confirmation", "page-confirmation"),
    ])
    .await;
    assert_eq!(status, 400);
    // The right one: the result shows the new status, and the user's next page load is refused.
    let (status, _, revoked) = post(vec![
        ("do", "revoke"),
        ("reason", "keyCompromise"),
        ("confirmation", "page-confirmation"),
    ])
    .await;
    assert_eq!(status, 200, "{revoked}");
    assert_eq!(text_of(&revoked, "status"), "revoked");
    assert_eq!(app(&taro).await, 403);
}

#[tokio::test]
async fn the_administrator_changes_a_users_name_role_and_email_and_the_application_sees_the_role() {
    let bank = Bank::open("").await;
    let taro = bank.enrolled("taro").await;
    let role_seen = |leaf: &Leaf| {
        let (addr, client) = (bank.server.addr, bank.client(Some(leaf)));
        async move {
            let (_, _, body) = get_once(addr, client, "/app", &[]).await.unwrap();
            echoed(&body)["headers"]["x-client-role"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        }
    };
    assert_eq!(role_seen(&taro).await, "general");
    let (status, headers, page) = get(
        &bank,
        Some(&bank.admin_a),
        "/certgate/admin/user?lang=en&user=taro",
        &[],
    )
    .await;
    assert_eq!(status, 200, "{page}");
    assert_page_headers(&headers, "edit user");
    let token = token_of(&page);
    let post = |fields: Vec<(&'static str, &'static str)>| {
        let (bank, token) = (&bank, token.clone());
        async move {
            let mut all = vec![("token", token.as_str())];
            all.extend(fields);
            post_form(
                bank,
                Some(&bank.admin_a),
                "/certgate/admin/user?lang=en",
                &all,
                &[],
            )
            .await
        }
    };
    for (what, fields, status) in [
        (
            "an e-mail that is not one",
            vec![("email", "not-an-address")],
            400,
        ),
        ("the master role", vec![("role", "master")], 400),
        (
            "a name too long",
            vec![(
                "name",
                "長い名前長い名前長い名前長い名前長い名前長い名前長い名前長い名前長い名前長い名前長い名前長い名前長い名前長い名前長い名前長い名前長い名前",
            )],
            400,
        ),
    ] {
        let mut form = vec![
            ("user_id", "taro"),
            ("role", "admin"),
            ("name", "山田 太郎"),
            ("email", ""),
        ];
        for (name, value) in fields {
            form.retain(|(field, _)| *field != name);
            form.push((name, value));
        }
        let (got, _, page) = post(form).await;
        assert_eq!(got, status, "{what}: {page}");
        assert!(page.contains("id=\"error\""), "{what}");
    }
    assert_eq!(role_seen(&taro).await, "general", "nothing changed");
    let (status, _, _) = post(vec![("user_id", "boss"), ("role", "admin"), ("name", "x")]).await;
    assert_eq!(status, 403, "the master user is the bank's");
    let (status, headers, _) = post(vec![
        ("user_id", "taro"),
        ("role", "admin"),
        ("name", "山田 太郎"),
        ("email", "taro@example.jp"),
    ])
    .await;
    assert_eq!(status, 303);
    assert_eq!(headers["location"], "/certgate/admin?lang=en");
    let (_, _, table) = get(&bank, Some(&bank.admin_a), "/certgate/admin?lang=en", &[]).await;
    assert!(table.contains("山田 太郎"), "{table}");
    // The new role reaches the proxy's snapshot: the application sees it on the next request.
    wait_until("the new role is announced", || async {
        role_seen(&taro).await == "admin"
    })
    .await;
}

#[tokio::test]
async fn a_form_shown_by_one_replica_is_accepted_by_another_and_a_retry_gives_the_same_file() {
    let bank = Bank::open("").await;
    // A second server on the same registry and CA directory, hence the same pages.secret_file.
    let second = bank
        .fixture
        .start_named("second.toml", "client_auth = \"optional\"", "");
    let pin = bank.permit(CORP_A, Some("taro")).await;
    let (_, _, form) = get(&bank, None, "/certgate/enroll?lang=en", &[]).await;
    let fields = [
        ("token", token_of(&form)),
        ("corp_id", CORP_A.to_owned()),
        ("user_id", "taro".to_owned()),
        ("pin", pin.clone()),
        ("password", PASSWORD.to_owned()),
        ("password2", PASSWORD.to_owned()),
    ];
    let body: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields.iter().map(|(k, v)| (*k, v.as_str())))
        .finish();
    let headers = [("content-type", "application/x-www-form-urlencoded")];
    let (status, _, _, first) = bank
        .post_to(
            second.addr,
            None,
            "/certgate/enroll?lang=en",
            &headers,
            body.clone(),
        )
        .await;
    let first = String::from_utf8_lossy(&first).into_owned();
    assert_eq!(status, 200, "the other replica accepts the form: {first}");
    // The browser lost the answer and the person sends the form again: the same file.
    let (status, _, _, again) = bank
        .post(None, "/certgate/enroll?lang=en", &headers, body)
        .await;
    let again = String::from_utf8_lossy(&again).into_owned();
    assert_eq!(status, 200, "{again}");
    assert_eq!(text_of(&again, "serial"), text_of(&first, "serial"));
    let p12 = |page: &str| {
        let at = page.find("base64,").unwrap();
        page[at..].split('"').next().unwrap().to_owned()
    };
    assert_eq!(p12(&again), p12(&first), "the very same certificate.p12");
}
