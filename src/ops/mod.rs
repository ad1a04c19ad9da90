//! Operations: health, readiness, Prometheus metrics, and process signals.

mod metrics;
mod server;
mod signals;

pub use metrics::{Metrics, RevocationMetrics, RouteCounters};
pub use server::{Readiness, serve};
pub use signals::{Signal, Signals};
