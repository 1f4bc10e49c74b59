//! The only axum code: the router, request context, error rendering, handlers.

pub mod discovery;
pub mod error;
pub mod ops;
pub mod token;

use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use tower_http::timeout::TimeoutLayer;
use tracing::Instrument;

use crate::state::AppState;

/// The id of one request: on every log line of the request and in the
/// `X-Request-Id` response header.
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

pub fn router(state: AppState) -> Router {
    Router::new()
        .route(
            "/.well-known/oauth-authorization-server",
            get(discovery::metadata_get),
        )
        .route(
            "/.well-known/openid-configuration",
            get(discovery::metadata_get),
        )
        .route("/jwks.json", get(discovery::jwks_get))
        .route("/token", post(token::token_post))
        .route("/healthz", get(ops::healthz_get))
        .route("/readyz", get(ops::readyz_get))
        .route("/metrics", get(ops::metrics_get))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(30),
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            request_context,
        ))
        .with_state(state)
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(serde_json::json!({"error": "not_found", "error_description": "no such endpoint"})),
    )
        .into_response()
}

async fn method_not_allowed() -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        Json(serde_json::json!({
            "error": "invalid_request",
            "error_description": "this endpoint does not accept that HTTP method"
        })),
    )
        .into_response()
}

/// Accepts an incoming `X-Request-Id` only when it is short and plain (it ends
/// up in logs and the audit trail); otherwise makes a new one.
fn request_id(req: &Request) -> String {
    req.headers()
        .get(&X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        })
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// Gives each request an id and a span, logs its outcome (method, path and
/// status only: query strings may hold codes and are never logged), and sets
/// headers every response carries.
async fn request_context(State(app): State<AppState>, mut req: Request, next: Next) -> Response {
    let id = request_id(&req);
    let method = crate::metrics::method_label(req.method());
    req.extensions_mut().insert(RequestId(id.clone()));
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %req.method(),
        path = %req.uri().path(),
    );
    let started = Instant::now();
    let mut resp = next.run(req).instrument(span.clone()).await;
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&id) {
        h.insert(X_REQUEST_ID.clone(), v);
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    let status = resp.status().as_u16();
    app.metrics
        .http_requests
        .get_or_create(&crate::metrics::HttpLabels { method, status })
        .inc();
    app.metrics
        .http_duration
        .observe(started.elapsed().as_secs_f64());
    span.in_scope(|| {
        tracing::info!(
            status = resp.status().as_u16(),
            latency_us = started.elapsed().as_micros() as u64,
            "request"
        )
    });
    resp
}
