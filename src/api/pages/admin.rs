//! 利用者管理, for the corporation's administrator and its master and admin users: the status
//! table (sortable), adding a user, re-issue (the new temporary PIN shown once), suspend and
//! resume, and the operation history filtered by user and action. Who may do what is the
//! lifecycle's rule: this page only asks.

use http::{Response, StatusCode};
use secrecy::ExposeSecret as _;
use serde_json::json;

use super::forms::fields;
use super::text::Lang;
use super::{ADMIN, Page, REVOKE, USER, refusal, see_other, shown, status_word};
use crate::api::{Api, Call};
use crate::http::Body;
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

/// A page about one user, in `lang`: the language switch keeps the user.
fn with_user(path: &str, lang: Lang, user_id: &str) -> String {
    let user: String = form_urlencoded::byte_serialize(user_id.as_bytes()).collect();
    format!("{path}?lang={}&user={user}", lang.code())
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
            let key = |row: &crate::lifecycle::StatusRow| match sort.as_str() {
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
                    "suspended": row.user.status == crate::lifecycle::UserStatus::Suspended,
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
            .set("filter_action", json!(ADMIN))
            .set(
                "revoke_url",
                json!(format!("{REVOKE}?lang={}", lang.code())),
            )
            .set("user_url", json!(format!("{USER}?lang={}", lang.code())));
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
            Ok(None) => see_other(&format!("{ADMIN}?lang={}", lang.code())),
            Err(err) => {
                let (status, message) = refusal(lang, &err);
                again(message, status).await
            }
        }
    }
}

/// The reasons a manager picks from (RFC 5280 names; the lifecycle decides which it accepts).
const REASONS: &[&str] = &[
    "unspecified",
    "keyCompromise",
    "affiliationChanged",
    "superseded",
    "cessationOfOperation",
];

/// The word key of a reason.
fn reason_word(reason: &str) -> &'static str {
    match reason {
        "keyCompromise" => "reason_key_compromise",
        "affiliationChanged" => "reason_affiliation_changed",
        "superseded" => "reason_superseded",
        "cessationOfOperation" => "reason_cessation",
        _ => "reason_unspecified",
    }
}

impl Api {
    /// The user's row of the status table, as a page shows it.
    async fn user_row(
        &self,
        call: &Call<'_>,
        lang: Lang,
        user_id: &str,
    ) -> Result<serde_json::Value, LifecycleError> {
        let row = self.status_row(call, user_id).await?;
        Ok(json!({
            "user_id": row.user.user_id,
            "name": row.user.name,
            "role": lang.word(role_word(row.user.role)),
            "status": lang.word(status_word(row.status.as_str())),
            "not_after": row.latest.as_ref().map(|cert| shown(cert.not_after)),
        }))
    }

    /// The caller's corporation's status-table row of `user_id` (the lifecycle checks that the
    /// caller may read it).
    async fn status_row(
        &self,
        call: &Call<'_>,
        user_id: &str,
    ) -> Result<crate::lifecycle::StatusRow, LifecycleError> {
        let identity = call
            .caller
            .identity
            .ok_or_else(|| LifecycleError::Forbidden {
                why: "a client certificate is required".to_owned(),
            })?;
        let ctx = call.context(None);
        self.lifecycle
            .status_table(&ctx, &identity.corp_id)
            .await?
            .into_iter()
            .find(|row| row.user.user_id == user_id)
            .ok_or_else(|| LifecycleError::NotFound {
                what: format!("user {}/{user_id}", identity.corp_id),
            })
    }

