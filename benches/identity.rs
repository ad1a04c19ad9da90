//! Identity from a client certificate: the per-connection work of the accept stage.
//!
//! Shape: one CA-signed ECDSA P-256 leaf (CN `12345678901234 taro`, O, a URI SAN), made with rcgen
//! at start-up; the default `[identity]` and `[headers]` config.
//!
//! - `identity/from_der`: `Identity::from_der` (X.509 parse, CN split by the template's regexes,
//!   serial, notAfter, RFC 4514 DNs, SANs): what a cache miss costs.
//! - `identity/render_headers`: `IdentityHeaders::render`, the per-certificate header values.
//! - `identity/fingerprint`: SHA-256 of the leaf DER, the cache key.
//! - `identity/cache_hit`: `IdentityCache::resolve` of a leaf already cached: what each new
//!   connection (full or resumed handshake) of a known certificate costs.
//! - `identity/cache_miss`: `IdentityCache::resolve` on a cache that cannot keep anything (first
//!   connection of a certificate: fingerprint + parse + render + insert).
//!
//! Run: `cargo bench --bench identity` (add `-- --quick` for a short run). `cargo test
//! --all-targets` only compiles it.

#![expect(
    missing_docs,
    reason = "criterion_group! generates an undocumented public function"
)]

use std::hint::black_box;

use certgate::config::Config;
use certgate::identity::{Identity, IdentityCache, IdentityHeaders, fingerprint};
use criterion::{Criterion, criterion_group, criterion_main};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    SanType,
};

fn leaf_der() -> Vec<u8> {
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca = CertificateParams::default();
    ca.distinguished_name
        .push(DnType::OrganizationName, "Bench Bank");
    ca.distinguished_name
        .push(DnType::OrganizationalUnitName, "Bench Internet Banking CA");
    ca.distinguished_name.push(DnType::CommonName, "Bench CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let issuer = Issuer::new(ca, ca_key);
    let mut leaf = CertificateParams::default();
    leaf.distinguished_name
        .push(DnType::OrganizationName, "Bench Bank");
    leaf.distinguished_name
        .push(DnType::CommonName, "12345678901234 taro");
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    leaf.subject_alt_names = vec![SanType::URI(
        "spiffe://bank/corp/12345678901234/taro"
            .try_into()
            .expect("URI"),
    )];
    leaf.signed_by(&KeyPair::generate().expect("leaf key"), &issuer)
        .expect("leaf")
        .der()
        .to_vec()
}

fn config() -> Config {
    Config::parse("[server]\ncert = \"unused\"\nkey = \"unused\"\n").expect("config")
}

fn bench(c: &mut Criterion) {
    let der = leaf_der();
    let config = config();
    let identity = Identity::from_der(&der, &config.identity).expect("identity");
    let mut group = c.benchmark_group("identity");
    group.bench_function("from_der", |b| {
        b.iter(|| Identity::from_der(black_box(&der), &config.identity))
    });
    group.bench_function("render_headers", |b| {
        b.iter(|| IdentityHeaders::render(black_box(&identity), &der, &config.headers))
    });
    group.bench_function("fingerprint", |b| b.iter(|| fingerprint(black_box(&der))));
    let cache = IdentityCache::new(config.identity.clone(), config.headers.clone(), 100_000);
    cache.resolve(&der);
    group.bench_function("cache_hit", |b| b.iter(|| cache.resolve(black_box(&der))));
    let no_room = IdentityCache::new(config.identity.clone(), config.headers.clone(), 0);
    group.bench_function("cache_miss", |b| {
        b.iter(|| no_room.resolve(black_box(&der)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
