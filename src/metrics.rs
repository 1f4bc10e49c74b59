//! Prometheus metrics (`GET /metrics`), one registry per app: nothing global,
//! so every test server counts only its own traffic. Label values are bounded
//! (known grant types, error codes, status codes), never caller-chosen text.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
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

/// Latency per endpoint (a fixed list) and outcome class.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabels {
    pub endpoint: &'static str,
    /// `2xx`, `3xx`, `4xx` or `5xx`.
    pub outcome: &'static str,
}

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub tokens: Family<TokenLabels, Counter>,
    pub http_requests: Family<HttpLabels, Counter>,
    pub http_duration: Family<EndpointLabels, Histogram>,
    /// Events waiting for the group-commit writer (set when scraped).
    pub audit_queue_depth: Gauge,
    /// Database pool connections, open and idle (set when scraped).
    pub db_pool_connections: Gauge,
    pub db_pool_idle: Gauge,
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
        let http_duration = Family::<EndpointLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 14))
        });
        registry.register(
            "http_request_duration_seconds",
            "Time to answer an HTTP request, by endpoint and outcome",
            http_duration.clone(),
        );
        let audit_queue_depth = Gauge::default();
        registry.register(
            "audit_queue_depth",
            "Audit events waiting for the group-commit writer",
            audit_queue_depth.clone(),
        );
        let db_pool_connections = Gauge::default();
        registry.register(
            "db_pool_connections",
            "Open database connections in this instance's pool",
            db_pool_connections.clone(),
        );
        let db_pool_idle = Gauge::default();
        registry.register(
            "db_pool_idle",
            "Idle database connections in this instance's pool",
            db_pool_idle.clone(),
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
            audit_queue_depth,
            db_pool_connections,
            db_pool_idle,
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

/// A bounded label for a request path: one of the server's routes, or `other`.
pub fn endpoint_label(path: &str) -> &'static str {
    const ROUTES: &[&str] = &[
        "/token",
        "/authorize",
        "/introspect",
        "/revoke",
        "/register",
        "/login",
        "/consent",
        "/logout",
        "/account",
        "/jwks.json",
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
        "/healthz",
        "/readyz",
        "/metrics",
    ];
    ROUTES
        .iter()
        .find(|r| path == **r)
        .copied()
        .unwrap_or(if path.starts_with("/account/") {
            "/account"
        } else {
            "other"
        })
}

/// `2xx`, `3xx`, `4xx` or `5xx`.
pub fn outcome_label(status: u16) -> &'static str {
    match status {
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
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
