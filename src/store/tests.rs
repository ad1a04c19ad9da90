//! The registry's test suite. Every scenario takes an `Arc<dyn Registry>`, so a PostgreSQL
//! backend runs the same functions by adding one more `backend_tests!` invocation.

use std::sync::Arc;

use time::{Duration, OffsetDateTime};

use super::*;
use crate::model::{Der, Holder, IssuerKey, RevocationReason, Role};

/// A fixed clock: tests never depend on the wall clock.
fn t(days: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_700_000_000).expect("valid time") + Duration::days(days)
}

fn audit(at: OffsetDateTime, action: &str, corp: &str, target: &str) -> NewAudit {
    NewAudit {
        at,
        actor: "operator".into(),
        action: action.into(),
        corp_id: Some(corp.into()),
        target: target.into(),
        result: "ok".into(),
        client_addr: Some("192.0.2.7".into()),
    }
}

const CORP: &str = "12345678901234";
const PHC: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo";

async fn add_corp(reg: &dyn Registry, corp_id: &str) {
    reg.add_corporation(
        &NewCorporation {
            corp_id: corp_id.into(),
            name: "Example Trading".into(),
            admin_email: "admin@example.co.jp".into(),
            cert_required: true,
        },
        &audit(t(0), "corp.add", corp_id, corp_id),
    )
    .await
    .expect("add corporation");
}

async fn add_user(reg: &dyn Registry, corp_id: &str, user_id: &str, role: Role) {
    reg.add_user(
        &NewUser {
            corp_id: corp_id.into(),
            user_id: user_id.into(),
            role,
            email: Some(format!("{user_id}@example.co.jp")),
            name: Some(format!("利用者 {user_id}")),
        },
        &audit(t(0), "user.add", corp_id, user_id),
    )
    .await
    .expect("add user");
}

async fn permit(reg: &dyn Registry, holder: &Holder, at: OffsetDateTime) -> PermitIssued {
    reg.issue_permit(
        &NewPermit {
            holder: holder.clone(),
            pin_hash: PHC.into(),
            expires_at: at + Duration::days(7),
            revoke_active: None,
        },
        &audit(at, "permit.issue", &holder.corp_id, &holder.to_string()),
    )
    .await
    .expect("issue permit")
}

/// A certificate valid for a year from `from`; digests are derived from the serial so that
/// they are unique.
fn cert(serial: &str, holder: &Holder, from: OffsetDateTime) -> NewCertificate {
    NewCertificate {
        serial: serial.into(),
        issuer_generation: "G2".into(),
        issuer: IssuerKey(7),
        holder: holder.clone(),
        not_before: from,
        not_after: from + Duration::days(365),
        sha256: format!("{:0>64}", serial.to_lowercase()),
        spki_sha256: format!("{:f>64}", serial.to_lowercase()),
        der: Der(vec![0x30, 0x03, 0x02, 0x01, 0x01]),
        renewed_from: None,
    }
}

fn issuance(permit_id: Option<i64>, cert: NewCertificate, supersede: bool) -> Issuance {
    let at = cert.not_before;
    let target = cert.serial.to_hex();
    let corp = cert.holder.corp_id.clone();
    Issuance {
        permit_id,
        cert,
        supersede_active: supersede,
        kept_p12: None,
        audit: audit(at, "cert.enroll", &corp, &target),
    }
}

/// Enrolls `serial` for `holder` through a fresh permit, superseding older certificates.
async fn enroll(reg: &dyn Registry, holder: &Holder, serial: &str, at: OffsetDateTime) -> Issued {
    let p = permit(reg, holder, at).await;
    reg.record_issuance(&issuance(
        Some(p.permit.permit_id),
        cert(serial, holder, at),
        true,
    ))
    .await
    .expect("record issuance")
}

async fn renew(
    reg: &dyn Registry,
    holder: &Holder,
    from: &str,
    serial: &str,
    at: OffsetDateTime,
) -> Issued {
    let mut c = cert(serial, holder, at);
    c.renewed_from = Some(from.into());
    reg.record_issuance(&issuance(None, c, false))
        .await
        .expect("record renewal")
}

async fn audit_count(reg: &dyn Registry) -> usize {
    reg.list_audit(None, 10_000)
        .await
        .expect("list audit")
        .len()
}

// --- scenarios shared by every backend ---

async fn duplicate_corporation_is_conflict(reg: Arc<dyn Registry>) {
    let reg = &*reg;
    add_corp(reg, CORP).await;
    let again = reg
        .add_corporation(
            &NewCorporation {
                corp_id: CORP.into(),
                name: "Other".into(),
                admin_email: "x@example.com".into(),
                cert_required: false,
            },
            &audit(t(1), "corp.add", CORP, CORP),
        )
        .await;
    match again {
        Err(StoreError::Conflict { what }) => assert!(what.contains(CORP), "{what}"),
        other => panic!("expected conflict, got {other:?}"),
    }
    let stored = reg.corporation(CORP).await.unwrap().unwrap();
    assert_eq!(stored.name, "Example Trading");
    assert_eq!(stored.status, CorporationStatus::Active);
    assert!(stored.cert_required);
    assert_eq!(
        audit_count(reg).await,
        1,
        "a refused change writes no audit entry"
    );

    add_user(reg, CORP, "alice", Role::Master).await;
    let dup = reg
        .add_user(
            &NewUser {
                corp_id: CORP.into(),
                user_id: "alice".into(),
                role: Role::General,
                email: None,
                name: None,
            },
            &audit(t(1), "user.add", CORP, "alice"),
        )
        .await;
    assert!(matches!(dup, Err(StoreError::Conflict { .. })), "{dup:?}");
    let second_master = reg
        .add_user(
            &NewUser {
                corp_id: CORP.into(),
                user_id: "bob".into(),
                role: Role::Master,
                email: None,
                name: None,
            },
            &audit(t(1), "user.add", CORP, "bob"),
        )
        .await;
    assert!(
        matches!(&second_master, Err(StoreError::Conflict { what }) if what.contains("master")),
        "{second_master:?}"
    );
    let orphan = reg
        .add_user(
            &NewUser {
                corp_id: "99999999999999".into(),
                user_id: "carol".into(),
                role: Role::General,
                email: None,
                name: None,
            },
            &audit(t(1), "user.add", "99999999999999", "carol"),
        )
        .await;
    assert!(
        matches!(orphan, Err(StoreError::NotFound { .. })),
        "{orphan:?}"
    );
    let bad_id = reg
        .add_user(
            &NewUser {
                corp_id: CORP.into(),
                user_id: "has space".into(),
                role: Role::General,
                email: None,
                name: None,
            },
            &audit(t(1), "user.add", CORP, "x"),
        )
        .await;
    assert!(
        matches!(
            bad_id,
            Err(StoreError::Invalid {
                field: "user_id",
                ..
            })
        ),
        "{bad_id:?}"
    );
}

async fn corporation_and_user_updates(reg: Arc<dyn Registry>) {
    let reg = &*reg;
    add_corp(reg, CORP).await;
    add_user(reg, CORP, "alice", Role::Admin).await;
    reg.set_cert_required(CORP, false, &audit(t(1), "corp.cert_required", CORP, CORP))
        .await
        .unwrap();
    reg.set_corporation_status(
        CORP,
        CorporationStatus::Suspended,
        &audit(t(1), "corp.suspend", CORP, CORP),
    )
    .await
    .unwrap();
    reg.set_user_status(
        CORP,
        "alice",
        UserStatus::Suspended,
        &audit(t(1), "user.suspend", CORP, "alice"),
    )
    .await
    .unwrap();
    let corp = reg.corporation(CORP).await.unwrap().unwrap();
    assert!(!corp.cert_required);
    assert_eq!(corp.status, CorporationStatus::Suspended);
    let users = reg.list_users(CORP).await.unwrap();
    assert_eq!(users.len(), 1);
    assert_eq!(users[0].status, UserStatus::Suspended);
    assert_eq!(users[0].role, Role::Admin);
    assert_eq!(
        users[0].name.as_deref(),
        Some("利用者 alice"),
        "the name survives"
    );
    let missing = reg
        .set_user_status(
            CORP,
            "nobody",
            UserStatus::Active,
            &audit(t(1), "user.resume", CORP, "nobody"),
        )
        .await;
    assert!(
        matches!(missing, Err(StoreError::NotFound { .. })),
        "{missing:?}"
    );
    assert!(reg.corporation("00000000000000").await.unwrap().is_none());
    assert_eq!(reg.list_corporations().await.unwrap().len(), 1);
}

