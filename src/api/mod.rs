//! certgate's own HTTP endpoints: EST (RFC 7030) under `/.well-known/est/`, the JSON API under
//! `/certgate/api/`, the admin API under `/certgate/api/admin/`, CRLs under `/certgate/crl/`.
//!
//! The proxy hands every request whose path [`Api::owns`] here, after its policy ran: a presented
//! certificate that is revoked, expired, suspended or outside the CN layout never reaches this
//! module, so [`Caller::identity`] is a caller in good standing (or `None`: no certificate). The
//! rights of that caller are the lifecycle's to check; this module turns HTTP into lifecycle
//! calls and lifecycle answers into HTTP.

#![expect(
    clippy::result_large_err,
    reason = "a handler's early refusal is the Err side; boxing it buys nothing on a path that ends the request"
)]

mod encode;
mod est;
mod json;
pub mod pages;
mod problem;
mod throttle;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::http::{Body, BodyError, Kind, bytes_response, linger, read_to_limit};
use crate::identity::Caller;
use crate::lifecycle::{Actor, Context, Lifecycle};
use crate::model::Holder;

/// The most a request body may hold: a CSR or a small JSON object.
const MAX_BODY: usize = 64 * 1024;

/// The endpoints' shared state.
#[derive(Clone)]
pub struct Api {
    lifecycle: Lifecycle,
    throttle: std::sync::Arc<throttle::EnrollThrottle>,
    pages: std::sync::Arc<pages::Pages>,
}

/// One request as the endpoints see it: the head and the whole (small) body.
struct Call<'a> {
    caller: Caller<'a>,
    parts: http::request::Parts,
    body: Bytes,
}

impl Call<'_> {
    /// The lifecycle context: the certificate's holder when there is one, else `enrollee`.
    fn context(&self, enrollee: Option<Holder>) -> Context {
        let actor = match (self.caller.identity, enrollee) {
            (Some(identity), _) => Actor::Certificate {
                holder: identity.holder(),
                serial: identity.serial,
                lifecycle_ca: self.caller.lifecycle_ca,
            },
            (None, Some(holder)) => Actor::Enrollee(holder),
            (None, None) => Actor::Enrollee(Holder::admin("")),
        };
        Context {
            actor,
            client_addr: Some(self.caller.peer.ip().to_canonical().to_string()),
        }
    }

    /// `?corp_id=`: admin endpoints act on the caller's corporation unless this names another
    /// (which the lifecycle refuses unless the caller manages it).
    fn target_corp(&self) -> Option<String> {
        self.parts
            .uri
            .query()
            .and_then(|query| {
                form_urlencoded::parse(query.as_bytes()).find(|(key, _)| key == "corp_id")
            })
            .map(|(_, value)| value.into_owned())
    }
}

impl Api {
    /// The endpoints over the lifecycle service, with the pages for people.
    pub fn new(lifecycle: Lifecycle, pages: pages::Pages) -> Self {
        let throttle = std::sync::Arc::new(throttle::EnrollThrottle::new(
            lifecycle.rules().enroll_attempts_per_minute,
        ));
        Self {
            lifecycle,
            throttle,
            pages: std::sync::Arc::new(pages),
        }
    }

    /// Whether certgate answers `path` itself instead of forwarding it.
    pub fn owns(path: &str) -> bool {
        path.starts_with("/.well-known/est/")
            || path == "/.well-known/est"
            || path.starts_with("/certgate/")
            || path == "/certgate"
    }

