//! TLS 1.3's key schedule with each HKDF-Extract done once.
//!
//! rustls' aws-lc-rs suites derive their secrets through aws-lc-rs' `hkdf::Prk`, which keeps the
//! salt and the input secret and runs the whole HKDF (Extract, then Expand) again for every
//! secret expanded from it, with the HMAC keys set up anew each time: a TLS 1.3 handshake expands
//! about twenty secrets, so a resumed handshake spent about a third of its instructions in
//! SHA-256. rustls' own `HkdfUsingHmac` extracts once and keys one HMAC for all the expansions
//! of a stage. Its HMAC here is the `hmac` and `sha2` crates' (SHA-NI when the CPU has it), not
//! aws-lc-rs': each of a handshake's ≈ 30 tags then starts from a copy of the keyed state by
//! value, where aws-lc-rs copied and set up a heap context (≈ 5 % of a resumed handshake's CPU in
//! `HMAC_CTX_*`, beside the hashing itself). The result is the same RFC 5869 HKDF, byte for byte
//! (the tests below compare both), and the AEADs, the transcript's hash and the tickets stay
//! aws-lc-rs' own.

use std::sync::LazyLock;

use hmac::digest::block_api::EagerHash;
use hmac::digest::zeroize::{Zeroize as _, ZeroizeOnDrop};
use hmac::digest::{Digest, Key as MacKey, KeyInit, Mac};
use rustls::crypto::hash::HashAlgorithm;
use rustls::crypto::hmac::{Hmac, Key, Tag};
use rustls::crypto::tls13::{Hkdf, HkdfUsingHmac};
use rustls::{CipherSuiteCommon, SupportedCipherSuite, Tls13CipherSuite};
use sha2::{Sha256, Sha384};

/// HMAC-SHA-256 or HMAC-SHA-384 as rustls' [`Hmac`].
enum KeyedOnce {
    Sha256,
    Sha384,
}

impl Hmac for KeyedOnce {
    fn with_key(&self, key: &[u8]) -> Box<dyn Key> {
        Box::new(match self {
            Self::Sha256 => Keyed::Sha256(keyed::<Sha256>(key)),
            Self::Sha384 => Keyed::Sha384(keyed::<Sha384>(key)),
        })
    }

    fn hash_output_len(&self) -> usize {
        match self {
            Self::Sha256 => <Sha256 as Digest>::output_size(),
            Self::Sha384 => <Sha384 as Digest>::output_size(),
        }
    }
}

/// An HMAC whose key's inner and outer pads were hashed once, when it was made; each tag starts
/// from a copy of that state by value. Its state is wiped when dropped (`sha2`'s `zeroize`).
enum Keyed {
    Sha256(hmac::Hmac<Sha256>),
    Sha384(hmac::Hmac<Sha384>),
}

/// RFC 2104's keyed HMAC. The key is padded (or, longer than a block, hashed) to the hash's
/// block here rather than by `new_from_slice`, whose `Result` could only be unwrapped: TLS 1.3's
/// keys are never longer than the hash's output, but the whole rule costs nothing. The padded
/// copy of the key is wiped once used, as aws-lc wiped its own.
fn keyed<D: EagerHash + Digest>(key: &[u8]) -> hmac::Hmac<D> {
    let mut block = MacKey::<hmac::Hmac<D>>::default();
    if key.len() > block.len() {
        let mut hashed = D::digest(key);
        if let Some(start) = block.get_mut(..hashed.len()) {
            start.copy_from_slice(&hashed);
        }
        hashed.as_mut_slice().zeroize();
    } else if let Some(start) = block.get_mut(..key.len()) {
        start.copy_from_slice(key);
    }
    let keyed = hmac::Hmac::<D>::new(&block);
    block.as_mut_slice().zeroize();
    keyed
}

/// `Keyed`'s states are wiped on drop only if the hashes' states are (`sha2`'s `zeroize`
/// feature): this stops the build if that feature is ever lost.
const _: () = {
    const fn wiped_on_drop<T: ZeroizeOnDrop>() {}
    wiped_on_drop::<Sha256>();
    wiped_on_drop::<Sha384>();
};

fn tag<M: Mac + Clone>(keyed: &M, first: &[u8], middle: &[&[u8]], last: &[u8]) -> Tag {
    let mut mac = keyed.clone();
    mac.update(first);
    for part in middle {
        mac.update(part);
    }
    mac.update(last);
    Tag::new(mac.finalize().as_bytes())
}

impl Key for Keyed {
    fn sign_concat(&self, first: &[u8], middle: &[&[u8]], last: &[u8]) -> Tag {
        match self {
            Self::Sha256(keyed) => tag(keyed, first, middle, last),
            Self::Sha384(keyed) => tag(keyed, first, middle, last),
        }
    }

    fn tag_len(&self) -> usize {
        match self {
            Self::Sha256(_) => <Sha256 as Digest>::output_size(),
            Self::Sha384(_) => <Sha384 as Digest>::output_size(),
        }
    }
}