async fn permit_supersedes_older_ones(reg: Arc<dyn Registry>) {
    let reg = &*reg;
    add_corp(reg, CORP).await;
    add_user(reg, CORP, "alice", Role::General).await;
    let alice = Holder::user(CORP, "alice");

    let first = permit(reg, &alice, t(0)).await;
    assert!(first.superseded.is_empty());
    assert_eq!(first.permit.state, PermitState::Active);
    assert_eq!(first.permit.failures, 0);
    // A locked permit is superseded too: that is how a lockout ends.
    reg.record_permit_failure(
        first.permit.permit_id,
        1,
        &audit(t(0), "enroll.refused", CORP, "alice"),
    )
    .await
    .unwrap();

    let second = permit(reg, &alice, t(1)).await;
    assert_eq!(second.superseded, vec![first.permit.permit_id]);
    let old = reg.permit(first.permit.permit_id).await.unwrap().unwrap();
    assert_eq!(old.state, PermitState::Superseded);
    let latest = reg.latest_permit(&alice).await.unwrap().unwrap();
    assert_eq!(latest.permit_id, second.permit.permit_id);
    assert!(latest.is_presentable(t(2)));
    assert!(!latest.is_presentable(t(8)), "expired after its TTL");

    let third = permit(reg, &alice, t(2)).await;
    assert_eq!(third.superseded, vec![second.permit.permit_id]);
    let refused = reg
        .record_issuance(&issuance(
            Some(second.permit.permit_id),
            cert("0a", &alice, t(2)),
            true,
        ))
        .await;
    assert!(
        matches!(&refused, Err(StoreError::Conflict { what }) if what.contains("superseded")),
        "{refused:?}"
    );

    // Another holder's permits are untouched, and the administrator is a holder of its own.
    let admin = permit(reg, &Holder::admin(CORP), t(3)).await;
    assert!(admin.superseded.is_empty());
    assert_eq!(admin.permit.holder.user_id, None);
    let wrong_holder = reg
        .record_issuance(&issuance(
            Some(admin.permit.permit_id),
            cert("0b", &alice, t(3)),
            true,
        ))
        .await;
    assert!(
        matches!(wrong_holder, Err(StoreError::Conflict { .. })),
        "{wrong_holder:?}"
    );
    let no_user = reg
        .issue_permit(
            &NewPermit {
                holder: Holder::user(CORP, "ghost"),
                pin_hash: PHC.into(),
                expires_at: t(9),
                revoke_active: None,
            },
            &audit(t(3), "permit.issue", CORP, "ghost"),
        )
        .await;
    assert!(
        matches!(no_user, Err(StoreError::NotFound { .. })),
        "{no_user:?}"
    );
}

async fn failures_lock_at_threshold(reg: Arc<dyn Registry>) {
    let reg = &*reg;
    add_corp(reg, CORP).await;
    add_user(reg, CORP, "alice", Role::General).await;
    let alice = Holder::user(CORP, "alice");
    let p = permit(reg, &alice, t(0)).await.permit.permit_id;
    let before = audit_count(reg).await;
    for n in 1..=3u32 {
        let f = reg
            .record_permit_failure(p, 3, &audit(t(0), "enroll.refused", CORP, "alice"))
            .await
            .unwrap();
        assert_eq!(f.failures, n);
        assert_eq!(f.locked, n == 3);
    }
    let locked = reg.permit(p).await.unwrap().unwrap();
    assert_eq!(locked.state, PermitState::Locked);
    assert_eq!(locked.failures, 3);
    assert!(!locked.is_presentable(t(0)));
    let more = reg
        .record_permit_failure(p, 3, &audit(t(0), "enroll.refused", CORP, "alice"))
        .await;
    // Locked already (a parallel attempt): nothing more is counted, and it says so.
    assert!(
        matches!(
            &more,
            Ok(PermitFailure {
                failures: 3,
                locked: true
            })
        ),
        "{more:?}"
    );
    let enroll = reg
        .record_issuance(&issuance(Some(p), cert("01", &alice, t(0)), true))
        .await;
    assert!(
        matches!(enroll, Err(StoreError::Conflict { .. })),
        "{enroll:?}"
    );
    assert_eq!(audit_count(reg).await, before + 3);
    assert!(reg.permit(424_242).await.unwrap().is_none());
}

async fn issuance_is_atomic(reg: Arc<dyn Registry>) {
    let reg = &*reg;
    add_corp(reg, CORP).await;
    add_user(reg, CORP, "alice", Role::General).await;
    let alice = Holder::user(CORP, "alice");
    let first = enroll(reg, &alice, "a1", t(0)).await;
    assert!(first.superseded.is_empty());
    assert_eq!(first.certificate.status, CertStatus::Active);

    let p2 = permit(reg, &alice, t(10)).await.permit.permit_id;
    let audits = audit_count(reg).await;
    let second = reg
        .record_issuance(&issuance(Some(p2), cert("A2", &alice, t(10)), true))
        .await
        .unwrap();
    assert_eq!(
        second.certificate.serial, "a2",
        "serials are stored lowercase"
    );
    assert_eq!(second.certificate.permit_id, Some(p2));
    assert_eq!(second.superseded.len(), 1);
    assert_eq!(second.superseded[0].serial, "a1");
    assert_eq!(second.superseded[0].reason, RevocationReason::Superseded);
    assert_eq!(second.superseded[0].revoked_at, t(10));

    let old = reg.certificate(&"a1".into()).await.unwrap().unwrap();
    assert_eq!(old.status, CertStatus::Revoked);
    assert_eq!(
        old.revocation,
        Some(Revocation {
            at: t(10),
            reason: RevocationReason::Superseded
        })
    );
    let used = reg.permit(p2).await.unwrap().unwrap();
    assert_eq!(used.state, PermitState::Used);
    assert_eq!(used.used_at, Some(t(10)));
    assert_eq!(used.serial.map(|s| s.to_hex()).as_deref(), Some("a2"));
    assert_eq!(
        used.spki_sha256.as_deref(),
        Some(second.certificate.spki_sha256.as_str())
    );
    assert_eq!(audit_count(reg).await, audits + 1);
    let entry = &reg.list_audit(Some(CORP), 1).await.unwrap()[0];
    assert_eq!(entry.action, "cert.enroll");
    assert_eq!(entry.target, "a2");
    assert_eq!(entry.client_addr.as_deref(), Some("192.0.2.7"));

    let again = reg
        .record_issuance(&issuance(Some(p2), cert("a3", &alice, t(10)), true))
        .await;
    assert!(
        matches!(&again, Err(StoreError::Conflict { what }) if what.contains("no longer usable")),
        "{again:?}"
    );
    let active = reg.active_certificates(&alice, t(11)).await.unwrap();
    assert_eq!(active.len(), 1);
    assert_eq!(active[0].serial, "a2");
}

