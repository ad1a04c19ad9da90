//! Expiry notices (電子証明書の有効期限のお知らせ): `[notify] days` before a certificate
//! expires, an e-mail to the corporation's administrator and, when the registry knows it, to the
//! user, in Japanese and English, with the expiry and the renewal page.
//!
//! Each (certificate, threshold) goes out once across restarts and replicas: it is claimed in the
//! registry before it is sent and marked sent after. A process that dies between the SMTP
//! server's answer and the mark leaves a claim that another run takes over after
//! [`STALE_CLAIM`]; the resend carries the same `Message-ID` (`<serial.Nd@certgate>`), so that a
//! duplicate is recognisable. A failed send releases its claim and is retried with backoff.
//! Certificates already renewed, revoked or expired get nothing. A certificate past several
//! thresholds at once (certgate started late, or the list changed) gets the nearest one only.

use std::sync::Arc;
use std::time::Duration;

use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport as _, Message, Tokio1Executor};
use secrecy::ExposeSecret as _;
use time::OffsetDateTime;

use crate::config::{ConfigError, NotifyConfig};
use crate::model::Clock;
use crate::store::{Expiring, Registry};

/// The environment variables with the SMTP credentials, kept out of the config file.
pub const SMTP_USER_ENV: &str = "CERTGATE_SMTP_USER";
/// See [`SMTP_USER_ENV`].
pub const SMTP_PASSWORD_ENV: &str = "CERTGATE_SMTP_PASSWORD";
/// The environment variable with the key that signs webhook calls (HMAC-SHA256).
pub const WEBHOOK_SECRET_ENV: &str = "CERTGATE_WEBHOOK_SECRET";
/// The header that carries a webhook call's signature: `sha256=<hex of HMAC-SHA256(body)>`.
pub const SIGNATURE_HEADER: &str = "x-certgate-signature";

/// How long a claim may stay unmarked before another run takes it over.
const STALE_CLAIM: time::Duration = time::Duration::minutes(10);
/// The longest pause between retries after a failed send.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// What one run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Report {
    /// Notices sent.
    pub sent: usize,
    /// Notices that could not be sent (released, to be retried).
    pub failed: usize,
}

/// Why the notifier could not run.
#[derive(Debug, thiserror::Error)]
#[error("expiry notices: {0}")]
pub struct NotifyError(String);

/// Sends the expiry notices.
pub struct Notifier {
    store: Arc<dyn Registry>,
    clock: Arc<dyn Clock>,
    days: Vec<u32>,
    from: Mailbox,
    renew_url: String,
    interval: Duration,
    mailer: AsyncSmtpTransport<Tokio1Executor>,
    webhook: Option<Webhook>,
}

/// `notify.webhook`: a JSON POST per notice, signed, for the bank's own systems.
struct Webhook {
    url: http::Uri,
    key: aws_lc_rs::hmac::Key,
    client: hyper_util::client::legacy::Client<
        hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
        http_body_util::Full<bytes::Bytes>,
    >,
}

impl Webhook {
    fn new(url: &str) -> Result<Self, ConfigError> {
        let secret = std::env::var(WEBHOOK_SECRET_ENV).map_err(|_| {
            ConfigError::new(
                "notify.webhook",
                format!(
                    "its calls are signed with a key from {WEBHOOK_SECRET_ENV}, which is not set"
                ),
            )
        })?;
        if secret.len() < 16 {
            return Err(ConfigError::new(
                "notify.webhook",
                format!(
                    "{WEBHOOK_SECRET_ENV} is too short to sign with; use 16 characters or more"
                ),
            ));
        }
        let url: http::Uri = url
            .parse()
            .map_err(|err| ConfigError::new("notify.webhook", format!("not a URL: {err}")))?;
        let roots = {
            let mut roots = rustls::RootCertStore::empty();
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
            roots
        };
        let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|err| ConfigError::new("notify.webhook", err.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Self {
            url,
            key: aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret.as_bytes()),
            client: hyper_util::client::legacy::Client::builder(
                hyper_util::rt::TokioExecutor::new(),
            )
            .build(https),
        })
    }

    async fn call(&self, body: String) -> Result<(), String> {
        let signature = aws_lc_rs::hmac::sign(&self.key, body.as_bytes());
        let request = http::Request::post(self.url.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(
                SIGNATURE_HEADER,
                format!("sha256={}", crate::model::hex(signature.as_ref())),
            )
            .body(http_body_util::Full::new(bytes::Bytes::from(body)))
            .map_err(|err| err.to_string())?;
        let response = tokio::time::timeout(Duration::from_secs(30), self.client.request(request))
            .await
            .map_err(|_| "the webhook did not answer in 30 s".to_owned())?
            .map_err(|err| format!("webhook: {}", crate::model::error_chain(&err)))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!("the webhook answered {}", response.status()))
        }
    }
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("days", &self.days)
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

