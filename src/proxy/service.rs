//! One request: check its framing, normalise its path, strip spoofed identity, authorize against
//! the registry's standing, then either hand it to certgate's own paths or guard the login form,
//! inject the identity and forward it; count, log.

use std::sync::Arc;
use std::time::Instant;

use http::uri::PathAndQuery;
use http::{Request, Response, StatusCode, Uri, Version, header};
use http_body_util::Either;
use hyper::body::Incoming;

use super::forward::Upstream;
use super::login::{LoginRefusal, guard_login, is_login_path};
use super::own::OwnPaths;
use super::routes::Routes;
use super::tunnel::tunnel;
use super::{ClientCert, Connection, headers, path, policy, rescue};
use crate::config::{Config, ConfigError, LoginConfig, OnStale, Route};
use crate::http::{Body, ClientBody, Kind, discard_before_refusal};
use crate::identity::{Caller, IdentityCache};
use crate::model::Clock;
use crate::ops::{Metrics, RouteCounters};
use crate::revocation::Standing;

/// Everything a request needs, shared by all connections.
pub struct Proxy {
    routes: Routes,
    route_counters: Vec<RouteCounters>,
    own_counters: RouteCounters,
    own_route: Route,
    identities: IdentityCache,
    upstream: Upstream,
    standing: Standing,
    own: Arc<dyn OwnPaths>,
    login: Option<LoginConfig>,
    /// `[notice] paths`: application pages where the own-paths service may show the renewal
    /// notice first.
    notice_paths: Vec<String>,
    /// `identity.corp_id`: what a corporation ID looks like, for the login guard.
    corp_pattern: regex::Regex,
    metrics: Arc<Metrics>,
    access_log: bool,
    clock: Arc<dyn Clock>,
    max_staleness: i64,
    on_stale: OnStale,
    /// `revocation.close_connections`.
    close_refused: bool,
}

