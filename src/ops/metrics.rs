//! Prometheus metrics. Counters that the request path touches are created up front and handed
//! out as handles, so that a request increments an atomic and never hashes a label set.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HandshakeLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    source: &'static str,
}

/// The revocation snapshot's metrics, by where changes come from (`registry`, `redis`, `crl`).
#[derive(Clone, Debug)]
pub struct RevocationMetrics {
    /// Entries held in the snapshot.
    pub entries: Gauge,
    /// 1 while the snapshot is older than `revocation.max_staleness`.
    pub stale: Gauge,
    /// Requests refused because their certificate is revoked.
    pub refused_revoked: Counter,
    sync_age: Family<SourceLabels, Gauge>,
    applied: Family<SourceLabels, Counter>,
}

impl RevocationMetrics {
    /// Seconds since the last successful read from `source`.
    pub fn sync_age(&self, source: &'static str) -> Gauge {
        self.sync_age
            .get_or_create(&SourceLabels { source })
            .clone()
    }

    /// Changes applied from `source`.
    pub fn applied(&self, source: &'static str) -> Counter {
        self.applied.get_or_create(&SourceLabels { source }).clone()
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    status: &'static str,
}

/// The status classes a request is counted under.
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Request counters of one route, by status class.
#[derive(Clone, Debug)]
pub struct RouteCounters {
    by_class: [Counter; 5],
}

impl RouteCounters {
    /// Counts one response with `status`.
    pub fn count(&self, status: u16) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.by_class[class].inc();
    }
}

/// Every metric certgate exports.
pub struct Metrics {
    registry: Registry,
    handshakes: Family<HandshakeLabels, Counter>,
    /// Handles of the pre-created handshake results: a handshake increments an atomic without
    /// hashing a label set or taking the family's lock.
    handshake_counters: Vec<(&'static str, Counter)>,
    requests: Family<RequestLabels, Counter>,
    /// Seconds from sending a request upstream to its response head.
    pub upstream_latency: Histogram,
    /// TLS connections open now.
    pub open_connections: Gauge,
    /// HTTP/1.1 connections parked now: waiting for their next request without HTTP buffers.
    pub parked_connections: Gauge,
    /// PIN verifications (argon2) made: one per enrollment attempt, whoever asks.
    pub pin_verifications: Counter,
    /// Seconds since the revocation set was last brought up to date (from the registry or
    /// Redis).
    pub revocation_age: Gauge,
    /// The revocation snapshot, its sources and its refusals.
    pub revocation: RevocationMetrics,
}

impl Metrics {
    /// Registers every metric; `handshake_results` are pre-created so they show as 0.
    pub fn new(handshake_results: &[&'static str]) -> Self {
        let mut registry = Registry::with_prefix("certgate");
        let handshakes = Family::<HandshakeLabels, Counter>::default();
        registry.register(
            "tls_handshakes",
            "TLS handshakes by result",
            handshakes.clone(),
        );
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by route and status class",
            requests.clone(),
        );
        let upstream_latency = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        registry.register(
            "upstream_response_seconds",
            "Time from forwarding a request to the upstream's response head",
            upstream_latency.clone(),
        );
        let open_connections = Gauge::default();
        registry.register(
            "open_connections",
            "TLS connections open now",
            open_connections.clone(),
        );
        let parked_connections = Gauge::default();
        registry.register(
            "parked_connections",
            "HTTP/1.1 connections waiting for their next request, parked without HTTP buffers",
            parked_connections.clone(),
        );
        let pin_verifications = Counter::default();
        registry.register(
            "pin_verifications",
            "PIN verifications (argon2) made, one per enrollment attempt whoever asks",
            pin_verifications.clone(),
        );
        let revocation_age = Gauge::default();
        registry.register(
            "revocation_age_seconds",
            "Seconds since the revocation set was last brought up to date (registry or Redis)",
            revocation_age.clone(),
        );
        let revocation = RevocationMetrics {
            entries: Gauge::default(),
            stale: Gauge::default(),
            refused_revoked: Counter::default(),
            sync_age: Family::default(),
            applied: Family::default(),
        };
        registry.register(
            "revocation_entries",
            "Entries in the revocation snapshot (revoked and renewed certificates, users and corporations that are not in default standing)",
            revocation.entries.clone(),
        );
        registry.register(
            "revocation_stale",
            "1 while the revocation snapshot is older than revocation.max_staleness",
            revocation.stale.clone(),
        );
        registry.register(
            "requests_refused_revoked",
            "Requests refused because their certificate is revoked",
            revocation.refused_revoked.clone(),
        );
        registry.register(
            "revocation_sync_age_seconds",
            "Seconds since the last successful read of changes, by source",
            revocation.sync_age.clone(),
        );
        registry.register(
            "revocation_changes_applied",
            "Changes applied to the revocation snapshot, by source",
            revocation.applied.clone(),
        );
        for source in ["registry", "redis"] {
            revocation.sync_age(source);
            revocation.applied(source);
        }
        let handshake_counters = handshake_results
            .iter()
            .map(|&result| {
                let counter = handshakes
                    .get_or_create(&HandshakeLabels { result })
                    .clone();
                (result, counter)
            })
            .collect();
        Self {
            registry,
            handshakes,
            handshake_counters,
            requests,
            upstream_latency,
            open_connections,
            parked_connections,
            pin_verifications,
            revocation_age,
            revocation,
        }
    }

    /// Counts one handshake with the given result label.
    pub fn handshake(&self, result: &'static str) {
        match self
            .handshake_counters
            .iter()
            .find(|(known, _)| *known == result)
        {
            Some((_, counter)) => {
                counter.inc();
            }
            None => {
                self.handshakes
                    .get_or_create(&HandshakeLabels { result })
                    .inc();
            }
        }
    }

    /// The counters for `route` (pre-created, so that the route shows with zeros).
    pub fn route(&self, route: &str) -> RouteCounters {
        RouteCounters {
            by_class: CLASSES.map(|status| {
                self.requests
                    .get_or_create(&RequestLabels {
                        route: route.to_owned(),
                        status,
                    })
                    .clone()
            }),
        }
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshakes_count_through_handles_and_the_family_alike() {
        let metrics = Metrics::new(&["ok", "no_cert"]);
        metrics.handshake("ok");
        metrics.handshake("ok");
        metrics.handshake("other");
        let text = metrics.encode();
        assert!(
            text.contains("certgate_tls_handshakes_total{result=\"ok\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("certgate_tls_handshakes_total{result=\"no_cert\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("certgate_tls_handshakes_total{result=\"other\"} 1"),
            "{text}"
        );
    }
}
