//! Parsed identities by leaf fingerprint: a certificate is parsed once, not once per connection.

use std::sync::Arc;
use std::time::Duration;

use moka::sync::Cache;

use super::{Identity, IdentityError, IdentityHeaders, fingerprint};
use crate::config::{HeaderNames, IdentityConfig};

/// An identity with its headers rendered.
#[derive(Debug)]
pub struct Resolved {
    /// Who the certificate names.
    pub identity: Identity,
    /// The per-certificate headers.
    pub headers: IdentityHeaders,
}

/// The cache. Cloning shares it.
#[derive(Clone)]
pub struct IdentityCache {
    cache: Cache<[u8; 32], Arc<Result<Resolved, IdentityError>>>,
    config: Arc<IdentityConfig>,
    names: Arc<HeaderNames>,
}

impl IdentityCache {
    /// A cache holding up to `capacity` certificates; entries unused for an hour are dropped.
    pub fn new(config: IdentityConfig, names: HeaderNames, capacity: u64) -> Self {
        Self {
            cache: Cache::builder()
                .max_capacity(capacity)
                .time_to_idle(Duration::from_secs(3600))
                .build(),
            config: Arc::new(config),
            names: Arc::new(names),
        }
    }

    /// The identity of a verified leaf certificate; a refusal is cached too, so that a client
    /// retrying with a bad CN costs a hash lookup.
    pub fn resolve(&self, leaf_der: &[u8]) -> Arc<Result<Resolved, IdentityError>> {
        self.cache.get_with(fingerprint(leaf_der), || {
            Arc::new(
                Identity::from_der(leaf_der, &self.config).map(|identity| Resolved {
                    headers: IdentityHeaders::render(&identity, leaf_der, &self.names),
                    identity,
                }),
            )
        })
    }

    /// The configured header names.
    pub fn names(&self) -> &HeaderNames {
        &self.names
    }
}