async fn failed_issuance_changes_nothing(reg: Arc<dyn Registry>) {
    let reg = &*reg;
    add_corp(reg, CORP).await;
    add_user(reg, CORP, "alice", Role::General).await;
    add_user(reg, CORP, "bob", Role::General).await;
    let alice = Holder::user(CORP, "alice");
    let bob = Holder::user(CORP, "bob");
    enroll(reg, &bob, "b0", t(0)).await;
    enroll(reg, &alice, "a1", t(0)).await;
    let p2 = permit(reg, &alice, t(5)).await.permit.permit_id;
    let audits = audit_count(reg).await;

    // The duplicate serial is found only by the INSERT, after the superseding UPDATE ran:
    // the rollback must undo that revocation too.
    let mut dup = cert("b0", &alice, t(5));
    dup.sha256 = format!("{:e>64}", "");
    let failed = reg.record_issuance(&issuance(Some(p2), dup, true)).await;
    assert!(
        matches!(&failed, Err(StoreError::Conflict { what }) if what.contains("b0")),
        "{failed:?}"
    );
    let a1 = reg.certificate(&"a1".into()).await.unwrap().unwrap();
    assert_eq!(a1.status, CertStatus::Active, "supersede rolled back");
    assert_eq!(a1.revocation, None);
    let p = reg.permit(p2).await.unwrap().unwrap();
    assert_eq!(p.state, PermitState::Active, "permit not consumed");
    assert_eq!(p.used_at, None);
    assert_eq!(p.serial, None);
    assert_eq!(audit_count(reg).await, audits, "no audit entry");
    assert_eq!(reg.corporation_certificates(CORP).await.unwrap().len(), 2);
    assert_eq!(
        reg.certificate(&"b0".into()).await.unwrap().unwrap().holder,
        bob,
        "the other holder's certificate is untouched"
    );

    let unknown_parent = reg
        .record_issuance(&{
            let mut c = cert("c1", &alice, t(5));
            c.renewed_from = Some("ffff".into());
            issuance(None, c, false)
        })
        .await;
    assert!(
        matches!(unknown_parent, Err(StoreError::NotFound { .. })),
        "{unknown_parent:?}"
    );

    // And the permit still works afterwards.
    reg.record_issuance(&issuance(Some(p2), cert("a2", &alice, t(5)), true))
        .await
        .unwrap();
}

async fn retry_lookup(reg: Arc<dyn Registry>) {
    let reg = &*reg;
    add_corp(reg, CORP).await;
    let admin = Holder::admin(CORP);
    let p = permit(reg, &admin, t(0)).await.permit.permit_id;
    assert!(
        reg.find_retry(p, t(0)).await.unwrap().is_none(),
        "unused permit"
    );
    let mut c = cert("7f", &admin, t(1));
    c.der = Der(vec![0x30, 0x81, 0x01, 0x00]);
    let issued = reg
        .record_issuance(&issuance(Some(p), c.clone(), true))
        .await
        .unwrap();
    let retry = reg.find_retry(p, t(0)).await.unwrap().expect("used permit");
    assert_eq!(retry.permit_id, p);
    assert_eq!(retry.used_at, t(1));
    assert_eq!(retry.spki_sha256, c.spki_sha256);
    assert_eq!(retry.certificate, issued.certificate);
    assert_eq!(retry.certificate.der, c.der, "the very same bytes");
    assert_eq!(retry.certificate.holder, admin);
    assert!(reg.find_retry(9_999, t(0)).await.unwrap().is_none());
}

/// The `certificate.p12` of an enrollment is kept for its retry, and erased when the window
/// closes, when the holder gets a new permit (re-issue), and when the certificate is revoked.
async fn kept_p12_lives_only_as_long_as_its_retry(reg: Arc<dyn Registry>) {
    let reg = &*reg;
    add_corp(reg, CORP).await;
    add_user(reg, CORP, "alice", Role::General).await;
    let alice = Holder::user(CORP, "alice");
    let kept = |until| KeptP12 {
        file: Der(vec![0x30, 0x01, 0x00]),
        until,
    };
    let enroll_with_file = |serial: &'static str, at: OffsetDateTime| {
        let alice = alice.clone();
        async move {
            let p = permit(reg, &alice, at).await.permit.permit_id;
            let mut issuance = issuance(Some(p), cert(serial, &alice, at), true);
            issuance.kept_p12 = Some(kept(at + Duration::minutes(10)));
            reg.record_issuance(&issuance).await.unwrap();
            p
        }
    };
    let p = enroll_with_file("a1", t(0)).await;
    let retry = reg.find_retry(p, t(0)).await.unwrap().unwrap();
    assert_eq!(retry.p12, Some(Der(vec![0x30, 0x01, 0x00])));
    // Past its window it is not handed out, and the sweep erases it.
    let later = t(0) + Duration::minutes(11);
    assert_eq!(reg.find_retry(p, later).await.unwrap().unwrap().p12, None);
    assert_eq!(reg.forget_expired_files(later).await.unwrap(), 1);
    // A new permit for the holder (a re-issue) ends it at once.
    let p = enroll_with_file("a2", t(1)).await;
    permit(reg, &alice, t(1)).await;
    assert_eq!(reg.find_retry(p, t(1)).await.unwrap().unwrap().p12, None);
    // So does revoking the certificate.
    let p = enroll_with_file("a3", t(2)).await;
    reg.revoke_certificate(
        &"a3".into(),
        RevocationReason::KeyCompromise,
        &audit(t(2), "cert.revoke", CORP, "a3"),
    )
    .await
    .unwrap();
    assert_eq!(reg.find_retry(p, t(2)).await.unwrap().unwrap().p12, None);
}

async fn revocation_cascades_over_renewals(reg: Arc<dyn Registry>) {
    let reg = &*reg;
    add_corp(reg, CORP).await;
    add_user(reg, CORP, "alice", Role::General).await;
    add_user(reg, CORP, "bob", Role::General).await;
    let alice = Holder::user(CORP, "alice");
    let bob = Holder::user(CORP, "bob");
    enroll(reg, &alice, "a1", t(0)).await;
    renew(reg, &alice, "a1", "a2", t(340)).await;
    renew(reg, &alice, "a2", "a3", t(680)).await;
    enroll(reg, &bob, "b1", t(0)).await;
    // The middle link revoked on its own does not stop the walk.
    reg.revoke_certificate(
        &"a2".into(),
        RevocationReason::Superseded,
        &audit(t(700), "cert.revoke", CORP, "a2"),
    )
    .await
    .unwrap();
    assert_eq!(
        reg.certificate(&"a3".into()).await.unwrap().unwrap().status,
        CertStatus::Revoked,
        "cascade from a2"
    );
    renew(reg, &alice, "a2", "a4", t(701)).await;

    let revoked = reg
        .revoke_certificate(
            &"A1".into(),
            RevocationReason::KeyCompromise,
            &audit(t(702), "cert.revoke", CORP, "a1"),
        )
        .await
        .unwrap();
    let serials: Vec<String> = revoked.iter().map(|r| r.serial.to_hex()).collect();
    assert_eq!(serials, ["a1", "a4"]);
    assert!(
        revoked
            .iter()
            .all(|r| r.reason == RevocationReason::KeyCompromise)
    );
    assert_eq!(
        reg.certificate(&"a2".into())
            .await
            .unwrap()
            .unwrap()
            .revocation,
        Some(Revocation {
            at: t(700),
            reason: RevocationReason::Superseded
        }),
        "an earlier revocation keeps its time and reason"
    );
    assert_eq!(
        reg.certificate(&"b1".into()).await.unwrap().unwrap().status,
        CertStatus::Active
    );
    let again = reg
        .revoke_certificate(
            &"a1".into(),
            RevocationReason::KeyCompromise,
            &audit(t(703), "cert.revoke", CORP, "a1"),
        )
        .await;
    assert!(
        matches!(again, Err(StoreError::Conflict { .. })),
        "{again:?}"
    );
    let missing = reg
        .revoke_certificate(
            &"abcd".into(),
            RevocationReason::Unspecified,
            &audit(t(703), "cert.revoke", CORP, "abcd"),
        )
        .await;
    assert!(
        matches!(missing, Err(StoreError::NotFound { .. })),
        "{missing:?}"
    );
}

