//! The lifecycle's rules, tested directly on a temporary SQLite registry and a CA made for the
//! test, with a clock the test moves: no TLS, no HTTP, no waiting for time to pass.

use std::sync::Arc;

use secrecy::{ExposeSecret as _, SecretString};

use super::*;
use crate::model::{ManualClock, Role};

struct Setup {
    lifecycle: Lifecycle,
    clock: ManualClock,
    _dir: tempfile::TempDir,
}

/// `pki` goes into `[pki]`; `extra` after it (more tables).
async fn setup_with(pki: &str, extra: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let config = crate::config::Config::parse(&format!(
        "[server]\ncert = \"a\"\nkey = \"b\"\n[store]\nurl = \"sqlite://{d}/r.db\"\n[pki]\ndir = \"{d}/pki\"\n{pki}\n{extra}",
        d = dir.path().display()
    ))
    .unwrap();
    let clock = ManualClock::starting_now();
    let store = crate::store::open(&config.store.url).await.unwrap();
    let pki =
        crate::pki::Pki::init(crate::pki::PkiSettings::from(&config.pki), clock.now()).unwrap();
    let lifecycle = Lifecycle::new(
        store,
        Some(pki),
        config.lifecycle.clone(),
        config.identity.clone(),
        Wiring {
            clock: Arc::new(clock.clone()),
            ..Wiring::default()
        },
    );
    let ops = Context::operator();
    lifecycle
        .add_corporation(CORP, "Corp", "admin@corp.example", &ops)
        .await
        .unwrap();
    lifecycle
        .add_user(CORP, "taro", Role::General, None, &ops)
        .await
        .unwrap();
    Setup {
        lifecycle,
        clock,
        _dir: dir,
    }
}

async fn setup(extra: &str) -> Setup {
    setup_with("", extra).await
}

const CORP: &str = "12345678901234";

fn csr() -> Vec<u8> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    rcgen::CertificateParams::new(Vec::<String>::new())
        .unwrap()
        .serialize_request(&key)
        .unwrap()
        .der()
        .to_vec()
}

fn enrollee(holder: &Holder) -> Context {
    Context {
        actor: Actor::Enrollee(holder.clone()),
        client_addr: None,
    }
}

impl Setup {
    async fn pin(&self, holder: &Holder) -> SecretString {
        self.lifecycle
            .issue_permit(holder, &Context::operator())
            .await
            .unwrap()
            .pin
    }

    async fn enroll(
        &self,
        holder: &Holder,
        pin: &SecretString,
        csr: Vec<u8>,
    ) -> Result<Enrolled, LifecycleError> {
        self.lifecycle
            .enroll(holder.clone(), pin, KeySource::Csr(csr), &enrollee(holder))
            .await
    }

    async fn enroll_admin(&self) -> Enrolled {
        let admin = Holder::admin(CORP);
        let pin = self.pin(&admin).await;
        self.enroll(&admin, &pin, csr()).await.unwrap()
    }
}

#[tokio::test]
async fn a_permit_expires_after_its_ttl() {
    let setup = setup("[lifecycle]\npermit_ttl = \"1h\"").await;
    let admin = Holder::admin(CORP);
    let pin = setup.pin(&admin).await;
    setup.clock.advance(time::Duration::minutes(61));
    let err = setup.enroll(&admin, &pin, csr()).await.unwrap_err();
    assert!(matches!(err, LifecycleError::PermitExpired { .. }), "{err}");
    // Just inside its TTL it works.
    let pin = setup.pin(&admin).await;
    setup.clock.advance(time::Duration::minutes(59));
    setup.enroll(&admin, &pin, csr()).await.unwrap();
}

#[tokio::test]
async fn a_retry_inside_the_window_returns_the_same_certificate_and_after_it_nothing() {
    let setup = setup("").await;
    let admin = Holder::admin(CORP);
    let pin = setup.pin(&admin).await;
    let request = csr();
    let first = setup.enroll(&admin, &pin, request.clone()).await.unwrap();
    setup.clock.advance(time::Duration::minutes(9));
    let again = setup.enroll(&admin, &pin, request.clone()).await.unwrap();
    assert!(again.repeated);
    assert_eq!(again.certificate, first.certificate);
    setup.clock.advance(time::Duration::minutes(2));
    let err = setup.enroll(&admin, &pin, request).await.unwrap_err();
    assert!(matches!(err, LifecycleError::PermitUsed), "{err}");
}

#[tokio::test]
async fn renewal_opens_renew_window_days_before_expiry() {
    let setup = setup_with("validity_days = 365", "[lifecycle]\nrenew_window_days = 30").await;
    let admin = setup.enroll_admin().await;
    let holder = Holder::admin(CORP);
    let ctx = Context {
        actor: Actor::Certificate {
            holder: holder.clone(),
            serial: admin.serial,
            lifecycle_ca: true,
        },
        client_addr: None,
    };
    let renew = || {
        setup
            .lifecycle
            .renew(holder.clone(), &admin.serial, KeySource::Csr(csr()), &ctx)
    };
    setup.clock.advance(time::Duration::days(334));
    let err = renew().await.unwrap_err();
    assert!(
        matches!(err, LifecycleError::RenewalNotOpen { .. }),
        "{err}"
    );
    setup.clock.advance(time::Duration::days(2));
    let renewed = renew().await.unwrap();
    assert_ne!(renewed.serial, admin.serial);
}

