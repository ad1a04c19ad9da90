//! The renewal notice (電子証明書更新のお知らせ): a GET of one of `[notice] paths` with a
//! certificate inside its renewal window gets this page instead of the application's, with the
//! expiry, "renew now", and Next back to the page asked for. Next leaves a cookie bound to the
//! certificate so that the notice does not stand in the way again: for this browser session when
//! "remind me at the next login" is ticked, else for a week.

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::json;

use super::forms::{cookies, fields};
use super::text::Lang;
use super::{NOTICE, Page, RENEW, see_other, shown_unix};
use crate::api::{Api, Call};
use crate::http::Body;
use crate::identity::Caller;

/// The cookie Next leaves.
const COOKIE: &str = "certgate_notice";
/// How long a "remind me at the next login" deferral lasts at most (the cookie itself ends with
/// the browser session).
const UNTIL_NEXT_LOGIN_SECS: i64 = 12 * 60 * 60;
/// How long the notice stays away when the box is not ticked.
const WITHOUT_REMINDER_SECS: i64 = 7 * 24 * 60 * 60;
/// The form and the cookie sign different things under the one key.
const COOKIE_PURPOSE: &str = "notice-deferred";

/// Where Next may lead: a path of this site (never `//host` or a scheme).
fn safe_next(next: &str) -> &str {
    let local = next.starts_with('/')
        && !next.starts_with("//")
        && !next.contains('\\')
        && !next.chars().any(char::is_control);
    if local { next } else { "/" }
}

impl Api {
    /// The notice page for `caller`'s GET of a notice path, or `None` to let it through.
    pub(crate) fn renewal_notice(
        &self,
        caller: Caller<'_>,
        request: &Request<Incoming>,
    ) -> Option<Response<Body>> {
        let identity = caller.identity?;
        // Only certificates certgate can renew get the notice.
        if !caller.lifecycle_ca {
            return None;
        }
        let now = self.now_unix();
        let window = i64::from(self.lifecycle.rules().renew_window_days) * 86_400;
        if identity.not_after < now || identity.not_after - now > window {
            return None;
        }
        let serial = identity.serial.to_string();
        let deferred = cookies(request.headers(), COOKIE).any(|value| {
            self.pages
                .key
                .check(value, COOKIE_PURPOSE, "", &serial, now)
        });
        if deferred {
            return None;
        }
        let lang = Lang::of_head(request.uri(), request.headers());
        let path = request.uri().path();
        let next = request
            .uri()
            .path_and_query()
            .map_or(path, |path_and_query| path_and_query.as_str());
        let token = self.pages.key.token("notice", NOTICE, &serial, now);
        Some(
            Page::new(lang, path)
                .set(
                    "notice_action",
                    json!(format!("{NOTICE}?lang={}", lang.code())),
                )
                .set("renew_url", json!(format!("{RENEW}?lang={}", lang.code())))
                .set("token", json!(token))
                .set("next", json!(next))
                .set("not_after", json!(shown_unix(identity.not_after)))
                .set(
                    "days_left",
                    json!((identity.not_after - now).div_euclid(86_400)),
                )
                .render(&self.pages, "notice.html", StatusCode::OK),
        )
    }

    /// `POST /certgate/notice`: Next. Leaves the deferral cookie and goes on to the page asked
    /// for.
    pub(in crate::api) async fn page_notice_post(&self, call: &Call<'_>) -> Response<Body> {
        let lang = Lang::of(&call.parts);
        let Some(identity) = call.caller.identity else {
            return self.certificate_needed(lang, NOTICE);
        };
        let refused = |message: String, status: StatusCode| {
            Page::new(lang, NOTICE)
                .set("title", json!(lang.word("notice_title")))
                .set("message", json!(message))
                .render(&self.pages, "message.html", status)
        };
        let Some(form) = fields(&call.parts, &call.body) else {
            return refused(
                lang.word("err_form_type").to_owned(),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
            );
        };
        if let Err(error) = self.form_allowed(call, lang, NOTICE, "notice", &form) {
            return refused(error, StatusCode::FORBIDDEN);
        }
        let remind = form.get("remind").is_some_and(|value| value == "on");
        let now = self.now_unix();
        let (until, max_age) = if remind {
            (now + UNTIL_NEXT_LOGIN_SECS, String::new())
        } else {
            (
                now + WITHOUT_REMINDER_SECS,
                format!("; Max-Age={WITHOUT_REMINDER_SECS}"),
            )
        };
        let value =
            self.pages
                .key
                .signed_until(COOKIE_PURPOSE, "", &identity.serial.to_string(), until);
        let next = safe_next(form.get("next").map_or("/", String::as_str));
        let mut response = see_other(next);
        let cookie =
            format!("{COOKIE}={value}; Path=/; Secure; HttpOnly; SameSite=Strict{max_age}");
        if let Ok(cookie) = HeaderValue::from_str(&cookie) {
            response.headers_mut().insert(header::SET_COOKIE, cookie);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn next_stays_on_this_site() {
        assert_eq!(safe_next("/top?x=1"), "/top?x=1");
        for elsewhere in [
            "//evil.example/",
            "https://evil.example/",
            "/\\evil",
            "top",
            "",
            "/a\nb",
        ] {
            assert_eq!(safe_next(elsewhere), "/", "{elsewhere:?}");
        }
    }
}