async fn revoke_every_unexpired_certificate_of_a_user(reg: Arc<dyn Registry>) {
    let reg = &*reg;
    add_corp(reg, CORP).await;
    add_user(reg, CORP, "alice", Role::General).await;
    add_user(reg, CORP, "bob", Role::General).await;
    let alice = Holder::user(CORP, "alice");
    let bob = Holder::user(CORP, "bob");
    enroll(reg, &alice, "a0", t(-400)).await; // expired by t(0)
    enroll(reg, &alice, "a1", t(-30)).await;
    renew(reg, &alice, "a1", "a2", t(-1)).await; // renewal overlap: two active
    enroll(reg, &bob, "b1", t(-30)).await;
    assert_eq!(
        reg.certificate(&"a0".into()).await.unwrap().unwrap().status,
        CertStatus::Active,
        "expired certificates are not superseded"
    );
    assert_eq!(
        reg.active_certificates(&alice, t(0)).await.unwrap().len(),
        2
    );

    let revoked = reg
        .revoke_holder(
            &alice,
            RevocationReason::CessationOfOperation,
            &audit(t(0), "cert.revoke_all", CORP, "alice"),
        )
        .await
        .unwrap();
    let serials: Vec<String> = revoked.iter().map(|r| r.serial.to_hex()).collect();
    assert_eq!(serials, ["a1", "a2"]);
    assert_eq!(
        reg.certificate(&"a0".into()).await.unwrap().unwrap().status,
        CertStatus::Active
    );
    assert!(
        reg.active_certificates(&alice, t(0))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(reg.active_certificates(&bob, t(0)).await.unwrap().len(), 1);

    let set = reg.revoked_unexpired(t(1)).await.unwrap();
    assert_eq!(set.len(), 2);
    assert!(set.iter().all(|r| r.issuer_generation == "G2"
        && r.reason == RevocationReason::CessationOfOperation
        && r.holder == alice));
    assert!(
        reg.revoked_unexpired(t(400)).await.unwrap().is_empty(),
        "expired ones leave the set"
    );
    let nothing = reg
        .revoke_holder(
            &alice,
            RevocationReason::CessationOfOperation,
            &audit(t(1), "cert.revoke_all", CORP, "alice"),
        )
        .await
        .unwrap();
    assert!(nothing.is_empty());

    // Re-issue: the new permit and the revocation of the current certificate are one change.
    let reissued = reg
        .issue_permit(
            &NewPermit {
                holder: bob.clone(),
                pin_hash: PHC.into(),
                expires_at: t(8),
                revoke_active: Some(RevocationReason::Superseded),
            },
            &audit(t(1), "permit.reissue", CORP, "bob"),
        )
        .await
        .unwrap();
    assert_eq!(reissued.revoked.len(), 1);
    assert_eq!(reissued.revoked[0].serial, "b1");
    assert_eq!(reg.holder_certificates(&bob).await.unwrap().len(), 1);
}

async fn status_table(reg: Arc<dyn Registry>) {
    let reg = &*reg;
    add_corp(reg, CORP).await;
    add_corp(reg, "22222222222222").await;
    for user in ["u1", "u2", "u3", "u4", "u5", "u6"] {
        add_user(reg, CORP, user, Role::General).await;
    }
    add_user(reg, "22222222222222", "u2", Role::General).await;
    let now = t(0);
    let h = |u: &str| Holder::user(CORP, u);
    enroll(reg, &h("u2"), "02", now - Duration::days(100)).await; // 265 days left
    enroll(reg, &h("u3"), "03", now - Duration::days(340)).await; // 25 days left
    enroll(reg, &h("u4"), "04", now - Duration::days(366)).await; // expired
    enroll(reg, &h("u5"), "05", now - Duration::days(10)).await;
    reg.revoke_certificate(
        &"05".into(),
        RevocationReason::KeyCompromise,
        &audit(now, "cert.revoke", CORP, "05"),
    )
    .await
    .unwrap();
    enroll(reg, &h("u6"), "06", now - Duration::days(400)).await; // expired, then
    enroll(reg, &h("u6"), "16", now - Duration::days(1)).await; // re-enrolled
    enroll(reg, &Holder::admin(CORP), "aa", now - Duration::days(1)).await;
    enroll(reg, &Holder::user("22222222222222", "u2"), "22", now).await;

    let rows = reg
        .user_statuses(CORP, now, Duration::days(30))
        .await
        .unwrap();
    let table: Vec<(&str, IssueStatus, Option<String>)> = rows
        .iter()
        .map(|r| {
            (
                r.user.user_id.as_str(),
                r.status,
                r.latest.as_ref().map(|c| c.serial.to_hex()),
            )
        })
        .collect();
    assert_eq!(
        table,
        [
            ("u1", IssueStatus::Unissued, None),
            ("u2", IssueStatus::Issued, Some("02".to_owned())),
            ("u3", IssueStatus::Renewable, Some("03".to_owned())),
            ("u4", IssueStatus::Expired, Some("04".to_owned())),
            ("u5", IssueStatus::Revoked, Some("05".to_owned())),
            ("u6", IssueStatus::Issued, Some("16".to_owned())),
        ]
    );
    let admin = reg
        .latest_certificate(&Holder::admin(CORP))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(admin.serial, "aa");
    let missing = reg.user_statuses("0", now, Duration::days(30)).await;
    assert!(
        matches!(missing, Err(StoreError::NotFound { .. })),
        "{missing:?}"
    );
}

async fn audit_lists_newest_first(reg: Arc<dyn Registry>) {
    let reg = &*reg;
    add_corp(reg, CORP).await; // at t(0)
    add_corp(reg, "22222222222222").await;
    for (day, action) in [(3, "c"), (1, "a"), (2, "b")] {
        reg.append_audit(&NewAudit {
            result: "refused: wrong PIN".into(),
            client_addr: None,
            ..audit(t(day), action, CORP, "alice")
        })
        .await
        .unwrap();
    }
    reg.append_audit(&NewAudit {
        corp_id: None,
        ..audit(t(5), "enroll.refused", "", "unknown corporation 999")
    })
    .await
    .unwrap();
    let corp: Vec<String> = reg
        .list_audit(Some(CORP), 3)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(corp, ["c", "b", "a"]);
    let all = reg.list_audit(None, 100).await.unwrap();
    assert_eq!(all.len(), 6);
    assert_eq!(all[0].action, "enroll.refused");
    assert_eq!(all[0].corp_id, None);
    assert_eq!(reg.list_audit(Some(CORP), 100).await.unwrap().len(), 4);
}

/// 50 enrollments at once on one pool: the busy timeout queues the writers, none fails.
async fn fifty_concurrent_issuances(reg: Arc<dyn Registry>) {
    add_corp(&*reg, CORP).await;
    let mut permits = Vec::new();
    for i in 0..50 {
        let user = format!("user{i}");
        add_user(&*reg, CORP, &user, Role::General).await;
        permits.push((
            user.clone(),
            permit(&*reg, &Holder::user(CORP, user), t(0)).await,
        ));
    }
    let tasks: Vec<_> = permits
        .into_iter()
        .enumerate()
        .map(|(i, (user, p))| {
            let reg = Arc::clone(&reg);
            tokio::spawn(async move {
                let holder = Holder::user(CORP, user);
                let serial = format!("{:04x}", 0x1000 + i);
                reg.record_issuance(&issuance(
                    Some(p.permit.permit_id),
                    cert(&serial, &holder, t(1)),
                    true,
                ))
                .await
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task").expect("issuance");
    }
    let ledger = reg.corporation_certificates(CORP).await.unwrap();
    assert_eq!(ledger.len(), 50);
    assert!(ledger.iter().all(|c| c.permit_id.is_some()));

    // Ten clients racing with one permit: exactly one certificate comes out of it.
    add_user(&*reg, CORP, "racer", Role::General).await;
    let racer = Holder::user(CORP, "racer");
    let p = permit(&*reg, &racer, t(0)).await.permit.permit_id;
    let racers: Vec<_> = (0..10)
        .map(|i| {
            let reg = Arc::clone(&reg);
            let racer = racer.clone();
            tokio::spawn(async move {
                let serial = format!("{:04x}", 0x2000 + i);
                reg.record_issuance(&issuance(Some(p), cert(&serial, &racer, t(1)), true))
                    .await
            })
        })
        .collect();
    let mut won = 0;
    for task in racers {
        match task.await.expect("task") {
            Ok(_) => won += 1,
            Err(StoreError::Conflict { .. }) => {}
            Err(other) => panic!("unexpected error {other:?}"),
        }
    }
    assert_eq!(won, 1);
    assert_eq!(reg.holder_certificates(&racer).await.unwrap().len(), 1);
}

/// The whole feed, in order.
async fn feed(reg: &dyn Registry) -> Vec<FeedEntry> {
    reg.changes_since(0, 10_000).await.expect("read the feed")
}

async fn feed_records_every_change_that_decides_a_refusal(reg: Arc<dyn Registry>) {
    let reg = &*reg;
    assert_eq!(reg.feed_head().await.unwrap(), 0);
    add_corp(reg, CORP).await;
    add_user(reg, CORP, "alice", Role::General).await;
    reg.set_user_status(
        CORP,
        "alice",
        UserStatus::Suspended,
        &audit(t(1), "user.suspend", CORP, "alice"),
    )
    .await
    .unwrap();
    let alice = Holder::user(CORP, "alice");
    // An enrollment with nothing to supersede changes nobody's standing: no entry.
    let before = reg.feed_head().await.unwrap();
    enroll(reg, &alice, "a1", t(1)).await;
    assert_eq!(reg.feed_head().await.unwrap(), before);
    renew(reg, &alice, "a1", "a2", t(300)).await;
    reg.revoke_certificate(
        &"a2".into(),
        RevocationReason::KeyCompromise,
        &audit(t(301), "cert.revoke", CORP, "a2"),
    )
    .await
    .unwrap();
    reg.set_cert_required(
        CORP,
        false,
        &audit(t(302), "corp.cert_required", CORP, CORP),
    )
    .await
    .unwrap();
    reg.request_reload(t(303)).await.unwrap();

    let entries = feed(reg).await;
    let seqs: Vec<i64> = entries.iter().map(|entry| entry.seq).collect();
    assert!(seqs.windows(2).all(|pair| pair[0] < pair[1]), "{seqs:?}");
    // Each names the one before it: a process that applied that one may apply this one.
    assert_eq!(entries[0].prev_seq, Some(0));
    for pair in entries.windows(2) {
        assert_eq!(pair[1].prev_seq, Some(pair[0].seq), "{entries:?}");
    }
    assert_eq!(reg.feed_head().await.unwrap(), *seqs.last().unwrap());
    let changes: Vec<Change> = entries.into_iter().map(|entry| entry.change).collect();
    let user = |suspended| Change::User {
        corp_id: CORP.into(),
        user_id: "alice".into(),
        role: Role::General,
        suspended,
        removed: false,
    };
    let corporation = |cert_required| Change::Corporation {
        corp_id: CORP.into(),
        active: true,
        cert_required,
    };
    let certificate = |serial: &str, revoked, renewed| Change::Certificate {
        issuer: IssuerKey(7),
        serial: serial.into(),
        generation: "G2".into(),
        not_after: if serial == "a1" { t(366) } else { t(665) },
        revoked,
        renewed,
    };
    assert_eq!(
        changes,
        [
            corporation(true),
            user(false),
            user(true),
            certificate("a1", None, true),
            certificate("a2", Some((t(301), RevocationReason::KeyCompromise)), false),
            corporation(false),
            Change::Reload,
        ]
    );
    // Reading from the middle gives the rest, and a limit cuts it.
    let rest = reg.changes_since(seqs[3], 2).await.unwrap();
    assert_eq!(rest.len(), 2);
    assert_eq!(rest[0].seq, seqs[4]);
}

async fn a_rolled_back_change_never_reaches_the_feed(reg: Arc<dyn Registry>) {
    let reg = &*reg;
    add_corp(reg, CORP).await;
    add_user(reg, CORP, "alice", Role::General).await;
    add_user(reg, CORP, "bob", Role::General).await;
    let alice = Holder::user(CORP, "alice");
    let bob = Holder::user(CORP, "bob");
    enroll(reg, &alice, "a1", t(0)).await;
    enroll(reg, &bob, "b1", t(0)).await;
    let head = reg.feed_head().await.unwrap();

    // Superseding a1 is written, then the duplicate serial fails the insert: all rolled back.
    let p = permit(reg, &alice, t(1)).await;
    let head_after_permit = reg.feed_head().await.unwrap();
    assert_eq!(
        head_after_permit, head,
        "a plain permit changes no standing"
    );
    let duplicate = reg
        .record_issuance(&issuance(
            Some(p.permit.permit_id),
            cert("b1", &alice, t(1)),
            true,
        ))
        .await;
    assert!(
        matches!(duplicate, Err(StoreError::Conflict { .. })),
        "{duplicate:?}"
    );
    // A revocation of an already revoked certificate, a suspension of nobody: refused.
    reg.revoke_certificate(
        &"b1".into(),
        RevocationReason::Unspecified,
        &audit(t(2), "cert.revoke", CORP, "b1"),
    )
    .await
    .unwrap();
    let head = reg.feed_head().await.unwrap();
    let again = reg
        .revoke_certificate(
            &"b1".into(),
            RevocationReason::Unspecified,
            &audit(t(3), "cert.revoke", CORP, "b1"),
        )
        .await;
    assert!(
        matches!(again, Err(StoreError::Conflict { .. })),
        "{again:?}"
    );
    let nobody = reg
        .set_user_status(
            CORP,
            "nobody",
            UserStatus::Suspended,
            &audit(t(3), "user.suspend", CORP, "nobody"),
        )
        .await;
    assert!(
        matches!(nobody, Err(StoreError::NotFound { .. })),
        "{nobody:?}"
    );

    assert_eq!(reg.feed_head().await.unwrap(), head);
    let serials: Vec<Serial> = feed(reg)
        .await
        .into_iter()
        .filter_map(|entry| match entry.change {
            Change::Certificate { serial, .. } => Some(serial),
            _ => None,
        })
        .collect();
    assert_eq!(serials, [Serial::from("b1")], "a1 was never superseded");
    assert_eq!(
        reg.certificate(&"a1".into()).await.unwrap().unwrap().status,
        CertStatus::Active
    );
}

/// The standing as a fold of changes: what a certgate process keeps (exceptions only).
#[derive(Debug, Default, PartialEq, Eq)]
struct Folded {
    certificates: std::collections::BTreeMap<(IssuerKey, Serial), (bool, bool)>,
    users: std::collections::BTreeMap<(String, String), (Role, bool)>,
    corporations: std::collections::BTreeMap<String, (bool, bool)>,
}

impl Folded {
    fn apply(&mut self, change: Change, now: OffsetDateTime) {
        match change {
            Change::Certificate {
                issuer,
                serial,
                not_after,
                revoked,
                renewed,
                ..
            } => {
                if not_after > now {
                    self.certificates
                        .insert((issuer, serial), (revoked.is_some(), renewed));
                }
            }
            Change::User {
                corp_id,
                user_id,
                role,
                suspended,
                removed,
            } => {
                if removed || (role == Role::General && !suspended) {
                    self.users.remove(&(corp_id, user_id));
                } else {
                    self.users.insert((corp_id, user_id), (role, suspended));
                }
            }
            Change::Corporation {
                corp_id,
                active,
                cert_required,
            } => {
                if active && !cert_required {
                    self.corporations.remove(&corp_id);
                } else {
                    self.corporations.insert(corp_id, (active, cert_required));
                }
            }
            Change::Reload => {}
        }
    }

    async fn load(reg: &dyn Registry, now: OffsetDateTime) -> (Self, i64) {
        let mut folded = Self::default();
        let mut changes = Vec::new();
        let seq = reg
            .load_standing(now, &mut |change| changes.push(change))
            .await
            .unwrap();
        for change in changes {
            folded.apply(change, now);
        }
        (folded, seq)
    }
}

async fn standing_loaded_then_followed_equals_a_fresh_load(reg: Arc<dyn Registry>) {
    let reg = &*reg;
    let now = t(364);
    add_corp(reg, CORP).await;
    add_corp(reg, "22222222222222").await;
    let mut users = Vec::new();
    for i in 0..12 {
        let user = format!("user{i}");
        let role = [Role::General, Role::Admin, Role::Master]
            [usize::from(i % 5 == 0) + usize::from(i == 0)];
        add_user(reg, CORP, &user, role).await;
        let holder = Holder::user(CORP, &user);
        // user0's certificate expired long ago.
        let from = if i == 0 { t(-400) } else { t(0) };
        enroll(reg, &holder, &format!("{:02x}", 0x10 + i), from).await;
        users.push(holder);
    }
    // An expired revoked certificate is in neither.
    reg.revoke_certificate(
        &"10".into(),
        RevocationReason::KeyCompromise,
        &audit(t(1), "cert.revoke", CORP, "10"),
    )
    .await
    .unwrap();
    renew(reg, &users[1], "11", "a1", t(360)).await;

    let (mut followed, mut seq) = Folded::load(reg, now).await;
    // Changes made after the load, as a running process would see them in the feed.
    reg.set_user_status(
        CORP,
        "user2",
        UserStatus::Suspended,
        &audit(t(361), "user.suspend", CORP, "user2"),
    )
    .await
    .unwrap();
    reg.set_user_status(
        CORP,
        "user2",
        UserStatus::Active,
        &audit(t(362), "user.resume", CORP, "user2"),
    )
    .await
    .unwrap();
    reg.set_user_status(
        CORP,
        "user3",
        UserStatus::Suspended,
        &audit(t(362), "user.suspend", CORP, "user3"),
    )
    .await
    .unwrap();
    reg.revoke_holder(
        &users[4],
        RevocationReason::AffiliationChanged,
        &audit(t(363), "user.revoke", CORP, "user4"),
    )
    .await
    .unwrap();
    renew(reg, &users[6], "16", "a6", t(364)).await;
    reg.set_corporation_status(
        "22222222222222",
        CorporationStatus::Suspended,
        &audit(t(365), "corp.suspend", "22222222222222", "22222222222222"),
    )
    .await
    .unwrap();
    reg.set_cert_required(
        CORP,
        false,
        &audit(t(365), "corp.cert_required", CORP, CORP),
    )
    .await
    .unwrap();
    loop {
        let entries = reg.changes_since(seq, 3).await.unwrap();
        let Some(last) = entries.last() else { break };
        seq = last.seq;
        for entry in entries {
            followed.apply(entry.change, now);
        }
    }
    let (fresh, fresh_seq) = Folded::load(reg, now).await;
    assert_eq!(fresh_seq, seq);
    assert_eq!(followed, fresh);
    assert!(
        !fresh
            .certificates
            .contains_key(&(IssuerKey(7), "10".into()))
    );
    assert_eq!(fresh.certificates.len(), 3, "{fresh:?}");
    assert_eq!(
        fresh.users.get(&(CORP.to_owned(), "user3".to_owned())),
        Some(&(Role::General, true))
    );
    assert!(
        !fresh
            .users
            .contains_key(&(CORP.to_owned(), "user2".to_owned()))
    );
    assert_eq!(fresh.corporations.len(), 1);
}

async fn one_crl_signer_at_a_time_and_never_backwards(reg: Arc<dyn Registry>) {
    let reg = &*reg;
    let lease = Duration::seconds(60);
    let crl = |number, seq| SignedCrl {
        number,
        seq,
        // A byte that tells the CRLs apart (u128::MAX gives 0xff).
        der: Der(vec![0x30, 0x00, u8::try_from(number).unwrap_or(u8::MAX)]),
    };
    assert_eq!(reg.signed_crl("g1").await.unwrap(), None);
    let claim = |number, seq, signed_at| {
        Some(CrlClaim {
            number,
            seq,
            signed_at,
        })
    };
    assert_eq!(
        reg.claim_crl("g1", "a", t(0), lease).await.unwrap(),
        claim(0, 0, None)
    );
    assert_eq!(reg.claim_crl("g1", "b", t(0), lease).await.unwrap(), None);
    // Another generation is another lease.
    assert_eq!(
        reg.claim_crl("g2", "b", t(0), lease).await.unwrap(),
        claim(0, 0, None)
    );
    assert!(reg.store_crl("g1", "a", &crl(5, 3), t(0)).await.unwrap());
    // Storing gave the lease back; storing without one stores nothing.
    assert!(!reg.store_crl("g1", "b", &crl(6, 4), t(0)).await.unwrap());
    assert_eq!(reg.signed_crl("g1").await.unwrap(), Some(crl(5, 3)));
    assert_eq!(
        reg.claim_crl("g1", "b", t(0), lease).await.unwrap(),
        claim(5, 3, Some(t(0)))
    );
    reg.release_crl("g1", "b").await.unwrap();
    // A claim learns where the last CRL stands.
    assert_eq!(
        reg.claim_crl("g1", "a", t(0) + Duration::seconds(30), lease)
            .await
            .unwrap(),
        claim(5, 3, Some(t(0)))
    );
    assert_eq!(
        reg.claim_crl("g1", "b", t(0) + Duration::seconds(30), lease)
            .await
            .unwrap(),
        None
    );
    // A CRL made from an older view of the feed is not stored over a newer one.
    assert!(!reg.store_crl("g1", "a", &crl(6, 2), t(0)).await.unwrap());
    // Past the lease, another process takes over; the first can no longer store.
    let later = t(0) + Duration::seconds(91);
    assert_eq!(
        reg.claim_crl("g1", "b", later, lease).await.unwrap(),
        claim(5, 3, Some(t(0)))
    );
    assert!(!reg.store_crl("g1", "a", &crl(7, 9), later).await.unwrap());
    assert!(
        reg.store_crl("g1", "b", &crl(u128::MAX, 9), later)
            .await
            .unwrap()
    );
    assert_eq!(reg.signed_crl("g1").await.unwrap(), Some(crl(u128::MAX, 9)));
}

/// Runs every shared scenario against one backend; `$fresh` yields `(guard, Arc<dyn Registry>)`.
async fn confirmation_passwords_are_set_once_count_lock_and_reset(reg: Arc<dyn Registry>) {
    let reg = &*reg;
    add_corp(reg, CORP).await;
    let admin = Holder::admin(CORP);
    assert_eq!(reg.confirmation(&admin).await.unwrap(), None);
    reg.set_confirmation(
        &admin,
        "$argon2id$hash",
        &audit(t(1), "confirmation.set", CORP, CORP),
    )
    .await
    .unwrap();
    let again = reg
        .set_confirmation(
            &admin,
            "$argon2id$other",
            &audit(t(1), "confirmation.set", CORP, CORP),
        )
        .await;
    assert!(
        matches!(again, Err(StoreError::Conflict { .. })),
        "{again:?}"
    );
    let stored = reg.confirmation(&admin).await.unwrap().unwrap();
    assert_eq!(
        (stored.hash.as_str(), stored.failures, stored.locked),
        ("$argon2id$hash", 0, false)
    );
    for expected_locked in [false, false, true] {
        let locked = reg
            .confirmation_failed(&admin, 3, &audit(t(2), "confirmation", CORP, CORP))
            .await
            .unwrap();
        assert_eq!(locked, expected_locked);
    }
    let stored = reg.confirmation(&admin).await.unwrap().unwrap();
    assert_eq!((stored.failures, stored.locked), (3, true));
    assert!(
        reg.reset_confirmation(&admin, &audit(t(3), "confirmation.reset", CORP, CORP))
            .await
            .unwrap()
    );
    assert!(
        !reg.reset_confirmation(&admin, &audit(t(3), "confirmation.reset", CORP, CORP))
            .await
            .unwrap()
    );
    assert_eq!(reg.confirmation(&admin).await.unwrap(), None);
    // A right one after wrong ones starts the count again.
    reg.set_confirmation(
        &admin,
        "$argon2id$new",
        &audit(t(4), "confirmation.set", CORP, CORP),
    )
    .await
    .unwrap();
    reg.confirmation_failed(&admin, 3, &audit(t(5), "confirmation", CORP, CORP))
        .await
        .unwrap();
    reg.confirmation_succeeded(&admin).await.unwrap();
    assert_eq!(reg.confirmation(&admin).await.unwrap().unwrap().failures, 0);
}

macro_rules! backend_tests {
    ($module:ident, $fresh:path, [$($scenario:ident),+ $(,)?]) => {
        mod $module {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    let (_guard, reg) = $fresh().await;
                    super::$scenario(reg).await;
                }
            )+
        }
    };
}

backend_tests!(
    on_sqlite,
    super::fresh_sqlite,
    [
        duplicate_corporation_is_conflict,
        corporation_and_user_updates,
        permit_supersedes_older_ones,
        failures_lock_at_threshold,
        issuance_is_atomic,
        failed_issuance_changes_nothing,
        retry_lookup,
        kept_p12_lives_only_as_long_as_its_retry,
        revocation_cascades_over_renewals,
        revoke_every_unexpired_certificate_of_a_user,
        status_table,
        audit_lists_newest_first,
        fifty_concurrent_issuances,
        feed_records_every_change_that_decides_a_refusal,
        a_rolled_back_change_never_reaches_the_feed,
        standing_loaded_then_followed_equals_a_fresh_load,
        one_crl_signer_at_a_time_and_never_backwards,
        confirmation_passwords_are_set_once_count_lock_and_reset,
    ]
);

backend_tests!(
    on_postgres,
    super::fresh_postgres,
    [
        duplicate_corporation_is_conflict,
        corporation_and_user_updates,
        permit_supersedes_older_ones,
        failures_lock_at_threshold,
        issuance_is_atomic,
        failed_issuance_changes_nothing,
        retry_lookup,
        kept_p12_lives_only_as_long_as_its_retry,
        revocation_cascades_over_renewals,
        revoke_every_unexpired_certificate_of_a_user,
        status_table,
        audit_lists_newest_first,
        fifty_concurrent_issuances,
        feed_records_every_change_that_decides_a_refusal,
        a_rolled_back_change_never_reaches_the_feed,
        standing_loaded_then_followed_equals_a_fresh_load,
        one_crl_signer_at_a_time_and_never_backwards,
        confirmation_passwords_are_set_once_count_lock_and_reset,
    ]
);

// --- PostgreSQL ---

use super::testing::{ScratchDatabase, test_postgres};

async fn fresh_postgres() -> (ScratchDatabase, Arc<dyn Registry>) {
    let db = ScratchDatabase::create().await;
    let reg = open(&db.url).await.expect("open registry");
    (db, reg)
}

#[tokio::test]
async fn postgres_migrations_twice_are_a_no_op() {
    let db = ScratchDatabase::create().await;
    let reg = open(&db.url).await.unwrap();
    add_corp(&*reg, CORP).await;
    reg.close().await;
    let reopened = open(&db.url).await.unwrap();
    assert!(reopened.corporation(CORP).await.unwrap().is_some());
    reopened.close().await;
}

#[tokio::test]
async fn postgres_password_from_the_options_and_never_in_messages() {
    // A server that trusts everyone ignores the password; a wrong database is named, without it.
    let mut url = url::Url::parse(&test_postgres()).unwrap();
    url.set_path("certgate_no_such_database");
    let options = StoreOptions {
        url: url.to_string(),
        password: Some("pa55-w0rd-never-shown".to_owned().into()),
        pool: PoolSettings::default(),
    };
    let err = match open_with(&options).await {
        Err(err) => err,
        Ok(_) => panic!("the database does not exist"),
    };
    let text = crate::model::error_chain(&err);
    assert!(text.contains("certgate_no_such_database"), "{text}");
    assert!(!text.contains("pa55"), "{text}");
    let _ = url.set_password(Some("pa55-in-the-url"));
    let err = match open(url.as_str()).await {
        Err(err) => err,
        Ok(_) => panic!("the database does not exist"),
    };
    let text = crate::model::error_chain(&err);
    assert!(!text.contains("pa55"), "{text}");
}

#[tokio::test]
async fn kill_9_during_parallel_enrollments_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/crash.db", dir.path().display());
    kill_9_during_parallel_enrollments(&url).await;
    let reg = sqlite::open(&url).await.unwrap();
    let integrity: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(reg.pool())
        .await
        .unwrap();
    assert_eq!(integrity, "ok");
}

#[tokio::test]
async fn kill_9_during_parallel_enrollments_on_postgres() {
    let db = ScratchDatabase::create().await;
    kill_9_during_parallel_enrollments(&db.url).await;
}

// --- SQLite specifics ---

/// A registry in a real file, in a directory that does not exist yet.
async fn fresh_sqlite() -> (tempfile::TempDir, Arc<dyn Registry>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}/data/certgate.db", dir.path().display());
    let reg = open(&url).await.expect("open registry");
    (dir, reg)
}

