//! One request: strip spoofed identity, authorize against the registry's standing, then either
//! hand it to certgate's own endpoints (`api`) or inject the identity and forward it; count, log.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, Version, header};
use http_body_util::{BodyExt as _, Either, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use super::forward::Upstream;
use super::own::OwnPaths;
use super::routes::Routes;
use super::{Connection, headers, policy, rescue};
use crate::config::{Config, ConfigError, LoginConfig, Route};
use crate::http::Body;
use crate::identity::{Caller, IdentityCache};
use crate::ops::{Metrics, RouteCounters};
use crate::revocation::Standing;

/// The most a login form body may hold: it is buffered to read two fields.
const MAX_LOGIN_FORM: usize = 64 * 1024;

/// Everything a request needs, shared by all connections.
pub struct Proxy {
    routes: Routes,
    route_counters: Vec<RouteCounters>,
    api_counters: RouteCounters,
    api_route: Route,
    identities: IdentityCache,
    upstream: Upstream,
    standing: Standing,
    own: Arc<dyn OwnPaths>,
    login: Option<LoginConfig>,
    metrics: Arc<Metrics>,
    access_log: bool,
}

impl Proxy {
    /// Builds the proxy from validated config.
    pub fn new(
        config: &Config,
        metrics: Arc<Metrics>,
        own: Arc<dyn OwnPaths>,
        standing: Standing,
    ) -> Result<Self, ConfigError> {
        let routes = Routes::new(config.routes.clone());
        let route_counters = routes
            .all()
            .iter()
            .map(|route| metrics.route(&route.path))
            .collect();
        Ok(Self {
            routes,
            route_counters,
            api_counters: metrics.route("/certgate"),
            // certgate's own endpoints authenticate each request themselves (HTTP Basic with a
            // temporary PIN for a first enrollment, the certificate otherwise).
            api_route: Route {
                path: "/certgate".to_owned(),
                require_cert: false,
            },
            identities: IdentityCache::new(
                config.identity.clone(),
                config.headers.clone(),
                100_000,
            ),
            upstream: Upstream::new(&config.upstream)?,
            standing,
            own,
            login: config.login.clone(),
            metrics,
            access_log: config.log.access,
        })
    }

    /// The identity cache (the accept stage resolves each connection's certificate through it).
    pub fn identities(&self) -> &IdentityCache {
        &self.identities
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Serves one request of `connection`.
    pub async fn handle(
        self: Arc<Self>,
        connection: Arc<Connection>,
        mut request: Request<Incoming>,
    ) -> Response<Body> {
        let started = Instant::now();
        let now = unix_now();
        let own = self.own.owns(request.uri().path());
        let route_index = self.routes.find(request.uri().path());
        let route = if own {
            &self.api_route
        } else {
            self.routes.get(route_index)
        };
        let names = self.identities.names();
        let spoofed = headers::strip_identity(request.headers_mut(), names);
        if !spoofed.is_empty() {
            tracing::warn!(peer = %connection.peer, headers = ?spoofed, "removed inbound identity headers set by the client");
        }
        let method = request.method().clone();
        let accept = request.headers().get(header::ACCEPT).cloned();
        let standing = self.standing.snapshot();

        let response = match policy::authorize(&connection.cert, route, now, &standing) {
            Err(denied) => {
                tracing::info!(peer = %connection.peer, route = %route.path, reason = ?denied, "request refused");
                rescue::denied(&denied, accept.as_ref())
            }
            Ok(permit) if own => {
                let identity = permit.identity.map(|resolved| &resolved.identity);
                let caller = Caller {
                    peer: connection.peer,
                    identity,
                    role: permit.role,
                    lifecycle_ca: permit.lifecycle_ca,
                };
                // Boxed: the API's future is large and would otherwise make every proxied
                // request's future as large, and copied as often.
                self.own.answer(caller, request).await
            }
            Ok(permit) => {
                self.forward(
                    &connection,
                    permit,
                    request,
                    accept.as_ref(),
                    now,
                    &standing,
                )
                .await
            }
        };
        // Borrowed from the connection: the access log costs no copy of the IDs.
        let (corp_id, user_id) = match &connection.cert {
            super::ClientCert::Verified { resolved, .. } => match resolved.as_ref() {
                Ok(resolved) => (
                    Some(resolved.identity.corp_id.as_str()),
                    resolved.identity.user_id.as_deref(),
                ),
                Err(_) => (None, None),
            },
            super::ClientCert::Absent => (None, None),
        };

        let status = response.status().as_u16();
        if own {
            self.api_counters.count(status);
        } else {
            self.route_counters[route_index.min(self.route_counters.len() - 1)].count(status);
        }
        if self.access_log {
            tracing::info!(
                target: "certgate::access",
                method = %method,
                route = %route.path,
                status,
                latency_ms = started.elapsed().as_secs_f64() * 1000.0,
                corp_id = corp_id.unwrap_or("-"),
                user_id = user_id.unwrap_or("-"),
                peer = %connection.peer,
            );
        }
        response
    }

    /// The application's side: login guard, identity headers, forwarding, upgrades.
    async fn forward(
        &self,
        connection: &Connection,
        permit: policy::Permit<'_>,
        mut request: Request<Incoming>,
        accept: Option<&header::HeaderValue>,
        now: i64,
        standing: &crate::revocation::Snapshot,
    ) -> Response<Body> {
        let upgrade =
            request.version() == Version::HTTP_11 && headers::is_upgrade(request.headers());
        headers::remove_hop_by_hop(request.headers_mut(), upgrade);
        let host = request.headers().get(header::HOST).cloned().or_else(|| {
            request
                .uri()
                .authority()
                .and_then(|a| header::HeaderValue::from_str(a.as_str()).ok())
        });
        // Room for the headers added next, at once rather than by repeated growth.
        request.headers_mut().reserve(16);
        headers::set_forwarded(request.headers_mut(), connection.peer, host);
        headers::inject_identity(request.headers_mut(), &permit, self.identities.names(), now);
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut request));

        let request = match &self.login {
            Some(login)
                if request.method() == Method::POST && request.uri().path() == login.path =>
            {
                match Box::pin(guard_login(login, &permit, request, standing)).await {
                    Ok(buffered) => buffered,
                    Err(refusal) => {
                        tracing::info!(peer = %connection.peer, reason = ?refusal, "login form refused");
                        return match refusal {
                            LoginRefusal::Denied(denied) => rescue::denied(&denied, accept),
                            LoginRefusal::Body(status, why) => {
                                rescue::bad_request(status, why, accept)
                            }
                        };
                    }
                }
            }
            _ => request.map(|body| Either::Left(Either::Left(body))),
        };

        let sent = Instant::now();
        match self.upstream.send(request).await {
            Ok(mut response) => {
                self.metrics
                    .upstream_latency
                    .observe(sent.elapsed().as_secs_f64());
                let switching = response.status() == StatusCode::SWITCHING_PROTOCOLS;
                if let (true, Some(client_side)) = (switching, client_upgrade) {
                    tunnel(client_side, hyper::upgrade::on(&mut response));
                }
                headers::remove_hop_by_hop(response.headers_mut(), switching);
                response
            }
            Err(err) => {
                tracing::warn!(peer = %connection.peer, error = %err, "upstream failed");
                rescue::upstream(&err, accept)
            }
        }
    }
}

