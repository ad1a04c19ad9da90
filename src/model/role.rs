//! What a caller may do in their corporation.

use std::fmt;
use std::str::FromStr;

use super::UnknownName;

/// A caller's role: the corporation's administrator (a certificate whose CN is the corporation ID
/// alone), its master user (one per corporation, owns user management), an admin user or a
/// general user. The spelling is the header value and the stored one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// `admin`: the corporation's administrator, or an admin user.
    Admin,
    /// `master`: the corporation's master user.
    Master,
    /// `general`: any other user.
    General,
}

impl Role {
    /// Every role.
    pub const ALL: [Self; 3] = [Self::Master, Self::Admin, Self::General];

    /// `admin`, `master` or `general`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Master => "master",
            Self::General => "general",
        }
    }

    /// Whether this role manages the corporation's users (status table, re-issue, revoke,
    /// suspend, audit).
    pub fn manages_users(self) -> bool {
        matches!(self, Self::Admin | Self::Master)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for Role {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|role| role.as_str() == s)
            .ok_or_else(|| UnknownName {
                what: "role",
                value: s.to_owned(),
                known: "master, admin, general".to_owned(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip_their_spelling() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
        assert!("Master".parse::<Role>().is_err());
    }
}
