//! The listener's rustls configuration: server certificate, client-certificate verification over
//! every trusted CA generation, ALPN, session tickets, and hot reload.

mod hkdf;
mod tickets;
mod verifier;

pub use tickets::{KeyFile, SharedTicketer, read_key_file, write_key_file};
pub use verifier::CachingClientVerifier;

use std::io;
use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{CertificateError, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::{ClientAuth, Config, ConfigError, TrustCa};

/// The crypto provider used everywhere: aws-lc-rs, passed explicitly so that no process-wide
/// default (or a second provider pulled in by another crate) decides.
/// Its TLS 1.3 suites extract each HKDF secret once ([`hkdf`]).
pub fn provider() -> Arc<CryptoProvider> {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider.cipher_suites = hkdf::single_extract(&provider.cipher_suites);
    Arc::new(provider)
}

/// Reads a PEM certificate chain; the error names `key`.
pub fn load_certs(key: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let bytes = read(key, path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| {
            ConfigError::new(key, format!("{} is not valid PEM: {err}", path.display()))
        })?;
    if certs.is_empty() {
        return Err(ConfigError::new(
            key,
            format!(
                "{} holds no CERTIFICATE block; give a PEM certificate file",
                path.display()
            ),
        ));
    }
    Ok(certs)
}

/// Reads a PEM private key; the error names `key` but never shows the key's bytes.
pub fn load_key(key: &str, path: &Path) -> Result<PrivateKeyDer<'static>, ConfigError> {
    let bytes = read(key, path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|_| {
        ConfigError::new(
            key,
            format!(
                "{} holds no usable private key; give a PEM PKCS#8, PKCS#1 or SEC1 key",
                path.display()
            ),
        )
    })
}

fn read(key: &str, path: &Path) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|err| {
        ConfigError::new(
            key,
            format!(
                "cannot read {}: {err}; check the path and its permissions",
                path.display()
            ),
        )
    })
}

/// Every trust anchor from `[[trust.ca]]`, each file possibly holding several generations.
pub fn load_roots(trust: &[TrustCa]) -> Result<RootCertStore, ConfigError> {
    let mut roots = RootCertStore::empty();
    for (index, ca) in trust.iter().enumerate() {
        let key = format!("trust.ca[{index}].cert");
        for cert in load_certs(&key, &ca.cert)? {
            roots.add(cert).map_err(|err| {
                ConfigError::new(
                    &key,
                    format!(
                        "{} holds a certificate that is not a usable CA: {err}",
                        ca.cert.display()
                    ),
                )
            })?;
        }
    }
    Ok(roots)
}

