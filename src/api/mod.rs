//! certgate's own HTTP endpoints: EST (RFC 7030) under `/.well-known/est/`, the JSON API under
//! `/certgate/api/`, the admin API under `/certgate/api/admin/`, CRLs under `/certgate/crl/`.
//!
//! The proxy hands every request whose path [`Api::owns`] here, after its policy ran: a presented
//! certificate that is revoked, expired, suspended or outside the CN layout never reaches this
//! module, so [`Caller::identity`] is a caller in good standing (or `None`: no certificate).

#![expect(
    clippy::result_large_err,
    reason = "a handler's early refusal is the Err side; boxing it buys nothing on a path that ends the request"
)]

mod encode;
mod est;
mod json;
mod problem;

use std::net::SocketAddr;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Either, Full, Limited};
use hyper::body::Incoming;

use crate::identity::{Identity, Role};
use crate::lifecycle::{Actor, Context, Lifecycle};
use crate::proxy::ProxyBody;
use crate::revocation::Standing;
use crate::store::Holder;

/// The most a request body may hold: a CSR or a small JSON object.
const MAX_BODY: usize = 64 * 1024;

/// Who is calling.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    /// The client's address.
    pub peer: SocketAddr,
    /// The verified, unrevoked certificate's identity, if one was presented.
    pub identity: Option<&'a Identity>,
    /// The effective role: `Admin` for the corporation administrator's certificate, else the
    /// user's role in the registry (`General` when the registry does not know the user).
    pub role: Role,
}

impl Caller<'_> {
    fn holder(&self) -> Option<Holder> {
        self.identity.map(|identity| Holder {
            corp_id: identity.corp_id.clone(),
            user_id: identity.user_id.clone(),
        })
    }

    /// The lifecycle context: the certificate's holder when there is one, else `fallback`.
    fn context(&self, fallback: Option<Holder>) -> Context {
        let actor = match (self.identity, fallback) {
            (Some(identity), _) => Actor::Certificate {
                holder: Holder {
                    corp_id: identity.corp_id.clone(),
                    user_id: identity.user_id.clone(),
                },
                serial: identity.serial_hex.clone(),
            },
            (None, Some(holder)) => Actor::Enrollee(holder),
            (None, None) => Actor::Enrollee(Holder {
                corp_id: String::new(),
                user_id: None,
            }),
        };
        Context {
            actor,
            client_addr: Some(self.peer.ip().to_canonical().to_string()),
        }
    }
}

/// The endpoints' shared state.
#[derive(Clone)]
pub struct Api {
    lifecycle: Lifecycle,
    standing: Standing,
}

impl Api {
    /// The endpoints over the lifecycle service; `standing` is refreshed after every change of
    /// revocation or suspension, before the answer is sent.
    pub fn new(lifecycle: Lifecycle, standing: Standing) -> Self {
        Self {
            lifecycle,
            standing,
        }
    }

    /// Whether certgate answers `path` itself instead of forwarding it.
    pub fn owns(path: &str) -> bool {
        path.starts_with("/.well-known/est/")
            || path == "/.well-known/est"
            || path.starts_with("/certgate/")
            || path == "/certgate"
    }

