//! `certgate client`: the seeds' "issuance application". It makes the key on the user's machine
//! (it never leaves), enrolls with the corporation ID, user ID and temporary PIN over the JSON
//! API, and renews inside the renewal window.
//!
//! Files are never left half-written or mismatched: the new key and certificate are first
//! written whole beside the old ones (`key.pem.new`, `cert.pem.new`), then renamed over them, key
//! first. A run interrupted between the two renames is finished by the next run. An enrollment
//! key is kept in `key.pem.pending` until its certificate is in place, so an interrupted
//! enrollment is retried with the same key, which the server answers with the same certificate
//! (within its `lifecycle.retry_window`).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Uri};
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rcgen::PublicKeyData as _;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::{BAD_INPUT, REFUSED};
use crate::pki::write_atomically;

/// How long one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// What went wrong, in one sentence for the user, with the exit code.
#[derive(Debug)]
pub struct ClientError {
    /// 2: the command line or a local file is unusable; 1: the server refused or was not reached.
    pub code: u8,
    /// One line.
    pub message: String,
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ClientError {}

fn input(message: impl Into<String>) -> ClientError {
    ClientError {
        code: BAD_INPUT,
        message: message.into(),
    }
}

fn refused(message: impl Into<String>) -> ClientError {
    ClientError {
        code: REFUSED,
        message: message.into(),
    }
}

/// The server and how to trust it.
pub struct Server {
    url: String,
    roots: Arc<rustls::RootCertStore>,
}

impl Server {
    /// `url` must be `https://host[:port]`; `ca` is a PEM file of CA certificates to trust for
    /// it, the system's roots when `None`.
    pub fn new(url: String, ca: Option<PathBuf>) -> Result<Self, ClientError> {
        let url = url.trim_end_matches('/').to_owned();
        let bad_url = || {
            input(format!(
                "--server {url}: use an https:// URL such as https://bank.example:8443"
            ))
        };
        let uri: Uri = url.parse().map_err(|_| bad_url())?;
        if uri.scheme_str() != Some("https") || uri.host().is_none() {
            return Err(bad_url());
        }
        let mut roots = rustls::RootCertStore::empty();
        match ca {
            Some(path) => {
                let certs = CertificateDer::pem_file_iter(&path)
                    .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                    .map_err(|err| input(format!("--ca {}: {err}", path.display())))?;
                if certs.is_empty() {
                    return Err(input(format!(
                        "--ca {}: no PEM certificate in it",
                        path.display()
                    )));
                }
                for cert in certs {
                    roots
                        .add(cert)
                        .map_err(|err| input(format!("--ca {}: {err}", path.display())))?;
                }
            }
            None => {
                for cert in rustls_native_certs::load_native_certs().certs {
                    let _ = roots.add(cert);
                }
                if roots.is_empty() {
                    return Err(input(
                        "no system CA certificates found; name the server's CA with --ca",
                    ));
                }
            }
        }
        Ok(Self {
            url,
            roots: Arc::new(roots),
        })
    }
}

/// The current certificate chain and key, for mTLS.
struct Identity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl Identity {
    fn load(cert: &Path, key: &Path) -> Result<Self, ClientError> {
        let chain = CertificateDer::pem_file_iter(cert)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|err| input(format!("--cert {}: {err}", cert.display())))?;
        if chain.is_empty() {
            return Err(input(format!(
                "--cert {}: no PEM certificate in it",
                cert.display()
            )));
        }
        let key = PrivateKeyDer::from_pem_file(key).map_err(|err| {
            input(format!(
                "--key {}: no usable private key: {err}",
                key.display()
            ))
        })?;
        Ok(Self { chain, key })
    }
}

