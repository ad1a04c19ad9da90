//! The one place where the API's refusals become responses: RFC 9457 problem JSON with a stable
//! `type` per refusal; causes of internal errors go to the log, never to the client.

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::{Either, Full};

use crate::lifecycle::LifecycleError;
use crate::proxy::ProxyBody;

/// A problem response.
pub fn problem(status: StatusCode, slug: &str, title: &str, detail: &str) -> Response<ProxyBody> {
    problem_with(status, slug, title, detail, serde_json::Map::new())
}

/// A problem response with extension members (e.g. `opens_at`).
pub fn problem_with(
    status: StatusCode,
    slug: &str,
    title: &str,
    detail: &str,
    extra: serde_json::Map<String, serde_json::Value>,
) -> Response<ProxyBody> {
    let mut body = serde_json::json!({
        "type": format!("urn:certgate:problem:{slug}"),
        "title": title,
        "status": status.as_u16(),
        "detail": detail,
    });
    if let Some(object) = body.as_object_mut() {
        object.extend(extra);
    }
    let mut response = Response::new(Either::Right(Full::new(Bytes::from(format!("{body}\n")))));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Bad input, naming what is wrong.
pub fn invalid(detail: &str) -> Response<ProxyBody> {
    problem(
        StatusCode::BAD_REQUEST,
        "invalid-request",
        "Invalid request",
        detail,
    )
}

/// Bad input in one field, named in `detail` and in the `field` extension member.
pub fn invalid_field(field: &str, detail: &str) -> Response<ProxyBody> {
    let mut extra = serde_json::Map::new();
    extra.insert(
        "field".to_owned(),
        serde_json::Value::String(field.to_owned()),
    );
    problem_with(
        StatusCode::BAD_REQUEST,
        "invalid-request",
        "Invalid request",
        detail,
        extra,
    )
}

/// The response for a lifecycle refusal or failure.
pub fn lifecycle(err: &LifecycleError) -> Response<ProxyBody> {
    use LifecycleError as E;
    let detail = err.to_string();
    let (status, slug, title) = match err {
        E::Invalid { field, .. } => return invalid_field(field, &detail),
        E::BadCsr(_) => (
            StatusCode::BAD_REQUEST,
            "bad-csr",
            "Unusable certificate request",
        ),
        E::BadP12Password(_) => (
            StatusCode::BAD_REQUEST,
            "bad-p12-password",
            "Unusable PKCS#12 password",
        ),
        E::CredentialsRequired => {
            return basic_challenge(problem(
                StatusCode::UNAUTHORIZED,
                "credentials-required",
                "Credentials required",
                &detail,
            ));
        }
        E::BadCredentials => {
            return basic_challenge(problem(
                StatusCode::UNAUTHORIZED,
                "bad-credentials",
                "Wrong credentials",
                &detail,
            ));
        }
        E::PermitLocked => (StatusCode::LOCKED, "permit-locked", "Permit locked"),
        E::PermitExpired { expired_at } => {
            let mut extra = serde_json::Map::new();
            extra.insert(
                "expired_at".to_owned(),
                serde_json::Value::String(expired_at.clone()),
            );
            return problem_with(
                StatusCode::FORBIDDEN,
                "permit-expired",
                "Permit expired",
                &detail,
                extra,
            );
        }
        E::PermitUsed => (StatusCode::CONFLICT, "permit-used", "Permit already used"),
        E::RetryKeyMismatch => (
            StatusCode::CONFLICT,
            "retry-key-mismatch",
            "Another key for a repeated enrollment",
        ),
        E::AdministratorFirst { .. } => (
            StatusCode::CONFLICT,
            "administrator-first",
            "The administrator enrolls first",
        ),
        E::RenewalNotOpen { opens_at, .. } => {
            let mut extra = serde_json::Map::new();
            extra.insert(
                "opens_at".to_owned(),
                serde_json::Value::String(opens_at.clone()),
            );
            return problem_with(
                StatusCode::FORBIDDEN,
                "renewal-not-open",
                "Renewal not open yet",
                &detail,
                extra,
            );
        }
        E::NotRenewable { .. } => (
            StatusCode::FORBIDDEN,
            "not-renewable",
            "Certificate cannot be renewed",
        ),
        E::Forbidden { .. } => (StatusCode::FORBIDDEN, "forbidden", "Not allowed"),
        E::Suspended { .. } => (StatusCode::FORBIDDEN, "user-suspended", "User suspended"),
        E::NotFound { .. } => (StatusCode::NOT_FOUND, "not-found", "Not found"),
        E::Conflict { .. } => (StatusCode::CONFLICT, "conflict", "Conflict"),
        E::NoCa => (
            StatusCode::SERVICE_UNAVAILABLE,
            "ca-not-initialised",
            "Certificate issuing not set up",
        ),
        E::Internal(cause) => {
            tracing::error!(cause = %cause, "lifecycle operation failed");
            return problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal error",
                "certgate could not complete the request; nothing was changed. Please try again later.",
            );
        }
    };
    problem(status, slug, title, &detail)
}

