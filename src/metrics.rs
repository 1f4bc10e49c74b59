//! Prometheus metrics (`GET /metrics`), one registry per app: nothing global,
//! so every test server counts only its own traffic. Label values are bounded
//! (known grant types, error codes, status codes), never caller-chosen text.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TokenLabels {
    /// A grant type this server knows, `none` or `other`.
    pub grant_type: &'static str,
    /// `issued`, or the RFC 6749 error code.
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: &'static str,
    pub status: u16,
}

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub tokens: Family<TokenLabels, Counter>,
    pub http_requests: Family<HttpLabels, Counter>,
    pub http_duration: Histogram,
    pub audit_events: Counter,
    pub audit_batch_size: Histogram,
    pub audit_commit_seconds: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("mandate");
        let tokens = Family::<TokenLabels, Counter>::default();
        registry.register(
            "tokens",
            "Token endpoint decisions by grant type and outcome",
            tokens.clone(),
        );
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by method and status",
            http_requests.clone(),
        );
        let http_duration = Histogram::new(exponential_buckets(0.0005, 2.0, 14));
        registry.register(
            "http_request_duration_seconds",
            "Time to answer an HTTP request",
            http_duration.clone(),
        );
        let audit_events = Counter::default();
        registry.register(
            "audit_events",
            "Audit events committed",
            audit_events.clone(),
        );
        let audit_batch_size = Histogram::new(exponential_buckets(1.0, 2.0, 10));
        registry.register(
            "audit_batch_size",
            "Audit events per group commit",
            audit_batch_size.clone(),
        );
        let audit_commit_seconds = Histogram::new(exponential_buckets(0.0005, 2.0, 14));
        registry.register(
            "audit_commit_seconds",
            "Time to commit one audit batch",
            audit_commit_seconds.clone(),
        );
        Metrics {
            registry,
            tokens,
            http_requests,
            http_duration,
            audit_events,
            audit_batch_size,
            audit_commit_seconds,
        }
    }
}

impl Metrics {
    /// The OpenMetrics text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!(error = %e, "could not encode metrics");
        }
        out
    }
}

/// A bounded label for an HTTP method.
pub fn method_label(m: &axum::http::Method) -> &'static str {
    match m.as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    }
}
