//! A bank with two corporations seeded through the lifecycle, each with its administrator
//! enrolled, and certgate serving it: the set-up of the tests of certgate's own endpoints.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use certgate::lifecycle::{Actor, Context, KeySource, Lifecycle};
use certgate::model::{Holder, Role};
use certgate::store::PermitState;
use http_body_util::BodyExt as _;
use secrecy::ExposeSecret as _;

use super::*;

pub(crate) const CORP_A: &str = "55555555555555";
pub(crate) const CORP_B: &str = "66666666666666";
/// The confirmation password (確認用パスワード) of both administrators, set when the bank opens.
pub(crate) const CONFIRMATION: &str = "confirm-it-1";

/// A revocation's JSON body with the administrators' confirmation password added (`body` is a
/// JSON object, or empty).
pub(crate) fn with_confirmation(body: &str) -> String {
    let mut json: serde_json::Value = if body.trim().is_empty() {
        serde_json::json!({})
    } else {
        serde_json::from_str(body).unwrap()
    };
    json["confirmation"] = serde_json::Value::String(CONFIRMATION.to_owned());
    json.to_string()
}

/// The administrator of `corp` sets their confirmation password.
pub(crate) async fn set_admin_confirmation(lifecycle: &Lifecycle, corp: &str) {
    let ctx = Context {
        actor: Actor::Certificate {
            holder: Holder::admin(corp),
            serial: certgate::model::Serial::from_canonical_hex("01").unwrap(),
            lifecycle_ca: true,
        },
        client_addr: None,
    };
    lifecycle
        .set_confirmation(&ctx, &secrecy::SecretString::from(CONFIRMATION))
        .await
        .unwrap();
}

pub(crate) struct Bank {
    pub fixture: Fixture,
    pub server: Server,
    pub lifecycle: Lifecycle,
    /// PEM chain of the generation + root, for clients' identity.
    pub admin_a: Leaf,
    pub admin_b: Leaf,
}

pub(crate) fn csr() -> (String, String) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "99999999999999 mallory");
    (
        params.serialize_request(&key).unwrap().pem().unwrap(),
        key.serialize_pem(),
    )
}

pub(crate) async fn enroll_admin(lifecycle: &Lifecycle, corp: &str) -> Leaf {
    let holder = Holder {
        corp_id: corp.into(),
        user_id: None,
    };
    let pin = lifecycle
        .issue_permit(&holder, &Context::operator())
        .await
        .unwrap()
        .pin;
    let (csr, key) = csr();
    let ctx = Context {
        actor: Actor::Enrollee(holder.clone()),
        client_addr: None,
    };
    let enrolled = lifecycle
        .enroll(holder, &pin, KeySource::Csr(csr.into_bytes()), &ctx)
        .await
        .unwrap();
    let cert_pem = pem_of(enrolled.certificate.as_ref());
    Leaf {
        cert_pem,
        key_pem: key,
        der: enrolled.certificate.to_vec(),
        serial: vec![],
    }
}

pub(crate) fn pem_of(der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    )
}

impl Bank {
    pub(crate) async fn open(lifecycle_extra: &str) -> Self {
        Self::open_with(Fixture::new(), lifecycle_extra).await
    }

    /// Like [`Self::open`], over a fixture the test prepared.
    pub(crate) async fn open_with(fixture: Fixture, lifecycle_extra: &str) -> Self {
        Self::open_configured(fixture, "", lifecycle_extra).await
    }

    /// Like [`Self::open_with`], with more `[server]` lines.
    pub(crate) async fn open_configured(fixture: Fixture, server_extra: &str, rest: &str) -> Self {
        let server_lines = format!("client_auth = \"optional\"\n{server_extra}");
        let lifecycle_extra = rest;
        let lifecycle = fixture
            .open_lifecycle(&server_lines, lifecycle_extra, true)
            .await;
        let operator = Context::operator();
        for corp in [CORP_A, CORP_B] {
            lifecycle
                .add_corporation(corp, "Corp", "admin@corp.example", &operator)
                .await
                .unwrap();
            lifecycle
                .add_user(corp, "taro", Role::General, None, &operator)
                .await
                .unwrap();
            lifecycle
                .add_user(corp, "boss", Role::Master, None, &operator)
                .await
                .unwrap();
        }
        let admin_a = enroll_admin(&lifecycle, CORP_A).await;
        let admin_b = enroll_admin(&lifecycle, CORP_B).await;
        set_admin_confirmation(&lifecycle, CORP_A).await;
        set_admin_confirmation(&lifecycle, CORP_B).await;
        let server = fixture.start(&server_lines, lifecycle_extra);
        Self {
            fixture,
            server,
            lifecycle,
            admin_a,
            admin_b,
        }
    }

    pub(crate) async fn permit(&self, corp: &str, user: Option<&str>) -> String {
        let holder = Holder {
            corp_id: corp.into(),
            user_id: user.map(str::to_owned),
        };
        self.lifecycle
            .issue_permit(&holder, &Context::operator())
            .await
            .unwrap()
            .pin
            .expose_secret()
            .to_owned()
    }

    pub(crate) fn client(&self, leaf: Option<&Leaf>) -> Arc<rustls::ClientConfig> {
        client_config(&self.fixture.ca, leaf, &[b"http/1.1"])
    }