/// One JSON request; returns the status and the parsed body (answer or problem).
async fn call(
    server: &Server,
    identity: Option<Identity>,
    method: Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> Result<(u16, serde_json::Value), ClientError> {
    let builder = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|err| refused(err.to_string()))?
        .with_root_certificates(server.roots.clone());
    let config = match identity {
        Some(Identity { chain, key }) => builder
            .with_client_auth_cert(chain, key)
            .map_err(|err| input(format!("--cert/--key: {err}")))?,
        None => builder.with_no_client_auth(),
    };
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_only()
        .enable_http1()
        .build();
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(https);
    let uri: Uri = format!("{}{path}", server.url)
        .parse()
        .map_err(|_| input(format!("--server {}: not a URL", server.url)))?;
    let payload = body.map(|body| body.to_string()).unwrap_or_default();
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .body(Full::new(Bytes::from(payload)))
        .map_err(|err| refused(err.to_string()))?;
    let exchange = async {
        let response = client.request(request).await.map_err(|err| {
            refused(format!(
                "cannot reach {}: {}",
                server.url,
                crate::model::error_chain(&err)
            ))
        })?;
        let status = response.status().as_u16();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|err| refused(format!("reading the answer of {}: {err}", server.url)))?
            .to_bytes();
        Ok::<_, ClientError>((status, bytes))
    };
    let (status, bytes) = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .map_err(|_| {
            refused(format!(
                "{} did not answer within {} s",
                server.url,
                REQUEST_TIMEOUT.as_secs()
            ))
        })??;
    let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    Ok((status, json))
}

/// A non-200 answer: the problem's `detail` (RFC 9457), else the status alone.
fn refusal(status: u16, json: &serde_json::Value) -> ClientError {
    let detail = json["detail"]
        .as_str()
        .or_else(|| json["title"].as_str())
        .unwrap_or("no detail");
    refused(format!("the server refused ({status}): {detail}"))
}

/// A new P-256 key.
fn new_key() -> Result<rcgen::KeyPair, ClientError> {
    rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|err| refused(format!("key generation: {err}")))
}

/// A CSR for `key` (its subject does not matter: the server sets it).
fn csr(key: &rcgen::KeyPair) -> Result<String, ClientError> {
    rcgen::CertificateParams::new(Vec::<String>::new())
        .and_then(|params| params.serialize_request(key))
        .and_then(|csr| csr.pem())
        .map_err(|err| refused(format!("certificate request: {err}")))
}

/// What the server issued, checked against our key.
struct Issued {
    /// Leaf then chain, PEM.
    cert_file: String,
    serial: String,
    not_after: String,
    subject: String,
}

fn issued(answer: &serde_json::Value, key: &rcgen::KeyPair) -> Result<Issued, ClientError> {
    let leaf = answer["certificate"]
        .as_str()
        .ok_or_else(|| refused("the server's answer has no certificate"))?;
    let der = CertificateDer::from_pem_slice(leaf.as_bytes())
        .map_err(|err| refused(format!("the server's certificate is not PEM: {err}")))?;
    let (_, parsed) = x509_parser::parse_x509_certificate(&der)
        .map_err(|err| refused(format!("the server's certificate is unreadable: {err}")))?;
    if parsed.public_key().raw != key.subject_public_key_info().as_slice() {
        return Err(refused(
            "the server's certificate is not for the key made here; nothing was written",
        ));
    }
    let chain = answer["chain"].as_str().unwrap_or("");
    let mut cert_file = leaf.to_owned();
    if !cert_file.ends_with('\n') {
        cert_file.push('\n');
    }
    cert_file.push_str(chain);
    Ok(Issued {
        cert_file,
        serial: answer["serial"]
            .as_str()
            .map_or_else(|| parsed.raw_serial_as_string(), str::to_owned),
        not_after: answer["not_after"].as_str().unwrap_or("?").to_owned(),
        subject: parsed.subject().to_string(),
    })
}

/// `path` with `suffix` appended to its file name.
fn beside(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

fn io_error(path: &Path, err: std::io::Error) -> ClientError {
    refused(format!("{}: {err}", path.display()))
}

/// Puts a matching certificate and key in place: both written whole as `.new` first, then
/// renamed over the old ones, key first (see [`finish_interrupted`]).
fn install(cert: &Path, cert_pem: &str, key: &Path, key_pem: &str) -> Result<(), ClientError> {
    let (cert_new, key_new) = (beside(cert, ".new"), beside(key, ".new"));
    write_atomically(&key_new, key_pem.as_bytes(), true).map_err(|e| io_error(&key_new, e))?;
    write_atomically(&cert_new, cert_pem.as_bytes(), false).map_err(|e| io_error(&cert_new, e))?;
    std::fs::rename(&key_new, key).map_err(|e| io_error(key, e))?;
    std::fs::rename(&cert_new, cert).map_err(|e| io_error(cert, e))?;
    for dir in [key.parent(), cert.parent()].into_iter().flatten() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        if let Ok(handle) = std::fs::File::open(dir) {
            let _ = handle.sync_all();
        }
    }
    Ok(())
}