/// How many migrations the SQLite backend embeds.
fn sqlite_migrations() -> i64 {
    i64::try_from(super::sqlite::MIGRATIONS.len()).unwrap_or(i64::MAX)
}

async fn applied_migrations(reg: &SqlRegistry) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
        .fetch_one(reg.pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn migrations_twice_are_a_no_op_and_data_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/dir/certgate.db");
    let url = format!("sqlite://{}", path.display());
    let reg = sqlite::open(&url).await.unwrap();
    assert!(path.exists(), "file and parent directories created");
    add_corp(&reg, CORP).await;
    add_user(&reg, CORP, "alice", Role::Master).await;
    enroll(&reg, &Holder::user(CORP, "alice"), "0102", t(0)).await;
    // Opening again while it is open migrates nothing.
    sqlite::open(&url).await.unwrap().close().await;
    assert_eq!(applied_migrations(&reg).await, sqlite_migrations());
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(reg.pool())
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    let sync: i64 = sqlx::query_scalar("PRAGMA synchronous")
        .fetch_one(reg.pool())
        .await
        .unwrap();
    assert_eq!(sync, 2, "synchronous=FULL");
    let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
        .fetch_one(reg.pool())
        .await
        .unwrap();
    assert_eq!(fk, 1);
    reg.close().await;

    let reopened = sqlite::open(&url).await.unwrap();
    assert_eq!(applied_migrations(&reopened).await, sqlite_migrations());
    let corp = reopened.corporation(CORP).await.unwrap().unwrap();
    assert_eq!(corp.created_at, t(0));
    let cert = reopened.certificate(&"0102".into()).await.unwrap().unwrap();
    assert_eq!(cert.holder, Holder::user(CORP, "alice"));
    assert_eq!(
        reopened
            .latest_permit(&cert.holder)
            .await
            .unwrap()
            .unwrap()
            .state,
        PermitState::Used
    );
    assert_eq!(reopened.list_audit(Some(CORP), 10).await.unwrap().len(), 4);
}