    /// The confirmation step of a revocation: the user, then either the form to set one's
    /// confirmation password (first use) or the reason and the confirmation password.
    async fn revoke_page(
        &self,
        call: &Call<'_>,
        lang: Lang,
        user_id: &str,
        error: Option<String>,
    ) -> Result<Page, Response<Body>> {
        if call.caller.identity.is_none() {
            return Err(self.certificate_needed(lang, REVOKE));
        }
        let refused = |err: &LifecycleError| {
            let (status, message) = refusal(lang, err);
            Page::new(lang, REVOKE)
                .set("title", json!(lang.word("revoke_title")))
                .set("message", json!(message))
                .render(&self.pages, "message.html", status)
        };
        let user = self
            .user_row(call, lang, user_id)
            .await
            .map_err(|err| refused(&err))?;
        let has_confirmation = self
            .lifecycle
            .has_confirmation(&call.context(None))
            .await
            .map_err(|err| refused(&err))?;
        let reasons: Vec<serde_json::Value> = REASONS
            .iter()
            .map(|reason| json!({ "value": reason, "label": lang.word(reason_word(reason)) }))
            .collect();
        let mut page = self
            .form_page(call, lang, REVOKE, "revoke")
            .set("user", user)
            .set("has_confirmation", json!(has_confirmation))
            .set("reasons", json!(reasons))
            .set("back_url", json!(format!("{ADMIN}?lang={}", lang.code())))
            .set(
                "switch_url",
                json!(with_user(REVOKE, lang.other(), user_id)),
            );
        if let Some(error) = error {
            page = page.error(error);
        }
        Ok(page)
    }

    /// `GET /certgate/admin/revoke?user=…`.
    pub(in crate::api) async fn page_revoke(&self, call: &Call<'_>) -> Response<Body> {
        let lang = Lang::of(&call.parts);
        let user_id = query(call, "user").unwrap_or_default();
        match self.revoke_page(call, lang, &user_id, None).await {
            Ok(page) => page.render(&self.pages, "revoke.html", StatusCode::OK),
            Err(response) => response,
        }
    }

    /// `POST /certgate/admin/revoke`: set one's confirmation password, or revoke with it.
    pub(in crate::api) async fn page_revoke_post(&self, call: &Call<'_>) -> Response<Body> {
        let lang = Lang::of(&call.parts);
        let Some(form) = fields(&call.parts, &call.body) else {
            return self.message(
                lang,
                "revoke_title",
                lang.word("err_form_type"),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
            );
        };
        let field = |name: &str| form.get(name).map_or("", |value| value.trim());
        let user_id = field("user_id").to_owned();
        let again = |error: String, status: StatusCode| {
            let user_id = user_id.clone();
            async move {
                match self.revoke_page(call, lang, &user_id, Some(error)).await {
                    Ok(page) => page.render(&self.pages, "revoke.html", status),
                    Err(response) => response,
                }
            }
        };
        if let Err(error) = self.form_allowed(call, lang, REVOKE, "revoke", &form) {
            return again(error, StatusCode::FORBIDDEN).await;
        }
        let ctx = call.context(None);
        match field("do") {
            "set_confirmation" => {
                let first = form.get("password").map_or("", String::as_str);
                let second = form.get("password2").map_or("", String::as_str);
                if first.chars().count() < 8 {
                    return again(
                        lang.word("err_confirmation_short").to_owned(),
                        StatusCode::BAD_REQUEST,
                    )
                    .await;
                }
                if first != second {
                    return again(
                        lang.word("err_confirmation_differs").to_owned(),
                        StatusCode::BAD_REQUEST,
                    )
                    .await;
                }
                let password = secrecy::SecretString::from(first.to_owned());
                match self.lifecycle.set_confirmation(&ctx, &password).await {
                    Ok(()) => match self.revoke_page(call, lang, &user_id, None).await {
                        Ok(page) => page
                            .set("done", json!(lang.word("confirmation_set")))
                            .render(&self.pages, "revoke.html", StatusCode::OK),
                        Err(response) => response,
                    },
                    Err(err) => {
                        let (status, message) = refusal(lang, &err);
                        again(message, status).await
                    }
                }
            }
            "revoke" => {
                let reason = field("reason");
                let Some(reason) = REASONS
                    .iter()
                    .find(|known| **known == reason)
                    .and_then(|known| known.parse::<crate::model::RevocationReason>().ok())
                else {
                    return again(lang.word("err_reason").to_owned(), StatusCode::BAD_REQUEST)
                        .await;
                };
                let Some(identity) = call.caller.identity else {
                    return self.certificate_needed(lang, REVOKE);
                };
                let confirmation = secrecy::SecretString::from(
                    form.get("confirmation").cloned().unwrap_or_default(),
                );
                match self
                    .lifecycle
                    .revoke_user(
                        &ctx,
                        &identity.corp_id,
                        &user_id,
                        reason,
                        Some(&confirmation),
                    )
                    .await
                {
                    Ok(revoked) => {
                        let user = self
                            .user_row(call, lang, &user_id)
                            .await
                            .unwrap_or_default();
                        let serials: Vec<String> =
                            revoked.iter().map(|cert| cert.serial.to_string()).collect();
                        Page::new(lang, REVOKE)
                            .set("title", json!(lang.word("revoked_title")))
                            .set("user", user)
                            .set("serials", json!(serials))
                            .set("back_url", json!(format!("{ADMIN}?lang={}", lang.code())))
                            .render(&self.pages, "revoked.html", StatusCode::OK)
                    }
                    Err(err) => {
                        let (status, message) = refusal(lang, &err);
                        again(message, status).await
                    }
                }
            }
            _ => {
                again(
                    lang.word("err_form_type").to_owned(),
                    StatusCode::BAD_REQUEST,
                )
                .await
            }
        }
    }