#[tokio::test]
async fn a_certificate_of_a_login_only_ca_can_neither_renew_nor_manage() {
    let setup = setup("").await;
    let admin = setup.enroll_admin().await;
    let ctx = Context {
        actor: Actor::Certificate {
            holder: Holder::admin(CORP),
            serial: admin.serial,
            lifecycle_ca: false,
        },
        client_addr: None,
    };
    let err = setup.lifecycle.status_table(&ctx, CORP).await.unwrap_err();
    assert!(matches!(err, LifecycleError::Forbidden { .. }), "{err}");
    setup.clock.advance(time::Duration::days(360));
    let err = setup
        .lifecycle
        .renew(
            Holder::admin(CORP),
            &admin.serial,
            KeySource::Csr(csr()),
            &ctx,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, LifecycleError::Forbidden { .. }), "{err}");
}

#[tokio::test]
async fn a_manager_cannot_re_issue_themself_but_another_manager_can() {
    let setup = setup("").await;
    setup.enroll_admin().await;
    let ops = Context::operator();
    setup
        .lifecycle
        .add_user(CORP, "hana", Role::Admin, None, &ops)
        .await
        .unwrap();
    let hana = Holder::user(CORP, "hana");
    let pin = setup.pin(&hana).await;
    let enrolled = setup.enroll(&hana, &pin, csr()).await.unwrap();
    let as_hana = Context {
        actor: Actor::Certificate {
            holder: hana.clone(),
            serial: enrolled.serial,
            lifecycle_ca: true,
        },
        client_addr: None,
    };
    let err = setup
        .lifecycle
        .reissue(&as_hana, CORP, "hana")
        .await
        .unwrap_err();
    assert!(matches!(err, LifecycleError::Forbidden { .. }), "{err}");
    // She may re-issue a general user, and the administrator may re-issue her.
    setup
        .lifecycle
        .reissue(&as_hana, CORP, "taro")
        .await
        .unwrap();
    let as_admin = Context {
        actor: Actor::Certificate {
            holder: Holder::admin(CORP),
            serial: crate::model::Serial::from_be_bytes(&[1]).unwrap(),
            lifecycle_ca: true,
        },
        client_addr: None,
    };
    let permit = setup
        .lifecycle
        .reissue(&as_admin, CORP, "hana")
        .await
        .unwrap();
    assert!(!permit.pin.expose_secret().is_empty());
}

#[tokio::test]
async fn revocation_reasons_are_one_rule_for_everyone() {
    assert!(check_revocation_reason(RevocationReason::AaCompromise).is_ok());
    assert!(check_revocation_reason(RevocationReason::CertificateHold).is_err());
    assert!(check_revocation_reason(RevocationReason::RemoveFromCrl).is_err());
    assert_eq!(accepted_revocation_reasons().len(), 8);
}

#[tokio::test]
async fn crls_are_re_signed_at_start_and_on_schedule_without_any_revocation() {
    let setup = setup_with("crl_validity = \"2h\"", "").await;
    assert_eq!(
        CrlWriter::interval(setup.lifecycle.crl_validity()),
        std::time::Duration::from_secs(3600),
        "at half of pki.crl_validity"
    );
    let path = setup
        .lifecycle
        .with_pki(|pki| Ok(pki.crl_path("g1")?))
        .unwrap();
    let number = || {
        std::fs::read(&path)
            .ok()
            .and_then(|der| crate::pki::crl_number_of(&der))
            .unwrap_or(0)
    };
    let mut seen = number();
    // A short schedule here, so that the test sees two re-signings without waiting an hour.
    tokio::spawn(CrlWriter::new().run(
        setup.lifecycle.clone(),
        std::time::Duration::from_millis(20),
    ));
    for round in ["at start", "on schedule"] {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while number() <= seen {
            assert!(
                std::time::Instant::now() < deadline,
                "not re-signed {round}"
            );
            // The registry keeps whole seconds: the schedule is due once a second has passed.
            setup.clock.advance(time::Duration::seconds(1));
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        seen = number();
    }
    let der = std::fs::read(&path).unwrap();
    let (_, crl) = x509_parser::parse_x509_crl(&der).unwrap();
    let validity = crl.next_update().unwrap().to_datetime() - crl.last_update().to_datetime();
    assert_eq!(validity, time::Duration::hours(2));
}

#[tokio::test]
async fn enrollment_attempts_beyond_the_pin_slots_are_told_to_come_back() {
    let setup = setup_with("", "").await;
    // Every slot taken, as by a flood of attempts in their PIN check.
    let mut slots = Vec::new();
    while let Ok(slot) = tokio::time::timeout(
        std::time::Duration::from_millis(50),
        setup.lifecycle.pin_slot(),
    )
    .await
    {
        slots.push(slot.unwrap());
    }
    assert!(slots.len() >= 2);
    let holder = Holder::user(CORP, "taro");
    let err = setup
        .lifecycle
        .enroll(
            holder.clone(),
            &SecretString::from("SOME-PIN-123456".to_owned()),
            KeySource::Csr(csr()),
            &Context {
                actor: Actor::Enrollee(holder),
                client_addr: None,
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            LifecycleError::Busy {
                retry_after_secs: 5
            }
        ),
        "{err}"
    );
    // Not audited: a flood of refusals would flood the registry.
    let audit = setup.lifecycle.store().list_audit(None, 100).await.unwrap();
    assert!(
        audit.iter().all(|entry| !entry.result.contains("too many")),
        "{audit:?}"
    );
    drop(slots);
}