/// Finishes an [`install`] that a crash interrupted: `cert.new` exists only once both new files
/// are whole, so it is completed; a lone `key.new` is from a run that never got that far and is
/// dropped. Returns a note when something was done.
fn finish_interrupted(cert: &Path, key: &Path) -> Result<Option<String>, ClientError> {
    let (cert_new, key_new) = (beside(cert, ".new"), beside(key, ".new"));
    if cert_new.exists() {
        if key_new.exists() {
            std::fs::rename(&key_new, key).map_err(|e| io_error(key, e))?;
        }
        std::fs::rename(&cert_new, cert).map_err(|e| io_error(cert, e))?;
        return Ok(Some(format!(
            "finished installing the certificate and key of an interrupted run into {} and {}",
            cert.display(),
            key.display()
        )));
    }
    if key_new.exists() {
        std::fs::remove_file(&key_new).map_err(|e| io_error(&key_new, e))?;
    }
    Ok(None)
}

/// `certgate client enroll`: writes `DIR/key.pem` (0600) and `DIR/cert.pem` (leaf + chain).
pub async fn enroll(
    server: &Server,
    corp_id: &str,
    user_id: Option<&str>,
    pin: &str,
    out: &Path,
) -> Result<String, ClientError> {
    let key_path = out.join("key.pem");
    let cert_path = out.join("cert.pem");
    if let Some(note) = finish_interrupted(&cert_path, &key_path)? {
        eprintln!("certgate: {note}");
    }
    // The key is on disk before the PIN is spent, so that an interrupted enrollment can be
    // retried with it.
    let pending = out.join("key.pem.pending");
    let key = match std::fs::read_to_string(&pending)
        .ok()
        .and_then(|pem| rcgen::KeyPair::from_pem(&pem).ok())
    {
        Some(key) => {
            eprintln!(
                "certgate: retrying with the key of an earlier, unfinished enrollment ({})",
                pending.display()
            );
            key
        }
        None => {
            let key = new_key()?;
            write_atomically(&pending, key.serialize_pem().as_bytes(), true)
                .map_err(|err| input(format!("--out {}: {err}", out.display())))?;
            key
        }
    };
    let mut body = serde_json::json!({ "corp_id": corp_id, "pin": pin, "csr": csr(&key)? });
    if let Some(user_id) = user_id {
        body["user_id"] = serde_json::Value::String(user_id.to_owned());
    }
    let (status, answer) = call(
        server,
        None,
        Method::POST,
        "/certgate/api/enroll",
        Some(body),
    )
    .await?;
    if status != 200 {
        return Err(refusal(status, &answer));
    }
    let issued = issued(&answer, &key)?;
    install(
        &cert_path,
        &issued.cert_file,
        &key_path,
        &key.serialize_pem(),
    )?;
    let _ = std::fs::remove_file(&pending);
    Ok(format!(
        "enrolled: {}\nserial {}, valid until {}\nwrote {} and {}",
        issued.subject,
        issued.serial,
        issued.not_after,
        cert_path.display(),
        key_path.display()
    ))
}

/// What one renewal check did.
#[derive(Debug)]
pub enum Renewal {
    /// Not inside the window yet: why, and when it opens.
    NotYet(String),
    /// Renewed.
    Renewed {
        /// The new serial.
        serial: String,
        /// Its notAfter.
        not_after: String,
    },
}

impl fmt::Display for Renewal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotYet(why) => write!(f, "not renewed: {why}"),
            Self::Renewed { serial, not_after } => write!(
                f,
                "renewed: new serial {serial}, valid until {not_after}; the certificate and key files were replaced"
            ),
        }
    }
}

