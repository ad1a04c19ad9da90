//! 利用者管理, for the corporation's administrator and its master and admin users: the status
//! table (sortable), adding a user, re-issue (the new temporary PIN shown once), suspend and
//! resume, and the operation history filtered by user and action. Who may do what is the
//! lifecycle's rule: this page only asks.

use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use secrecy::ExposeSecret as _;
use serde_json::json;

use super::forms::fields;
use super::text::Lang;
use super::{ADMIN, Page, refusal, shown, status_word};
use crate::api::{Api, Call};
use crate::http::{Body, empty};
use crate::lifecycle::LifecycleError;
use crate::model::Role;

/// The columns the status table sorts by.
const SORTS: &[&str] = &["user_id", "name", "role", "status", "not_after"];

/// A query parameter of the page's URL.
fn query(call: &Call<'_>, name: &str) -> Option<String> {
    call.parts.uri.query().and_then(|query| {
        form_urlencoded::parse(query.as_bytes())
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.into_owned())
    })
}

fn role_word(role: Role) -> &'static str {
    match role {
        Role::Master => "role_master",
        Role::Admin => "role_admin",
        Role::General => "role_general",
    }
}

impl Api {
    /// `GET /certgate/admin`.
    pub(in crate::api) async fn page_admin(&self, call: &Call<'_>) -> Response<Body> {
        let lang = Lang::of(&call.parts);
        match self.admin_page(call, lang, None).await {
            Ok(page) => page.render(&self.pages, "admin.html", StatusCode::OK),
            Err(response) => response,
        }
    }

    /// The page, with `error` over the table when an action was refused.
    async fn admin_page(
        &self,
        call: &Call<'_>,
        lang: Lang,
        error: Option<String>,
    ) -> Result<Page, Response<Body>> {
        let Some(identity) = call.caller.identity else {
            return Err(self.certificate_needed(lang, ADMIN));
        };
        let ctx = call.context(None);
        let corp_id = identity.corp_id.clone();
        let refused = |err: &LifecycleError| {
            let (status, message) = refusal(lang, err);
            Page::new(lang, ADMIN)
                .set("title", json!(lang.word("admin_title")))
                .set("message", json!(message))
                .render(&self.pages, "message.html", status)
        };
        let mut rows = self
            .lifecycle
            .status_table(&ctx, &corp_id)
            .await
            .map_err(|err| refused(&err))?;
        let sort = query(call, "sort")
            .filter(|sort| SORTS.contains(&sort.as_str()))
            .unwrap_or_else(|| "user_id".to_owned());
        rows.sort_by(|a, b| {
            let key = |row: &crate::store::StatusRow| match sort.as_str() {
                "name" => row.user.name.clone().unwrap_or_default(),
                "role" => row.user.role.as_str().to_owned(),
                "status" => row.status.as_str().to_owned(),
                "not_after" => row
                    .latest
                    .as_ref()
                    .map(|cert| format!("{:020}", cert.not_after.unix_timestamp()))
                    .unwrap_or_default(),
                _ => String::new(),
            };
            key(a)
                .cmp(&key(b))
                .then_with(|| a.user.user_id.cmp(&b.user.user_id))
        });
        let users: Vec<serde_json::Value> = rows
            .iter()
            .map(|row| {
                json!({
                    "user_id": row.user.user_id,
                    "name": row.user.name,
                    "role": lang.word(role_word(row.user.role)),
                    "suspended": row.user.status == crate::store::UserStatus::Suspended,
                    "status": lang.word(status_word(row.status.as_str())),
                    "not_after": row.latest.as_ref().map(|cert| shown(cert.not_after)),
                })
            })
            .collect();
        let user_filter = query(call, "user").unwrap_or_default();
        let action_filter = query(call, "action").unwrap_or_default();
        let history: Vec<serde_json::Value> = self
            .lifecycle
            .audit_trail(&ctx, Some(&corp_id), 500)
            .await
            .map_err(|err| refused(&err))?
            .iter()
            .filter(|entry| {
                (user_filter.is_empty()
                    || entry.target == format!("{corp_id}/{user_filter}")
                    || entry.actor.ends_with(&format!("{corp_id}/{user_filter}")))
                    && (action_filter.is_empty() || entry.action.starts_with(&action_filter))
            })
            .take(200)
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
        let sort_urls: serde_json::Map<String, serde_json::Value> = SORTS
            .iter()
            .map(|column| {
                (
                    (*column).to_owned(),
                    json!(format!("{ADMIN}?lang={}&sort={column}", lang.code())),
                )
            })
            .collect();
        let mut page = self
            .form_page(call, lang, ADMIN, "admin")
            .set("corp_id", json!(corp_id))
            .set("users", json!(users))
            .set("sort_urls", serde_json::Value::Object(sort_urls))
            .set("history", json!(history))
            .set("user_filter", json!(user_filter))
            .set("action_filter", json!(action_filter))
            .set("filter_action", json!(ADMIN));
        if let Some(error) = error {
            page = page.error(error);
        }
        Ok(page)
    }

