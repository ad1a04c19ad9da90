//! The CN layout template (`cn = "{corp_id} {user_id}"`), parsed once at start.

use std::fmt;

/// A field that a CN template can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CnField {
    /// `{corp_id}`: the contract corporation's ID.
    CorpId,
    /// `{user_id}`: the user's ID within the corporation.
    UserId,
}

impl CnField {
    const KNOWN: &'static str = "{corp_id}, {user_id}";

    fn from_name(name: &str) -> Option<Self> {
        match name {
            "corp_id" => Some(Self::CorpId),
            "user_id" => Some(Self::UserId),
            _ => None,
        }
    }
}

impl fmt::Display for CnField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::CorpId => "{corp_id}",
            Self::UserId => "{user_id}",
        })
    }
}

/// One piece of a template: literal text or a field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CnPart {
    /// Text that must appear verbatim.
    Literal(String),
    /// A field, matched by its configured regex.
    Field(CnField),
}

/// A validated CN template: each of `{corp_id}` and `{user_id}` exactly once, with literal text
/// between them so that a CN can be split without guessing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CnTemplate {
    parts: Vec<CnPart>,
    source: String,
}

impl CnTemplate {
    /// Parses a template; the error text is meant to follow `identity.cn: `.
    pub fn parse(source: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = source;
        while let Some(open) = rest.find(['{', '}']) {
            if rest[open..].starts_with('}') {
                return Err(format!(
                    "{source:?} has a '}}' without a matching '{{'; fields are written {}",
                    CnField::KNOWN
                ));
            }
            literal.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            let close = after.find('}').ok_or_else(|| {
                format!(
                    "{source:?} has an unclosed '{{'; fields are written {}",
                    CnField::KNOWN
                )
            })?;
            let name = &after[..close];
            let field = CnField::from_name(name).ok_or_else(|| {
                format!("unknown field {{{name}}}; known fields: {}", CnField::KNOWN)
            })?;
            if !literal.is_empty() {
                parts.push(CnPart::Literal(std::mem::take(&mut literal)));
            } else if matches!(parts.last(), Some(CnPart::Field(_))) {
                return Err(format!(
                    "{source:?} puts two fields side by side; put literal text (e.g. a space) between them"
                ));
            }
            if parts.contains(&CnPart::Field(field)) {
                return Err(format!(
                    "{source:?} uses {field} twice; use each field once"
                ));
            }
            parts.push(CnPart::Field(field));
            rest = &after[close + 1..];
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(CnPart::Literal(literal));
        }
        for field in [CnField::CorpId, CnField::UserId] {
            if !parts.contains(&CnPart::Field(field)) {
                return Err(format!(
                    "{source:?} does not use {field}; a template needs both {}",
                    CnField::KNOWN
                ));
            }
        }
        Ok(Self {
            parts,
            source: source.to_owned(),
        })
    }

    /// The pieces in order.
    pub fn parts(&self) -> &[CnPart] {
        &self.parts
    }

    /// Renders a CN for the given identity (used when certgate issues certificates).
    pub fn render(&self, corp_id: &str, user_id: &str) -> String {
        self.parts
            .iter()
            .map(|part| match part {
                CnPart::Literal(text) => text.as_str(),
                CnPart::Field(CnField::CorpId) => corp_id,
                CnPart::Field(CnField::UserId) => user_id,
            })
            .collect()
    }
}

impl fmt::Display for CnTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_template_has_two_fields_and_a_space() {
        let template = CnTemplate::parse("{corp_id} {user_id}").unwrap();
        assert_eq!(
            template.parts(),
            &[
                CnPart::Field(CnField::CorpId),
                CnPart::Literal(" ".into()),
                CnPart::Field(CnField::UserId)
            ]
        );
        assert_eq!(
            template.render("12345678901234", "taro"),
            "12345678901234 taro"
        );
    }

    #[test]
    fn unknown_field_is_named_with_the_known_ones() {
        let err = CnTemplate::parse("{corp} {user_id}").unwrap_err();
        assert_eq!(
            err,
            "unknown field {corp}; known fields: {corp_id}, {user_id}"
        );
    }

    #[test]
    fn adjacent_fields_are_refused() {
        assert!(
            CnTemplate::parse("{corp_id}{user_id}")
                .unwrap_err()
                .contains("side by side")
        );
    }

    #[test]
    fn missing_and_repeated_fields_are_refused() {
        assert!(
            CnTemplate::parse("{corp_id}")
                .unwrap_err()
                .contains("does not use {user_id}")
        );
        assert!(
            CnTemplate::parse("{corp_id}-{corp_id}")
                .unwrap_err()
                .contains("twice")
        );
        assert!(
            CnTemplate::parse("{corp_id} {user_id")
                .unwrap_err()
                .contains("unclosed")
        );
    }
}
