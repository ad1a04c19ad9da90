//! The per-request revocation check against a set of 1,000,000 revoked serials.
//!
//! Shape: 1 M distinct serials as certgate issues them (16 random bytes) of one issuer, loaded
//! into `revocation::Snapshot` (keyed by issuer and serial, in 64 copy-on-write shards with a
//! fixed hasher); lookups of a serial that is revoked (hit) and one that is not (miss, the normal
//! case). `std_hashset_*` is a bare std set of the same keys, for reference: the snapshot must
//! stay one hash lookup per request, whatever the number of revocations.
//! Building the 1 M set takes a few seconds before the first measurement.
//!
//! Run: `cargo bench --bench revocation` (add `-- --quick` for a short run). `cargo test
//! --all-targets` only compiles it.

#![expect(
    missing_docs,
    reason = "criterion_group! generates an undocumented public function"
)]

use std::collections::HashSet;
use std::hint::black_box;

use certgate::model::{IssuerKey, Serial};
use certgate::revocation::Snapshot;
use criterion::{Criterion, criterion_group, criterion_main};

const REVOKED: usize = 1_000_000;

/// Deterministic 16-byte serials (splitmix64), so that runs compare.
fn serials(count: usize, seed: u64) -> Vec<Serial> {
    let mut state = seed;
    let mut next = || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    (0..count)
        .map(|_| {
            let mut raw = [0u8; 16];
            raw[..8].copy_from_slice(&next().to_be_bytes());
            raw[8..].copy_from_slice(&next().to_be_bytes());
            Serial::from_be_bytes(&raw).expect("16 bytes")
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let revoked = serials(REVOKED, 1);
    let revoked_one = revoked[REVOKED / 2];
    let not_revoked = serials(1, 2).remove(0);
    let issuer = IssuerKey(0x0123_4567_89ab_cdef);
    let snapshot = Snapshot::with_revoked(revoked.iter().map(|serial| (issuer, *serial)));
    assert_eq!(snapshot.revoked_count(), REVOKED);
    let bare: HashSet<(IssuerKey, Serial)> =
        revoked.into_iter().map(|serial| (issuer, serial)).collect();

    let mut group = c.benchmark_group("revocation_1m");
    group.bench_function("snapshot_hit", |b| {
        b.iter(|| snapshot.is_revoked(black_box(issuer), black_box(&revoked_one)))
    });
    group.bench_function("snapshot_miss", |b| {
        b.iter(|| snapshot.is_revoked(black_box(issuer), black_box(&not_revoked)))
    });
    group.bench_function("std_hashset_miss", |b| {
        b.iter(|| bare.contains(black_box(&(issuer, not_revoked))))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
