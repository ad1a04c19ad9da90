//! The JSON API (`enroll`, `enroll.p12`, `renew`, `renew.p12`, `me`) and the admin API (status
//! table, re-issue, revoke, suspend, resume, audit).

use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;

use super::encode::pem;
use super::{Api, Call, certificate_required, problem};
use crate::http::{Body, bytes_response, json_response};
use crate::lifecycle::{Enrolled, KeySource, LifecycleError};
use crate::model::{Holder, RevocationReason, rfc3339, rfc3339_unix};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EnrollRequest {
    corp_id: String,
    user_id: Option<String>,
    pin: SecretString,
    csr: Option<String>,
    p12_password: Option<SecretString>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RenewRequest {
    csr: Option<String>,
    p12_password: Option<SecretString>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeRequest {
    reason: Option<String>,
    /// The acting manager's confirmation password (seed 004).
    confirmation: Option<SecretString>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfirmationRequest {
    password: SecretString,
}

/// Reads a JSON body; a refusal names the field at fault (missing, unknown or of the wrong type)
/// in `detail` and in the `field` member.
fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Response<Body>> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let (path, inner) = match serde_path_to_error::deserialize(&mut deserializer) {
        Ok(value) => match deserializer.end() {
            Ok(()) => return Ok(value),
            Err(trailing) => (".".to_owned(), trailing),
        },
        Err(err) => (err.path().to_string(), err.into_inner()),
    };
    use serde_json::error::Category;
    if matches!(
        inner.classify(),
        Category::Syntax | Category::Eof | Category::Io
    ) {
        return Err(problem::invalid(format!(
            "the body is not valid JSON: {inner}"
        )));
    }
    let message = inner.to_string();
    let field = if path != "." && path != "?" {
        Some(path)
    } else {
        named_field(&message)
    };
    let detail = match &field {
        Some(field) if !message.contains(&format!("`{field}`")) => format!("{field}: {message}"),
        _ => format!("the body is not the expected JSON object: {message}"),
    };
    Err(match field {
        Some(field) => problem::invalid_field(&field, detail),
        None => problem::invalid(detail),
    })
}

/// The field a serde message names: "missing field `pin`", "unknown field `pni`, expected …".
fn named_field(message: &str) -> Option<String> {
    let rest = message
        .strip_prefix("missing field `")
        .or_else(|| message.strip_prefix("unknown field `"))?;
    rest.split_once('`').map(|(field, _)| field.to_owned())
}

/// The key source from the request: `csr` for the plain endpoints, `p12_password` for `.p12`.
fn key_source(
    p12: bool,
    csr: Option<String>,
    password: Option<SecretString>,
) -> Result<KeySource, Response<Body>> {
    match (p12, csr, password) {
        (false, Some(csr), None) => Ok(KeySource::Csr(csr.into_bytes())),
        (true, None, Some(p12_password)) => Ok(KeySource::ServerKey { p12_password }),
        (false, _, _) => Err(problem::invalid_field(
            "csr",
            "csr: give the PEM certificate request (and no p12_password)",
        )),
        (true, _, _) => Err(problem::invalid_field(
            "p12_password",
            "p12_password: give the password of certificate.p12 (and no csr)",
        )),
    }
}

fn enrolled_response(enrolled: Enrolled) -> Response<Body> {
    if let Some(p12) = enrolled.p12 {
        let mut response = bytes_response(StatusCode::OK, "application/x-pkcs12", p12);
        response.headers_mut().insert(
            header::CONTENT_DISPOSITION,
            HeaderValue::from_static("attachment; filename=\"certificate.p12\""),
        );
        return response;
    }
    let chain: String = enrolled
        .chain
        .iter()
        .map(|cert| pem("CERTIFICATE", cert.as_ref()))
        .collect();
    json_response(
        StatusCode::OK,
        &serde_json::json!({
            "certificate": pem("CERTIFICATE", enrolled.certificate.as_ref()),
            "chain": chain,
            "serial": enrolled.serial,
            "not_after": rfc3339(enrolled.not_after),
        }),
    )
}

impl Api {
    /// `POST /certgate/api/enroll` and `enroll.p12`.
    pub(super) async fn json_enroll(&self, call: &Call<'_>, p12: bool) -> Response<Body> {
        let request: EnrollRequest = match parse(&call.body) {
            Ok(request) => request,
            Err(response) => return response,
        };
        let key = match key_source(p12, request.csr, request.p12_password) {
            Ok(key) => key,
            Err(response) => return response,
        };
        let holder = Holder {
            corp_id: request.corp_id,
            user_id: request.user_id,
        };
        let ctx = call.context(Some(holder.clone()));
        match self.lifecycle.enroll(holder, &request.pin, key, &ctx).await {
            Ok(enrolled) => enrolled_response(enrolled),
            Err(err) => problem::lifecycle(&err),
        }
    }

    /// `POST /certgate/api/renew` and `renew.p12`, over the current certificate.
    pub(super) async fn json_renew(&self, call: &Call<'_>, p12: bool) -> Response<Body> {
        let Some(identity) = call.caller.identity else {
            return certificate_required(CERTIFICATE_NEEDED);
        };
        let request: RenewRequest = match parse(&call.body) {
            Ok(request) => request,
            Err(response) => return response,
        };
        let key = match key_source(p12, request.csr, request.p12_password) {
            Ok(key) => key,
            Err(response) => return response,
        };
        let ctx = call.context(None);
        match self
            .lifecycle
            .renew(identity.holder(), &identity.serial, key, &ctx)
            .await
        {
            Ok(enrolled) => enrolled_response(enrolled),
            Err(err) => problem::lifecycle(&err),
        }
    }

    /// `GET /certgate/api/me`.
    pub(super) async fn json_me(&self, call: &Call<'_>) -> Response<Body> {
        let Some(identity) = call.caller.identity else {
            return certificate_required(CERTIFICATE_NEEDED);
        };
        match self
            .lifecycle
            .me(
                &identity.holder(),
                &identity.serial,
                call.caller.role,
                identity.not_after,
            )
            .await
        {
            Ok(view) => json_response(
                StatusCode::OK,
                &serde_json::to_value(view).unwrap_or_default(),
            ),
            Err(err) => problem::lifecycle(&err),
        }
    }

    /// `GET /certgate/api/admin/users`: the status table of the caller's corporation.
    pub(super) async fn admin_users(&self, call: &Call<'_>) -> Response<Body> {
        let Some(identity) = call.caller.identity else {
            return certificate_required(CERTIFICATE_NEEDED);
        };
        let ctx = call.context(None);
        let corp_id = call
            .target_corp()
            .unwrap_or_else(|| identity.corp_id.clone());
        match self.lifecycle.status_table(&ctx, &corp_id).await {
            Ok(rows) => {
                let users: Vec<serde_json::Value> = rows
                    .iter()
                    .map(|row| {
                        serde_json::json!({
                            "user_id": row.user.user_id,
                            "name": row.user.name,
                            "role": row.user.role.as_str(),
                            "email": row.user.email,
                            "status": row.user.status.as_str(),
                            "certificate_status": row.status.as_str(),
                            "serial": row.latest.as_ref().map(|cert| cert.serial),
                            "not_after": row.latest.as_ref().map(|cert| rfc3339(cert.not_after)),
                        })
                    })
                    .collect();
                json_response(
                    StatusCode::OK,
                    &serde_json::json!({ "corp_id": corp_id, "users": users }),
                )
            }
            Err(err) => problem::lifecycle(&err),
        }
    }

    /// `GET /certgate/api/admin/audit`: the corporation's audit trail, newest first.
    pub(super) async fn admin_audit(&self, call: &Call<'_>) -> Response<Body> {
        let Some(identity) = call.caller.identity else {
            return certificate_required(CERTIFICATE_NEEDED);
        };
        let ctx = call.context(None);
        let corp_id = call
            .target_corp()
            .unwrap_or_else(|| identity.corp_id.clone());
        match self.lifecycle.audit_trail(&ctx, Some(&corp_id), 500).await {
            Ok(entries) => {
                let entries: Vec<serde_json::Value> = entries
                    .iter()
                    .map(|entry| {
                        serde_json::json!({
                            "at": rfc3339_unix(entry.at.unix_timestamp()),
                            "actor": entry.actor,
                            "action": entry.action,
                            "target": entry.target,
                            "result": entry.result,
                            "client_addr": entry.client_addr,
                        })
                    })
                    .collect();
                json_response(StatusCode::OK, &serde_json::json!({ "entries": entries }))
            }
            Err(err) => problem::lifecycle(&err),
        }
    }

    /// `POST /certgate/api/admin/confirmation`: the calling manager sets their confirmation
    /// password, once.
    pub(super) async fn admin_confirmation(&self, call: &Call<'_>) -> Response<Body> {
        if call.caller.identity.is_none() {
            return certificate_required(CERTIFICATE_NEEDED);
        }
        let request: ConfirmationRequest = match parse(&call.body) {
            Ok(request) => request,
            Err(response) => return response,
        };
        let ctx = call.context(None);
        match self
            .lifecycle
            .set_confirmation(&ctx, &request.password)
            .await
        {
            Ok(()) => json_response(
                StatusCode::OK,
                &serde_json::json!({ "confirmation": "set" }),
            ),
            Err(err) => problem::lifecycle(&err),
        }
    }

    /// `POST /certgate/api/admin/users/{user_id}/{reissue|revoke|suspend|resume}`.
    pub(super) async fn admin_action(
        &self,
        call: &Call<'_>,
        user_id: &str,
        action: &str,
    ) -> Response<Body> {
        let Some(identity) = call.caller.identity else {
            return certificate_required(CERTIFICATE_NEEDED);
        };
        let corp_id = call
            .target_corp()
            .unwrap_or_else(|| identity.corp_id.clone());
        let ctx = call.context(None);
        let result: Result<serde_json::Value, LifecycleError> = match action {
            "reissue" => self
                .lifecycle
                .reissue(&ctx, &corp_id, user_id)
                .await
                .map(|permit| {
                    serde_json::json!({
                        "user_id": user_id,
                        "pin": permit.pin.expose_secret(),
                        "expires_at": permit.expires_at,
                    })
                }),
            "revoke" => {
                let request = if call.body.iter().all(u8::is_ascii_whitespace) {
                    Ok(RevokeRequest {
                        reason: None,
                        confirmation: None,
                    })
                } else {
                    parse::<RevokeRequest>(&call.body)
                };
                let (reason, confirmation) = match request.and_then(|request| {
                    revocation_reason(request.reason.as_deref())
                        .map(|reason| (reason, request.confirmation))
                }) {
                    Ok(parsed) => parsed,
                    Err(response) => return response,
                };
                self.lifecycle
                    .revoke_user(&ctx, &corp_id, user_id, reason, confirmation.as_ref())
                    .await
                    .map(|revoked| {
                        serde_json::json!({
                            "user_id": user_id,
                            "status": "revoked",
                            "reason": reason.as_str(),
                            "revoked": revoked.iter().map(|cert| cert.serial).collect::<Vec<_>>(),
                        })
                    })
            }
            "suspend" | "resume" => self
                .lifecycle
                .suspend(&ctx, &corp_id, user_id, action == "suspend")
                .await
                .map(|status| serde_json::json!({ "user_id": user_id, "status": status })),
            other => {
                return crate::http::Kind::NOT_FOUND
                    .detail(format!(
                        "{other:?} is not an action; use reissue, revoke, suspend or resume"
                    ))
                    .json();
            }
        };
        match result {
            Ok(value) => json_response(StatusCode::OK, &value),
            Err(err) => problem::lifecycle(&err),
        }
    }
}

const CERTIFICATE_NEEDED: &str =
    "this endpoint identifies you by your client certificate: present it in the TLS handshake";

/// An RFC 5280 CRLReason name, as the RFC spells it; which reasons a revocation may give is the
/// lifecycle's rule.
fn revocation_reason(name: Option<&str>) -> Result<RevocationReason, Response<Body>> {
    let name = name.unwrap_or("unspecified");
    name.parse::<RevocationReason>().map_err(|_| {
        problem::invalid_field(
            "reason",
            format!(
                "reason: {name:?} is not an RFC 5280 reason name; use one of {}",
                crate::lifecycle::accepted_revocation_reasons().join(", ")
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt as _, Either};

    async fn refusal(response: Response<Body>) -> serde_json::Value {
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let Either::Right(body) = response.into_body() else {
            panic!("expected a made body")
        };
        serde_json::from_slice(&body.collect().await.unwrap().to_bytes()).unwrap()
    }

    #[tokio::test]
    async fn json_refusals_name_the_field() {
        for (body, field, says) in [
            (
                r#"{"corp_id":"1","csr":"x"}"#,
                Some("pin"),
                "missing field `pin`",
            ),
            (
                r#"{"corp_id":"1","pin":"1","csr":"x","pni":"2"}"#,
                Some("pni"),
                "unknown field `pni`",
            ),
            (
                r#"{"corp_id":1,"pin":"1"}"#,
                Some("corp_id"),
                "corp_id: invalid type",
            ),
            (r#"{"corp_id":"1","#, None, "not valid JSON"),
            (r#"{"corp_id":"1","pin":"1"} trailing"#, None, "trailing"),
            ("", None, "not valid JSON"),
        ] {
            let Err(response) = parse::<EnrollRequest>(body.as_bytes()) else {
                panic!("{body} was accepted")
            };
            let json = refusal(response).await;
            assert_eq!(
                json["type"], "urn:certgate:problem:invalid-request",
                "{body}"
            );
            assert_eq!(json["field"].as_str(), field, "{body}: {json}");
            assert!(
                json["detail"].as_str().unwrap().contains(says),
                "{body}: {json}"
            );
        }
        assert!(parse::<EnrollRequest>(br#"{"corp_id":"1","user_id":null,"pin":"1"}"#).is_ok());
    }

    #[tokio::test]
    async fn revocation_reasons_are_rfc_5280_names() {
        assert_eq!(
            revocation_reason(None).ok(),
            Some(RevocationReason::Unspecified)
        );
        assert_eq!(
            revocation_reason(Some("keyCompromise")).ok(),
            Some(RevocationReason::KeyCompromise)
        );
        for bad in ["because", "KeyCompromise"] {
            let Err(response) = revocation_reason(Some(bad)) else {
                panic!("{bad} was accepted")
            };
            assert_eq!(refusal(response).await["field"], "reason", "{bad}");
        }
    }
}