#[tokio::test]
async fn the_database_is_readable_by_its_owner_only_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("made/here/certgate.db");
    let reg = sqlite::open(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    add_corp(&reg, CORP).await;
    let mode =
        |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(
        mode(&path),
        0o600,
        "PIN hashes and kept certificate.p12 files"
    );
    assert_eq!(mode(path.parent().unwrap()), 0o700);
    assert_eq!(
        mode(&dir.path().join("made/here/certgate.db-wal")) & 0o077,
        0
    );
}

#[tokio::test]
async fn the_change_feed_is_read_while_every_other_connection_is_taken() {
    let dir = tempfile::tempdir().unwrap();
    let reg = sqlite::open(&format!("sqlite://{}/r.db", dir.path().display()))
        .await
        .unwrap();
    add_corp(&reg, CORP).await;
    // A flood of enrollment attempts holds every connection of the pool…
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(reg.pool().acquire().await.unwrap());
    }
    // …and the snapshot still reads the feed, at once.
    let read = tokio::time::timeout(std::time::Duration::from_secs(5), reg.changes_since(0, 10))
        .await
        .expect("the feed has connections of its own")
        .unwrap();
    assert_eq!(read.len(), 1);
    assert_eq!(
        tokio::time::timeout(std::time::Duration::from_secs(5), reg.feed_head())
            .await
            .unwrap()
            .unwrap(),
        read[0].seq
    );
}