    pub(crate) async fn post(
        &self,
        leaf: Option<&Leaf>,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> (u16, http::HeaderMap, serde_json::Value, Bytes) {
        self.post_to(self.server.addr, leaf, path, headers, body)
            .await
    }

    /// Like [`Self::post`], to another server of the bank (a replica).
    pub(crate) async fn post_to(
        &self,
        server: std::net::SocketAddr,
        leaf: Option<&Leaf>,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> (u16, http::HeaderMap, serde_json::Value, Bytes) {
        let mut conn = Conn::open(server, self.client(leaf)).await.unwrap();
        let mut request = http::Request::post(path).header("host", "localhost");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = conn
            .send(
                request
                    .body(http_body_util::Full::new(body.into()).boxed())
                    .unwrap(),
            )
            .await
            .unwrap();
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        (parts.status.as_u16(), parts.headers, json, bytes)
    }

    /// The administrator of corporation A acts on `user` through the admin API of `server`
    /// (`suspend`, `resume`, `revoke`, `reissue`): the status and the answer.
    pub(crate) async fn admin_action(
        &self,
        server: SocketAddr,
        user: &str,
        action: &str,
        body: &str,
    ) -> (u16, serde_json::Value) {
        let (status, _, json, _) = self
            .post_to(
                server,
                Some(&self.admin_a),
                &format!("/certgate/api/admin/users/{user}/{action}"),
                &[("content-type", "application/json")],
                body.to_owned(),
            )
            .await;
        (status, json)
    }

    pub(crate) async fn enroll_json(
        &self,
        corp: &str,
        user: Option<&str>,
        pin: &str,
        csr: &str,
    ) -> (u16, serde_json::Value) {
        let mut body = serde_json::json!({"corp_id": corp, "pin": pin, "csr": csr});
        if let Some(user) = user {
            body["user_id"] = serde_json::Value::String(user.into());
        }
        let (status, _, json, _) = self
            .post(
                None,
                "/certgate/api/enroll",
                &[("content-type", "application/json")],
                body.to_string(),
            )
            .await;
        (status, json)
    }

    /// `user` of corporation A, enrolled over the JSON API with a new permit: their certificate.
    pub(crate) async fn enrolled(&self, user: &str) -> Leaf {
        let pin = self.permit(CORP_A, Some(user)).await;
        let (csr_pem, key) = csr();
        let (status, json) = self.enroll_json(CORP_A, Some(user), &pin, &csr_pem).await;
        assert_eq!(status, 200, "{json}");
        leaf_from(&json, key)
    }

    pub(crate) async fn permit_state(&self, corp: &str, user: Option<&str>) -> (PermitState, u32) {
        let holder = Holder {
            corp_id: corp.into(),
            user_id: user.map(str::to_owned),
        };
        let permit = self
            .lifecycle
            .store()
            .latest_permit(&holder)
            .await
            .unwrap()
            .unwrap();
        (permit.state, permit.failures)
    }
}

pub(crate) fn problem_type(json: &serde_json::Value) -> &str {
    json["type"].as_str().unwrap_or("")
}

/// A bank on a throw-away PostgreSQL database, served by two certgate processes.
pub(crate) struct Replicas {
    pub bank: Bank,
    pub second: Server,
    _database: ScratchDatabase,
}

impl Replicas {
    pub(crate) async fn open(lifecycle_extra: &str) -> Self {
        Self::open_configured("", lifecycle_extra).await
    }

    /// Two servers with more `[server]` lines and the rest of the config.
    pub(crate) async fn open_configured(server_extra: &str, rest: &str) -> Self {
        let database = ScratchDatabase::create();
        let fixture = Fixture::new();
        *fixture.store_url.lock().unwrap() = Some(database.url.clone());
        let bank = Bank::open_configured(fixture, server_extra, rest).await;
        let second = bank.fixture.start_named(
            "second.toml",
            &format!("client_auth = \"optional\"\n{server_extra}"),
            rest,
        );
        Self {
            bank,
            second,
            _database: database,
        }
    }

    pub(crate) fn first(&self) -> SocketAddr {
        self.bank.server.addr
    }

    pub(crate) async fn status_at(&self, server: SocketAddr, leaf: &Leaf) -> u16 {
        get_once(server, self.bank.client(Some(leaf)), "/app", &[])
            .await
            .unwrap()
            .0
            .as_u16()
    }

    pub(crate) async fn wait_status(
        &self,
        server: SocketAddr,
        leaf: &Leaf,
        status: u16,
        what: &str,
    ) {
        wait_until(what, || async {
            self.status_at(server, leaf).await == status
        })
        .await;
    }

    /// Enrolls `user` of corporation A (registered here unless the bank has them) with a new
    /// permit, at `server`.
    pub(crate) async fn enroll_at(&self, server: SocketAddr, user: &str) -> Leaf {
        if !["taro", "boss"].contains(&user) {
            self.bank
                .lifecycle
                .add_user(
                    CORP_A,
                    user,
                    certgate::model::Role::General,
                    None,
                    &certgate::lifecycle::Context::operator(),
                )
                .await
                .unwrap();
        }
        let pin = self.bank.permit(CORP_A, Some(user)).await;
        let (csr_pem, key) = csr();
        let body =
            serde_json::json!({"corp_id": CORP_A, "user_id": user, "pin": pin, "csr": csr_pem});
        let (status, _, json, _) = self
            .bank
            .post_to(
                server,
                None,
                "/certgate/api/enroll",
                &[("content-type", "application/json")],
                body.to_string(),
            )
            .await;
        assert_eq!(status, 200, "{json}");
        leaf_from(&json, key)
    }
}

pub(crate) fn leaf_from(json: &serde_json::Value, key_pem: String) -> Leaf {
    Leaf {
        cert_pem: json["certificate"].as_str().unwrap().to_owned(),
        key_pem,
        der: vec![],
        serial: vec![],
    }
}