#[derive(Debug)]
enum LoginRefusal {
    Denied(policy::Denied),
    Body(StatusCode, &'static str),
}

/// Reads the login form (small, capped) to compare its corporation and user with the
/// certificate, then hands the same bytes on.
async fn guard_login(
    login: &LoginConfig,
    permit: &policy::Permit<'_>,
    request: Request<Incoming>,
    standing: &crate::revocation::Snapshot,
) -> Result<Request<Body>, LoginRefusal> {
    let (parts, body) = request.into_parts();
    let bytes: Bytes = match Limited::new(body, MAX_LOGIN_FORM).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(err)
            if err
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            return Err(LoginRefusal::Body(
                StatusCode::PAYLOAD_TOO_LARGE,
                "The login form is larger than 64 KiB.",
            ));
        }
        Err(_) => {
            return Err(LoginRefusal::Body(
                StatusCode::BAD_REQUEST,
                "The login form could not be read.",
            ));
        }
    };
    let mut corp_id = None;
    let mut user_id = None;
    for (key, value) in form_urlencoded::parse(&bytes) {
        if key == login.corp_field.as_str() {
            corp_id = Some(value.into_owned());
        } else if key == login.user_field.as_str() {
            user_id = Some(value.into_owned());
        }
    }
    policy::authorize_login(permit, corp_id.as_deref(), user_id.as_deref(), standing)
        .map_err(LoginRefusal::Denied)?;
    Ok(Request::from_parts(parts, Either::Right(Full::new(bytes))))
}

/// Joins the client's and the application's upgraded connections (WebSocket and the like).
fn tunnel(client: hyper::upgrade::OnUpgrade, upstream: hyper::upgrade::OnUpgrade) {
    tokio::spawn(async move {
        match tokio::try_join!(client, upstream) {
            Ok((client, upstream)) => {
                let mut client = TokioIo::new(client);
                let mut upstream = TokioIo::new(upstream);
                if let Err(err) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
                    tracing::debug!(error = %err, "upgraded connection ended");
                }
            }
            Err(err) => tracing::warn!(error = %err, "protocol upgrade failed"),
        }
    });
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs() as i64)
}