#[tokio::test]
async fn constraints_hold_even_without_the_rust_checks() {
    let (_dir, reg) = {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/r.db", dir.path().display());
        (dir, sqlite::open(&url).await.unwrap())
    };
    add_corp(&reg, CORP).await;
    let bad_status = sqlx::query("UPDATE corporations SET status = 'gone'")
        .execute(reg.pool())
        .await;
    assert!(bad_status.is_err(), "CHECK on enum column");
    let orphan = sqlx::query(
        "INSERT INTO users (corp_id, user_id, role, created_at) VALUES ('9', 'x', 'general', 0)",
    )
    .execute(reg.pool())
    .await;
    assert!(orphan.is_err(), "foreign key");
    let two_active = sqlx::query(
        "INSERT INTO permits (corp_id, user_id, pin_hash, created_at, expires_at) \
         VALUES (?1, NULL, '$x', 0, 10), (?1, NULL, '$y', 0, 10)",
    )
    .bind(CORP)
    .execute(reg.pool())
    .await;
    assert!(two_active.is_err(), "one active permit per holder");
}

#[tokio::test]
async fn unsupported_scheme_and_bad_urls_are_named() {
    let err = match open("mysql://u:secret@db/certgate").await {
        Err(e) => e,
        Ok(_) => panic!("mysql is not supported"),
    };
    assert!(matches!(err, StoreError::UnsupportedScheme { ref scheme } if scheme == "mysql"));
    assert!(!err.to_string().contains("secret"));
}

