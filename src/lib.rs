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
pub mod metrics;
pub mod oauth;
pub mod rs;
pub mod secret;
pub mod state;
pub mod store;
pub mod text;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;

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
    let db = Db::connect(config.database_url.expose()).await?;
    db.migrate().await?;
    let keys = KeyRing::open(&config.keys_dir, clock.now())?;
    let metrics = Arc::new(metrics::Metrics::default());
    let (audit, audit_task) = AuditWriter::spawn(db.clone(), metrics.clone());
    Ok(Built {
        state: AppState {
            config: Arc::new(config),
            db,
            keys,
            audit,
            clock,
            metrics,
            client_cache: Arc::default(),
            request_timeout: state::REQUEST_TIMEOUT,
        },
        audit_task,
    })
}

/// How long a client may take to send a request's headers. axum's own
/// `serve` sets no limit, so a client trickling bytes could hold a connection
/// (and a file descriptor) forever; the 30 s request timeout starts only once
/// the headers are in.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How long shutdown waits for in-flight requests before closing connections.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Serves `built` on `listener` until `shutdown` resolves; in-flight requests
/// finish, queued audit events are committed, then the pool closes.
pub async fn serve(
    listener: TcpListener,
    built: Built,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    serve_with(listener, built, shutdown, HEADER_READ_TIMEOUT).await
}

/// [`serve`] with an explicit header read timeout (tests use a short one).
pub async fn serve_with(
    listener: TcpListener,
    built: Built,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    header_read_timeout: Duration,
) -> anyhow::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto::Builder;
    use hyper_util::service::TowerToHyperService;
    use tower::ServiceExt;

    let Built { state, audit_task } = built;
    let db = state.db.clone();
    let maintenance = tokio::spawn(maintenance(state.clone()));
    let router = app(state);

    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let svc = router.clone().map_request(
            move |mut req: axum::extract::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                req
            },
        );
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), TowerToHyperService::new(svc))
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection closed with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("in-flight requests did not finish within {SHUTDOWN_GRACE:?}; closing");
    }
    maintenance.abort();
    let _ = maintenance.await;
    // No request is in flight any more: commit what is queued, then stop.
    audit_task.finish().await;
    db.close().await;
    Ok(())
}

/// Deletes rows that can no longer matter: expired single-use facts,
/// sessions and pending requests; codes a day after they expired (until
/// then a replayed code is still recognised and revokes its grant).
async fn purge(state: &AppState) -> Result<(), store::StoreError> {
    let now = state.clock.now();
    store::replay::purge_expired(&state.db, now).await?;
    store::sessions::purge_expired(&state.db, now).await?;
    store::authorization_requests::purge_expired(&state.db, now).await?;
    store::codes::purge_expired(&state.db, now - 86_400).await?;
    store::registration_tokens::purge_expired(&state.db, now - 86_400).await?;
    store::metadata_documents::purge_expired(&state.db, now).await?;
    Ok(())
}

/// Background upkeep: pick up rotated keys, forget expired rows.
async fn maintenance(state: AppState) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
    let mut n: u64 = 0;
    loop {
        tick.tick().await;
        if let Err(e) = state.keys.refresh() {
            tracing::warn!(error = %e, "could not re-read the keys directory");
        }
        n += 1;
        if n.is_multiple_of(720) {
            if let Err(e) = purge(&state).await {
                tracing::warn!(error = %e, "could not purge expired rows");
            }
        }
    }
}