/// `certgate client renew`: renews only inside the window, replacing both files.
pub async fn renew(server: &Server, cert: &Path, key: &Path) -> Result<Renewal, ClientError> {
    if let Some(note) = finish_interrupted(cert, key)? {
        eprintln!("certgate: {note}");
    }
    let (status, me) = call(
        server,
        Some(Identity::load(cert, key)?),
        Method::GET,
        "/certgate/api/me",
        None,
    )
    .await?;
    if status != 200 {
        return Err(refusal(status, &me));
    }
    if me["can_renew"] != serde_json::Value::Bool(true) {
        let status = me["status"].as_str().unwrap_or("?");
        let why = match me["renewal_opens"].as_str() {
            Some(opens) if status == "issued" => {
                format!("status issued; the renewal window opens {opens}")
            }
            _ => format!("status {status}; this certificate cannot be renewed"),
        };
        return Ok(Renewal::NotYet(why));
    }
    let new_key = new_key()?;
    let (status, answer) = call(
        server,
        Some(Identity::load(cert, key)?),
        Method::POST,
        "/certgate/api/renew",
        Some(serde_json::json!({ "csr": csr(&new_key)? })),
    )
    .await?;
    if status != 200 {
        return Err(refusal(status, &answer));
    }
    let issued = issued(&answer, &new_key)?;
    install(cert, &issued.cert_file, key, &new_key.serialize_pem())?;
    Ok(Renewal::Renewed {
        serial: issued.serial,
        not_after: issued.not_after,
    })
}

/// `--daemon`: checks every `interval`, forever. The files are checked once at the start (a
/// wrong path is an error then); after that a failed check is logged and retried next time.
pub async fn renew_daemon(
    server: &Server,
    cert: &Path,
    key: &Path,
    interval: Duration,
) -> Result<std::convert::Infallible, ClientError> {
    finish_interrupted(cert, key)?;
    Identity::load(cert, key)?;
    tracing::info!(
        cert = %cert.display(),
        every = %humantime::format_duration(interval),
        "renewal daemon started"
    );
    loop {
        match renew(server, cert, key).await {
            Ok(renewal @ Renewal::NotYet(_)) => tracing::info!(%renewal, "no renewal needed yet"),
            Ok(renewal @ Renewal::Renewed { .. }) => {
                tracing::info!(%renewal, "renewed; the new certificate and key are in place")
            }
            Err(err) => {
                tracing::warn!(error = %err, "renewal check failed; retrying at the next check")
            }
        }
        tokio::time::sleep(interval).await;
    }
}

/// `--interval`: a duration such as `12h` or `30s`.
pub fn parse_interval(text: &str) -> Result<Duration, ClientError> {
    match humantime::parse_duration(text) {
        Ok(interval) if !interval.is_zero() => Ok(interval),
        _ => Err(input(format!(
            "--interval {text:?}: use a duration such as 12h"
        ))),
    }
}

/// The PIN: `CERTGATE_PIN`, else asked on the terminal without echo.
pub fn read_pin() -> Result<String, ClientError> {
    if let Ok(pin) = std::env::var("CERTGATE_PIN") {
        if !pin.is_empty() {
            return Ok(pin);
        }
    }
    if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        return Err(input(
            "no PIN: set CERTGATE_PIN, or run in a terminal to be asked for it",
        ));
    }
    let pin = rpassword::prompt_password("Temporary PIN: ")
        .map_err(|err| input(format!("cannot read the PIN: {err}")))?;
    if pin.is_empty() {
        return Err(input("no PIN given"));
    }
    Ok(pin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls_must_be_https() {
        for bad in ["http://bank.example", "bank.example:8443", "https://", "::"] {
            let err = Server::new(bad.into(), None).err().unwrap();
            assert_eq!(err.code, BAD_INPUT, "{bad}");
            assert!(err.message.contains("https://"), "{}", err.message);
        }
    }

    #[test]
    fn an_interrupted_install_is_finished_or_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&cert, "old cert").unwrap();
        std::fs::write(&key, "old key").unwrap();

        // Crashed after writing key.new only: dropped, the old pair stays.
        std::fs::write(beside(&key, ".new"), "new key").unwrap();
        assert!(finish_interrupted(&cert, &key).unwrap().is_none());
        assert_eq!(std::fs::read_to_string(&key).unwrap(), "old key");
        assert!(!beside(&key, ".new").exists());

        // Crashed after the key's rename: the certificate follows.
        std::fs::write(&key, "new key").unwrap();
        std::fs::write(beside(&cert, ".new"), "new cert").unwrap();
        assert!(finish_interrupted(&cert, &key).unwrap().is_some());
        assert_eq!(std::fs::read_to_string(&cert).unwrap(), "new cert");

        // A whole install.
        install(&cert, "cert 3", &key, "key 3").unwrap();
        assert_eq!(std::fs::read_to_string(&cert).unwrap(), "cert 3");
        assert_eq!(std::fs::read_to_string(&key).unwrap(), "key 3");
        assert!(finish_interrupted(&cert, &key).unwrap().is_none());
    }
}
