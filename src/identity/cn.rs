//! Splitting a CN into corporation ID and user ID by the configured template.

use crate::config::{CnField, CnPart, IdentityConfig};

/// `Some((corp_id, None))` for an administrator's CN (the corporation ID alone),
/// `Some((corp_id, Some(user_id)))` for a CN in the template's layout, `None` otherwise.
pub(super) fn split<'a>(
    cn: &'a str,
    config: &IdentityConfig,
) -> Option<(&'a str, Option<&'a str>)> {
    if config.corp_id.is_match(cn) {
        return Some((cn, None));
    }
    let mut fields = Fields::default();
    matches(cn, config.template.parts(), config, &mut fields).then_some(())?;
    Some((fields.corp_id?, Some(fields.user_id?)))
}

#[derive(Default)]
struct Fields<'a> {
    corp_id: Option<&'a str>,
    user_id: Option<&'a str>,
}

/// Backtracks over every place where the literal after a field occurs, so that a separator that
/// also appears inside a field (a user ID with a space, if a bank allows one) still splits right.
fn matches<'a>(
    text: &'a str,
    parts: &[CnPart],
    config: &IdentityConfig,
    fields: &mut Fields<'a>,
) -> bool {
    match parts {
        [] => text.is_empty(),
        [CnPart::Literal(literal), rest @ ..] => text
            .strip_prefix(literal.as_str())
            .is_some_and(|tail| matches(tail, rest, config, fields)),
        [CnPart::Field(field), rest @ ..] => {
            let ends: Vec<usize> = match rest.first() {
                None => vec![text.len()],
                Some(CnPart::Literal(next)) => text
                    .match_indices(next.as_str())
                    .map(|(at, _)| at)
                    .collect(),
                // The template parser refuses two adjacent fields.
                Some(CnPart::Field(_)) => return false,
            };
            ends.into_iter().any(|end| {
                let value = &text[..end];
                let accepted = match field {
                    CnField::CorpId => config.corp_id.is_match(value),
                    CnField::UserId => config.user_id.is_match(value),
                };
                if !accepted {
                    return false;
                }
                match field {
                    CnField::CorpId => fields.corp_id = Some(value),
                    CnField::UserId => fields.user_id = Some(value),
                }
                matches(&text[end..], rest, config, fields)
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn config(identity: &str) -> IdentityConfig {
        Config::parse(&format!(
            "[server]\ncert=\"a\"\nkey=\"b\"\nclient_auth=\"none\"\n[identity]\n{identity}"
        ))
        .unwrap()
        .identity
    }

    #[test]
    fn default_layout() {
        let config = config("");
        assert_eq!(
            split("12345678901234 taro", &config),
            Some(("12345678901234", Some("taro")))
        );
        assert_eq!(
            split("12345678901234", &config),
            Some(("12345678901234", None))
        );
        assert_eq!(split("12345678901234 ", &config), None);
        assert_eq!(split(" 12345678901234 taro", &config), None);
        assert_eq!(split("12345678901234 taro x", &config), None);
    }

    #[test]
    fn other_bank_layout_with_user_first() {
        let config = config(
            "cn = \"LOGIN-{user_id}@{corp_id}\"\nuser_id = \"[a-z.]+\"\ncorp_id = \"[0-9]{4}\"",
        );
        assert_eq!(
            split("LOGIN-a.b@0123", &config),
            Some(("0123", Some("a.b")))
        );
        assert_eq!(split("LOGIN-a.b@01234", &config), None);
        assert_eq!(split("a.b@0123", &config), None);
    }

    #[test]
    fn separator_inside_a_field_backtracks() {
        let config = config("user_id = \"[a-z ]+\"");
        assert_eq!(
            split("12345678901234 ta ro", &config),
            Some(("12345678901234", Some("ta ro")))
        );
    }
}
