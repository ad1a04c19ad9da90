//! Where requests go: the application (through [`super::pool`], with the request timeout and the
//! origin-form target) or the built-in echo.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt as _;
use futures_util::future::Either as Sending;

use http::uri::{Authority, Scheme};
use http::{Request, Response, header};
use http_body_util::Either;
use rustls_pki_types::ServerName;

use super::echo::echo_response;
use super::headers::Injected;
use super::pool::{Pool, Transport};
use crate::config::{ConfigError, UpstreamConfig, UpstreamTarget};
use crate::http::Body;

/// Why the application gave no response.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// Refused, reset, unresolvable, TLS failure, or closed before answering.
    #[error("upstream unavailable: {0}")]
    Unavailable(String),
    /// No response head within `upstream.request_timeout`.
    #[error("upstream gave no response within {0:?}")]
    Timeout(Duration),
    /// The client stopped sending its request body (the application was not at fault).
    #[error("the client stopped sending its request body")]
    ClientStalled,
}

/// Whether `err`, or one of its causes, is a client's stalled body.
fn client_stalled(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(err);
    while let Some(current) = cause {
        if current.is::<crate::http::BodyStalled>() {
            return true;
        }
        cause = current.source();
    }
    false
}

enum Target {
    Echo,
    Http {
        pool: Arc<Pool>,
        /// The application's `host:port`, its `Host` when the client sent none.
        authority: Authority,
    },
}

/// Where requests are forwarded.
pub struct Upstream {
    target: Target,
    request_timeout: Duration,
}

impl Upstream {
    /// `upstream.request_timeout`: also the longest a WebSocket tunnel may carry nothing.
    pub(super) fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// Builds the client from `[upstream]`.
    pub fn new(config: &UpstreamConfig) -> Result<Self, ConfigError> {
        let target = match &config.target {
            UpstreamTarget::Echo => Target::Echo,
            UpstreamTarget::Http(uri) => {
                let scheme = uri.scheme().cloned().unwrap_or(Scheme::HTTP);
                let authority = uri.authority().cloned().ok_or_else(|| {
                    ConfigError::new("upstream.url", "has no host; give http://host:port")
                })?;
                let https = scheme == Scheme::HTTPS;
                let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
                // IPv6 literals keep their brackets, as `TcpStream::connect` wants them.
                let address = format!("{}:{port}", authority.host());
                let transport = if https {
                    let host = authority
                        .host()
                        .trim_start_matches('[')
                        .trim_end_matches(']');
                    let server_name = ServerName::try_from(host.to_owned()).map_err(|_| {
                        ConfigError::new("upstream.url", format!("{host} is not a valid TLS name"))
                    })?;
                    Transport::Tls {
                        connector: tokio_rustls::TlsConnector::from(Arc::new(tls_client(config)?)),
                        server_name,
                    }
                } else {
                    Transport::Plain
                };
                Target::Http {
                    pool: Arc::new(Pool::new(
                        address,
                        transport,
                        config.connect_timeout,
                        config.pool_max_idle_per_host,
                        config.pool_idle_timeout,
                        config.request_timeout,
                    )),
                    authority,
                }
            }
        };
        Ok(Self {
            target,
            request_timeout: config.request_timeout,
        })
    }

    /// Sends `request` (its headers already cleaned) with the headers certgate adds, and
    /// returns the response head with its body still streaming. The request is readied here;
    /// the future only sends it (see [`Pool::send`] on why it is not an `async fn`). `sent`
    /// starts the request timeout (the caller times the exchange from it as well: one reading
    /// of the clock for both).
    pub(super) fn send(
        &self,
        mut request: Request<Body>,
        mut injected: Injected,
        sent: std::time::Instant,
    ) -> impl Future<Output = Result<Response<Body>, UpstreamError>> + Send + use<> {
        // The application sees the Host the client asked for (h2 carries it as :authority), or
        // the application's own authority when the client sent none; the echo shows the same.
        let Target::Http { pool, authority } = &self.target else {
            if !request.headers().contains_key(header::HOST) {
                if let Some(host) = request
                    .uri()
                    .authority()
                    .and_then(|a| header::HeaderValue::from_str(a.as_str()).ok())
                {
                    request.headers_mut().insert(header::HOST, host);
                }
            }
            injected.insert_into(request.headers_mut());
            return Sending::Left(
                Box::pin(echo_response(request)).map(|echoed| Ok(echoed.map(Either::Right))),
            );
        };
        if !request.headers().contains_key(header::HOST) {
            let host = request.uri().authority().unwrap_or(authority);
            injected.host(host.as_str().as_bytes());
        }
        // The request line is origin-form (`GET /path HTTP/1.1`), as an application behind a
        // proxy expects, whatever form the client used: the pool writes the path and query
        // alone ([`crate::http::client::encode_head`]).
        let limit = self.request_timeout;
        let sending = Box::pin(pool.clone().send(request, injected));
        Sending::Right(
            match tokio::time::Instant::from_std(sent).checked_add(limit) {
                Some(deadline) => tokio::time::timeout_at(deadline, sending),
                // Beyond the clock's range: tokio's own `timeout` then waits for ever.
                None => tokio::time::timeout(limit, sending),
            }
            .map(move |sent| match sent {
                Err(_) => Err(UpstreamError::Timeout(limit)),
                Ok(Err(err)) if client_stalled(&err) => Err(UpstreamError::ClientStalled),
                Ok(Err(err)) => Err(UpstreamError::Unavailable(crate::model::error_chain(&err))),
                Ok(Ok(response)) => Ok(response.map(|body| Either::Left(Either::Right(body)))),
            }),
        )
    }
}

/// The TLS client for an `https://` application: `upstream.ca` when set, else the system's CAs.
fn tls_client(config: &UpstreamConfig) -> Result<rustls::ClientConfig, ConfigError> {
    let mut roots = rustls::RootCertStore::empty();
    match &config.ca {
        Some(ca_path) => {
            for cert in crate::tls::load_certs("upstream.ca", ca_path)? {
                roots.add(cert).map_err(|err| {
                    ConfigError::new(
                        "upstream.ca",
                        format!("{} holds an unusable CA: {err}", ca_path.display()),
                    )
                })?;
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(native.certs);
            if added == 0 {
                return Err(ConfigError::new(
                    "upstream.ca",
                    "no system CA certificates found; set upstream.ca",
                ));
            }
        }
    }
    let mut tls = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|err| ConfigError::new("upstream.ca", err.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tls)
}
