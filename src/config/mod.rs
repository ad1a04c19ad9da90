//! Configuration: the TOML schema ([`file`]), its defaults, and validation into [`Config`], a
//! runtime struct of typed values. Nothing downstream re-parses strings.
//!
//! Every error names the key, the bad value, why, and the fix, on one line:
//! `identity.cn: unknown field {corp}; known fields: {corp_id}, {user_id}`.
//! Relative paths in the file are relative to the working directory, as in nginx's prefix.

mod file;
mod template;
#[cfg(test)]
mod tests;
mod types;
mod validate;

use std::path::Path;

pub use template::{CnField, CnPart, CnTemplate};
pub use types::*;
pub use validate::duration;

use file::FileConfig;

/// The path `certgate serve` reads when `--config` is not given.
pub const DEFAULT_PATH: &str = "config/certgate.toml";

/// A configuration error: the key it concerns and a sentence saying what is wrong and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct ConfigError {
    /// The dotted TOML key, e.g. `server.listen` or `route[2].path`.
    pub key: String,
    /// What is wrong and the fix.
    pub message: String,
}

impl ConfigError {
    /// An error about `key`.
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
        }
    }
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|err| {
            ConfigError::new(
                "--config",
                format!(
                    "cannot read {}: {err}; pass an existing file with --config (default {DEFAULT_PATH})",
                    path.display()
                ),
            )
        })?;
        Self::parse(&text)
    }

    /// Parses and validates config text.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let deserializer = toml::Deserializer::parse(text).map_err(|err| {
            ConfigError::new(
                "toml",
                format!("not valid TOML: {}", one_line(err.message())),
            )
        })?;
        let file: FileConfig = serde_path_to_error::deserialize(deserializer).map_err(|err| {
            let key = err.path().to_string();
            let key = if key == "." { "toml".to_owned() } else { key };
            ConfigError::new(key, one_line(err.inner().message()))
        })?;
        validate::validate(file)
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
