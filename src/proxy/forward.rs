//! The pooled client to the application (or the built-in echo), with its timeouts.

use std::error::Error as _;
use std::time::Duration;

use http::uri::{Authority, Scheme};
use http::{Request, Response, Uri, Version, header};
use http_body_util::Either;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::ProxyBody;
use super::echo::echo_response;
use crate::config::{ConfigError, UpstreamConfig, UpstreamTarget};

/// Why the application gave no response.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// Refused, reset, unresolvable, TLS failure, or closed before answering.
    #[error("upstream unavailable: {0}")]
    Unavailable(String),
    /// No response head within `upstream.request_timeout`.
    #[error("upstream gave no response within {0:?}")]
    Timeout(Duration),
}

enum Target {
    Echo,
    Http {
        client: Box<Client<HttpsConnector<HttpConnector>, ProxyBody>>,
        scheme: Scheme,
        authority: Authority,
    },
}

/// Where requests are forwarded.
pub struct Upstream {
    target: Target,
    request_timeout: Duration,
}

impl Upstream {
    /// Builds the client from `[upstream]`.
    pub fn new(config: &UpstreamConfig) -> Result<Self, ConfigError> {
        let target = match &config.target {
            UpstreamTarget::Echo => Target::Echo,
            UpstreamTarget::Http(uri) => {
                let mut http = HttpConnector::new();
                http.enforce_http(false);
                http.set_nodelay(true);
                http.set_connect_timeout(Some(config.connect_timeout));
                let builder = hyper_rustls::HttpsConnectorBuilder::new();
                let builder = match &config.ca {
                    Some(ca_path) => {
                        let mut roots = rustls::RootCertStore::empty();
                        for cert in crate::tls::load_certs("upstream.ca", ca_path)? {
                            roots.add(cert).map_err(|err| {
                                ConfigError::new(
                                    "upstream.ca",
                                    format!("{} holds an unusable CA: {err}", ca_path.display()),
                                )
                            })?;
                        }
                        let tls =
                            rustls::ClientConfig::builder_with_provider(crate::tls::provider())
                                .with_safe_default_protocol_versions()
                                .map_err(|err| ConfigError::new("upstream.ca", err.to_string()))?
                                .with_root_certificates(roots)
                                .with_no_client_auth();
                        builder.with_tls_config(tls)
                    }
                    None => builder
                        .with_provider_and_native_roots(crate::tls::provider())
                        .map_err(|err| {
                            ConfigError::new(
                                "upstream.ca",
                                format!("no system CA certificates ({err}); set upstream.ca"),
                            )
                        })?,
                };
                let https = builder.https_or_http().enable_http1().wrap_connector(http);
                let client = Client::builder(TokioExecutor::new())
                    .pool_max_idle_per_host(config.pool_max_idle_per_host)
                    .pool_idle_timeout(config.pool_idle_timeout)
                    .pool_timer(TokioTimer::new())
                    .timer(TokioTimer::new())
                    .build(https);
                let scheme = uri.scheme().cloned().unwrap_or(Scheme::HTTP);
                let authority = uri.authority().cloned().ok_or_else(|| {
                    ConfigError::new("upstream.url", "has no host; give http://host:port")
                })?;
                Target::Http {
                    client: Box::new(client),
                    scheme,
                    authority,
                }
            }
        };
        Ok(Self {
            target,
            request_timeout: config.request_timeout,
        })
    }

    /// Sends `request` (headers already prepared) and returns the response head with its body
    /// still streaming.
    pub async fn send(
        &self,
        mut request: Request<ProxyBody>,
    ) -> Result<Response<ProxyBody>, UpstreamError> {
        let Target::Http {
            client,
            scheme,
            authority,
        } = &self.target
        else {
            return Ok(echo_response(request).await.map(Either::Right));
        };
        // The application sees the Host the client asked for (h2 carries it as :authority).
        if !request.headers().contains_key(header::HOST) {
            if let Some(host) = request
                .uri()
                .authority()
                .and_then(|a| header::HeaderValue::from_str(a.as_str()).ok())
            {
                request.headers_mut().insert(header::HOST, host);
            }
        }
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(scheme.clone());
        parts.authority = Some(authority.clone());
        parts.path_and_query = request
            .uri()
            .path_and_query()
            .cloned()
            .or_else(|| Some(http::uri::PathAndQuery::from_static("/")));
        *request.uri_mut() =
            Uri::from_parts(parts).map_err(|err| UpstreamError::Unavailable(err.to_string()))?;
        *request.version_mut() = Version::HTTP_11;
        match tokio::time::timeout(self.request_timeout, client.request(request)).await {
            Err(_) => Err(UpstreamError::Timeout(self.request_timeout)),
            Ok(Err(err)) => Err(UpstreamError::Unavailable(cause_chain(&err))),
            Ok(Ok(response)) => Ok(response.map(Either::Left)),
        }
    }
}

fn cause_chain(err: &hyper_util::client::legacy::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
