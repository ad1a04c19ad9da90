//! EST (RFC 7030): `cacerts`, `simpleenroll`, `simplereenroll`, `serverkeygen`. Bodies are
//! base64 DER; certificates go back as a certs-only PKCS#7.
//!
//! Every answer is written the way the strictest clients in use read it: the base64 on one line
//! with one trailing newline (strongSwan's `pki` decodes without skipping line breaks), the exact
//! media type `application/pkcs7-mime; smime-type=certs-only`, a `Content-Length`, few headers;
//! HTTP/1.1 header names are title-cased by the listener (libest compares them so).

use http::header::{self, HeaderValue};
use http::{Response, StatusCode};

use super::encode::{
    BOUNDARY, BasicError, basic_credentials, one_line_base64, serverkeygen_multipart,
};
use super::{Api, Call, certificate_required, problem};
use crate::http::{Body, bytes_response};
use crate::lifecycle::{Enrolled, KeySource, LifecycleError};

const CERTS_ONLY: &str = "application/pkcs7-mime; smime-type=certs-only";

impl Api {
    /// `GET cacerts`: the root and every valid CA generation.
    pub(super) fn est_cacerts(&self) -> Response<Body> {
        match self.lifecycle.ca_certs() {
            Ok(certs) => certs_only_response(&certs),
            Err(err) => problem::lifecycle(&err),
        }
    }

    /// `POST simpleenroll`: HTTP Basic with the enrollment credentials, a base64 PKCS#10 body.
    pub(super) async fn est_simpleenroll(&self, call: &Call<'_>) -> Response<Body> {
        let (holder, pin) = match basic_credentials(call.parts.headers.get(header::AUTHORIZATION)) {
            Ok(credentials) => credentials,
            Err(BasicError::Missing) => {
                return problem::lifecycle(&LifecycleError::CredentialsRequired);
            }
            Err(BasicError::Malformed) => {
                return problem::lifecycle(&LifecycleError::BadCredentials);
            }
        };
        let ctx = call.context(Some(holder.clone()));
        match self
            .lifecycle
            .enroll(holder, &pin, KeySource::Csr(call.body.to_vec()), &ctx)
            .await
        {
            Ok(enrolled) => certs_only_response(&[enrolled.certificate]),
            Err(err) => problem::lifecycle(&err),
        }
    }

    /// `POST simplereenroll`: the current certificate over mTLS, a base64 PKCS#10 body.
    pub(super) async fn est_simplereenroll(&self, call: &Call<'_>) -> Response<Body> {
        let Some(identity) = call.caller.identity else {
            return certificate_required(
                "re-enrollment runs over the current certificate: present it in the TLS handshake",
            );
        };
        let ctx = call.context(None);
        match self
            .lifecycle
            .renew(
                identity.holder(),
                &identity.serial,
                KeySource::Csr(call.body.to_vec()),
                &ctx,
            )
            .await
        {
            Ok(enrolled) => certs_only_response(&[enrolled.certificate]),
            Err(err) => problem::lifecycle(&err),
        }
    }

    /// `POST serverkeygen`: like `simpleenroll` (or `simplereenroll` when a certificate is
    /// presented and no Basic credentials are), but certgate makes the key; the answer is a
    /// multipart of the PKCS#8 key and the certs-only certificate.
    pub(super) async fn est_serverkeygen(&self, call: &Call<'_>) -> Response<Body> {
        let credentials = basic_credentials(call.parts.headers.get(header::AUTHORIZATION));
        let result: Result<Enrolled, LifecycleError> = match (credentials, call.caller.identity) {
            (Ok((holder, pin)), _) => {
                let ctx = call.context(Some(holder.clone()));
                self.lifecycle
                    .enroll(holder, &pin, KeySource::ServerKeyPkcs8, &ctx)
                    .await
            }
            (Err(BasicError::Missing), Some(identity)) => {
                let ctx = call.context(None);
                self.lifecycle
                    .renew(
                        identity.holder(),
                        &identity.serial,
                        KeySource::ServerKeyPkcs8,
                        &ctx,
                    )
                    .await
            }
            (Err(BasicError::Missing), None) => Err(LifecycleError::CredentialsRequired),
            (Err(BasicError::Malformed), _) => Err(LifecycleError::BadCredentials),
        };
        let enrolled = match result {
            Ok(enrolled) => enrolled,
            Err(err) => return problem::lifecycle(&err),
        };
        let (Some(key), Ok(certs)) = (
            enrolled.private_key.as_ref(),
            crate::pki::certs_only_pkcs7(std::slice::from_ref(&enrolled.certificate)),
        ) else {
            return problem::lifecycle(&LifecycleError::Internal(
                "serverkeygen made no key".into(),
            ));
        };
        let body = serverkeygen_multipart(key.secret_pkcs8_der(), &certs);
        let mut response = bytes_response(StatusCode::OK, "multipart/mixed", body);
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

fn certs_only_response(certs: &[rustls_pki_types::CertificateDer<'static>]) -> Response<Body> {
    match crate::pki::certs_only_pkcs7(certs) {
        Ok(der) => {
            let mut response = bytes_response(StatusCode::OK, CERTS_ONLY, one_line_base64(&der));
            response.headers_mut().insert(
                "content-transfer-encoding",
                HeaderValue::from_static("base64"),
            );
            response
        }
        Err(err) => problem::lifecycle(&LifecycleError::Internal(err.to_string())),
    }
}