    /// Answers one request.
    pub async fn handle(
        &self,
        caller: Caller<'_>,
        request: Request<Incoming>,
    ) -> Response<ProxyBody> {
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        // Admin endpoints act on the caller's corporation; `?corp_id=` may name it explicitly,
        // and naming another one is refused (403) by the lifecycle's manager check.
        let target_corp = request
            .uri()
            .query()
            .and_then(|query| {
                form_urlencoded::parse(query.as_bytes()).find(|(key, _)| key == "corp_id")
            })
            .map(|(_, value)| value.into_owned());
        // HEAD is GET without the body (hyper sends no body for it).
        let routed = if method == Method::HEAD {
            Method::GET
        } else {
            method.clone()
        };
        match (routed, segments.as_slice()) {
            (Method::GET, [".well-known", "est", "cacerts"]) => self.est_cacerts(),
            (Method::POST, [".well-known", "est", "simpleenroll"]) => {
                self.est_simpleenroll(caller, request).await
            }
            (Method::POST, [".well-known", "est", "simplereenroll"]) => {
                self.est_simplereenroll(caller, request).await
            }
            (Method::POST, [".well-known", "est", "serverkeygen"]) => {
                self.est_serverkeygen(caller, request).await
            }
            (Method::POST, ["certgate", "api", "enroll"]) => {
                self.json_enroll(caller, request, false).await
            }
            (Method::POST, ["certgate", "api", "enroll.p12"]) => {
                self.json_enroll(caller, request, true).await
            }
            (Method::POST, ["certgate", "api", "renew"]) => {
                self.json_renew(caller, request, false).await
            }
            (Method::POST, ["certgate", "api", "renew.p12"]) => {
                self.json_renew(caller, request, true).await
            }
            (Method::GET, ["certgate", "api", "me"]) => self.json_me(caller).await,
            (Method::GET, ["certgate", "api", "admin", "users"]) => {
                self.admin_users(caller, target_corp).await
            }
            (Method::GET, ["certgate", "api", "admin", "audit"]) => {
                self.admin_audit(caller, target_corp).await
            }
            (Method::POST, ["certgate", "api", "admin", "users", user_id, action]) => {
                let (user_id, action) = ((*user_id).to_owned(), (*action).to_owned());
                self.admin_action(caller, request, target_corp, &user_id, &action)
                    .await
            }
            (Method::GET, ["certgate", "crl", file]) => self.crl(file),
            (_, route) => match allowed_methods(route) {
                Some(allow) => {
                    let mut response = problem::problem(
                        StatusCode::METHOD_NOT_ALLOWED,
                        "method-not-allowed",
                        "Method not allowed",
                        &format!("{method} is not allowed on {path}; use {allow}"),
                    );
                    response
                        .headers_mut()
                        .insert(header::ALLOW, HeaderValue::from_static(allow));
                    response
                }
                None => problem::problem(
                    StatusCode::NOT_FOUND,
                    "not-found",
                    "Not found",
                    &format!("{path} is not an endpoint of certgate"),
                ),
            },
        }
    }

    /// After a change of revocation or suspension: the proxy must see it on the very next
    /// request. A failed re-read is logged, not raised: the change is committed, and the
    /// periodic refresh will pick it up within seconds.
    async fn refresh_standing(&self) {
        if let Err(err) = self.standing.refresh().await {
            tracing::error!(error = %err, "cannot re-read revocations after a change; the periodic refresh will retry");
        }
    }

    fn crl(&self, file: &str) -> Response<ProxyBody> {
        let Some(generation) = file.strip_suffix(".crl") else {
            return problem::problem(
                StatusCode::NOT_FOUND,
                "not-found",
                "Not found",
                "CRLs are named like g1.crl",
            );
        };
        // An unknown generation is the client's mistake, not a failure of the CA files.
        match self.lifecycle.ca_list() {
            Ok(generations) if !generations.iter().any(|ca| ca.name == generation) => {
                let known: Vec<String> = generations
                    .iter()
                    .map(|ca| format!("{}.crl", ca.name))
                    .collect();
                return problem::problem(
                    StatusCode::NOT_FOUND,
                    "not-found",
                    "Not found",
                    &format!(
                        "there is no CA generation {generation:?}; CRLs here: {}",
                        known.join(", ")
                    ),
                );
            }
            Ok(_) => {}
            Err(err) => return problem::lifecycle(&err),
        }
        match self.lifecycle.crl(generation) {
            Ok(der) => bytes_response(StatusCode::OK, "application/pkix-crl", der),
            Err(err) => problem::lifecycle(&err),
        }
    }
}

fn allowed_methods(route: &[&str]) -> Option<&'static str> {
    match route {
        [".well-known", "est", "cacerts"]
        | ["certgate", "api", "me"]
        | ["certgate", "api", "admin", "users" | "audit"] => Some("GET, HEAD"),
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
        | ["certgate", "api", "admin", "users", _, _] => Some("POST"),
        ["certgate", "crl", _] => Some("GET, HEAD"),
        _ => None,
    }
}

/// Reads a request body up to [`MAX_BODY`].
async fn read_body(
    request: Request<Incoming>,
) -> Result<(http::request::Parts, Bytes), Response<ProxyBody>> {
    let (parts, body) = request.into_parts();
    match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => Ok((parts, collected.to_bytes())),
        Err(err)
            if err
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(problem::problem(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too-large",
                "Request too large",
                "the request body is larger than 64 KiB",
            ))
        }
        Err(_) => Err(problem::invalid("the request body could not be read")),
    }
}

fn bytes_response(
    status: StatusCode,
    content_type: &'static str,
    body: Vec<u8>,
) -> Response<ProxyBody> {
    let mut response = Response::new(Either::Right(Full::new(Bytes::from(body))));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<ProxyBody> {
    bytes_response(
        status,
        "application/json",
        format!("{value}\n").into_bytes(),
    )
}