/// lettre's URL with certgate's default: `smtp://` requires STARTTLS unless the URL says
/// `tls=opportunistic` or `tls=none` (plain text, for a relay on the same host).
fn transport_url(url: &str) -> String {
    let Some(rest) = url.strip_prefix("smtp://") else {
        return url.to_owned();
    };
    let (base, query) = rest.split_once('?').unwrap_or((rest, ""));
    let mut params: Vec<&str> = query.split('&').filter(|p| !p.is_empty()).collect();
    let tls = params
        .iter()
        .find_map(|p| p.strip_prefix("tls="))
        .map(str::to_owned);
    match tls.as_deref() {
        None => params.push("tls=required"),
        Some("none") => params.retain(|p| !p.starts_with("tls=")),
        Some(_) => {}
    }
    if params.is_empty() {
        format!("smtp://{base}")
    } else {
        format!("smtp://{base}?{}", params.join("&"))
    }
}

impl Notifier {
    /// The notifier of `[notify]`, or `None` when no `smtp_url` is set.
    pub fn new(
        config: &NotifyConfig,
        store: Arc<dyn Registry>,
        clock: Arc<dyn Clock>,
    ) -> Result<Option<Self>, ConfigError> {
        let Some(url) = &config.smtp_url else {
            return Ok(None);
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(&transport_url(url))
            .map_err(|err| ConfigError::new("notify.smtp_url", format!("not usable: {err}")))?
            .timeout(Some(Duration::from_secs(30)));
        if let Ok(user) = std::env::var(SMTP_USER_ENV) {
            let password =
                secrecy::SecretString::from(std::env::var(SMTP_PASSWORD_ENV).unwrap_or_default());
            builder =
                builder.credentials(Credentials::new(user, password.expose_secret().to_owned()));
        }
        let from: Mailbox = config.from.parse().map_err(|err| {
            ConfigError::new(
                "notify.from",
                format!("{:?} is not a mailbox: {err}", config.from),
            )
        })?;
        Ok(Some(Self {
            store,
            clock,
            days: config.days.clone(),
            from,
            renew_url: config.renew_url.clone(),
            interval: config.interval,
            mailer: builder.build(),
            webhook: config.webhook.as_deref().map(Webhook::new).transpose()?,
        }))
    }

    /// Runs every `[notify] interval` until the process ends; after failed sends, sooner, with
    /// backoff.
    pub async fn run(self) {
        let mut backoff = Duration::from_secs(1);
        loop {
            let pause = match self.run_once().await {
                Ok(report) if report.failed == 0 => {
                    backoff = Duration::from_secs(1);
                    self.interval
                }
                Ok(report) => {
                    tracing::warn!(sent = report.sent, failed = report.failed, retry_in = ?backoff, "expiry notices: some could not be sent");
                    let pause = backoff.min(self.interval);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    pause
                }
                Err(err) => {
                    tracing::warn!(error = %err, retry_in = ?backoff, "expiry notices: the run failed");
                    let pause = backoff.min(self.interval);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    pause
                }
            };
            tokio::time::sleep(pause).await;
        }
    }

    /// One pass over the certificates expiring within the largest threshold.
    pub async fn run_once(&self) -> Result<Report, NotifyError> {
        let now = self.clock.now();
        let Some(&horizon) = self.days.iter().max() else {
            return Ok(Report::default());
        };
        let until = now + time::Duration::days(i64::from(horizon));
        let expiring = self
            .store
            .expiring_certificates(now, until)
            .await
            .map_err(|err| NotifyError(format!("cannot read the registry: {err}")))?;
        let mut report = Report::default();
        for certificate in &expiring {
            let left = certificate.not_after - now;
            let Some(threshold) = self
                .days
                .iter()
                .copied()
                .filter(|days| left <= time::Duration::days(i64::from(*days)))
                .min()
            else {
                continue;
            };
            let message_id = format!("<{}.{threshold}d@certgate>", certificate.serial);
            let claimed = self
                .store
                .claim_notice(
                    &certificate.serial,
                    threshold,
                    &message_id,
                    now,
                    now - STALE_CLAIM,
                )
                .await
                .map_err(|err| NotifyError(format!("cannot claim a notice: {err}")))?;
            if !claimed {
                continue;
            }
            match self.send(certificate, now, &message_id).await {
                Ok(()) => {
                    self.store
                        .notice_sent(&certificate.serial, threshold, self.clock.now())
                        .await
                        .map_err(|err| NotifyError(format!("cannot mark a notice sent: {err}")))?;
                    tracing::info!(serial = %certificate.serial, holder = %certificate.holder, threshold, "expiry notice sent");
                    report.sent += 1;
                }
                Err(err) => {
                    tracing::warn!(serial = %certificate.serial, error = %err, "expiry notice not sent; it will be retried");
                    let _ = self
                        .store
                        .release_notice(&certificate.serial, threshold)
                        .await;
                    report.failed += 1;
                }
            }
        }
        tracing::info!(
            sent = report.sent,
            failed = report.failed,
            "expiry notices checked"
        );
        Ok(report)
    }

    async fn send(
        &self,
        certificate: &Expiring,
        now: OffsetDateTime,
        message_id: &str,
    ) -> Result<(), String> {
        let to: Mailbox = certificate
            .admin_email
            .parse()
            .map_err(|err| format!("administrator's address: {err}"))?;
        let mut builder = Message::builder()
            .from(self.from.clone())
            .to(to)
            .message_id(Some(message_id.to_owned()))
            .subject(subject(certificate))
            .header(ContentType::TEXT_PLAIN);
        if let Some(email) = certificate
            .user_email
            .as_deref()
            .filter(|email| *email != certificate.admin_email)
        {
            builder = builder.cc(email
                .parse()
                .map_err(|err| format!("user's address: {err}"))?);
        }
        let message = builder
            .body(body(certificate, now, &self.renew_url))
            .map_err(|err| err.to_string())?;
        self.mailer
            .send(message)
            .await
            .map_err(|err| err.to_string())?;
        if let Some(webhook) = &self.webhook {
            let event = serde_json::json!({
                "event": "certificate.expiring",
                "message_id": message_id,
                "serial": certificate.serial.to_string(),
                "corp_id": certificate.holder.corp_id,
                "user_id": certificate.holder.user_id,
                "not_after": crate::model::rfc3339(certificate.not_after),
                "days_left": (certificate.not_after - now).whole_days(),
                "renew_url": self.renew_url,
                "sent_at": crate::model::rfc3339(now),
            });
            webhook.call(event.to_string()).await?;
        }
        Ok(())
    }
}

use crate::model::japan_time as shown;

fn subject(certificate: &Expiring) -> String {
    format!(
        "【電子証明書】有効期限のお知らせ / Your certificate expires on {}",
        shown(certificate.not_after)
    )
}

fn body(certificate: &Expiring, now: OffsetDateTime, renew_url: &str) -> String {
    let days = (certificate.not_after - now).whole_days();
    let holder = &certificate.holder;
    let who = match &holder.user_id {
        Some(user) => format!("{} {user}", holder.corp_id),
        None => holder.corp_id.clone(),
    };
    let expiry = shown(certificate.not_after);
    format!(
        "{who} 様\n\n\
         ご利用中の電子証明書の有効期限が近づいています（あと {days} 日）。\n\
         有効期限: {expiry}\n\
         シリアル番号: {serial}\n\n\
         有効期限までに、次の画面から電子証明書を更新してください。\n\
         {renew_url}\n\n\
         --\n\
         The certificate of {who} expires on {expiry} ({days} days left; serial {serial}).\n\
         Renew it before then at:\n\
         {renew_url}\n",
        serial = certificate.serial,
    )
}

#[cfg(test)]
mod tests {
    use super::transport_url;

    #[test]
    fn smtp_requires_starttls_unless_the_url_says_otherwise() {
        assert_eq!(
            transport_url("smtp://mail:587"),
            "smtp://mail:587?tls=required"
        );
        assert_eq!(transport_url("smtp://mail:25?tls=none"), "smtp://mail:25");
        assert_eq!(
            transport_url("smtp://mail:25?tls=opportunistic"),
            "smtp://mail:25?tls=opportunistic"
        );
        assert_eq!(transport_url("smtps://mail:465"), "smtps://mail:465");
    }
}
