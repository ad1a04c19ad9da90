//! How long an enrollment refusal takes before the PIN is verified, for a corporation and user
//! that exist and for ones that do not: the gap an attacker would time to learn who exists.
//! Every refusal costs one argon2 verification (against a hash of a random PIN when there is no
//! permit), so the medians should be within noise of each other; before, an unknown user was
//! refused in ≈ 0.9 ms and a known one in ≈ 17 ms.
//!
//! Run: `cargo bench --bench pin_timing`. Shape: `enroll_refused/{known_user_wrong_pin,
//! unknown_user,unknown_corporation}`, one lifecycle on a temporary SQLite registry.

#![expect(
    missing_docs,
    reason = "criterion_group! generates an undocumented public function"
)]

use std::hint::black_box;

use certgate::lifecycle::{Actor, Context, KeySource, Lifecycle, Wiring};
use certgate::model::{Holder, Role};
use criterion::{Criterion, criterion_group, criterion_main};
use secrecy::SecretString;

const CORP: &str = "12345678901234";

fn csr() -> Vec<u8> {
    let key = rcgen::KeyPair::generate().expect("key");
    rcgen::CertificateParams::new(Vec::<String>::new())
        .expect("params")
        .serialize_request(&key)
        .expect("csr")
        .der()
        .to_vec()
}

fn setup(rt: &tokio::runtime::Runtime, dir: &std::path::Path) -> Lifecycle {
    let config = certgate::config::Config::parse(&format!(
        "[server]\ncert = \"a\"\nkey = \"b\"\n[store]\nurl = \"sqlite://{d}/r.db\"\n[pki]\ndir = \"{d}/pki\"\n",
        d = dir.display()
    ))
    .expect("config");
    rt.block_on(async {
        certgate::pki::Pki::init(
            certgate::pki::PkiSettings::from(&config.pki),
            certgate::model::now(),
        )
        .expect("pki");
        let lifecycle = certgate::serve::open_lifecycle(&config, Wiring::default())
            .await
            .expect("lifecycle");
        let ops = Context::operator();
        lifecycle
            .add_corporation(CORP, "Corp", "admin@corp.example", &ops)
            .await
            .expect("corporation");
        lifecycle
            .add_user(CORP, "taro", Role::General, None, &ops)
            .await
            .expect("user");
        // The administrator and taro enroll, so that a wrong PIN for taro meets a used permit:
        // refused after one PIN check, and nothing is counted or locked however often it runs.
        for holder in [Holder::admin(CORP), Holder::user(CORP, "taro")] {
            let pin = lifecycle
                .issue_permit(&holder, &ops)
                .await
                .expect("permit")
                .pin;
            let ctx = Context {
                actor: Actor::Enrollee(holder.clone()),
                client_addr: None,
            };
            lifecycle
                .enroll(holder, &pin, KeySource::Csr(csr()), &ctx)
                .await
                .expect("enrollment");
        }
        lifecycle
    })
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("temporary directory");
    let lifecycle = setup(&rt, dir.path());
    let request = csr();
    let wrong = SecretString::from("WRONG-PIN-123456".to_owned());
    let mut group = c.benchmark_group("enroll_refused");
    group.sample_size(20);
    // The unknown ones first, so that a machine warming up does not favour them.
    for (name, holder) in [
        (
            "unknown_corporation",
            Holder::user("99999999999999", "taro"),
        ),
        ("unknown_user", Holder::user(CORP, "nobody")),
        ("known_user_wrong_pin", Holder::user(CORP, "taro")),
    ] {
        let ctx = Context {
            actor: Actor::Enrollee(holder.clone()),
            client_addr: None,
        };
        group.bench_function(name, |b| {
            b.iter(|| {
                let refused = rt.block_on(lifecycle.enroll(
                    holder.clone(),
                    &wrong,
                    KeySource::Csr(request.clone()),
                    &ctx,
                ));
                black_box(refused.is_err())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