fn basic_challenge(mut response: Response<ProxyBody>) -> Response<ProxyBody> {
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"certgate\", charset=\"UTF-8\""),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_credentials_get_a_basic_challenge() {
        let response = lifecycle(&LifecycleError::CredentialsRequired);
        assert_eq!(response.status(), 401);
        assert!(response.headers().contains_key(header::WWW_AUTHENTICATE));
    }

    /// The status, headers and JSON body of a made response.
    async fn read(
        response: Response<ProxyBody>,
    ) -> (StatusCode, http::HeaderMap, serde_json::Value) {
        use http_body_util::BodyExt as _;
        let (parts, body) = response.into_parts();
        let Either::Right(body) = body else {
            panic!("expected a made body")
        };
        let bytes = body.collect().await.unwrap().to_bytes();
        (
            parts.status,
            parts.headers,
            serde_json::from_slice(&bytes).unwrap(),
        )
    }

    #[tokio::test]
    async fn internal_errors_do_not_leak_their_cause() {
        let (status, headers, json) = read(lifecycle(&LifecycleError::Internal(
            "disk /secret/path full".into(),
        )))
        .await;
        assert_eq!(status, 500);
        assert_eq!(headers[header::CONTENT_TYPE], "application/problem+json");
        assert!(!json.to_string().contains("secret"), "{json}");
        assert_eq!(json["type"], "urn:certgate:problem:internal");
    }

    #[tokio::test]
    async fn renewal_refusal_says_when_the_window_opens() {
        let (status, _, json) = read(lifecycle(&LifecycleError::RenewalNotOpen {
            opens_at: "2027-01-01T00:00:00Z".into(),
            window_days: 30,
        }))
        .await;
        assert_eq!(status, 403);
        assert_eq!(json["type"], "urn:certgate:problem:renewal-not-open");
        assert_eq!(json["opens_at"], "2027-01-01T00:00:00Z");
        assert_eq!(json["status"], 403);
    }

    #[tokio::test]
    async fn each_refusal_has_its_status_and_stable_type() {
        use crate::pki::CsrError;
        let cases: Vec<(LifecycleError, u16, &str)> = vec![
            (
                LifecycleError::Invalid {
                    field: "corp_id",
                    reason: "bad".into(),
                },
                400,
                "invalid-request",
            ),
            (
                LifecycleError::BadCsr(CsrError::BadSignature),
                400,
                "bad-csr",
            ),
            (
                LifecycleError::BadP12Password("short".into()),
                400,
                "bad-p12-password",
            ),
            (LifecycleError::BadCredentials, 401, "bad-credentials"),
            (LifecycleError::PermitLocked, 423, "permit-locked"),
            (
                LifecycleError::PermitExpired {
                    expired_at: "2026-01-01T00:00:00Z".into(),
                },
                403,
                "permit-expired",
            ),
            (LifecycleError::PermitUsed, 409, "permit-used"),
            (LifecycleError::RetryKeyMismatch, 409, "retry-key-mismatch"),
            (
                LifecycleError::AdministratorFirst {
                    corp_id: "1".into(),
                },
                409,
                "administrator-first",
            ),
            (
                LifecycleError::NotRenewable { why: "x".into() },
                403,
                "not-renewable",
            ),
            (
                LifecycleError::Forbidden { why: "x".into() },
                403,
                "forbidden",
            ),
            (
                LifecycleError::Suspended { user: "1/u".into() },
                403,
                "user-suspended",
            ),
            (
                LifecycleError::NotFound { what: "x".into() },
                404,
                "not-found",
            ),
            (
                LifecycleError::Conflict { what: "x".into() },
                409,
                "conflict",
            ),
            (LifecycleError::NoCa, 503, "ca-not-initialised"),
        ];
        for (err, status, slug) in cases {
            let (got, headers, json) = read(lifecycle(&err)).await;
            assert_eq!(got.as_u16(), status, "{err:?}");
            assert_eq!(
                json["type"],
                format!("urn:certgate:problem:{slug}"),
                "{err:?}"
            );
            assert_eq!(json["detail"], err.to_string(), "{err:?}");
            assert_eq!(
                headers.contains_key(header::WWW_AUTHENTICATE),
                status == 401,
                "{err:?}"
            );
        }
        let (_, _, json) = read(lifecycle(&LifecycleError::Invalid {
            field: "user_id",
            reason: "bad".into(),
        }))
        .await;
        assert_eq!(json["field"], "user_id");
    }
}