impl Proxy {
    /// Builds the proxy from validated config.
    pub fn new(
        config: &Config,
        metrics: Arc<Metrics>,
        own: Arc<dyn OwnPaths>,
        standing: Standing,
        clock: Arc<dyn Clock>,
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
            own_counters: metrics.route("/certgate"),
            // certgate's own endpoints authenticate each request themselves (HTTP Basic with a
            // temporary PIN for a first enrollment, the certificate otherwise).
            own_route: Route {
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
            notice_paths: config.notice.paths.clone(),
            corp_pattern: config.identity.corp_id.clone(),
            metrics,
            access_log: config.log.access,
            clock,
            max_staleness: i64::try_from(config.revocation.max_staleness.as_secs())
                .unwrap_or(i64::MAX),
            on_stale: config.revocation.on_stale,
            close_refused: config.revocation.close_connections,
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

    /// With `revocation.close_connections`, a signal that turns true when the server drains (as
    /// `draining` does) or when the connection's certificate would be refused now (revoked, its
    /// user suspended, its corporation stopped): its keep-alive or h2 connection then finishes the
    /// request in flight and closes. Without it, `draining` as it is.
    pub fn closing_signal(
        &self,
        connection: &Arc<Connection>,
        mut draining: tokio::sync::watch::Receiver<bool>,
    ) -> tokio::sync::watch::Receiver<bool> {
        if !self.close_refused || !matches!(connection.cert, ClientCert::Verified { .. }) {
            return draining;
        }
        let (close, closing) = tokio::sync::watch::channel(false);
        let standing = self.standing.clone();
        let clock = self.clock.clone();
        let connection = connection.clone();
        // Any route that needs a certificate: the connection's standing, whatever it asks for.
        let route = Route {
            path: "/".to_owned(),
            require_cert: true,
        };
        tokio::spawn(async move {
            let mut changes = standing.changes();
            loop {
                tokio::select! {
                    _ = draining.wait_for(|draining| *draining) => break,
                    () = close.closed() => return,
                    changed = changes.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        let snapshot = standing.snapshot();
                        if let Err(denied) = policy::authorize(&connection.cert, &route, clock.unix(), &snapshot) {
                            tracing::info!(peer = %connection.peer, reason = ?denied, "closing a connection: its certificate is refused now");
                            break;
                        }
                    }
                }
            }
            let _ = close.send(true);
        });
        closing
    }

    /// Serves one request of `connection`.
    pub async fn handle(
        self: Arc<Self>,
        connection: Arc<Connection>,
        mut request: Request<Incoming>,
    ) -> Response<Body> {
        let started = Instant::now();
        let now = self.clock.unix();
        let accept = request.headers().get(header::ACCEPT).cloned();
        if let Err(why) = headers::check_framing(&request, self.identities.names()) {
            tracing::info!(peer = %connection.peer, reason = why, "request refused: framing");
            discard_before_refusal(request.into_body()).await;
            return rescue::bad_request(StatusCode::BAD_REQUEST, why, accept.as_ref());
        }
        if request.method() == http::Method::CONNECT {
            tracing::info!(peer = %connection.peer, "request refused: CONNECT");
            discard_before_refusal(request.into_body()).await;
            return rescue::connect_refused(accept.as_ref());
        }
        // Decide on the path the application will serve, and forward that path.
        let uri = request.uri().clone();
        let matching = match path::normalise(uri.path()) {
            Ok(normal) => {
                if let std::borrow::Cow::Owned(forward) = &normal.forward {
                    match with_path(&uri, forward) {
                        Some(rewritten) => *request.uri_mut() = rewritten,
                        None => {
                            return rescue::bad_request(
                                StatusCode::BAD_REQUEST,
                                "The request path cannot be normalised.",
                                accept.as_ref(),
                            );
                        }
                    }
                }
                normal.matching
            }
            Err(why) => {
                tracing::info!(peer = %connection.peer, path = %uri.path(), reason = ?why, "request refused: path");
                discard_before_refusal(request.into_body()).await;
                return rescue::bad_request(StatusCode::BAD_REQUEST, why.detail(), accept.as_ref());
            }
        };
        let own = self.own.owns(&matching);
        let route_index = self.routes.find(&matching);
        let route = if own {
            &self.own_route
        } else {
            self.routes.get(route_index)
        };
        let names = self.identities.names();
        let spoofed = headers::strip_identity(request.headers_mut(), names);
        if !spoofed.is_empty() {
            tracing::warn!(peer = %connection.peer, headers = ?spoofed, "removed inbound identity headers set by the client");
        }
        let method = request.method().clone();
        let standing = self.standing.snapshot();

        let authorized = if self.refuses_stale(&connection.cert, now, &standing) {
            Err(Refusal::Stale)
        } else {
            policy::authorize(&connection.cert, route, now, &standing).map_err(Refusal::Denied)
        };
        let response = match authorized {
            Err(refusal) => {
                tracing::info!(peer = %connection.peer, route = %route.path, reason = ?refusal, "request refused");
                discard_before_refusal(request.into_body()).await;
                match refusal {
                    Refusal::Denied(denied) => {
                        if matches!(denied, policy::Denied::Revoked { .. }) {
                            self.metrics.revocation.refused_revoked.inc();
                        }
                        rescue::denied(&denied, accept.as_ref())
                    }
                    Refusal::Stale => stale_refusal(accept.as_ref()),
                }
            }
            Ok(permit) if own => {
                let identity = permit.identity.map(|resolved| &resolved.identity);
                let caller = Caller {
                    peer: connection.peer,
                    identity,
                    role: permit.role,
                    lifecycle_ca: permit.lifecycle_ca,
                    body_stall: connection.body_stall,
                };
                self.own.answer(caller, request).await
            }
            Ok(policy::Permit {
                identity: Some(resolved),
                renewed: true,
                ..
            }) if !own => {
                tracing::info!(peer = %connection.peer, route = %route.path, "request refused: the certificate was renewed");
                discard_before_refusal(request.into_body()).await;
                let serial = resolved.identity.serial;
                rescue::denied(&policy::Denied::Renewed { serial }, accept.as_ref())
            }
            Ok(permit) => {
                let notice = if permit.identity.is_some()
                    && matches!(method, http::Method::GET | http::Method::HEAD)
                    && self.notice_paths.iter().any(|path| *path == *matching)
                {
                    let caller = Caller {
                        peer: connection.peer,
                        identity: permit.identity.map(|resolved| &resolved.identity),
                        role: permit.role,
                        lifecycle_ca: permit.lifecycle_ca,
                        body_stall: connection.body_stall,
                    };
                    self.own.notice(caller, &request)
                } else {
                    None
                };
                if let Some(notice) = notice {
                    notice
                } else {
                    let login = self
                        .login
                        .as_ref()
                        .filter(|login| is_login_path(login, &matching));
                    self.forward(
                        &connection,
                        route,
                        permit,
                        login,
                        request,
                        accept.as_ref(),
                        now,
                        &standing,
                    )
                    .await
                }
            }
        };
        // Borrowed from the connection: the access log costs no copy of the IDs.
        let (corp_id, user_id) = match &connection.cert {
            ClientCert::Verified { resolved, .. } => match resolved.as_ref() {
                Ok(resolved) => (
                    Some(resolved.identity.corp_id.as_str()),
                    resolved.identity.user_id.as_deref(),
                ),
                Err(_) => (None, None),
            },
            ClientCert::Absent => (None, None),
        };

        let status = response.status().as_u16();
        if own {
            self.own_counters.count(status);
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

    /// Whether this request must be refused because the revocation set is too old to trust:
    /// only certificate-authenticated requests depend on it.
    fn refuses_stale(
        &self,
        cert: &ClientCert,
        now: i64,
        standing: &crate::revocation::Snapshot,
    ) -> bool {
        let ClientCert::Verified { resolved, .. } = cert else {
            return false;
        };
        self.on_stale == OnStale::Reject
            && (self.standing.age(now) > self.max_staleness
                || resolved
                    .as_ref()
                    .as_ref()
                    .is_ok_and(|resolved| standing.crl_is_stale(resolved.identity.issuer, now)))
    }

    /// The application's side: login guard, identity headers, forwarding, upgrades.
    #[expect(
        clippy::too_many_arguments,
        reason = "the request's decided state, handed from one stage to the next"
    )]
    async fn forward(
        &self,
        connection: &Arc<Connection>,
        route: &Route,
        permit: policy::Permit<'_>,
        login: Option<&LoginConfig>,
        mut request: Request<Incoming>,
        accept: Option<&header::HeaderValue>,
        now: i64,
        standing: &crate::revocation::Snapshot,
    ) -> Response<Body> {
        let upgrade = request.version() == Version::HTTP_11
            && headers::is_websocket_upgrade(request.headers());
        headers::remove_hop_by_hop(request.headers_mut(), upgrade);
        if request.version() == Version::HTTP_2 {
            headers::for_http1(request.headers_mut());
        }
        let host = request.headers().get(header::HOST).cloned().or_else(|| {
            request
                .uri()
                .authority()
                .and_then(|a| header::HeaderValue::from_str(a.as_str()).ok())
        });
        // Room for the headers added next, at once rather than by repeated growth.
        request.headers_mut().reserve(16);
        headers::set_forwarded(request.headers_mut(), &connection.forwarded_for, host);
        headers::inject_identity(request.headers_mut(), &permit, self.identities.names(), now);
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut request));