    /// A page of one message.
    fn message(
        &self,
        lang: Lang,
        title: &'static str,
        message: &str,
        status: StatusCode,
    ) -> Response<Body> {
        Page::new(lang, ADMIN)
            .set("title", json!(lang.word(title)))
            .set("message", json!(message))
            .render(&self.pages, "message.html", status)
    }
}

impl Api {
    /// The form to change a user's name, role and e-mail.
    async fn user_page(
        &self,
        call: &Call<'_>,
        lang: Lang,
        user_id: &str,
        error: Option<String>,
    ) -> Result<Page, Response<Body>> {
        if call.caller.identity.is_none() {
            return Err(self.certificate_needed(lang, USER));
        }
        let row = self.status_row(call, user_id).await.map_err(|err| {
            let (status, message) = refusal(lang, &err);
            self.message(lang, "edit_user", &message, status)
        })?;
        let mut page = self
            .form_page(call, lang, USER, "user")
            .set(
                "user",
                json!({
                    "user_id": row.user.user_id,
                    "name": row.user.name,
                    "email": row.user.email,
                    "is_admin": row.user.role == Role::Admin,
                }),
            )
            .set("back_url", json!(format!("{ADMIN}?lang={}", lang.code())))
            .set("switch_url", json!(with_user(USER, lang.other(), user_id)));
        if let Some(error) = error {
            page = page.error(error);
        }
        Ok(page)
    }

    /// `GET /certgate/admin/user?user=…`.
    pub(in crate::api) async fn page_user(&self, call: &Call<'_>) -> Response<Body> {
        let lang = Lang::of(&call.parts);
        let user_id = query(call, "user").unwrap_or_default();
        match self.user_page(call, lang, &user_id, None).await {
            Ok(page) => page.render(&self.pages, "user.html", StatusCode::OK),
            Err(response) => response,
        }
    }

    /// `POST /certgate/admin/user`: the new name, role and e-mail; back to the table.
    pub(in crate::api) async fn page_user_post(&self, call: &Call<'_>) -> Response<Body> {
        let lang = Lang::of(&call.parts);
        let Some(form) = fields(&call.parts, &call.body) else {
            return self.message(
                lang,
                "edit_user",
                lang.word("err_form_type"),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
            );
        };
        let field = |name: &str| form.get(name).map_or("", |value| value.trim());
        let user_id = field("user_id").to_owned();
        let again = |error: String, status: StatusCode| {
            let user_id = user_id.clone();
            async move {
                match self.user_page(call, lang, &user_id, Some(error)).await {
                    Ok(page) => page.render(&self.pages, "user.html", status),
                    Err(response) => response,
                }
            }
        };
        if let Err(error) = self.form_allowed(call, lang, USER, "user", &form) {
            return again(error, StatusCode::FORBIDDEN).await;
        }
        let Some(identity) = call.caller.identity else {
            return self.certificate_needed(lang, USER);
        };
        let role = match field("role") {
            "admin" => Role::Admin,
            "general" => Role::General,
            _ => return again(lang.word("err_role").to_owned(), StatusCode::BAD_REQUEST).await,
        };
        let update = crate::lifecycle::UserUpdate {
            name: Some(field("name").to_owned()),
            role,
            email: Some(field("email").to_owned()),
        };
        match self
            .lifecycle
            .update_user(&call.context(None), &identity.corp_id, &user_id, update)
            .await
        {
            Ok(_) => see_other(&format!("{ADMIN}?lang={}", lang.code())),
            Err(err) => {
                let (status, message) = refusal(lang, &err);
                again(message, status).await
            }
        }
    }
}