    /// `POST /certgate/admin`: add, reissue, suspend or resume; afterwards back to the page (the
    /// re-issued PIN is shown once, on a page of its own).
    pub(in crate::api) async fn page_admin_post(&self, call: &Call<'_>) -> Response<Body> {
        let lang = Lang::of(&call.parts);
        let again = |error: String, status: StatusCode| async move {
            match self.admin_page(call, lang, Some(error)).await {
                Ok(page) => page.render(&self.pages, "admin.html", status),
                Err(response) => response,
            }
        };
        let Some(identity) = call.caller.identity else {
            return self.certificate_needed(lang, ADMIN);
        };
        let Some(form) = fields(&call.parts, &call.body) else {
            return again(
                lang.word("err_form_type").to_owned(),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
            )
            .await;
        };
        if let Err(error) = self.form_allowed(call, lang, ADMIN, "admin", &form) {
            return again(error, StatusCode::FORBIDDEN).await;
        }
        let ctx = call.context(None);
        let corp_id = identity.corp_id.clone();
        let field = |name: &str| form.get(name).map_or("", |value| value.trim());
        let user_id = field("user_id");
        let result: Result<Option<Response<Body>>, LifecycleError> = match field("do") {
            "add" => {
                let role = match field("role") {
                    "admin" => Role::Admin,
                    "general" => Role::General,
                    _ => {
                        return again(lang.word("err_role").to_owned(), StatusCode::BAD_REQUEST)
                            .await;
                    }
                };
                let email = Some(field("email")).filter(|email| !email.is_empty());
                let name = Some(field("name")).filter(|name| !name.is_empty());
                self.lifecycle
                    .add_named_user(&corp_id, user_id, name, role, email, &ctx)
                    .await
                    .map(|_| None)
            }
            "reissue" => self
                .lifecycle
                .reissue(&ctx, &corp_id, user_id)
                .await
                .map(|permit| {
                    Some(
                        Page::new(lang, ADMIN)
                            .set("title", json!(lang.word("reissued_title")))
                            .set("user_id", json!(user_id))
                            .set("pin", json!(permit.pin.expose_secret()))
                            .set("expires_at", json!(permit.expires_at))
                            .render(&self.pages, "reissued.html", StatusCode::OK),
                    )
                }),
            action @ ("suspend" | "resume") => self
                .lifecycle
                .suspend(&ctx, &corp_id, user_id, action == "suspend")
                .await
                .map(|_| None),
            _ => {
                return again(
                    lang.word("err_form_type").to_owned(),
                    StatusCode::BAD_REQUEST,
                )
                .await;
            }
        };
        match result {
            Ok(Some(page)) => page,
            Ok(None) => {
                let mut response = Response::new(empty());
                *response.status_mut() = StatusCode::SEE_OTHER;
                let location = format!("{ADMIN}?lang={}", lang.code());
                if let Ok(location) = HeaderValue::from_str(&location) {
                    response.headers_mut().insert(header::LOCATION, location);
                }
                response
                    .headers_mut()
                    .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                response
            }
            Err(err) => {
                let (status, message) = refusal(lang, &err);
                again(message, status).await
            }
        }
    }
}
