//! One request: check its framing, normalise its path, strip spoofed identity, authorize against
//! the registry's standing, then either hand it to certgate's own paths or guard the login form,
//! inject the identity and forward it; count, log.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use futures_util::FutureExt as _;
use futures_util::future::Either as Stage;

use http::uri::PathAndQuery;
use http::{Request, Response, StatusCode, Uri, Version, header};
use http_body_util::Either;
use hyper::body::Incoming;

use super::forward::{Upstream, UpstreamError};
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
    login: Option<Arc<LoginConfig>>,
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
    /// The first look at inbound header names for spoofed identity.
    screen: headers::Screen,
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
            login: config.login.clone().map(Arc::new),
            notice_paths: config.notice.paths.clone(),
            corp_pattern: config.identity.corp_id.clone(),
            metrics,
            access_log: config.log.access,
            clock,
            max_staleness: i64::try_from(config.revocation.max_staleness.as_secs())
                .unwrap_or(i64::MAX),
            on_stale: config.revocation.on_stale,
            close_refused: config.revocation.close_connections,
            screen: headers::Screen::new(&config.headers),
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

    /// Serves one request of `connection`. Every check runs here, before the future is made,
    /// so that the future holds only the stage that waits (the application's answer, certgate's
    /// own, or a refused body read away) and none of the checks' state: hyper boxes it per
    /// request, so its whole size is copied per request. The application's exchange is built
    /// from combinators, not nested `async fn`s, each of which would hold the request once more
    /// beside the future it awaits; the rarer stages are boxed on their own.
    pub fn handle(
        self: Arc<Self>,
        connection: Arc<Connection>,
        request: Request<Incoming>,
        survey: headers::Survey,
    ) -> impl Future<Output = Response<Body>> + Send + 'static {
        let started = self.access_log.then(Instant::now);
        let (next, account) = self.decide(&connection, request, survey);
        let answer = match next {
            Next::Answer(response) => Stage::Left(std::future::ready(Outcome::Answered(response))),
            Next::Forward(request, forwarding, injected) => {
                Stage::Right(Stage::Left(self.exchange(request, forwarding, injected)))
            }
            Next::Wait(waiting) => Stage::Right(Stage::Right(Box::pin(
                self.clone().wait(connection.clone(), waiting),
            ))),
        };
        answer.map(move |outcome| {
            let response = match outcome {
                Outcome::Answered(response) => response,
                Outcome::Exchanged {
                    answered,
                    forwarding,
                    sent,
                } => self.received(&connection, answered, forwarding, sent),
            };
            self.account(&connection, account.as_ref(), started, response)
        })
    }

    /// What one pass over `request`'s headers finds, for [`Self::handle`] (and for the
    /// connection, which needs to know whether the client asked to close it).
    pub fn survey<B>(&self, request: &Request<B>) -> headers::Survey {
        headers::Survey::of(request.headers(), &self.screen)
    }

    /// The checks, in order: framing, path, spoofed identity, authorization; then what comes
    /// next. An [`Account`] comes with every request that got as far as its route.
    fn decide(
        &self,
        connection: &Connection,
        mut request: Request<Incoming>,
        mut survey: headers::Survey,
    ) -> (Next, Option<Account>) {
        let now = self.clock.unix();
        let accept = survey.accept.take();
        if let Err(why) = headers::check_framing(&request, &survey, self.identities.names()) {
            tracing::info!(peer = %connection.peer, reason = why, "request refused: framing");
            let refusal = rescue::bad_request(StatusCode::BAD_REQUEST, why, accept.as_ref());
            return (
                Next::Wait(Waiting::Refuse(request.into_body(), refusal)),
                None,
            );
        }
        if request.method() == http::Method::CONNECT {
            tracing::info!(peer = %connection.peer, "request refused: CONNECT");
            let refusal = rescue::connect_refused(accept.as_ref());
            return (
                Next::Wait(Waiting::Refuse(request.into_body(), refusal)),
                None,
            );
        }
        // Decide on the path the application will serve, and forward that path.
        let uri = request.uri().clone();
        let matching = match path::normalise(uri.path()) {
            Ok(normal) => {
                if let std::borrow::Cow::Owned(forward) = &normal.forward {
                    match with_path(&uri, forward) {
                        Some(rewritten) => *request.uri_mut() = rewritten,
                        None => {
                            let refusal = rescue::bad_request(
                                StatusCode::BAD_REQUEST,
                                "The request path cannot be normalised.",
                                accept.as_ref(),
                            );
                            return (Next::Answer(refusal), None);
                        }
                    }
                }
                normal.matching
            }
            Err(why) => {
                tracing::info!(peer = %connection.peer, path = %uri.path(), reason = ?why, "request refused: path");
                let refusal =
                    rescue::bad_request(StatusCode::BAD_REQUEST, why.detail(), accept.as_ref());
                return (
                    Next::Wait(Waiting::Refuse(request.into_body(), refusal)),
                    None,
                );
            }
        };
        let own = self.own.owns(&matching);
        let route_index = self.routes.find(&matching);
        let route = if own {
            &self.own_route
        } else {
            self.routes.get(route_index)
        };
        if survey.suspect {
            let names = self.identities.names();
            let spoofed = headers::strip_identity(request.headers_mut(), names);
            if !spoofed.is_empty() {
                tracing::warn!(peer = %connection.peer, headers = ?spoofed, "removed inbound identity headers set by the client");
                // What follows reads the headers as they leave: `headers.strip` may name
                // `Host` or `Cookie`. (A rare path: a client sent a header it may not.)
                survey = headers::Survey::of(request.headers(), &self.screen);
            }
        }
        let account = Some(Account {
            own,
            route_index,
            method: request.method().clone(),
        });
        let standing = self.standing.snapshot();

        let authorized = if self.refuses_stale(&connection.cert, now, &standing) {
            Err(Refusal::Stale)
        } else {
            policy::authorize(&connection.cert, route, now, &standing).map_err(Refusal::Denied)
        };
        let next = match authorized {
            Err(refusal) => {
                tracing::info!(peer = %connection.peer, route = %route.path, reason = ?refusal, "request refused");
                let response = match refusal {
                    Refusal::Denied(denied) => {
                        if matches!(denied, policy::Denied::Revoked { .. }) {
                            self.metrics.revocation.refused_revoked.inc();
                        }
                        rescue::denied(&denied, accept.as_ref())
                    }
                    Refusal::Stale => stale_refusal(accept.as_ref()),
                };
                Next::Wait(Waiting::Refuse(request.into_body(), response))
            }
            Ok(permit) if own => Next::Wait(Waiting::Own(request, Authorized::of(&permit))),
            Ok(policy::Permit {
                identity: Some(resolved),
                renewed: true,
                ..
            }) => {
                tracing::info!(peer = %connection.peer, route = %route.path, "request refused: the certificate was renewed");
                let serial = resolved.identity.serial;
                let response = rescue::denied(&policy::Denied::Renewed { serial }, accept.as_ref());
                Next::Wait(Waiting::Refuse(request.into_body(), response))
            }
            Ok(permit) => {
                let notice = if permit.identity.is_some()
                    && matches!(request.method(), &http::Method::GET | &http::Method::HEAD)
                    && self.notice_paths.iter().any(|path| *path == *matching)
                {
                    self.own
                        .notice(Authorized::of(&permit).caller(connection), &request)
                } else {
                    None
                };
                match notice {
                    Some(notice) => Next::Answer(notice),
                    None => {
                        let login = self
                            .login
                            .as_ref()
                            .filter(|login| is_login_path(login, &matching))
                            .map(|login| LoginGuard {
                                login: login.clone(),
                                standing: arc_swap::Guard::into_inner(standing),
                                authorized: Authorized::of(&permit),
                            });
                        let forwarding = Forwarding {
                            route_index,
                            accept,
                            client_upgrade: None,
                        };
                        // An h2 request names its host in `:authority` (the URI), whose
                        // characters the URI's parser has already limited to those a header
                        // line may carry.
                        let host = survey
                            .host
                            .as_ref()
                            .map(header::HeaderValue::as_bytes)
                            .or_else(|| request.uri().authority().map(|a| a.as_str().as_bytes()));
                        let injected = headers::Injected::new(
                            &permit,
                            self.identities.names(),
                            now,
                            &connection.forwarded_for,
                            host,
                        );
                        self.prepare(connection, request, &survey, forwarding, injected, login)
                    }
                }
            }
        };
        (next, account)
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

    /// The application's side, before anything is sent: hop-by-hop headers removed, an h2
    /// request's fields made HTTP/1.1's, a WebSocket upgrade's client side; the headers
    /// certgate adds come `injected`. A login form is guarded next, everything else forwarded.
    fn prepare(
        &self,
        connection: &Connection,
        mut request: Request<Incoming>,
        survey: &headers::Survey,
        mut forwarding: Forwarding,
        injected: headers::Injected,
        login: Option<LoginGuard>,
    ) -> Next {
        // `X-Forwarded-Host` was read before this removal; the two agree, since `check_framing`
        // refuses a `Connection` header that lists `Host`.
        let upgrade = request.version() == Version::HTTP_11
            && survey.connection
            && survey.upgrade
            && headers::is_websocket_upgrade(request.headers());
        headers::remove_hop_by_hop(request.headers_mut(), upgrade);
        if request.version() == Version::HTTP_2 {
            headers::for_http1(request.headers_mut(), survey);
        }
        forwarding.client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut request));
        match login {
            Some(LoginGuard {
                login,
                standing,
                authorized,
            }) => Next::Wait(Waiting::Login {
                login,
                request,
                authorized,
                forwarding,
                injected,
                standing,
            }),
            None => {
                let stall = connection.body_stall;
                let request =
                    request.map(|body| Either::Left(Either::Left(ClientBody::new(body, stall))));
                Next::Forward(request, forwarding, injected)
            }
        }
    }

    /// Sends a prepared request to the application; what [`Self::received`] needs comes back
    /// with the answer, so that this future holds no handle on the proxy or the connection.
    fn exchange(
        &self,
        request: Request<Body>,
        forwarding: Forwarding,
        injected: headers::Injected,
    ) -> impl Future<Output = Outcome> + Send + use<> {
        let sent = Instant::now();
        self.upstream
            .send(request, injected, sent)
            .map(move |answered| Outcome::Exchanged {
                answered,
                forwarding,
                sent,
            })
    }

    /// The application's answer: timed, a protocol switch checked and tunnelled, hop-by-hop
    /// headers removed; or why there is none.
    fn received(
        &self,
        connection: &Arc<Connection>,
        answered: Result<Response<Body>, UpstreamError>,
        forwarding: Forwarding,
        sent: Instant,
    ) -> Response<Body> {
        let accept = forwarding.accept.as_ref();
        match answered {
            Ok(mut response) => {
                self.metrics
                    .upstream_latency
                    .observe(sent.elapsed().as_secs_f64());
                let switching = response.status() == StatusCode::SWITCHING_PROTOCOLS;
                // A switch nobody asked for, or to another protocol than WebSocket, would join
                // the client to the application with nothing checking what passes.
                if switching
                    && (forwarding.client_upgrade.is_none()
                        || !headers::is_websocket_upgrade(response.headers()))
                {
                    tracing::warn!(peer = %connection.peer, "the application switched protocols unasked; answered 502");
                    return rescue::upstream_switched(accept);
                }
                let switched = match response.body_mut() {
                    Either::Left(Either::Right(upstream)) if switching => upstream.take_switched(),
                    _ => None,
                };
                if let (Some(upstream_side), Some(client_side)) =
                    (switched, forwarding.client_upgrade)
                {
                    tunnel(
                        client_side,
                        upstream_side,
                        connection.clone(),
                        self.routes.get(forwarding.route_index).clone(),
                        self.standing.clone(),
                        self.clock.clone(),
                        self.upstream.request_timeout(),
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

    /// The stages that wait on something else than the application's answer: a refused body
    /// read away, certgate's own answer, the login form read and checked.
    async fn wait(self: Arc<Self>, connection: Arc<Connection>, waiting: Waiting) -> Outcome {
        match waiting {
            Waiting::Refuse(body, response) => {
                discard_before_refusal(body).await;
                Outcome::Answered(response)
            }
            Waiting::Own(request, authorized) => Outcome::Answered(
                self.own
                    .answer(authorized.caller(&connection), request)
                    .await,
            ),
            Waiting::Login {
                login,
                request,
                authorized,
                forwarding,
                injected,
                standing,
            } => {
                let guarded = guard_login(
                    &login,
                    &self.corp_pattern,
                    connection.body_stall,
                    authorized.identity(&connection),
                    request,
                    &standing,
                )
                .await;
                match guarded {
                    Ok(buffered) => self.exchange(buffered, forwarding, injected).await,
                    Err(refusal) => {
                        tracing::info!(peer = %connection.peer, reason = ?refusal, "login form refused");
                        let accept = forwarding.accept.as_ref();
                        Outcome::Answered(match refusal {
                            LoginRefusal::Denied(denied) => rescue::denied(&denied, accept),
                            LoginRefusal::Body(status, why) => {
                                rescue::bad_request(status, why, accept)
                            }
                        })
                    }
                }
            }
        }
    }

    /// Counts the answer by route and status, and writes the access log line.
    fn account(
        &self,
        connection: &Connection,
        account: Option<&Account>,
        started: Option<Instant>,
        response: Response<Body>,
    ) -> Response<Body> {
        let Some(account) = account else {
            return response;
        };
        let status = response.status().as_u16();
        let route = if account.own {
            self.own_counters.count(status);
            &self.own_route
        } else {
            let index = account.route_index.min(self.route_counters.len() - 1);
            self.route_counters[index].count(status);
            self.routes.get(account.route_index)
        };
        if let Some(started) = started {
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
            tracing::info!(
                target: "certgate::access",
                method = %account.method,
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
}

/// What the checks decided comes next.
enum Next {
    /// Answered by the checks themselves (the renewal notice, a path that cannot be rewritten).
    Answer(Response<Body>),
    /// The application, prepared: the request and the headers certgate adds to it.
    Forward(Request<Body>, Forwarding, headers::Injected),
    /// A rarer stage that waits on something else than the application's answer.
    Wait(Waiting),
}

/// The stages [`Proxy::wait`] runs, boxed on their own.
enum Waiting {
    /// Refused: the request's body is read and thrown away first, within bounds, so that the
    /// refusal reaches a client that is still sending.
    Refuse(Incoming, Response<Body>),
    /// certgate's own paths.
    Own(Request<Incoming>, Authorized),
    /// The application's login form (`login`), prepared, to be read and checked against
    /// `standing` before it is forwarded.
    Login {
        login: Arc<LoginConfig>,
        request: Request<Incoming>,
        authorized: Authorized,
        forwarding: Forwarding,
        injected: headers::Injected,
        standing: Arc<crate::revocation::Snapshot>,
    },
}

/// How a request's waiting stage ended.
enum Outcome {
    /// With the answer.
    Answered(Response<Body>),
    /// With the application's answer, or why there is none, still to be checked.
    Exchanged {
        answered: Result<Response<Body>, UpstreamError>,
        forwarding: Forwarding,
        sent: Instant,
    },
}

/// What a permit grants, without its borrows of the connection: the stage that uses it owns
/// the connection and reads the identity from it again.
#[derive(Clone, Copy)]
struct Authorized {
    /// Whether the permit named the certificate's identity.
    identified: bool,
    role: crate::model::Role,
    lifecycle_ca: bool,
}

impl Authorized {
    fn of(permit: &policy::Permit<'_>) -> Self {
        Self {
            identified: permit.identity.is_some(),
            role: permit.role,
            lifecycle_ca: permit.lifecycle_ca,
        }
    }

    /// The identity the permit named: the connection's certificate's.
    fn identity(self, connection: &Connection) -> Option<&crate::identity::Resolved> {
        match &connection.cert {
            ClientCert::Verified { resolved, .. } if self.identified => {
                resolved.as_ref().as_ref().ok()
            }
            _ => None,
        }
    }

    fn caller(self, connection: &Connection) -> Caller<'_> {
        Caller {
            peer: connection.peer,
            identity: self.identity(connection).map(|resolved| &resolved.identity),
            role: self.role,
            lifecycle_ca: self.lifecycle_ca,
            body_stall: connection.body_stall,
        }
    }
}

/// What guards a login form: the form's settings, the standing it is checked against, and who
/// posts it.
struct LoginGuard {
    login: Arc<LoginConfig>,
    standing: Arc<crate::revocation::Snapshot>,
    authorized: Authorized,
}

/// What the application's answer needs of its request.
struct Forwarding {
    /// The matched route (for a WebSocket tunnel's checks).
    route_index: usize,
    /// The client's `Accept`, for a refusal's format.
    accept: Option<header::HeaderValue>,
    /// The client's side of a WebSocket upgrade it asked for.
    client_upgrade: Option<hyper::upgrade::OnUpgrade>,
}

/// What a request is counted and logged under.
struct Account {
    own: bool,
    route_index: usize,
    method: http::Method,
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
