//! The rustls client side: the one `ClientConfig` every connection shares
//! (provider, cipher order, groups, client certificate, ALPN, resumption),
//! the memoising server-certificate verifier and the session-ticket store
//! for `resume`.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{Resumption, WebPkiServerVerifier};
use rustls::crypto::{SupportedKxGroup, aws_lc_rs};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

use crate::cli::{Cli, Mode, SetupError};

fn load_certs(flag: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, SetupError> {
    // Read first so a missing file says "No such file" rather than a PEM error.
    let data = std::fs::read(path).map_err(|e| SetupError::file(flag, path, e))?;
    let certs = CertificateDer::pem_slice_iter(&data)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| SetupError::file(flag, path, format!("bad PEM: {e}")))?;
    if certs.is_empty() {
        return Err(SetupError::file(flag, path, "no certificate found"));
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, SetupError> {
    let data = std::fs::read(path).map_err(|e| SetupError::file("key", path, e))?;
    PrivateKeyDer::from_pem_slice(&data).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => {
            SetupError::file("key", path, "no private key found")
        }
        e => SetupError::file("key", path, format!("bad PEM: {e}")),
    })
}

pub(crate) fn build_tls(cli: &Cli) -> Result<ClientConfig, SetupError> {
    let mut provider = aws_lc_rs::default_provider();
    if !cli.groups.is_empty() {
        let mut groups: Vec<&'static dyn SupportedKxGroup> = Vec::new();
        for g in &cli.groups {
            let kx = g.kx();
            if !groups.iter().any(|have| have.name() == kx.name()) {
                groups.push(kx);
            }
        }
        provider.kx_groups = groups;
    }
    // Browsers offer AES-128-GCM first and servers following the client's
    // order (rustls, OpenSSL by default) then pick it; rustls' own order puts
    // AES-256-GCM-SHA384 first, whose SHA-384 key schedule has no hardware
    // help on most x86 and costs both ends noticeably more per handshake.
    provider.cipher_suites.sort_by_key(|s| {
        use rustls::CipherSuite as C;
        let aes128 = matches!(
            s.suite(),
            C::TLS13_AES_128_GCM_SHA256
                | C::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
                | C::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
        );
        (s.version() != &rustls::version::TLS13, !aes128)
    });
    let mut roots = RootCertStore::empty();
    for cert in load_certs("ca", &cli.ca)? {
        roots.add(cert).map_err(|e| {
            SetupError::file("ca", &cli.ca, format!("unusable CA certificate: {e}"))
        })?;
    }
    let versions: &[&rustls::SupportedProtocolVersion] = if cli.tls13_only {
        &[&rustls::version::TLS13]
    } else {
        rustls::DEFAULT_VERSIONS
    };
    let provider = Arc::new(provider);
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| SetupError::Tls(e.to_string()))?;
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(|e| SetupError::Tls(e.to_string()))?
        // "dangerous" only because it is a custom verifier: it is the
        // standard WebPKI verifier with its chain result memoised.
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(CachingVerifier::new(webpki)));
    let mut config = match (&cli.cert, &cli.key) {
        (Some(cert), Some(key)) => {
            let chain = load_certs("cert", cert)?;
            let key_der = load_key(key)?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| SetupError::file("key", key, format!("does not fit --cert: {e}")))?
        }
        _ => builder.with_no_client_auth(),
    };
    config.resumption = match cli.mode {
        // Tickets are single-use in TLS 1.3 and rustls keeps only a few per
        // server, so concurrent workers would starve each other; a store
        // sized to the concurrency keeps every worker supplied.
        Mode::Resume => Resumption::store(Arc::new(TicketStore::new(
            (cli.concurrency as usize).saturating_mul(4).max(8),
        ))),
        Mode::Full | Mode::Keepalive | Mode::Idle => Resumption::disabled(),
    };
    config.alpn_protocols = if cli.http2 {
        vec![b"h2".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Ok(config)
}

/// How long a memoised chain verification stays valid; bounds how late an
/// expiry or a changed trust decision during a long run is noticed.
const REVERIFY_AFTER: Duration = Duration::from_secs(60);

/// WebPKI server verification with the chain result memoised. Chain
/// building costs a signature verification plus X.509 parsing per
/// handshake, about a sixth of the client's CPU in `full` mode, while the
/// server presents the same bytes every time. The per-handshake
/// CertificateVerify signature, which proves the server holds the key, is
/// still checked every time, so this is as safe as a browser's
/// certificate-verification cache.
#[derive(Debug)]
struct CachingVerifier {
    inner: Arc<WebPkiServerVerifier>,
    last_ok: Mutex<Option<VerifiedChain>>,
}

#[derive(Debug)]
struct VerifiedChain {
    end_entity: CertificateDer<'static>,
    intermediates: Vec<CertificateDer<'static>>,
    server_name: ServerName<'static>,
    at: Instant,
}

impl CachingVerifier {
    fn new(inner: Arc<WebPkiServerVerifier>) -> Self {
        Self {
            inner,
            last_ok: Mutex::new(None),
        }
    }
}

impl ServerCertVerifier for CachingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        {
            let guard = self.last_ok.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(v) = guard.as_ref() {
                if v.at.elapsed() < REVERIFY_AFTER
                    && v.end_entity.as_ref() == end_entity.as_ref()
                    && v.intermediates.len() == intermediates.len()
                    && v.intermediates
                        .iter()
                        .zip(intermediates)
                        .all(|(a, b)| a.as_ref() == b.as_ref())
                    && v.server_name == *server_name
                {
                    return Ok(ServerCertVerified::assertion());
                }
            }
        }
        let verified = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        let chain = VerifiedChain {
            end_entity: end_entity.clone().into_owned(),
            intermediates: intermediates
                .iter()
                .map(|c| c.clone().into_owned())
                .collect(),
            server_name: server_name.to_owned(),
            at: Instant::now(),
        };
        *self.last_ok.lock().unwrap_or_else(|p| p.into_inner()) = Some(chain);
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }

    fn root_hint_subjects(&self) -> Option<&[rustls::DistinguishedName]> {
        self.inner.root_hint_subjects()
    }
}