        let request = match login {
            Some(login) => match Box::pin(guard_login(
                login,
                &self.corp_pattern,
                connection.body_stall,
                &permit,
                request,
                standing,
            ))
            .await
            {
                Ok(buffered) => buffered,
                Err(refusal) => {
                    tracing::info!(peer = %connection.peer, reason = ?refusal, "login form refused");
                    return match refusal {
                        LoginRefusal::Denied(denied) => rescue::denied(&denied, accept),
                        LoginRefusal::Body(status, why) => rescue::bad_request(status, why, accept),
                    };
                }
            },
            None => {
                let stall = connection.body_stall;
                request.map(|body| Either::Left(Either::Left(ClientBody::new(body, stall))))
            }
        };

        let sent = Instant::now();
        match self.upstream.send(request).await {
            Ok(mut response) => {
                self.metrics
                    .upstream_latency
                    .observe(sent.elapsed().as_secs_f64());
                let switching = response.status() == StatusCode::SWITCHING_PROTOCOLS;
                // A switch nobody asked for, or to another protocol than WebSocket, would join
                // the client to the application with nothing checking what passes.
                if switching
                    && (client_upgrade.is_none()
                        || !headers::is_websocket_upgrade(response.headers()))
                {
                    tracing::warn!(peer = %connection.peer, "the application switched protocols unasked; answered 502");
                    return rescue::upstream_switched(accept);
                }
                if let (true, Some(client_side)) = (switching, client_upgrade) {
                    tunnel(
                        client_side,
                        hyper::upgrade::on(&mut response),
                        connection.clone(),
                        route.clone(),
                        self.standing.clone(),
                        self.clock.clone(),
                    );
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

/// Why a request is refused before it reaches anything.
#[derive(Debug)]
enum Refusal {
    Denied(policy::Denied),
    /// The revocation set is older than `revocation.max_staleness` and `on_stale` is `reject`.
    Stale,
}

fn stale_refusal(accept: Option<&header::HeaderValue>) -> Response<Body> {
    let mut response = Kind::STALE
        .detail("certgate cannot confirm right now that your certificate has not been revoked. Please try again in a minute.")
        .respond(accept);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from_static("30"));
    response
}

/// `uri` with its path replaced by `path` (the query kept).
fn with_path(uri: &Uri, path: &str) -> Option<Uri> {
    let path_and_query = match uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path.to_owned(),
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(PathAndQuery::try_from(path_and_query).ok()?);
    Uri::from_parts(parts).ok()
}