static HMAC_SHA256: KeyedOnce = KeyedOnce::Sha256;
static HMAC_SHA384: KeyedOnce = KeyedOnce::Sha384;
static HKDF_SHA256: HkdfUsingHmac<'static> = HkdfUsingHmac(&HMAC_SHA256);
static HKDF_SHA384: HkdfUsingHmac<'static> = HkdfUsingHmac(&HMAC_SHA384);

/// `suites` with every TLS 1.3 suite's HKDF replaced (made once per process: the suites must be
/// `'static`, and a reload builds its provider again).
pub(super) fn single_extract(suites: &[SupportedCipherSuite]) -> Vec<SupportedCipherSuite> {
    static REPLACED: LazyLock<Vec<(SupportedCipherSuite, SupportedCipherSuite)>> =
        LazyLock::new(|| {
            rustls::crypto::aws_lc_rs::ALL_CIPHER_SUITES
                .iter()
                .map(|suite| (*suite, replaced(*suite)))
                .collect()
        });
    suites
        .iter()
        .map(|suite| {
            REPLACED
                .iter()
                .find(|(original, _)| original.suite() == suite.suite())
                .map_or(*suite, |(_, replaced)| *replaced)
        })
        .collect()
}

fn replaced(suite: SupportedCipherSuite) -> SupportedCipherSuite {
    let SupportedCipherSuite::Tls13(tls13) = suite else {
        return suite;
    };
    let hkdf: &'static dyn Hkdf = match tls13.common.hash_provider.algorithm() {
        HashAlgorithm::SHA256 => &HKDF_SHA256,
        HashAlgorithm::SHA384 => &HKDF_SHA384,
        _ => return suite,
    };
    SupportedCipherSuite::Tls13(Box::leak(Box::new(Tls13CipherSuite {
        common: CipherSuiteCommon {
            suite: tls13.common.suite,
            hash_provider: tls13.common.hash_provider,
            confidentiality_limit: tls13.common.confidentiality_limit,
        },
        hkdf_provider: hkdf,
        aead_alg: tls13.aead_alg,
        quic: tls13.quic,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The expansions of a TLS 1.3 stage, from both implementations, for each hash.
    #[test]
    fn the_same_bytes_as_aws_lc_rs_hkdf() {
        for original in rustls::crypto::aws_lc_rs::ALL_CIPHER_SUITES {
            let Some(tls13) = original.tls13() else {
                continue;
            };
            let ours = single_extract(&[*original]);
            let ours = ours[0].tls13().expect("still TLS 1.3");
            assert!(!std::ptr::addr_eq(ours.hkdf_provider, tls13.hkdf_provider));
            for (salt, secret) in [
                (None, &b"input keying material"[..]),
                (Some(&b"a salt"[..]), &b"another secret"[..]),
            ] {
                let theirs = tls13.hkdf_provider.extract_from_secret(salt, secret);
                let mine = ours.hkdf_provider.extract_from_secret(salt, secret);
                for info in [&[&b"tls13 c hs traffic"[..]][..], &[b"a", b"b", b""]] {
                    assert_eq!(
                        theirs.expand_block(info).as_ref(),
                        mine.expand_block(info).as_ref()
                    );
                    let (mut a, mut b) = ([0u8; 80], [0u8; 80]);
                    theirs.expand_slice(info, &mut a).expect("80 bytes");
                    mine.expand_slice(info, &mut b).expect("80 bytes");
                    assert_eq!(a, b);
                }
                let block = theirs.expand_block(&[b"finished"]);
                assert_eq!(
                    tls13
                        .hkdf_provider
                        .hmac_sign(&block, b"transcript")
                        .as_ref(),
                    ours.hkdf_provider.hmac_sign(&block, b"transcript").as_ref()
                );
            }
            let zero_theirs = tls13.hkdf_provider.extract_from_zero_ikm(Some(b"derived"));
            let zero_mine = ours.hkdf_provider.extract_from_zero_ikm(Some(b"derived"));
            assert_eq!(
                zero_theirs.expand_block(&[b"x"]).as_ref(),
                zero_mine.expand_block(&[b"x"]).as_ref()
            );
        }
    }

    /// Keys of every length, from none to longer than either hash's block (hashed first, RFC
    /// 2104), give aws-lc-rs' tags.
    #[test]
    fn tags_match_aws_lc_rs_for_keys_of_every_length() {
        use aws_lc_rs::hmac as theirs;
        for (ours, algorithm) in [
            (&HMAC_SHA256, theirs::HMAC_SHA256),
            (&HMAC_SHA384, theirs::HMAC_SHA384),
        ] {
            for len in [0, 1, 32, 48, 63, 64, 65, 127, 128, 129, 300] {
                let key: Vec<u8> = (0..len)
                    .map(|i: usize| (i.wrapping_mul(7) + 3).to_le_bytes()[0])
                    .collect();
                let expected =
                    theirs::sign(&theirs::Key::new(algorithm, &key), b"first middle last");
                let tag =
                    ours.with_key(&key)
                        .sign_concat(b"first", &[b" ", b"middle", b" "], b"last");
                assert_eq!(tag.as_ref(), expected.as_ref(), "key of {len} bytes");
                assert_eq!(ours.with_key(&key).tag_len(), expected.as_ref().len());
            }
        }
    }
}
