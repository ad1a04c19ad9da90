//! Pages for people in a browser under `/certgate/`: getting a certificate (電子証明書取得),
//! renewing it (更新), and one's own certificate and history.
//!
//! Server-rendered with minijinja (autoescaped), Japanese by default and English on request,
//! with no script and no external asset: the one style sheet is certgate's own, and the
//! Content-Security-Policy allows nothing else. Every form carries a signed token and is refused
//! when the browser says it was sent from another site ([`forms`]). A refusal shows the form
//! again with the reason and the fields typed so far (never a PIN or a password); until a PIN is
//! verified the reason is the same whoever asks, as for the JSON API.

mod admin;
mod forms;
mod notice;
mod render;
mod text;

pub use forms::{PageKey, PageKeyError};
pub use render::Templates;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use secrecy::SecretString;
use serde_json::json;
use time::OffsetDateTime;

use super::{Api, Call};
use crate::http::{Body, bytes_response};
use crate::lifecycle::{Enrolled, KeySource, LifecycleError};
use crate::model::Holder;
use forms::{fields, from_another_site};
use text::Lang;

/// What every page answers with besides its HTML: nothing may frame it, load anything but its
/// own style sheet, send it elsewhere or read where it came from.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The pages' templates and the key of their forms.
#[derive(Debug)]
pub struct Pages {
    templates: Templates,
    key: PageKey,
}

impl Pages {
    /// Pages rendered from `templates`, forms signed with `key`.
    pub fn new(key: PageKey, templates: Templates) -> Self {
        Self { templates, key }
    }
}

/// The paths of the pages.
pub(super) const ENROLL: &str = "/certgate/enroll";
pub(super) const RENEW: &str = "/certgate/renew";
pub(super) const ME: &str = "/certgate/me";
pub(super) const NOTICE: &str = "/certgate/notice";
pub(super) const ADMIN: &str = "/certgate/admin";
pub(super) const REVOKE: &str = "/certgate/admin/revoke";
pub(super) const USER: &str = "/certgate/admin/user";

/// The longest a typed PIN or password may be; longer is a mistake or an attack.
const MAX_SECRET_CHARS: usize = 128;
const MIN_P12_PASSWORD_CHARS: usize = 8;

/// A page being made: its language and the words and links every page has.
struct Page {
    lang: Lang,
    context: serde_json::Map<String, serde_json::Value>,
}

impl Page {
    fn new(lang: Lang, path: &str) -> Self {
        let other = lang.other();
        let mut context = serde_json::Map::new();
        context.insert("t".into(), json!(lang.words()));
        context.insert("lang".into(), json!(lang.code()));
        context.insert("other_lang".into(), json!(other.code()));
        context.insert(
            "switch_url".into(),
            json!(format!("{path}?lang={}", other.code())),
        );
        context.insert(
            "action".into(),
            json!(format!("{path}?lang={}", lang.code())),
        );
        context.insert("me_url".into(), json!(format!("{ME}?lang={}", lang.code())));
        context.insert(
            "renew_url".into(),
            json!(format!("{RENEW}?lang={}", lang.code())),
        );
        Self { lang, context }
    }

    fn set(mut self, key: &str, value: serde_json::Value) -> Self {
        self.context.insert(key.to_owned(), value);
        self
    }

    fn error(self, message: impl Into<String>) -> Self {
        self.set("error", json!(message.into()))
    }

    fn render(self, pages: &Pages, template: &str, status: StatusCode) -> Response<Body> {
        let html = pages.templates.render(
            template,
            &minijinja::Value::from_serialize(serde_json::Value::Object(self.context)),
        );
        page_response(status, self.lang, html)
    }
}

