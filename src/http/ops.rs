//! Liveness and readiness.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde_json::json;

use crate::state::AppState;

/// GET /healthz: the process is up.
pub async fn healthz_get() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

/// GET /readyz: the audit writer runs and the database answers. An instance
/// whose writer has stopped can issue nothing (every decision must be
/// audited), so a load balancer should stop sending it requests.
pub async fn readyz_get(State(app): State<AppState>) -> impl IntoResponse {
    if !app.audit.is_running() {
        tracing::error!("readiness check failed: the audit writer has stopped");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unavailable", "reason": "audit writer stopped"})),
        );
    }
    match app.db.ping().await {
        Ok(()) => (StatusCode::OK, Json(json!({"status": "ready"}))),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "unavailable", "reason": "database unreachable"})),
            )
        }
    }
}

/// GET /metrics: Prometheus / OpenMetrics text.
pub async fn metrics_get(State(app): State<AppState>) -> impl IntoResponse {
    app.metrics
        .audit_queue_depth
        .set(app.audit.queue_depth() as i64);
    let (size, idle) = app.db.pool_use();
    app.metrics.db_pool_connections.set(size as i64);
    app.metrics.db_pool_idle.set(idle as i64);
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        app.metrics.render(),
    )
}
