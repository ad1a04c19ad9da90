//! EST (RFC 7030): `cacerts`, `simpleenroll`, `simplereenroll`, `serverkeygen`. Bodies are
//! base64 DER; certificates go back as a certs-only PKCS#7.

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use super::encode::{
    BOUNDARY, BasicError, basic_credentials, serverkeygen_multipart, wrapped_base64,
};
use super::{Api, Caller, problem, read_body};
use crate::lifecycle::{Enrolled, KeySource, LifecycleError};
use crate::proxy::ProxyBody;

const CERTS_ONLY: &str = "application/pkcs7-mime; smime-type=certs-only";

impl Api {
    /// `GET cacerts`: the root and every valid CA generation.
    pub(super) fn est_cacerts(&self) -> Response<ProxyBody> {
        let certs = match self.lifecycle.ca_certs() {
            Ok(certs) => certs,
            Err(err) => return problem::lifecycle(&err),
        };
        certs_only_response(&certs)
    }

    /// `POST simpleenroll`: HTTP Basic with the enrollment credentials, a base64 PKCS#10 body.
    pub(super) async fn est_simpleenroll(
        &self,
        caller: Caller<'_>,
        request: Request<Incoming>,
    ) -> Response<ProxyBody> {
        let credentials = basic_credentials(request.headers().get(header::AUTHORIZATION));
        let (holder, pin) = match credentials {
            Ok(credentials) => credentials,
            Err(BasicError::Missing) => {
                return problem::lifecycle(&LifecycleError::CredentialsRequired);
            }
            Err(BasicError::Malformed) => {
                return problem::lifecycle(&LifecycleError::BadCredentials);
            }
        };
        let (_, body) = match read_body(request).await {
            Ok(read) => read,
            Err(response) => return response,
        };
        let ctx = caller.context(Some(holder.clone()));
        match self
            .lifecycle
            .enroll(holder, &pin, KeySource::Csr(body.to_vec()), &ctx)
            .await
        {
            Ok(enrolled) => {
                self.refresh_standing().await;
                certs_only_response(&[enrolled.certificate])
            }
            Err(err) => problem::lifecycle(&err),
        }
    }

    /// `POST simplereenroll`: the current certificate over mTLS, a base64 PKCS#10 body.
    pub(super) async fn est_simplereenroll(
        &self,
        caller: Caller<'_>,
        request: Request<Incoming>,
    ) -> Response<ProxyBody> {
        let (Some(identity), Some(holder)) = (caller.identity, caller.holder()) else {
            return certificate_required();
        };
        let (_, body) = match read_body(request).await {
            Ok(read) => read,
            Err(response) => return response,
        };
        let ctx = caller.context(None);
        match self
            .lifecycle
            .renew(
                holder,
                &identity.serial_hex,
                KeySource::Csr(body.to_vec()),
                &ctx,
            )
            .await
        {
            Ok(enrolled) => {
                self.refresh_standing().await;
                certs_only_response(&[enrolled.certificate])
            }
            Err(err) => problem::lifecycle(&err),
        }
    }

    /// `POST serverkeygen`: like `simpleenroll` (or `simplereenroll` when a certificate is
    /// presented and no Basic credentials are), but certgate makes the key; the answer is a
    /// multipart of the PKCS#8 key and the certs-only certificate.
    pub(super) async fn est_serverkeygen(
        &self,
        caller: Caller<'_>,
        request: Request<Incoming>,
    ) -> Response<ProxyBody> {
        let credentials = basic_credentials(request.headers().get(header::AUTHORIZATION));
        let result: Result<Enrolled, LifecycleError> =
            match (credentials, caller.identity, caller.holder()) {
                (Ok((holder, pin)), _, _) => {
                    let ctx = caller.context(Some(holder.clone()));
                    self.lifecycle
                        .enroll(holder, &pin, KeySource::ServerKeyPkcs8, &ctx)
                        .await
                }
                (Err(BasicError::Missing), Some(identity), Some(holder)) => {
                    let ctx = caller.context(None);
                    self.lifecycle
                        .renew(
                            holder,
                            &identity.serial_hex,
                            KeySource::ServerKeyPkcs8,
                            &ctx,
                        )
                        .await
                }
                (Err(BasicError::Missing), _, _) => Err(LifecycleError::CredentialsRequired),
                (Err(BasicError::Malformed), _, _) => Err(LifecycleError::BadCredentials),
            };
        let enrolled = match result {
            Ok(enrolled) => enrolled,
            Err(err) => return problem::lifecycle(&err),
        };
        self.refresh_standing().await;
        let (Some(key), Ok(certs)) = (
            enrolled.private_key.as_ref(),
            crate::pki::certs_only_pkcs7(std::slice::from_ref(&enrolled.certificate)),
        ) else {
            return problem::lifecycle(&LifecycleError::Internal(
                "serverkeygen made no key".into(),
            ));
        };
        let body = serverkeygen_multipart(key.secret_pkcs8_der(), &certs);
        let mut response =
            super::bytes_response(StatusCode::OK, "multipart/mixed", body.into_bytes());
        if let Ok(content_type) =
            HeaderValue::from_str(&format!("multipart/mixed; boundary={BOUNDARY}"))
        {
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, content_type);
        }
        response
    }
}

fn certificate_required() -> Response<ProxyBody> {
    problem::problem(
        StatusCode::UNAUTHORIZED,
        "certificate-required",
        "Client certificate required",
        "re-enrollment runs over the current certificate: present it in the TLS handshake",
    )
}

fn certs_only_response(certs: &[rustls_pki_types::CertificateDer<'static>]) -> Response<ProxyBody> {
    match crate::pki::certs_only_pkcs7(certs) {
        Ok(der) => {
            let mut response = super::bytes_response(
                StatusCode::OK,
                CERTS_ONLY,
                wrapped_base64(&der).into_bytes(),
            );
            response.headers_mut().insert(
                "content-transfer-encoding",
                HeaderValue::from_static("base64"),
            );
            response
        }
        Err(err) => problem::lifecycle(&LifecycleError::Internal(err.to_string())),
    }
}