/// After a form that changed something: on to `location` (a GET, so that reloading it posts
/// nothing again).
fn see_other(location: &str) -> Response<Body> {
    let mut response = Response::new(crate::http::empty());
    *response.status_mut() = StatusCode::SEE_OTHER;
    let headers = response.headers_mut();
    headers.insert(
        header::LOCATION,
        HeaderValue::from_str(location).unwrap_or(HeaderValue::from_static("/")),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// An HTML page with the headers every page carries.
fn page_response(status: StatusCode, lang: Lang, html: String) -> Response<Body> {
    let mut response = bytes_response(status, "text/html; charset=utf-8", html);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_LANGUAGE,
        HeaderValue::from_static(lang.code()),
    );
    headers.insert(header::VARY, HeaderValue::from_static("Accept-Language"));
    response
}

use crate::model::japan_time as shown;

fn shown_unix(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix).map_or_else(|_| unix.to_string(), shown)
}

/// O, OU and CN of a certificate's subject, and its serial and expiry, for a result page.
fn details(
    der: &[u8],
    serial: &crate::model::Serial,
    not_after: OffsetDateTime,
) -> serde_json::Value {
    let joined = |values: Vec<&str>| values.join(", ");
    let (o, ou, cn) = match x509_parser::parse_x509_certificate(der) {
        Ok((_, cert)) => {
            let subject = cert.subject();
            (
                joined(
                    subject
                        .iter_organization()
                        .filter_map(|a| a.as_str().ok())
                        .collect(),
                ),
                joined(
                    subject
                        .iter_organizational_unit()
                        .filter_map(|a| a.as_str().ok())
                        .collect(),
                ),
                joined(
                    subject
                        .iter_common_name()
                        .filter_map(|a| a.as_str().ok())
                        .collect(),
                ),
            )
        }
        Err(_) => Default::default(),
    };
    json!({
        "o": o,
        "ou": ou,
        "cn": cn,
        "serial": serial.to_string(),
        "not_after": shown(not_after),
    })
}

/// What is wrong with a typed corporation or user ID, in `lang`; `None` when it is well formed.
fn id_problem(lang: Lang, label: &'static str, value: &str, required: bool) -> Option<String> {
    if value.is_empty() {
        return required.then(|| format!("{}{}", lang.word(label), lang.word("err_required")));
    }
    if value.len() > 30 || !value.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Some(format!(
            "{}{}",
            lang.word(label),
            lang.word("err_id_format")
        ));
    }
    None
}

