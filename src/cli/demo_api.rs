//! `mandate demo-api` (SPEC §9): a small invoices API built on the
//! resource-server module, for the README walkthrough and the tests.
//!
//! `GET /invoices` needs `invoices:read`. `POST /invoices/{id}/dispute`
//! needs `invoices:write` (checked first: 403 `insufficient_scope`), then a
//! user authenticated at `urn:mandate:acr:mfa` or stronger within
//! `--max-auth-age` seconds (otherwise the RFC 9470 challenge). With
//! `MANDATE_DEMO_API_CLIENT_ID` / `MANDATE_DEMO_API_CLIENT_SECRET` set, the
//! dispute route also asks the issuer's introspection endpoint, so a revoked
//! token is refused at once.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use super::{fail, CliError};
use crate::rs::{Bearer, Challenge, IntrospectionClient, ResourceServer, RsConfig};
use crate::state::Clock;

#[derive(Clone)]
struct Api {
    rs: Arc<ResourceServer>,
    max_auth_age: i64,
}

impl axum::extract::FromRef<Api> for Arc<ResourceServer> {
    fn from_ref(api: &Api) -> Arc<ResourceServer> {
        api.rs.clone()
    }
}

pub async fn run(
    issuer: String,
    bind: SocketAddr,
    resource: String,
    max_auth_age: i64,
) -> Result<(), CliError> {
    let mut config = RsConfig::new(&issuer, &resource, &format!("http://{bind}"));
    config.scopes_supported = vec!["invoices:read".into(), "invoices:write".into()];
    if let (Ok(id), Ok(secret)) = (
        std::env::var("MANDATE_DEMO_API_CLIENT_ID"),
        std::env::var("MANDATE_DEMO_API_CLIENT_SECRET"),
    ) {
        config.introspection = Some(IntrospectionClient {
            endpoint: format!("{}/introspect", config.issuer),
            client_id: id,
            client_secret: secret,
        });
    }
    let rs = ResourceServer::new(config);
    let app = router(Api { rs, max_auth_age });
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .map_err(|e| CliError::Config(format!("bind: cannot listen on {bind}: {e}")))?;
    tracing::info!(addr = %bind, %issuer, %resource, "demo API listening");
    println!("demo API for {resource} at http://{bind} (tokens from {issuer})");
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .map_err(|e| fail(format!("demo API: {e}")))
}

fn router(api: Api) -> Router {
    Router::new()
        .route("/invoices", get(invoices_get))
        .route("/invoices/{id}/dispute", post(dispute_post))
        .merge(api.rs.metadata_router())
        .with_state(api)
}

/// GET /invoices: the caller's invoices (`invoices:read`).
async fn invoices_get(
    State(api): State<Api>,
    Bearer(token): Bearer,
) -> Result<Json<Value>, Challenge> {
    api.rs.require_scope(&token, "invoices:read")?;
    Ok(Json(json!({
        "owner": token.sub,
        "on_behalf_of_actor": token.act.as_ref().map(|a| a.subs()),
        "invoices": [
            {"id": "inv-1001", "amount": "120.00", "currency": "EUR", "status": "open"},
            {"id": "inv-1002", "amount": "89.90", "currency": "EUR", "status": "paid"},
        ],
    })))
}

/// POST /invoices/{id}/dispute: scope first, then a fresh strong sign-in.
async fn dispute_post(
    State(api): State<Api>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Bearer(token): Bearer,
) -> Result<Json<Value>, Challenge> {
    api.rs.require_scope(&token, "invoices:write")?;
    let now = Clock::default().now();
    api.rs
        .require_authentication(&token, "urn:mandate:acr:mfa", Some(api.max_auth_age), now)?;
    if api.rs.config.introspection.is_some() {
        // A consequential action: do not trust a token that may have been revoked.
        let raw = api.rs.bearer(&headers)?;
        api.rs.introspect(raw, now).await?;
    }
    Ok(Json(
        json!({"invoice": id, "status": "disputed", "by": token.sub}),
    ))
}