/// Client session store for the single server we talk to: like rustls'
/// in-memory cache but with a TLS 1.3 ticket queue as deep as we need.
#[derive(Debug)]
struct TicketStore {
    max_tickets: usize,
    inner: Mutex<TicketInner>,
}

#[derive(Debug, Default)]
struct TicketInner {
    kx_hint: Option<rustls::NamedGroup>,
    tls12: Option<rustls::client::Tls12ClientSessionValue>,
    tls13: VecDeque<rustls::client::Tls13ClientSessionValue>,
}

impl TicketStore {
    fn new(max_tickets: usize) -> Self {
        Self {
            max_tickets,
            inner: Mutex::new(TicketInner::default()),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut TicketInner) -> R) -> R {
        // A poisoned lock only means another worker panicked mid-update of a
        // cache; the data is still usable.
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }
}

impl rustls::client::ClientSessionStore for TicketStore {
    fn set_kx_hint(&self, _: ServerName<'static>, group: rustls::NamedGroup) {
        self.with(|i| i.kx_hint = Some(group));
    }
    fn kx_hint(&self, _: &ServerName<'_>) -> Option<rustls::NamedGroup> {
        self.with(|i| i.kx_hint)
    }
    fn set_tls12_session(
        &self,
        _: ServerName<'static>,
        v: rustls::client::Tls12ClientSessionValue,
    ) {
        self.with(|i| i.tls12 = Some(v));
    }
    fn tls12_session(&self, _: &ServerName<'_>) -> Option<rustls::client::Tls12ClientSessionValue> {
        self.with(|i| i.tls12.clone())
    }
    fn remove_tls12_session(&self, _: &ServerName<'static>) {
        self.with(|i| i.tls12 = None);
    }
    fn insert_tls13_ticket(
        &self,
        _: ServerName<'static>,
        v: rustls::client::Tls13ClientSessionValue,
    ) {
        let max = self.max_tickets;
        self.with(|i| {
            if i.tls13.len() >= max {
                i.tls13.pop_front();
            }
            i.tls13.push_back(v);
        });
    }
    fn take_tls13_ticket(
        &self,
        _: &ServerName<'static>,
    ) -> Option<rustls::client::Tls13ClientSessionValue> {
        // Newest first: the oldest tickets are the likeliest to have expired.
        self.with(|i| i.tls13.pop_back())
    }
}
