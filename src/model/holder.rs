//! Whose certificate or permit.

use std::fmt;

/// A corporation's user, or the corporation's administrator (`user_id: None`): the
/// administrator's certificate has the corporation ID alone as its CN, and the administrator has
/// no row among the users.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Holder {
    /// The contract corporation's ID.
    pub corp_id: String,
    /// The user ID, or `None` for the corporation's administrator.
    pub user_id: Option<String>,
}

impl Holder {
    /// The corporation's administrator.
    pub fn admin(corp_id: impl Into<String>) -> Self {
        Self {
            corp_id: corp_id.into(),
            user_id: None,
        }
    }

    /// A user of the corporation.
    pub fn user(corp_id: impl Into<String>, user_id: impl Into<String>) -> Self {
        Self {
            corp_id: corp_id.into(),
            user_id: Some(user_id.into()),
        }
    }

    /// `corp` or `corp/user`: how logs, the audit trail and the CLI name a holder.
    pub fn key(&self) -> String {
        match &self.user_id {
            Some(user_id) => format!("{}/{}", self.corp_id, user_id),
            None => self.corp_id.clone(),
        }
    }
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.user_id {
            Some(user_id) => write!(f, "user {}/{}", self.corp_id, user_id),
            None => write!(f, "administrator of {}", self.corp_id),
        }
    }
}
