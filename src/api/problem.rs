//! The API's refusals: each [`LifecycleError`] becomes one status and one stable problem type,
//! rendered by the one renderer of [`crate::http`]; causes of internal errors go to the log, never
//! to the client.

use http::Response;

use crate::http::{Body, Kind, Problem, basic_challenge};
use crate::lifecycle::LifecycleError;

const BAD_CSR: Kind = Kind::new(400, "bad-csr", "Unusable certificate request");
const BAD_P12_PASSWORD: Kind = Kind::new(400, "bad-p12-password", "Unusable PKCS#12 password");
const CREDENTIALS_REQUIRED: Kind = Kind::new(401, "credentials-required", "Credentials required");
const BAD_CREDENTIALS: Kind = Kind::new(401, "bad-credentials", "Wrong credentials");
const PERMIT_LOCKED: Kind = Kind::new(423, "permit-locked", "Permit locked");
const PERMIT_EXPIRED: Kind = Kind::new(403, "permit-expired", "Permit expired");
const PERMIT_USED: Kind = Kind::new(409, "permit-used", "Permit already used");
const PERMIT_SUPERSEDED: Kind =
    Kind::new(409, "permit-superseded", "Permit replaced by a newer one");
const RETRY_PASSWORD_MISMATCH: Kind = Kind::new(
    409,
    "retry-password-mismatch",
    "Another password for a repeated enrollment",
);
const RETRY_KEY_MISMATCH: Kind = Kind::new(
    409,
    "retry-key-mismatch",
    "Another key for a repeated enrollment",
);
const ADMINISTRATOR_FIRST: Kind = Kind::new(
    409,
    "administrator-first",
    "The administrator enrolls first",
);
const RENEWAL_NOT_OPEN: Kind = Kind::new(403, "renewal-not-open", "Renewal not open yet");
const NOT_RENEWABLE: Kind = Kind::new(403, "not-renewable", "Certificate cannot be renewed");
const FORBIDDEN: Kind = Kind::new(403, "forbidden", "Not allowed");
const CONFLICT: Kind = Kind::new(409, "conflict", "Conflict");
const CONFIRMATION_REQUIRED: Kind = Kind::new(
    403,
    "confirmation-required",
    "Confirmation password required",
);
const CONFIRMATION_WRONG: Kind =
    Kind::new(403, "confirmation-wrong", "Wrong confirmation password");
const CONFIRMATION_LOCKED: Kind =
    Kind::new(423, "confirmation-locked", "Confirmation password locked");
const CA_NOT_INITIALISED: Kind =
    Kind::new(503, "ca-not-initialised", "Certificate issuing not set up");

/// Bad input, naming what is wrong.
pub(super) fn invalid(detail: impl Into<std::borrow::Cow<'static, str>>) -> Response<Body> {
    Kind::INVALID_REQUEST.detail(detail).json()
}

/// Bad input in one field, named in `detail` and in the `field` extension member.
pub(super) fn invalid_field(
    field: &str,
    detail: impl Into<std::borrow::Cow<'static, str>>,
) -> Response<Body> {
    Kind::INVALID_REQUEST
        .detail(detail)
        .with("field", field)
        .json()
}

/// The problem for a lifecycle refusal or failure.
pub(super) fn lifecycle_problem(err: &LifecycleError) -> Problem {
    use LifecycleError as E;
    let detail = err.to_string();
    let kind = match err {
        E::Invalid { field, .. } => {
            return Kind::INVALID_REQUEST.detail(detail).with("field", *field);
        }
        E::BadCsr(_) => BAD_CSR,
        E::BadP12Password(_) => BAD_P12_PASSWORD,
        E::CredentialsRequired => CREDENTIALS_REQUIRED,
        E::BadCredentials => BAD_CREDENTIALS,
        E::PermitLocked => PERMIT_LOCKED,
        E::PermitExpired { expired_at } => {
            return PERMIT_EXPIRED
                .detail(detail)
                .with("expired_at", expired_at.clone());
        }
        E::PermitUsed => PERMIT_USED,
        E::PermitSuperseded => PERMIT_SUPERSEDED,
        E::RetryPasswordMismatch => RETRY_PASSWORD_MISMATCH,
        E::RetryKeyMismatch => RETRY_KEY_MISMATCH,
        E::AdministratorFirst { .. } => ADMINISTRATOR_FIRST,
        E::RenewalNotOpen { opens_at, .. } => {
            return RENEWAL_NOT_OPEN
                .detail(detail)
                .with("opens_at", opens_at.clone());
        }
        E::NotRenewable { .. } => NOT_RENEWABLE,
        E::Forbidden { .. } => FORBIDDEN,
        E::Suspended { .. } => Kind::USER_SUSPENDED,
        E::NotFound { .. } => Kind::NOT_FOUND,
        E::Conflict { .. } => CONFLICT,
        E::NoCa => CA_NOT_INITIALISED,
        E::ConfirmationRequired { .. } => CONFIRMATION_REQUIRED,
        E::ConfirmationWrong { .. } => CONFIRMATION_WRONG,
        E::ConfirmationLocked => CONFIRMATION_LOCKED,
        E::Busy { .. } => Kind::new(503, "busy", "Too many requests at once"),
        E::Internal(cause) => {
            tracing::error!(cause = %cause, "lifecycle operation failed");
            return Kind::INTERNAL.detail(
                "certgate could not complete the request; nothing was changed. Please try again later.",
            );
        }
    };
    kind.detail(detail)
}

/// The problem JSON for a lifecycle refusal; a 401 carries a Basic challenge.
pub(super) fn lifecycle(err: &LifecycleError) -> Response<Body> {
    let mut response = lifecycle_problem(err).json();
    if let LifecycleError::Busy { retry_after_secs } = err {
        response
            .headers_mut()
            .insert(http::header::RETRY_AFTER, (*retry_after_secs).into());
    }
    if response.status() == http::StatusCode::UNAUTHORIZED {
        basic_challenge(response)
    } else {
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::StatusCode;
    use http::header;

    #[test]
    fn missing_credentials_get_a_basic_challenge() {
        let response = lifecycle(&LifecycleError::CredentialsRequired);
        assert_eq!(response.status(), 401);
        assert!(response.headers().contains_key(header::WWW_AUTHENTICATE));
    }

    /// The status, headers and JSON body of a made response.
    async fn read(response: Response<Body>) -> (StatusCode, http::HeaderMap, serde_json::Value) {
        use http_body_util::{BodyExt as _, Either};
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
