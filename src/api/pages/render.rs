//! The pages' templates: built in, each replaceable by a file of the same name in
//! `pages.templates` so that a bank can brand them. An override that does not parse or does not
//! render falls back to the built-in template, with a log line, so that a broken file never
//! leaves a customer without a page.

use std::path::Path;

use minijinja::Environment;

/// The built-in templates (names end in `.html`, so values are HTML-escaped).
const BUILT_IN: &[(&str, &str)] = &[
    ("layout.html", include_str!("templates/layout.html")),
    ("enroll.html", include_str!("templates/enroll.html")),
    ("enrolled.html", include_str!("templates/enrolled.html")),
    ("renew.html", include_str!("templates/renew.html")),
    ("renewed.html", include_str!("templates/renewed.html")),
    (
        "renew_cancelled.html",
        include_str!("templates/renew_cancelled.html"),
    ),
    ("me.html", include_str!("templates/me.html")),
    ("notice.html", include_str!("templates/notice.html")),
    ("admin.html", include_str!("templates/admin.html")),
    ("reissued.html", include_str!("templates/reissued.html")),
    ("revoke.html", include_str!("templates/revoke.html")),
    ("revoked.html", include_str!("templates/revoked.html")),
    ("user.html", include_str!("templates/user.html")),
    ("message.html", include_str!("templates/message.html")),
];

/// The pages' one style sheet, served as `/certgate/static/certgate.css`: no inline style, so
/// the Content-Security-Policy can forbid it.
pub(super) const STYLE: &str = include_str!("templates/certgate.css");

/// The environments the pages render with.
pub struct Templates {
    built_in: Environment<'static>,
    /// The built-in templates with the bank's overrides in place, when it has any.
    custom: Option<Environment<'static>>,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates")
            .field("custom", &self.custom.is_some())
            .finish()
    }
}

fn built_in() -> Environment<'static> {
    let mut env = Environment::new();
    for (name, source) in BUILT_IN {
        if let Err(err) = env.add_template(name, source) {
            // Caught by the unit tests; a release never gets here.
            tracing::error!(template = name, error = %err, "a built-in page template does not parse");
        }
    }
    env
}

impl Templates {
    /// The built-in templates, with the overrides found in `dir`.
    pub fn new(dir: Option<&Path>) -> Self {
        let built_in = built_in();
        let custom = dir.and_then(|dir| {
            let mut env = built_in.clone();
            let mut replaced = 0;
            for (name, _) in BUILT_IN {
                let path = dir.join(name);
                let source = match std::fs::read_to_string(&path) {
                    Ok(source) => source,
                    Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(err) => {
                        tracing::warn!(file = %path.display(), error = %err, "pages.templates: cannot read this override; the built-in page is used");
                        continue;
                    }
                };
                match env.add_template_owned(*name, source) {
                    Ok(()) => replaced += 1,
                    Err(err) => {
                        tracing::warn!(file = %path.display(), error = %err, "pages.templates: this override does not parse; the built-in page is used");
                        if let Some((_, original)) = BUILT_IN.iter().find(|(n, _)| n == name) {
                            let _ = env.add_template(name, original);
                        }
                    }
                }
            }
            tracing::info!(dir = %dir.display(), replaced, "page templates");
            (replaced > 0).then_some(env)
        });
        Self { built_in, custom }
    }

    /// Renders `name` with `context`: the bank's template when it has one that works, else the
    /// built-in one.
    pub(super) fn render(&self, name: &str, context: &minijinja::Value) -> String {
        if let Some(custom) = &self.custom {
            match custom
                .get_template(name)
                .and_then(|template| template.render(context))
            {
                Ok(html) => return html,
                Err(err) => {
                    tracing::warn!(template = name, error = %err, "pages.templates: an override failed to render; the built-in page is used");
                }
            }
        }
        match self
            .built_in
            .get_template(name)
            .and_then(|template| template.render(context))
        {
            Ok(html) => html,
            Err(err) => {
                tracing::error!(template = name, error = %err, "a built-in page failed to render");
                "<!doctype html><title>certgate</title><p>This page could not be shown.</p>\n"
                    .to_owned()
            }
        }
    }
}
