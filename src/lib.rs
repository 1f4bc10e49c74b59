//! mandate: an OAuth 2.1 authorization server for AI-agent delegation.
//!
//! Layers: `http` (axum only) → `oauth` (protocol) → `store`, `keys`, `audit`.
//! `app` builds the router; `serve` and the tests both use [`build`] and [`app`].
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::await_holding_lock
)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod audit;
pub mod cli;
pub mod config;
pub mod http;
pub mod keys;
pub mod oauth;
pub mod secret;
pub mod state;
pub mod store;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::keys::KeyRing;
use crate::state::{AppState, Clock};
use crate::store::audit::{AuditTask, AuditWriter};
use crate::store::Db;

/// The router for `state`.
pub fn app(state: AppState) -> Router {
    http::router(state)
}

/// A running application's parts that must be shut down in order.
pub struct Built {
    pub state: AppState,
    pub audit_task: AuditTask,
}

/// Connects the database, applies migrations, opens the keys and starts the
/// audit writer: everything `serve` needs before it binds.
pub async fn build(config: Config) -> anyhow::Result<Built> {
    let clock = Clock::default();
    let db = Db::connect(&config.database_url).await?;
    db.migrate().await?;
    let keys = KeyRing::open(&config.keys_dir, clock.now())?;
    let (audit, audit_task) = AuditWriter::spawn(db.clone());
    Ok(Built {
        state: AppState {
            config: Arc::new(config),
            db,
            keys,
            audit,
            clock,
        },
        audit_task,
    })
}

/// Serves `built` on `listener` until `shutdown` resolves; in-flight requests
/// finish, queued audit events are committed, then the pool closes.
pub async fn serve(
    listener: TcpListener,
    built: Built,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let Built { state, audit_task } = built;
    let db = state.db.clone();
    let maintenance = tokio::spawn(maintenance(state.clone()));
    let router = app(state);
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await?;
    maintenance.abort();
    let _ = maintenance.await;
    // No request is in flight any more: commit what is queued, then stop.
    audit_task.finish().await;
    db.close().await;
    Ok(())
}

/// Background upkeep: pick up rotated keys, forget expired single-use facts.
async fn maintenance(state: AppState) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
    let mut n: u64 = 0;
    loop {
        tick.tick().await;
        if let Err(e) = state.keys.refresh() {
            tracing::warn!(error = %e, "could not re-read the keys directory");
        }
        n += 1;
        if n % 720 == 0 {
            if let Err(e) = store::replay::purge_expired(&state.db, state.clock.now()).await {
                tracing::warn!(error = %e, "could not purge expired single-use facts");
            }
        }
    }
}