/// The client verifier, or `None` when no certificate is asked for.
fn client_verifier(
    config: &Config,
    extra_anchors: &[CertificateDer<'static>],
) -> Result<Option<Arc<CachingClientVerifier>>, ConfigError> {
    if config.server.client_auth == ClientAuth::None {
        return Ok(None);
    }
    let mut roots = load_roots(&config.trust)?;
    let mut lifecycle_roots = load_roots(
        &config
            .trust
            .iter()
            .filter(|ca| ca.lifecycle)
            .cloned()
            .collect::<Vec<_>>(),
    )?;
    for anchor in extra_anchors {
        for store in [&mut roots, &mut lifecycle_roots] {
            store.add(anchor.clone()).map_err(|err| {
                ConfigError::new(
                    "pki.dir",
                    format!("a CA generation is not a usable trust anchor: {err}"),
                )
            })?;
        }
    }
    if roots.is_empty() {
        return Err(ConfigError::new(
            "trust.ca",
            "no CA is trusted; add a [[trust.ca]] or run `certgate init`",
        ));
    }
    // The stock webpki verifier checks the chain, the validity period, and that an EKU, when
    // present, allows clientAuth; certgate only adds a cache of chains it already accepted.
    let build = |roots: RootCertStore| {
        let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
        let builder = match config.server.client_auth {
            ClientAuth::Optional => builder.allow_unauthenticated(),
            _ => builder,
        };
        builder.build().map_err(|err| {
            ConfigError::new(
                "trust.ca",
                format!("cannot build the client verifier: {err}"),
            )
        })
    };
    let lifecycle = if lifecycle_roots.is_empty() {
        None
    } else {
        Some(build(lifecycle_roots)?)
    };
    Ok(Some(Arc::new(CachingClientVerifier::new(
        build(roots)?,
        lifecycle,
        100_000,
    ))))
}

/// The listener's rustls config and its client verifier (to ask which chains may use
/// certgate's own operations).
#[derive(Clone)]
pub struct Listener {
    /// For the handshake.
    pub config: Arc<ServerConfig>,
    /// The verifier inside it; `None` when no client certificate is asked for.
    pub verifier: Option<Arc<CachingClientVerifier>>,
}

impl Listener {
    /// Whether the CAs trusted now still accept a chain. A resumed TLS session skips chain
    /// verification (it was verified when the session was made): with shared ticket keys a
    /// session outlives reloads, so a resumed chain is checked here against the current trust.
    pub fn accepts_now(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
    ) -> bool {
        self.verifier.as_ref().is_none_or(|verifier| {
            verifier
                .verify_client_cert(end_entity, intermediates, rustls_pki_types::UnixTime::now())
                .is_ok()
        })
    }

    /// Whether a chain the handshake accepted may use certgate's own operations.
    pub fn is_lifecycle_chain(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
    ) -> bool {
        self.verifier
            .as_ref()
            .is_some_and(|verifier| verifier.is_lifecycle_chain(end_entity, intermediates))
    }
}

/// The shared session ticket keys of `server.ticket_keys`, if set.
pub fn shared_ticketer(config: &Config) -> Result<Option<Arc<SharedTicketer>>, ConfigError> {
    config
        .server
        .ticket_keys
        .as_deref()
        .map(SharedTicketer::open)
        .transpose()
}

/// Builds the listener's rustls config from the files the config names.
/// `extra_anchors` are certgate's own CA generations, trusted automatically (for login and for
/// certgate's own operations); `tickets`, the keys shared by every replica (else per-process
/// keys, new with each build).
pub fn server_config(
    config: &Config,
    extra_anchors: &[CertificateDer<'static>],
    tickets: Option<&Arc<SharedTicketer>>,
) -> Result<Listener, ConfigError> {
    let chain = load_certs("server.cert", &config.server.cert)?;
    let key = load_key("server.key", &config.server.key)?;
    let provider = provider();
    let certified = CertifiedKey::from_der(chain, key, &provider).map_err(|err| {
        ConfigError::new("server.key", format!("cannot be used with server.cert: {err}; give the key that belongs to the certificate"))
    })?;
    certified.keys_match().map_err(|_| {
        ConfigError::new(
            "server.key",
            format!(
                "{} does not belong to the certificate in {}; give the matching key",
                config.server.key.display(),
                config.server.cert.display()
            ),
        )
    })?;
    let verifier = client_verifier(config, extra_anchors)?;
    let as_dyn: Arc<dyn ClientCertVerifier> = match &verifier {
        Some(verifier) => verifier.clone(),
        None => WebPkiClientVerifier::no_client_auth(),
    };
    let mut server = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|err| ConfigError::new("server", format!("TLS versions: {err}")))?
        .with_client_cert_verifier(as_dyn)
        .with_cert_resolver(Arc::new(SingleCertAndKey::from(certified)));
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    // Stateless TLS 1.3 tickets: resumption without a shared cache. Without shared keys, a new
    // ticketer per build means a reload (say, a CA removed from trust) also ends resumption of
    // sessions made before it; with them, the accept stage checks a resumed chain against the
    // CAs trusted now.
    let keys: Arc<dyn rustls::server::ProducesTickets> = match tickets {
        Some(shared) => shared.clone(),
        None => tickets::process_ticketer(config.server.ticket_lifetime)?,
    };
    server.ticketer = Arc::new(tickets::Dated::new(keys, config.server.ticket_lifetime));
    server.send_tls13_tickets = 1;
    server.session_storage = rustls::server::ServerSessionMemoryCache::new(10_240);
    Ok(Listener {
        config: Arc::new(server),
        verifier,
    })
}

/// The current listener config; replaced as a whole on reload, read lock-free per connection.
pub struct ReloadableTls {
    current: ArcSwap<Listener>,
    tickets: Option<Arc<SharedTicketer>>,
}

impl ReloadableTls {
    /// Holds `initial` as the current config; `tickets`, the shared keys it was built with.
    pub fn new(initial: Listener, tickets: Option<Arc<SharedTicketer>>) -> Self {
        Self {
            current: ArcSwap::from_pointee(initial),
            tickets,
        }
    }

    /// The config for the next handshake.
    pub fn current(&self) -> Arc<Listener> {
        self.current.load_full()
    }

    /// Rebuilds from the files and swaps it in; on error the old config stays.
    pub fn reload(
        &self,
        config: &Config,
        extra_anchors: &[CertificateDer<'static>],
    ) -> Result<(), ConfigError> {
        if let Some(tickets) = &self.tickets {
            tickets.reload_if_changed();
        }
        let fresh = server_config(config, extra_anchors, self.tickets.as_ref())?;
        self.current.store(Arc::new(fresh));
        Ok(())
    }
}

/// The outcome of one handshake, as counted in `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeOutcome {
    /// A verified client certificate naming a caller.
    Ok,
    /// No client certificate.
    NoCert,
    /// The chain does not lead to a trusted CA.
    UnknownCa,
    /// Outside its validity period.
    Expired,
    /// An EKU that does not allow clientAuth.
    BadEku,
    /// A CN outside the configured layout.
    BadCn,
    /// Anything else (protocol errors, timeouts, resets).
    Other,
}

impl HandshakeOutcome {
    /// Every outcome, for pre-registering metrics.
    pub const ALL: [Self; 7] = [
        Self::Ok,
        Self::NoCert,
        Self::UnknownCa,
        Self::Expired,
        Self::BadEku,
        Self::BadCn,
        Self::Other,
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::NoCert => "no_cert",
            Self::UnknownCa => "unknown_ca",
            Self::Expired => "expired",
            Self::BadEku => "bad_eku",
            Self::BadCn => "bad_cn",
            Self::Other => "other",
        }
    }

    /// Classifies a failed handshake from the error tokio-rustls returned.
    pub fn of_error(err: &io::Error) -> Self {
        let Some(tls) = err
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        else {
            return Self::Other;
        };
        match tls {
            rustls::Error::NoCertificatesPresented => Self::NoCert,
            rustls::Error::InvalidCertificate(cert) => match cert {
                CertificateError::UnknownIssuer
                | CertificateError::BadSignature
                | CertificateError::UnhandledCriticalExtension => Self::UnknownCa,
                CertificateError::Expired
                | CertificateError::ExpiredContext { .. }
                | CertificateError::NotValidYet
                | CertificateError::NotValidYetContext { .. } => Self::Expired,
                CertificateError::InvalidPurpose
                | CertificateError::InvalidPurposeContext { .. } => Self::BadEku,
                _ => Self::Other,
            },
            _ => Self::Other,
        }
    }
}