#[test]
fn secrets_and_bytes_stay_out_of_debug() {
    let p = NewPermit {
        holder: Holder::admin(CORP),
        pin_hash: PHC.into(),
        expires_at: t(1),
        revoke_active: None,
    };
    let shown = format!("{p:?}");
    assert!(!shown.contains("argon2"), "{shown}");
    let c = cert("01", &Holder::admin(CORP), t(0));
    assert!(format!("{c:?}").contains("<5 bytes of DER>"));
}

#[test]
fn reason_codes_and_names_round_trip() {
    for code in 0..=11u8 {
        match RevocationReason::from_code(code) {
            Some(reason) => {
                assert_eq!(reason.code(), code);
                assert_eq!(reason.as_str().parse::<RevocationReason>().unwrap(), reason);
            }
            None => assert!(code == 7 || code == 11),
        }
    }
    assert_eq!(RevocationReason::KeyCompromise.as_str(), "keyCompromise");
    assert_eq!(RevocationReason::RemoveFromCrl.code(), 8);
}

#[test]
fn status_window_boundaries() {
    let holder = Holder::user(CORP, "u");
    let mut c = CertificateRecord {
        serial: "01".into(),
        issuer_generation: "G1".into(),
        holder,
        not_before: t(0),
        not_after: t(365),
        sha256: String::new(),
        spki_sha256: String::new(),
        der: Der(Vec::new()),
        status: CertStatus::Active,
        issued_at: t(0),
        revocation: None,
        renewed_from: None,
        permit_id: None,
        renewed_at: None,
    };
    let window = Duration::days(30);
    assert_eq!(IssueStatus::of(None, t(0), window), IssueStatus::Unissued);
    assert_eq!(
        IssueStatus::of(Some(&c), t(334), window),
        IssueStatus::Issued
    );
    assert_eq!(
        IssueStatus::of(Some(&c), t(335), window),
        IssueStatus::Renewable
    );
    assert_eq!(
        IssueStatus::of(Some(&c), t(365), window),
        IssueStatus::Expired
    );
    assert!(c.is_valid_at(t(364)) && !c.is_valid_at(t(365)));
    c.status = CertStatus::Revoked;
    assert_eq!(
        IssueStatus::of(Some(&c), t(1), window),
        IssueStatus::Revoked
    );
}

/// Set for the child process of [`kill_9_during_parallel_enrollments`]: the database URL.
const CRASH_CHILD_ENV: &str = "CERTGATE_STORE_CRASH_CHILD_DB";
const CRASH_USERS: usize = 300;

/// Not a test on its own: the writer that [`kill_9_during_parallel_enrollments`] kills.
/// Enrolls 50 users at a time and prints `ISSUED <serial>` once a client would have its
/// certificate, that is, once `record_issuance` returned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "child process of kill_9_during_parallel_enrollments"]
async fn crash_child_enrolls_until_killed() {
    use std::io::Write;
    let Ok(url) = std::env::var(CRASH_CHILD_ENV) else {
        return;
    };
    let reg = open(&url).await.unwrap();
    for batch in 0..CRASH_USERS / 50 {
        let tasks: Vec<_> = (batch * 50..batch * 50 + 50)
            .map(|i| {
                let reg = Arc::clone(&reg);
                tokio::spawn(async move {
                    let holder = Holder::user(CORP, format!("user{i}"));
                    let p = reg.latest_permit(&holder).await.unwrap().unwrap();
                    let serial = format!("{:04x}", 0x1000 + i);
                    reg.record_issuance(&issuance(
                        Some(p.permit_id),
                        cert(&serial, &holder, t(1)),
                        true,
                    ))
                    .await
                    .unwrap();
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "ISSUED {serial}").unwrap();
                    out.flush().unwrap();
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
    }
}

/// The acceptance test of the registry: `kill -9` during 50 parallel enrollments, reopen,
/// and every certificate a client received is in the ledger, and no permit is half-used.
async fn kill_9_during_parallel_enrollments(url: &str) {
    use std::io::BufRead;
    use std::process::{Command, Stdio};

    let url = url.to_owned();
    {
        let reg = open(&url).await.unwrap();
        let reg = &*reg;
        add_corp(reg, CORP).await;
        for i in 0..CRASH_USERS {
            let user = format!("user{i}");
            add_user(reg, CORP, &user, Role::General).await;
            let holder = Holder::user(CORP, user);
            permit(reg, &holder, t(0)).await;
            // Half of them already hold a certificate, so enrollments also supersede.
            if i % 2 == 0 {
                let c = cert(&format!("{:04x}", 0x8000 + i), &holder, t(0));
                reg.record_issuance(&issuance(None, c, false))
                    .await
                    .unwrap();
            }
        }
        reg.close().await;
    }

    let received = tokio::task::spawn_blocking(move || {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "store::tests::crash_child_enrolls_until_killed",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CRASH_CHILD_ENV, &url)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut received = Vec::new();
        let mut killed = false;
        for line in std::io::BufReader::new(stdout).lines() {
            if let Some(serial) = line.unwrap().strip_prefix("ISSUED ") {
                received.push(serial.to_owned());
            }
            // Mid-way through the third batch of 50: many transactions are in flight.
            if received.len() == 120 && !killed {
                child.kill().unwrap(); // SIGKILL
                killed = true;
            }
        }
        let status = child.wait().unwrap();
        assert!(
            killed && !status.success(),
            "the child was killed: {status:?}"
        );
        (url, received)
    });
    let (url, received) = received.await.unwrap();
    assert!(received.len() >= 120);

    let reg = open(&url).await.unwrap();
    for serial in &received {
        let c = reg.certificate(&serial.as_str().into()).await.unwrap();
        assert!(
            c.is_some(),
            "certificate {serial} was handed out but is not in the ledger"
        );
    }
    let mut used = 0;
    for i in 0..CRASH_USERS {
        let holder = Holder::user(CORP, format!("user{i}"));
        let p = reg.latest_permit(&holder).await.unwrap().unwrap();
        let active = reg.active_certificates(&holder, t(2)).await.unwrap();
        match p.state {
            PermitState::Used => {
                used += 1;
                let serial = p.serial.expect("a used permit names its certificate");
                let c = reg.certificate(&serial).await.unwrap().unwrap();
                assert_eq!(c.permit_id, Some(p.permit_id));
                assert_eq!(active.len(), 1, "the older certificate was superseded");
                assert_eq!(active[0].serial, serial);
            }
            PermitState::Active => {
                assert_eq!(p.serial, None, "an unused permit produced nothing");
                assert_eq!(active.len(), usize::from(i % 2 == 0));
            }
            other => panic!("permit of user{i} is {other}"),
        }
    }
    assert!(used >= received.len());
    let ledger = reg.corporation_certificates(CORP).await.unwrap();
    assert_eq!(ledger.len(), CRASH_USERS / 2 + used);
}
