//! Shared application state: built once by `serve` (and by tests the same way).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::Config;
use crate::keys::KeyRing;
use crate::metrics::Metrics;
use crate::store::audit::AuditWriter;
use crate::store::client_cache::ClientCache;
use crate::store::Db;

/// Wall-clock time in unix seconds, with an offset tests may move forward.
#[derive(Clone, Default)]
pub struct Clock {
    offset: Arc<AtomicI64>,
}

impl Clock {
    pub fn now(&self) -> i64 {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or_default();
        secs + self.offset.load(Ordering::Relaxed)
    }

    /// Moves this clock forward (tests only: expiry without sleeping).
    pub fn advance(&self, secs: i64) {
        self.offset.fetch_add(secs, Ordering::Relaxed);
    }
}

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub db: Db,
    pub keys: KeyRing,
    pub audit: AuditWriter,
    pub clock: Clock,
    pub metrics: Arc<Metrics>,
    /// Client rows recently authenticated here (checked again at every
    /// audit commit: see [`crate::store::client_cache`]).
    pub client_cache: Arc<ClientCache>,
    /// Longest time a request may take end to end (30 s; tests shorten it).
    pub request_timeout: Duration,
}

/// Default for [`AppState::request_timeout`].
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