    /// Answers one request. The body is read first (at most 64 KiB), whatever the endpoint, so
    /// that no answer leaves a client still sending.
    pub async fn handle(&self, caller: Caller<'_>, request: Request<Incoming>) -> Response<Body> {
        let (parts, body) = request.into_parts();
        let body = match read_to_limit(body, MAX_BODY, caller.body_stall).await {
            Ok(body) => body,
            Err(BodyError::TooLarge(rest)) => {
                linger(rest);
                return Kind::TOO_LARGE
                    .detail("the request body is larger than 64 KiB")
                    .json();
            }
            Err(BodyError::Broken(_)) => {
                return problem::invalid("the request body could not be read");
            }
            Err(BodyError::Stalled) => {
                return Kind::new(408, "body-stalled", "Request body stalled")
                    .detail("the request body stopped arriving")
                    .json();
            }
        };
        let call = Call {
            caller,
            parts,
            body,
        };
        let method = call.parts.method.clone();
        let path = call.parts.uri.path().to_owned();
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        // HEAD is GET without the body (hyper sends no body for it).
        let routed = if method == Method::HEAD {
            Method::GET
        } else {
            method.clone()
        };
        let enrolls = matches!(
            (&routed, segments.as_slice()),
            (
                &Method::POST,
                [".well-known", "est", "simpleenroll" | "serverkeygen"]
                    | ["certgate", "api", "enroll" | "enroll.p12"]
                    | ["certgate", "enroll"]
            )
        );
        if enrolls {
            if let Err(wait) = self.throttle.check(call.caller.peer.ip()) {
                tracing::warn!(peer = %call.caller.peer, "enrollment attempts over the per-address limit");
                let mut response = Kind::new(429, "too-many-attempts", "Too many attempts")
                    .detail(format!(
                        "too many enrollment attempts from this address; try again in {wait} seconds"
                    ))
                    .json();
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(wait));
                return response;
            }
        }
        match (routed, segments.as_slice()) {
            (Method::GET, [".well-known", "est", "cacerts"]) => self.est_cacerts(),
            (Method::POST, [".well-known", "est", "simpleenroll"]) => {
                self.est_simpleenroll(&call).await
            }
            (Method::POST, [".well-known", "est", "simplereenroll"]) => {
                self.est_simplereenroll(&call).await
            }
            (Method::POST, [".well-known", "est", "serverkeygen"]) => {
                self.est_serverkeygen(&call).await
            }
            (Method::POST, ["certgate", "api", "enroll"]) => self.json_enroll(&call, false).await,
            (Method::POST, ["certgate", "api", "enroll.p12"]) => {
                self.json_enroll(&call, true).await
            }
            (Method::POST, ["certgate", "api", "renew"]) => self.json_renew(&call, false).await,
            (Method::POST, ["certgate", "api", "renew.p12"]) => self.json_renew(&call, true).await,
            (Method::GET, ["certgate", "api", "me"]) => self.json_me(&call).await,
            (Method::GET, ["certgate", "api", "admin", "users"]) => self.admin_users(&call).await,
            (Method::GET, ["certgate", "api", "admin", "audit"]) => self.admin_audit(&call).await,
            (Method::POST, ["certgate", "api", "admin", "confirmation"]) => {
                self.admin_confirmation(&call).await
            }
            (Method::POST, ["certgate", "api", "admin", "users", user_id, action]) => {
                self.admin_action(&call, user_id, action).await
            }
            (Method::GET, ["certgate", "crl", file]) => self.crl(file).await,
            (Method::GET, ["certgate", "enroll"]) => self.page_enroll(&call),
            (Method::POST, ["certgate", "enroll"]) => self.page_enroll_post(&call).await,
            (Method::GET, ["certgate", "renew"]) => self.page_renew(&call).await,
            (Method::POST, ["certgate", "renew"]) => self.page_renew_post(&call).await,
            (Method::GET, ["certgate", "me"]) => self.page_me(&call).await,
            (Method::POST, ["certgate", "notice"]) => self.page_notice_post(&call).await,
            (Method::GET, ["certgate", "admin"]) => self.page_admin(&call).await,
            (Method::GET, ["certgate", "admin", "revoke"]) => self.page_revoke(&call).await,
            (Method::GET, ["certgate", "admin", "user"]) => self.page_user(&call).await,
            (Method::POST, ["certgate", "admin", "user"]) => self.page_user_post(&call).await,
            (Method::POST, ["certgate", "admin", "revoke"]) => self.page_revoke_post(&call).await,
            (Method::POST, ["certgate", "admin"]) => self.page_admin_post(&call).await,
            (Method::GET, ["certgate", "static", "certgate.css"]) => self.page_style(),
            (Method::GET, ["certgate"] | ["certgate", ""]) => self.index(&call),
            (_, route) => match allowed_methods(route) {
                Some(allow) => {
                    let mut response = Kind::METHOD_NOT_ALLOWED
                        .detail(format!("{method} is not allowed on {path}; use {allow}"))
                        .json();
                    response
                        .headers_mut()
                        .insert(header::ALLOW, HeaderValue::from_static(allow));
                    response
                }
                None => Kind::NOT_FOUND
                    .detail(format!("{path} is not an endpoint of certgate"))
                    .json(),
            },
        }
    }

    /// `GET /certgate/`: where things are, for a person (HTML) or a program (JSON).
    fn index(&self, call: &Call<'_>) -> Response<Body> {
        let endpoints = serde_json::json!({
            "est": "/.well-known/est/",
            "enroll": "/certgate/api/enroll",
            "renew": "/certgate/api/renew",
            "me": "/certgate/api/me",
            "admin": "/certgate/api/admin/users",
            "crl": "/certgate/crl/g1.crl",
            "pages": ["/certgate/enroll", "/certgate/renew", "/certgate/me"],
        });
        if crate::http::wants_html(call.parts.headers.get(header::ACCEPT)) {
            let html = "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>certgate</title></head>\n<body><h1>certgate</h1>\n<p>This is the bank's certificate service. People get their certificate at <a href=\"/certgate/enroll\">/certgate/enroll</a>, renew it at <a href=\"/certgate/renew\">/certgate/renew</a> and see it at <a href=\"/certgate/me\">/certgate/me</a>. Programs use EST at <code>/.well-known/est/</code> and the JSON API under <code>/certgate/api/</code> (<code>enroll</code>, <code>enroll.p12</code>, <code>renew</code>, <code>me</code>, <code>admin/users</code>); CRLs are under <code>/certgate/crl/</code>.</p>\n</body></html>\n";
            return bytes_response(StatusCode::OK, "text/html; charset=utf-8", html);
        }
        crate::http::json_response(
            StatusCode::OK,
            &serde_json::json!({ "endpoints": endpoints }),
        )
    }

    async fn crl(&self, file: &str) -> Response<Body> {
        let Some(generation) = file.strip_suffix(".crl") else {
            return Kind::NOT_FOUND.detail("CRLs are named like g1.crl").json();
        };
        // An unknown generation is the client's mistake, not a failure of the CA files.
        match self.lifecycle.ca_list() {
            Ok(generations) if !generations.iter().any(|ca| ca.name == generation) => {
                let known: Vec<String> = generations
                    .iter()
                    .map(|ca| format!("{}.crl", ca.name))
                    .collect();
                return Kind::NOT_FOUND
                    .detail(format!(
                        "there is no CA generation {generation:?}; CRLs here: {}",
                        known.join(", ")
                    ))
                    .json();
            }
            Ok(_) => {}
            Err(err) => return problem::lifecycle(&err),
        }
        match self.lifecycle.crl(generation).await {
            Ok(der) => bytes_response(StatusCode::OK, "application/pkix-crl", der),
            Err(err) => problem::lifecycle(&err),
        }
    }
}

fn allowed_methods(route: &[&str]) -> Option<&'static str> {
    match route {
        [".well-known", "est", "cacerts"]
        | ["certgate", "api", "me"]
        | ["certgate", "api", "admin", "users" | "audit"]
        | ["certgate", "crl", _]
        | ["certgate", "me"]
        | ["certgate", "static", "certgate.css"] => Some("GET, HEAD"),
        ["certgate", "enroll" | "renew" | "admin"] | ["certgate", "admin", "revoke" | "user"] => {
            Some("GET, HEAD, POST")
        }
        ["certgate", "notice"] => Some("POST"),
        [
            ".well-known",
            "est",
            "simpleenroll" | "simplereenroll" | "serverkeygen",
        ]
        | [
            "certgate",
            "api",
            "enroll" | "enroll.p12" | "renew" | "renew.p12",
        ]
        | ["certgate", "api", "admin", "users", _, _]
        | ["certgate", "api", "admin", "confirmation"] => Some("POST"),
        _ => None,
    }
}

fn certificate_required(detail: &'static str) -> Response<Body> {
    Kind::CERTIFICATE_REQUIRED.detail(detail).json()
}
