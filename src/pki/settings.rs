//! What the PKI needs from `[pki]` in the config file. The config room builds this from the
//! TOML; the PKI only checks what would otherwise make an invalid certificate.

use std::path::PathBuf;

use super::error::PkiError;

/// Key algorithm of every key certgate creates: the root, each issuing generation and the keys
/// it generates for `enroll.p12` / `serverkeygen`. Changing it affects the next key made only;
/// existing generations keep the key they have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyType {
    /// `ecdsa-p256`: ECDSA on P-256 with SHA-256 (default).
    #[default]
    EcdsaP256,
    /// `rsa-2048`: RSA 2048 bits, PKCS#1 v1.5 with SHA-256, for clients without ECDSA.
    Rsa2048,
}

impl KeyType {
    /// The config spelling: `ecdsa-p256` or `rsa-2048`.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::EcdsaP256 => "ecdsa-p256",
            KeyType::Rsa2048 => "rsa-2048",
        }
    }

    /// A fresh key of this type.
    pub(super) fn generate(self, what: &str) -> Result<rcgen::KeyPair, PkiError> {
        let generated = match self {
            KeyType::EcdsaP256 => rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
            KeyType::Rsa2048 => {
                rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
            }
        };
        generated.map_err(|source| PkiError::Crypto {
            operation: format!("generate {what} ({})", self.as_str()),
            source,
        })
    }
}

impl std::fmt::Display for KeyType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for KeyType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ecdsa-p256" => Ok(KeyType::EcdsaP256),
            "rsa-2048" => Ok(KeyType::Rsa2048),
            other => Err(format!(
                "{other:?} is not a key type; use \"ecdsa-p256\" or \"rsa-2048\""
            )),
        }
    }
}

/// `[pki]` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PkiSettings {
    /// `pki.dir`: where the CA keys, certificates and CRLs live (layout in [`super`]).
    pub dir: PathBuf,
    /// `pki.key_type`, default `ecdsa-p256`.
    pub key_type: KeyType,
    /// `pki.organization`: O of the root, every issuing generation and, through them, every leaf.
    pub organization: String,
    /// `pki.unit`: OU of generation 1; generation N > 1 gets `<unit>-G<N>`.
    pub unit: String,
    /// `pki.validity_days` of issued client certificates, default 365.
    pub validity_days: u32,
    /// `pki.crl_validity`: nextUpdate − thisUpdate of every CRL, default 7 days; each CRL is
    /// re-signed at half of it.
    pub crl_validity: time::Duration,
    /// `pki.crl_refresh`: the shortest time between two signatures of one CRL while revocations
    /// come in, default 1 min.
    pub crl_refresh: std::time::Duration,
}

/// X.520 upper bounds (RFC 5280 appendix A.1): longer values make certificates that strict
/// parsers refuse.
pub(super) const MAX_ORGANIZATION: usize = 64;
pub(super) const MAX_UNIT: usize = 64;
pub(super) const MAX_COMMON_NAME: usize = 64;

impl PkiSettings {
    /// Settings with the documented defaults (`ecdsa-p256`, 365 days).
    pub fn new(dir: impl Into<PathBuf>, organization: &str, unit: &str) -> Self {
        Self {
            dir: dir.into(),
            key_type: KeyType::default(),
            organization: organization.to_owned(),
            unit: unit.to_owned(),
            validity_days: 365,
            crl_validity: time::Duration::days(7),
            crl_refresh: std::time::Duration::from_secs(60),
        }
    }

    /// The OU of generation `number`: `unit` for 1, `unit-G<number>` after.
    pub fn unit_for(&self, number: u32) -> String {
        if number <= 1 {
            self.unit.clone()
        } else {
            format!("{}-G{number}", self.unit)
        }
    }

    /// Refuses values that cannot make a valid certificate.
    pub fn validate(&self) -> Result<(), PkiError> {
        text("organization", &self.organization, MAX_ORGANIZATION)?;
        // Room for the "-G<N>" suffix of later generations.
        text("unit", &self.unit, MAX_UNIT - 6)?;
        if !(1..=3650).contains(&self.validity_days) {
            return Err(PkiError::InvalidSettings {
                key: "validity_days",
                reason: format!("{} is out of range; use 1 to 3650", self.validity_days),
            });
        }
        Ok(())
    }
}

fn text(key: &'static str, value: &str, max: usize) -> Result<(), PkiError> {
    let chars = value.chars().count();
    if value.trim().is_empty() || value.chars().any(char::is_control) || chars > max {
        return Err(PkiError::InvalidSettings {
            key,
            reason: format!("{value:?} cannot name a CA; use 1 to {max} printable characters"),
        });
    }
    Ok(())
}

impl From<&crate::config::PkiConfig> for PkiSettings {
    fn from(config: &crate::config::PkiConfig) -> Self {
        Self {
            dir: config.dir.clone(),
            key_type: match config.key_type {
                crate::config::KeyType::EcdsaP256 => KeyType::EcdsaP256,
                crate::config::KeyType::Rsa2048 => KeyType::Rsa2048,
            },
            organization: config.organization.clone(),
            unit: config.unit.clone(),
            validity_days: config.validity_days,
            crl_validity: time::Duration::try_from(config.crl_validity)
                .unwrap_or(time::Duration::days(7)),
            crl_refresh: config.crl_refresh,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_generations_get_a_suffix() {
        let s = PkiSettings::new("/x", "Bank", "Internet Banking CA");
        assert_eq!(s.unit_for(1), "Internet Banking CA");
        assert_eq!(s.unit_for(2), "Internet Banking CA-G2");
        assert_eq!(s.unit_for(13), "Internet Banking CA-G13");
    }

    #[test]
    fn key_type_round_trips_its_config_spelling() {
        for k in [KeyType::EcdsaP256, KeyType::Rsa2048] {
            assert_eq!(k.as_str().parse::<KeyType>(), Ok(k));
        }
        assert!("ed25519".parse::<KeyType>().is_err());
    }

    #[test]
    fn invalid_settings_name_their_key() {
        let ok = PkiSettings::new("/x", "Bank", "CA");
        ok.validate().unwrap();
        for (settings, key) in [
            (
                PkiSettings {
                    organization: " ".into(),
                    ..ok.clone()
                },
                "organization",
            ),
            (
                PkiSettings {
                    unit: "a\nb".into(),
                    ..ok.clone()
                },
                "unit",
            ),
            (
                PkiSettings {
                    unit: "u".repeat(59),
                    ..ok.clone()
                },
                "unit",
            ),
            (
                PkiSettings {
                    validity_days: 0,
                    ..ok.clone()
                },
                "validity_days",
            ),
        ] {
            match settings.validate() {
                Err(PkiError::InvalidSettings { key: k, .. }) => assert_eq!(k, key),
                other => panic!("{key}: {other:?}"),
            }
        }
    }
}
