//! TLS 1.3's key schedule with each HKDF-Extract done once.
//!
//! rustls' aws-lc-rs suites derive their secrets through aws-lc-rs' `hkdf::Prk`, which keeps the
//! salt and the input secret and runs the whole HKDF (Extract, then Expand) again for every
//! secret expanded from it, with the HMAC keys set up anew each time: a TLS 1.3 handshake expands
//! about twenty secrets, so a resumed handshake spent about a third of its instructions in
//! SHA-256. rustls' own `HkdfUsingHmac` extracts once and keys one HMAC for all the expansions
//! of a stage; it runs here on aws-lc-rs' HMAC. The result is the same RFC 5869 HKDF, byte for
//! byte (the tests below compare both), and the AEADs and hashes stay aws-lc-rs' own.

use std::sync::LazyLock;

use aws_lc_rs::hmac;
use rustls::crypto::hash::HashAlgorithm;
use rustls::crypto::hmac::{Hmac, Key, Tag};
use rustls::crypto::tls13::{Hkdf, HkdfUsingHmac};
use rustls::{CipherSuiteCommon, SupportedCipherSuite, Tls13CipherSuite};

/// aws-lc-rs' HMAC as rustls' [`Hmac`].
struct AwsLcHmac(&'static hmac::Algorithm);

impl Hmac for AwsLcHmac {
    fn with_key(&self, key: &[u8]) -> Box<dyn Key> {
        Box::new(AwsLcHmacKey(hmac::Key::new(*self.0, key)))
    }

    fn hash_output_len(&self) -> usize {
        self.0.digest_algorithm().output_len()
    }
}

/// A keyed HMAC: the key's inner and outer pads are hashed once, when it is made.
struct AwsLcHmacKey(hmac::Key);

impl Key for AwsLcHmacKey {
    fn sign_concat(&self, first: &[u8], middle: &[&[u8]], last: &[u8]) -> Tag {
        let mut context = hmac::Context::with_key(&self.0);
        context.update(first);
        for part in middle {
            context.update(part);
        }
        context.update(last);
        Tag::new(context.sign().as_ref())
    }

    fn tag_len(&self) -> usize {
        self.0.algorithm().digest_algorithm().output_len()
    }
}

static HMAC_SHA256: AwsLcHmac = AwsLcHmac(&hmac::HMAC_SHA256);
static HMAC_SHA384: AwsLcHmac = AwsLcHmac(&hmac::HMAC_SHA384);
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
}
