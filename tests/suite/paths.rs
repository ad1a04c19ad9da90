//! The path certgate decides on is the path the application serves: every spelling of a
//! dot-segment, against nginx, which normalises paths, over HTTP/1.1 and h2.
//!
//! Routes: `/` needs a certificate, `/login` does not. Before paths were normalised,
//! `/login/../secret` without a certificate was forwarded as it came, and nginx served `/secret`.

use crate::support::*;

const ROUTES: &str = r#"
[[route]]
path = "/"
require_cert = true
[[route]]
path = "/login"
require_cert = false
"#;

fn start(fixture: &Fixture, upstream: std::net::SocketAddr) -> Server {
    fixture.start(
        "client_auth = \"optional\"",
        &format!("{ROUTES}\n[upstream]\nurl = \"http://{upstream}\"\n"),
    )
}

/// Spellings that nginx serves as `/secret`: without a certificate, certgate refuses them all
/// as what they are, a request for `/secret` (401), or as unreadable (400).
const ATTACKS: [(&str, u16); 12] = [
    ("/login/../secret", 401),
    ("/login/%2e%2e/secret", 401),
    ("/login/%2E%2E/secret", 401),
    ("/login/.%2e/secret", 401),
    ("/login//../secret", 401),
    ("/login/./../secret", 401),
    ("/login/..;/secret", 401),
    ("/LOGIN/../secret", 401),
    ("/%6cogin/../secret", 401),
    ("/login/..%2fsecret", 400),
    ("/login/..%5csecret", 400),
    ("/../secret", 400),
];

#[tokio::test]
async fn no_spelling_of_a_path_reaches_a_protected_route_without_a_certificate() {
    let fixture = Fixture::new();
    let nginx = nginx();
    let server = start(&fixture, nginx.addr);
    let anonymous = client_config(&fixture.ca, None, &[]);
    for h2 in [false, true] {
        for (path, expected) in ATTACKS {
            let (status, body) = get_path(server.addr, anonymous.clone(), h2, path).await;
            assert_eq!(status, expected, "{path} (h2: {h2}): {body}");
            assert!(
                !body.contains("SECRET"),
                "{path} (h2: {h2}) reached the secret"
            );
        }
    }
}

#[tokio::test]
async fn open_routes_stay_open_and_the_application_sees_the_normalised_path() {
    let fixture = Fixture::new();
    let nginx = nginx();
    let server = start(&fixture, nginx.addr);
    let anonymous = client_config(&fixture.ca, None, &[]);
    let leaf = fixture.ca.client("12345678901234 taro");
    let holder = client_config(&fixture.ca, Some(&leaf), &[]);
    for h2 in [false, true] {
        for (path, served) in [
            ("/login", "LOGIN /login\n"),
            ("/login/./welcome", "LOGIN /login/welcome\n"),
            ("/login//welcome", "LOGIN /login/welcome\n"),
            ("/login/%77elcome", "LOGIN /login/welcome\n"),
            // Segment parameters are matched without, but forwarded: Java applications need them.
            ("/login;jsessionid=AB12", "LOGIN /login;jsessionid=AB12\n"),
        ] {
            let (status, body) = get_path(server.addr, anonymous.clone(), h2, path).await;
            assert_eq!((status, body.as_str()), (200, served), "{path} (h2: {h2})");
        }
        // With a certificate, the same spellings reach /secret: certgate forwards what it decided on.
        for path in ["/secret", "/login/../secret", "/login/..;/secret"] {
            let (status, body) = get_path(server.addr, holder.clone(), h2, path).await;
            assert_eq!(
                (status, body.as_str()),
                (200, "SECRET\n"),
                "{path} (h2: {h2})"
            );
        }
    }
}

#[tokio::test]
async fn the_echo_receives_the_normalised_path_and_the_query_unchanged() {
    let fixture = Fixture::new();
    let server = fixture.start("client_auth = \"optional\"", ROUTES);
    let leaf = fixture.ca.client("12345678901234 taro");
    let (status, body) = get_path(
        server.addr,
        client_config(&fixture.ca, Some(&leaf), &[]),
        false,
        "/a/b/../c/%7Ex?q=%2e%2e/x",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(echoed(&body.into())["path"], "/a/c/~x?q=%2e%2e/x");
}

/// An open parent with a protected child, the layout the attack found open: Tomcat drops a
/// segment of parameters alone (`/;x/admin/` is `/admin/`), IIS drops trailing dots and spaces
/// (`/admin.` is `/admin`). Before, certgate matched `//admin` and `/admin.` to the open `/` and
/// Tomcat served the admin area without a certificate.
#[tokio::test]
async fn spellings_that_java_and_windows_servers_read_as_a_protected_child_need_its_certificate() {
    let fixture = Fixture::new();
    let server = fixture.start(
        "client_auth = \"optional\"",
        "[[route]]\npath = \"/\"\nrequire_cert = false\n[[route]]\npath = \"/admin\"\nrequire_cert = true\n",
    );
    let anonymous = client_config(&fixture.ca, None, &[b"http/1.1"]);
    for h2 in [false, true] {
        for attack in [
            "/;x/admin/",
            "/;/admin/secret.txt",
            "/;jsessionid=1/admin/",
            "/;x/;y/admin/index.html",
            "/admin.",
            "/admin./x",
            "/admin%20/x",
            "/ADMIN%20./",
        ] {
            let (status, body) = get_path(server.addr, anonymous.clone(), h2, attack).await;
            assert_eq!(status, 401, "{attack} (h2: {h2}): {body}");
        }
        // The reject twins: the open parent, and names that only look alike.
        for open in ["/", "/public", "/administrator", "/;x/public"] {
            let (status, body) = get_path(server.addr, anonymous.clone(), h2, open).await;
            assert_eq!(status, 200, "{open} (h2: {h2}): {body}");
        }
    }
}