/// The two typed PKCS#12 passwords, checked: long enough, short enough, the same.
fn p12_password(
    lang: Lang,
    form: &std::collections::HashMap<String, String>,
) -> Result<SecretString, String> {
    let first = form.get("password").map_or("", String::as_str);
    let second = form.get("password2").map_or("", String::as_str);
    let chars = first.chars().count();
    if chars < MIN_P12_PASSWORD_CHARS {
        return Err(lang.word("err_password_short").to_owned());
    }
    if chars > MAX_SECRET_CHARS {
        return Err(format!(
            "{}{}",
            lang.word("p12_password"),
            lang.word("err_too_long")
        ));
    }
    if !constant_time_eq(first.as_bytes(), second.as_bytes()) {
        return Err(lang.word("err_password_differs").to_owned());
    }
    Ok(SecretString::from(first.to_owned()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && aws_lc_rs::constant_time::verify_slices_are_equal(a, b).is_ok()
}

/// A lifecycle refusal as the person at the form should read it, and its status.
fn refusal(lang: Lang, err: &LifecycleError) -> (StatusCode, String) {
    use LifecycleError as E;
    let status = super::problem::lifecycle_problem(err).kind.status;
    let key = match err {
        E::BadCredentials | E::CredentialsRequired => "err_credentials",
        E::PermitLocked => "err_locked",
        E::PermitExpired { .. } => "err_expired_pin",
        E::PermitUsed | E::PermitSuperseded => "err_used_pin",
        E::AdministratorFirst { .. } => "err_admin_first",
        E::BadP12Password(_) => "err_password_short",
        E::Busy { .. } => "err_busy",
        E::ConfirmationWrong { .. } => "err_confirmation_wrong",
        E::ConfirmationLocked => "err_confirmation_locked",
        E::ConfirmationRequired { .. } => "err_confirmation_required",
        _ => {
            let detail = super::problem::lifecycle_problem(err).detail;
            return (status, format!("{} {detail}", lang.word("err_other")));
        }
    };
    (status, lang.word(key).to_owned())
}

/// The caller's certificate serial, which a renewal form's token is bound to.
fn binding(call: &Call<'_>) -> String {
    call.caller
        .identity
        .map(|identity| identity.serial.to_string())
        .unwrap_or_default()
}

impl Api {
    fn now_unix(&self) -> i64 {
        self.lifecycle.now().unix_timestamp()
    }

    /// The form of `template` posting to `path`, with a fresh token.
    fn form_page(&self, call: &Call<'_>, lang: Lang, path: &str, form: &str) -> Page {
        let token = self
            .pages
            .key
            .token(form, path, &binding(call), self.now_unix());
        Page::new(lang, path).set("token", json!(token))
    }

    /// Whether a posted form may be acted on: sent from this site, with a good token. The
    /// refusal names which check failed, in `lang`.
    fn form_allowed(
        &self,
        call: &Call<'_>,
        lang: Lang,
        path: &str,
        form_name: &str,
        form: &std::collections::HashMap<String, String>,
    ) -> Result<(), String> {
        if from_another_site(&call.parts) {
            let header = |name: &str| {
                call.parts
                    .headers
                    .get(name)
                    .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
            };
            tracing::warn!(
                peer = %call.caller.peer,
                path,
                origin = header("origin"),
                sec_fetch_site = header("sec-fetch-site"),
                host = header("host"),
                "a form sent from another site was refused"
            );
            return Err(lang.word("err_cross_site").to_owned());
        }
        let token = form.get("token").map_or("", String::as_str);
        if !self
            .pages
            .key
            .check(token, form_name, path, &binding(call), self.now_unix())
        {
            return Err(lang.word("err_token").to_owned());
        }
        Ok(())
    }

    /// `GET /certgate/static/certgate.css`.
    pub(super) fn page_style(&self) -> Response<Body> {
        let mut response = bytes_response(StatusCode::OK, "text/css; charset=utf-8", render::STYLE);
        response.headers_mut().insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=3600"),
        );
        response
    }

    /// A page saying that this page needs the caller's certificate.
    fn certificate_needed(&self, lang: Lang, path: &str) -> Response<Body> {
        Page::new(lang, path)
            .set("title", json!(lang.word("certificate_needed_title")))
            .set("message", json!(lang.word("certificate_needed")))
            .render(&self.pages, "message.html", StatusCode::UNAUTHORIZED)
    }

    /// `GET /certgate/enroll`: the enrollment form.
    pub(super) fn page_enroll(&self, call: &Call<'_>) -> Response<Body> {
        let lang = Lang::of(&call.parts);
        self.form_page(call, lang, ENROLL, "enroll")
            .set("corp_id", json!(""))
            .set("user_id", json!(""))
            .render(&self.pages, "enroll.html", StatusCode::OK)
    }

    /// `POST /certgate/enroll`: a certificate and its `certificate.p12`, or the form again with
    /// the reason.
    pub(super) async fn page_enroll_post(&self, call: &Call<'_>) -> Response<Body> {
        let lang = Lang::of(&call.parts);
        let Some(form) = fields(&call.parts, &call.body) else {
            return self
                .form_page(call, lang, ENROLL, "enroll")
                .set("corp_id", json!(""))
                .set("user_id", json!(""))
                .error(lang.word("err_form_type"))
                .render(
                    &self.pages,
                    "enroll.html",
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                );
        };
        let corp_id = form.get("corp_id").map_or("", |v| v.trim()).to_owned();
        let user_id = form.get("user_id").map_or("", |v| v.trim()).to_owned();
        // The typed IDs come back only when well formed: they are shown in the form again.
        let again = |error: String, status: StatusCode| {
            let keep = |value: &str, label| {
                if id_problem(lang, label, value, false).is_none() {
                    value.to_owned()
                } else {
                    String::new()
                }
            };
            self.form_page(call, lang, ENROLL, "enroll")
                .set("corp_id", json!(keep(&corp_id, "corp_id")))
                .set("user_id", json!(keep(&user_id, "user_id")))
                .error(error)
                .render(&self.pages, "enroll.html", status)
        };
        if let Err(error) = self.form_allowed(call, lang, ENROLL, "enroll", &form) {
            return again(error, StatusCode::FORBIDDEN);
        }
        let pin = form.get("pin").map_or("", String::as_str);
        let problem = id_problem(lang, "corp_id", &corp_id, true)
            .or_else(|| id_problem(lang, "user_id", &user_id, false))
            .or_else(|| {
                pin.is_empty()
                    .then(|| format!("{}{}", lang.word("pin"), lang.word("err_required")))
            })
            .or_else(|| {
                (pin.chars().count() > MAX_SECRET_CHARS)
                    .then(|| format!("{}{}", lang.word("pin"), lang.word("err_too_long")))
            });
        if let Some(problem) = problem {
            return again(problem, StatusCode::BAD_REQUEST);
        }
        let p12_password = match p12_password(lang, &form) {
            Ok(password) => password,
            Err(problem) => return again(problem, StatusCode::BAD_REQUEST),
        };
        let holder = Holder {
            corp_id: corp_id.clone(),
            user_id: (!user_id.is_empty()).then(|| user_id.clone()),
        };
        let ctx = call.context(Some(holder.clone()));
        let pin = SecretString::from(pin.to_owned());
        match self
            .lifecycle
            .enroll(holder, &pin, KeySource::ServerKey { p12_password }, &ctx)
            .await
        {
            Ok(enrolled) => self.issued_page(lang, ENROLL, "enrolled.html", &enrolled),
            Err(err) => {
                let (status, message) = refusal(lang, &err);
                again(message, status)
            }
        }
    }

    /// The result page of an enrollment or renewal, with `certificate.p12` to download.
    fn issued_page(
        &self,
        lang: Lang,
        path: &str,
        template: &str,
        enrolled: &Enrolled,
    ) -> Response<Body> {
        let p12 = enrolled.p12.as_deref().map(|p12| STANDARD.encode(p12));
        Page::new(lang, path)
            .set(
                "cert",
                details(
                    enrolled.certificate.as_ref(),
                    &enrolled.serial,
                    enrolled.not_after,
                ),
            )
            .set("p12", json!(p12.unwrap_or_default()))
            .render(&self.pages, template, StatusCode::OK)
    }

    /// The renewal page of the caller's certificate: when renewal opens, why it cannot be
    /// renewed, or its details with Execute and Cancel.
    async fn renew_page(&self, call: &Call<'_>, lang: Lang) -> Result<Page, Response<Body>> {
        let Some(identity) = call.caller.identity else {
            return Err(self.certificate_needed(lang, RENEW));
        };
        let view = self
            .lifecycle
            .me(
                &identity.holder(),
                &identity.serial,
                call.caller.role,
                identity.not_after,
            )
            .await
            .map_err(|err| {
                let (status, message) = refusal(lang, &err);
                Page::new(lang, RENEW)
                    .set("title", json!(lang.word("renew_title")))
                    .set("message", json!(message))
                    .render(&self.pages, "message.html", status)
            })?;
        let cn = call
            .caller
            .identity
            .map(|identity| match &identity.user_id {
                Some(user) => format!("{} {user}", identity.corp_id),
                None => identity.corp_id.clone(),
            })
            .unwrap_or_default();
        let mut page = self
            .form_page(call, lang, RENEW, "renew")
            .set(
                "cert",
                json!({
                    "cn": cn,
                    "serial": identity.serial.to_string(),
                    "not_after": shown_unix(identity.not_after),
                }),
            )
            .set("can_renew", json!(view.can_renew));
        if !view.can_renew {
            page = match (view.status.as_str(), &view.renewal_opens) {
                ("issued", Some(opens)) => {
                    let opens = OffsetDateTime::parse(
                        opens,
                        &time::format_description::well_known::Rfc3339,
                    )
                    .map_or_else(|_| opens.clone(), shown);
                    page.set("opens_at", json!(opens))
                }
                (status, _) => page.set(
                    "not_possible",
                    json!(format!(
                        "({}: {})",
                        lang.word("status"),
                        lang.word(status_word(status))
                    )),
                ),
            };
        }
        Ok(page)
    }

    /// `GET /certgate/renew`.
    pub(super) async fn page_renew(&self, call: &Call<'_>) -> Response<Body> {
        let lang = Lang::of(&call.parts);
        match self.renew_page(call, lang).await {
            Ok(page) => page.render(&self.pages, "renew.html", StatusCode::OK),
            Err(response) => response,
        }
    }

    /// `POST /certgate/renew`: Execute → the new `certificate.p12`; Cancel → "renewal
    /// interrupted".
    pub(super) async fn page_renew_post(&self, call: &Call<'_>) -> Response<Body> {
        let lang = Lang::of(&call.parts);
        let page = match self.renew_page(call, lang).await {
            Ok(page) => page,
            Err(response) => return response,
        };
        let Some(form) = fields(&call.parts, &call.body) else {
            return page.error(lang.word("err_form_type")).render(
                &self.pages,
                "renew.html",
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
            );
        };
        if let Err(error) = self.form_allowed(call, lang, RENEW, "renew", &form) {
            return page
                .error(error)
                .render(&self.pages, "renew.html", StatusCode::FORBIDDEN);
        }
        match form.get("do").map(String::as_str) {
            Some("cancel") => {
                return Page::new(lang, RENEW)
                    .set("back_url", json!(format!("{RENEW}?lang={}", lang.code())))
                    .render(&self.pages, "renew_cancelled.html", StatusCode::OK);
            }
            Some("execute") => {}
            _ => {
                return page.error(lang.word("err_form_type")).render(
                    &self.pages,
                    "renew.html",
                    StatusCode::BAD_REQUEST,
                );
            }
        }
        let p12_password = match p12_password(lang, &form) {
            Ok(password) => password,
            Err(problem) => {
                return page.error(problem).render(
                    &self.pages,
                    "renew.html",
                    StatusCode::BAD_REQUEST,
                );
            }
        };
        let Some(identity) = call.caller.identity else {
            return self.certificate_needed(lang, RENEW);
        };
        let ctx = call.context(None);
        match self
            .lifecycle
            .renew(
                identity.holder(),
                &identity.serial,
                KeySource::ServerKey { p12_password },
                &ctx,
            )
            .await
        {
            Ok(enrolled) => self.issued_page(lang, RENEW, "renewed.html", &enrolled),
            Err(err) => {
                let (status, message) = refusal(lang, &err);
                page.error(message)
                    .render(&self.pages, "renew.html", status)
            }
        }
    }

    /// `GET /certgate/me`: the caller's certificate and their own operation history.
    pub(super) async fn page_me(&self, call: &Call<'_>) -> Response<Body> {
        let lang = Lang::of(&call.parts);
        let Some(identity) = call.caller.identity else {
            return self.certificate_needed(lang, ME);
        };
        let ctx = call.context(None);
        let view = self
            .lifecycle
            .me(
                &identity.holder(),
                &identity.serial,
                call.caller.role,
                identity.not_after,
            )
            .await;
        let history = self.lifecycle.own_history(&ctx, 100).await;
        let (view, history) = match (view, history) {
            (Ok(view), Ok(history)) => (view, history),
            (Err(err), _) | (_, Err(err)) => {
                let (status, message) = refusal(lang, &err);
                return Page::new(lang, ME)
                    .set("title", json!(lang.word("me_title")))
                    .set("message", json!(message))
                    .render(&self.pages, "message.html", status);
            }
        };
        let reformat = |text: &Option<String>| {
            text.as_deref().map(|text| {
                OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
                    .map_or_else(|_| text.to_owned(), shown)
            })
        };
        let me = json!({
            "corp_id": view.corp_id,
            "user_id": view.user_id,
            "serial": view.serial.to_string(),
            "not_after": reformat(&Some(view.not_after.clone())),
            "status": lang.word(status_word(&view.status)),
            "days_left": view.days_left,
            "renewal_opens": reformat(&view.renewal_opens),
            "can_renew": view.can_renew,
        });
        let history: Vec<serde_json::Value> = history
            .iter()
            .map(|entry| {
                json!({
                    "at": shown(entry.at),
                    "action": entry.action,
                    "actor": entry.actor,
                    "target": entry.target,
                    "result": entry.result,
                })
            })
            .collect();
        Page::new(lang, ME)
            .set("me", me)
            .set("history", json!(history))
            .render(&self.pages, "me.html", StatusCode::OK)
    }
}

/// The word key of a certificate status.
fn status_word(status: &str) -> &'static str {
    match status {
        "issued" => "status_issued",
        "renewable" => "status_renewable",
        "expired" => "status_expired",
        "revoked" => "status_revoked",
        "renewed" => "status_renewed",
        "unissued" => "status_unissued",
        _ => "status_external",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A page with every value some template reads.
    fn full_page(lang: Lang) -> Page {
        let cert =
            json!({"o": "Bank", "ou": "CA", "cn": "1 taro", "serial": "0a", "not_after": "x"});
        let me = json!({"corp_id": "1", "user_id": "taro", "serial": "0a", "not_after": "x",
            "status": "issued", "days_left": 3, "renewal_opens": "y", "can_renew": true});
        Page::new(lang, ENROLL)
            .set("title", json!("T"))
            .set("message", json!("M"))
            .set("cert", cert)
            .set("me", me)
            .set("p12", json!("AAAA"))
            .set("history", json!([]))
            .set("users", json!([{"user_id": "taro", "name": null, "role": "r", "suspended": false, "status": "s", "not_after": null}]))
            .set("sort_urls", json!({}))
            .set("user", json!({"user_id": "taro", "name": null, "role": "r", "status": "s", "not_after": null, "email": null, "is_admin": false}))
            .set("reasons", json!([]))
            .set("serials", json!([]))
    }

    #[test]
    fn every_built_in_page_renders_in_both_languages() {
        let pages = Pages::new(PageKey::from_bytes(&[1; 32]), Templates::new(None));
        for lang in [Lang::Ja, Lang::En] {
            for template in [
                "enroll.html",
                "enrolled.html",
                "renew.html",
                "renewed.html",
                "renew_cancelled.html",
                "me.html",
                "message.html",
                "notice.html",
                "admin.html",
                "reissued.html",
                "revoke.html",
                "revoked.html",
                "user.html",
            ] {
                let page = full_page(lang).set("error", json!("<script>alert(1)</script>"));
                let html = pages.templates.render(
                    template,
                    &minijinja::Value::from_serialize(serde_json::Value::Object(page.context)),
                );
                assert!(html.starts_with("<!doctype html>"), "{template}: {html}");
                assert!(
                    html.contains(&format!("<html lang=\"{}\">", lang.code())),
                    "{template}"
                );
                assert!(!html.contains("<script>"), "{template} escapes values");
                assert!(
                    html.contains("lang-switch"),
                    "{template} has the language switch"
                );
            }
        }
    }

    #[test]
    fn a_broken_override_falls_back_to_the_built_in_page() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("enroll.html"), "{% extends \"layout.html\" %}{% block main %}<p id=\"bank\">BANK {{ t.enroll_title }}</p>{% endblock %}").unwrap();
        std::fs::write(dir.path().join("me.html"), "{% for %}").unwrap();
        std::fs::write(
            dir.path().join("message.html"),
            "{{ missing.deeper.still }}",
        )
        .unwrap();
        let templates = Templates::new(Some(dir.path()));
        let context = minijinja::Value::from_serialize(serde_json::Value::Object(
            full_page(Lang::En).context,
        ));
        assert!(
            templates
                .render("enroll.html", &context)
                .contains("BANK Get your certificate")
        );
        assert!(
            templates
                .render("me.html", &context)
                .contains("Your certificate")
        );
        assert!(
            templates
                .render("message.html", &context)
                .contains("<p id=\"message\">M</p>")
        );
    }

    #[test]
    fn japan_time() {
        let at = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        assert_eq!(shown(at), "2027-01-15 17:00 JST");
    }
}
