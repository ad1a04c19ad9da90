//! The client-certificate verifier: rustls' `WebPkiClientVerifier`, wrapped with a cache of
//! chains it already accepted, and which tells whether an accepted chain also ends at a CA
//! trusted for certgate's own operations (its CA generations, `[[trust.ca]]` with
//! `lifecycle = true`) or only for logging in to the application.
//!
//! What differs from the stock verifier: when the exact same leaf and intermediates (by SHA-256)
//! were verified before by this verifier — so against the same trust anchors, since a reload
//! builds a new verifier with an empty cache — the path building and the CA signature checks are
//! skipped. The validity period of every certificate in the chain is still checked against `now`
//! on each handshake, and the client must still prove it holds the key (the handshake signature
//! is verified every time). Revocation is not the verifier's business: it is checked per request.

use std::sync::Arc;
use std::time::Duration;

use moka::sync::Cache;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};
use rustls_pki_types::{CertificateDer, UnixTime};
use x509_parser::prelude::{FromDer, X509Certificate};

/// Seconds since the epoch during which a whole chain is valid, and whether it ends at a CA
/// trusted for certgate's own operations.
#[derive(Debug, Clone, Copy)]
struct ValidWindow {
    not_before: u64,
    not_after: u64,
    lifecycle: bool,
}

/// `WebPkiClientVerifier` plus a cache of verified chains.
#[derive(Debug)]
pub struct CachingClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    /// The same verifier over the CAs trusted for certgate's own operations only.
    lifecycle: Option<Arc<dyn ClientCertVerifier>>,
    verified: Cache<[u8; 32], ValidWindow>,
}

impl CachingClientVerifier {
    /// Wraps `inner`, remembering up to `capacity` verified chains for at most an hour each;
    /// `lifecycle` verifies against the CAs whose certificates may use certgate's own
    /// operations.
    pub fn new(
        inner: Arc<dyn ClientCertVerifier>,
        lifecycle: Option<Arc<dyn ClientCertVerifier>>,
        capacity: u64,
    ) -> Self {
        Self {
            inner,
            lifecycle,
            verified: Cache::builder()
                .max_capacity(capacity)
                .time_to_live(Duration::from_secs(3600))
                .build(),
        }
    }

    /// Whether a chain this verifier accepted also ends at a CA trusted for certgate's own
    /// operations (from the cache filled by the handshake; computed again if it aged out).
    pub fn is_lifecycle_chain(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
    ) -> bool {
        if let Some(window) = self.verified.get(&chain_key(end_entity, intermediates)) {
            return window.lifecycle;
        }
        self.verify_lifecycle(end_entity, intermediates, UnixTime::now())
    }

    fn verify_lifecycle(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> bool {
        self.lifecycle.as_ref().is_some_and(|lifecycle| {
            lifecycle
                .verify_client_cert(end_entity, intermediates, now)
                .is_ok()
        })
    }
}

fn chain_key(end_entity: &CertificateDer<'_>, intermediates: &[CertificateDer<'_>]) -> [u8; 32] {
    let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    // Length-prefixed, so that no two different chains hash the same bytes.
    for cert in std::iter::once(end_entity).chain(intermediates) {
        context.update(&(cert.len() as u64).to_be_bytes());
        context.update(cert.as_ref());
    }
    let mut key = [0u8; 32];
    key.copy_from_slice(context.finish().as_ref());
    key
}

/// The intersection of the validity periods of the chain's certificates.
fn valid_window(
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
) -> Option<ValidWindow> {
    let mut window = ValidWindow {
        not_before: 0,
        not_after: u64::MAX,
        lifecycle: false,
    };
    for der in std::iter::once(end_entity).chain(intermediates) {
        let (_, cert) = X509Certificate::from_der(der.as_ref()).ok()?;
        let validity = cert.validity();
        window.not_before = window
            .not_before
            .max(u64::try_from(validity.not_before.timestamp()).unwrap_or(0));
        window.not_after = window
            .not_after
            .min(u64::try_from(validity.not_after.timestamp()).unwrap_or(0));
    }
    Some(window)
}

impl ClientCertVerifier for CachingClientVerifier {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        let key = chain_key(end_entity, intermediates);
        let now_secs = now.as_secs();
        if let Some(window) = self.verified.get(&key) {
            return if now_secs < window.not_before {
                Err(Error::InvalidCertificate(CertificateError::NotValidYet))
            } else if now_secs > window.not_after {
                Err(Error::InvalidCertificate(CertificateError::Expired))
            } else {
                Ok(ClientCertVerified::assertion())
            };
        }
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        if let Some(mut window) = valid_window(end_entity, intermediates) {
            window.lifecycle = self.verify_lifecycle(end_entity, intermediates, now);
            self.verified.insert(key, window);
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    };
    use rustls::server::WebPkiClientVerifier;

    struct Setup {
        verifier: CachingClientVerifier,
        leaf: CertificateDer<'static>,
        other_ca_leaf: CertificateDer<'static>,
    }

    fn ca() -> (Issuer<'static, KeyPair>, CertificateDer<'static>) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, "CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        (Issuer::new(params, key), cert.der().clone())
    }

    fn leaf(issuer: &Issuer<'static, KeyPair>, days: i64) -> CertificateDer<'static> {
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, "12345678901234 taro");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + time::Duration::days(days);
        params
            .signed_by(&KeyPair::generate().unwrap(), issuer)
            .unwrap()
            .der()
            .clone()
    }

    fn setup() -> Setup {
        let (issuer, ca_der) = ca();
        let (other, _) = ca();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca_der).unwrap();
        let inner =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), crate::tls::provider())
                .build()
                .unwrap();
        Setup {
            verifier: CachingClientVerifier::new(inner, None, 100),
            leaf: leaf(&issuer, 10),
            other_ca_leaf: leaf(&other, 10),
        }
    }

    #[test]
    fn a_verified_chain_is_remembered_and_its_validity_still_checked() {
        let setup = setup();
        let now = UnixTime::now();
        setup
            .verifier
            .verify_client_cert(&setup.leaf, &[], now)
            .unwrap();
        assert_eq!(setup.verifier.verified.iter().count(), 1);
        // From the cache: still accepted now, refused once past notAfter.
        setup
            .verifier
            .verify_client_cert(&setup.leaf, &[], now)
            .unwrap();
        let later = UnixTime::since_unix_epoch(Duration::from_secs(now.as_secs() + 11 * 86_400));
        assert!(matches!(
            setup.verifier.verify_client_cert(&setup.leaf, &[], later),
            Err(Error::InvalidCertificate(CertificateError::Expired))
        ));
    }

    #[test]
    fn an_unverified_chain_is_never_cached() {
        let setup = setup();
        for _ in 0..2 {
            assert!(
                setup
                    .verifier
                    .verify_client_cert(&setup.other_ca_leaf, &[], UnixTime::now())
                    .is_err()
            );
        }
        assert_eq!(setup.verifier.verified.iter().count(), 0);
    }

    #[test]
    fn chain_key_depends_on_every_certificate() {
        let setup = setup();
        let alone = chain_key(&setup.leaf, &[]);
        let with_intermediate = chain_key(&setup.leaf, std::slice::from_ref(&setup.other_ca_leaf));
        assert_ne!(alone, with_intermediate);
    }
}
