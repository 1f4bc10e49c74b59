//! Storage over SQLite or PostgreSQL with one set of SQL strings.
//!
//! [`Db`] holds one concrete pool; [`on_db!`](crate::on_db) and [`on_tx!`](crate::on_tx) write a body once
//! and compile it once per driver (STYLE §5). SQL uses the shared dialect:
//! `$n` placeholders, TEXT ids, BIGINT unix-second times bound from Rust, JSON
//! as TEXT, `ON CONFLICT`, `RETURNING`. Single-use facts are primary keys or
//! guarded updates, so they hold across every instance sharing the database.
//! This module never touches HTTP.

pub mod audit;
pub mod authorization_requests;
pub mod client_cache;
pub mod clients;
pub mod codes;
pub mod consents;
pub mod grants;
pub mod login_throttle;
pub mod metadata_documents;
pub mod refresh_tokens;
pub mod registration_tokens;
pub mod replay;
pub mod sessions;
pub mod tokens;
pub mod users;

use std::str::FromStr;
use std::time::Duration;

#[cfg(feature = "postgres")]
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
#[cfg(feature = "sqlite")]
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("conflict: already exists or already used")]
    Conflict,
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("{0}")]
    Config(String),
    /// The database (or the audit writer) cannot be reached now; worth a retry.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// A write failed for a reason a retry will not fix (relayed by the audit writer).
    #[error("write failed: {0}")]
    Failed(String),
    /// The client row a decision relied on changed or was deleted before the
    /// decision was recorded: nothing was written; decide again on a fresh read.
    #[error("the client changed while the request was decided: {0}")]
    ClientChanged(String),
}

impl StoreError {
    /// Maps a unique-key violation to [`StoreError::Conflict`].
    pub fn from_insert(e: sqlx::Error) -> StoreError {
        match &e {
            sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::Conflict,
            _ => StoreError::Db(e),
        }
    }

    /// Whether the database could not be reached (a retry may succeed), as
    /// opposed to a statement it refused.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            StoreError::Unavailable(_)
                | StoreError::Db(
                    sqlx::Error::PoolTimedOut
                        | sqlx::Error::PoolClosed
                        | sqlx::Error::Io(_)
                        | sqlx::Error::Tls(_)
                        | sqlx::Error::WorkerCrashed
                )
        )
    }
}

/// One connection pool, SQLite or PostgreSQL, chosen by the database URL.
#[derive(Clone, Debug)]
pub enum Db {
    #[cfg(feature = "sqlite")]
    /// The pool, and this process's write lock (see [`Db::begin`]).
    Sqlite(sqlx::SqlitePool, WriteLock),
    #[cfg(feature = "postgres")]
    Postgres(sqlx::PgPool),
}

/// Serialises this process's SQLite write transactions (cloned with the pool).
#[derive(Clone, Debug, Default)]
pub struct WriteLock(std::sync::Arc<tokio::sync::Mutex<()>>);

/// An open transaction on either driver.
pub enum Tx {
    #[cfg(feature = "sqlite")]
    /// The transaction holds the process's write lock until it ends.
    Sqlite(
        sqlx::Transaction<'static, sqlx::Sqlite>,
        tokio::sync::OwnedMutexGuard<()>,
    ),
    #[cfg(feature = "postgres")]
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
}

/// Where a store function runs: on the pool (one statement, its own implicit
/// transaction) or inside a caller's open transaction. Store functions take
/// `impl Into<Conn>` so each operation is written once for both (callers pass
/// `&db` or `&mut tx`).
pub enum Conn<'a> {
    Db(&'a Db),
    Tx(&'a mut Tx),
}

impl<'a> From<&'a Db> for Conn<'a> {
    fn from(db: &'a Db) -> Conn<'a> {
        Conn::Db(db)
    }
}

impl<'a> From<&'a mut Tx> for Conn<'a> {
    fn from(tx: &'a mut Tx) -> Conn<'a> {
        Conn::Tx(tx)
    }
}

/// Reborrows a `Conn` for one more statement on the same pool or transaction.
impl<'a, 'b> From<&'a mut Conn<'b>> for Conn<'a> {
    fn from(conn: &'a mut Conn<'b>) -> Conn<'a> {
        match conn {
            Conn::Db(db) => Conn::Db(db),
            Conn::Tx(tx) => Conn::Tx(tx),
        }
    }
}

/// Runs `$body` with `$c` bound to a sqlx executor for `$conn` (anything
/// `Into<Conn>`): the pool, or the connection of an open transaction. The
/// body is written once and compiled once per driver and per kind; it may use
/// `$c` for one statement (multi-statement operations take `&mut Tx`).
#[macro_export]
macro_rules! on_conn {
    ($conn:expr, |$c:ident| $body:expr) => {
        match ::core::convert::Into::<$crate::store::Conn<'_>>::into($conn) {
            #[cfg(feature = "sqlite")]
            $crate::store::Conn::Db($crate::store::Db::Sqlite($c, _)) => $body,
            #[cfg(feature = "postgres")]
            $crate::store::Conn::Db($crate::store::Db::Postgres($c)) => $body,
            #[cfg(feature = "sqlite")]
            $crate::store::Conn::Tx($crate::store::Tx::Sqlite(t, _)) => {
                let $c = &mut **t;
                $body
            }
            #[cfg(feature = "postgres")]
            $crate::store::Conn::Tx($crate::store::Tx::Postgres(t)) => {
                let $c = &mut **t;
                $body
            }
        }
    };
}

/// Runs `$body` with `$p` bound to the concrete pool of `$db`.
#[macro_export]
macro_rules! on_db {
    ($db:expr, |$p:ident| $body:expr) => {
        match $db {
            #[cfg(feature = "sqlite")]
            $crate::store::Db::Sqlite($p, _) => $body,
            #[cfg(feature = "postgres")]
            $crate::store::Db::Postgres($p) => $body,
        }
    };
}

/// Runs `$body` with `$c` bound to the connection of the transaction `$tx`.
#[macro_export]
macro_rules! on_tx {
    ($tx:expr, |$c:ident| $body:expr) => {
        match $tx {
            #[cfg(feature = "sqlite")]
            $crate::store::Tx::Sqlite(t, _) => {
                let $c = &mut **t;
                $body
            }
            #[cfg(feature = "postgres")]
            $crate::store::Tx::Postgres(t) => {
                let $c = &mut **t;
                $body
            }
        }
    };
}

/// How [`Db::open`] treats a database that is not there yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Open {
    /// `serve`, `migrate` and writing commands: create a missing SQLite file
    /// (mode 0600, its directory 0700); the caller migrates.
    Create,
    /// Read-only commands: the database must exist and be fully migrated;
    /// nothing is created and nothing migrated.
    Existing,
}

impl Db {
    /// Opens the pool for `url`, creating a missing SQLite database.
    pub async fn connect(url: &str) -> Result<Db, StoreError> {
        Db::open(url, Open::Create).await
    }

    /// Opens the pool for `url`. SQLite runs in WAL mode with full fsync: an
    /// acknowledged write survives a crash or power loss.
    pub async fn open(url: &str, mode: Open) -> Result<Db, StoreError> {
        if url.starts_with("sqlite:") {
            #[cfg(feature = "sqlite")]
            {
                let opts = SqliteConnectOptions::from_str(url)?
                    .create_if_missing(false)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Full)
                    .foreign_keys(true)
                    .busy_timeout(Duration::from_secs(10));
                let path = opts.get_filename().to_path_buf();
                let in_memory = path.as_os_str().is_empty() || path.as_os_str() == ":memory:";
                if !in_memory {
                    match mode {
                        Open::Create => create_sqlite_file(&path)?,
                        Open::Existing if !path.exists() => {
                            return Err(StoreError::Config(format!(
                                "database {} does not exist (`mandate migrate` or `mandate serve` creates it)",
                                path.display()
                            )))
                        }
                        Open::Existing => {}
                    }
                }
                // No ping before each acquire: a file database does not drop
                // connections, and the ping is a round trip to the worker thread.
                let pool = SqlitePoolOptions::new()
                    .max_connections(3)
                    .test_before_acquire(false)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect_with(opts)
                    .await?;
                let db = Db::Sqlite(pool, WriteLock::default());
                if mode == Open::Existing {
                    db.check_migrated().await?;
                }
                return Ok(db);
            }
            #[cfg(not(feature = "sqlite"))]
            return Err(StoreError::Config(
                "database_url: this build has no SQLite support".into(),
            ));
        }
        #[cfg(feature = "postgres")]
        {
            let opts = loopback_without_tls(url, PgConnectOptions::from_str(url)?);
            // No ping before each acquire either: it doubled every query's
            // round trips. A connection PostgreSQL dropped (a restart) fails
            // its one request with 503 and leaves the pool; the next
            // request opens a fresh one. Idle connections are closed after
            // a minute, before most proxies and firewalls would drop them.
            let pool = PgPoolOptions::new()
                .max_connections(16)
                .test_before_acquire(false)
                .idle_timeout(Duration::from_secs(60))
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(opts)
                .await?;
            let db = Db::Postgres(pool);
            if mode == Open::Existing {
                db.check_migrated().await?;
            }
            Ok(db)
        }
        #[cfg(not(feature = "postgres"))]
        Err(StoreError::Config(
            "database_url: this build has no PostgreSQL support".into(),
        ))
    }

    /// The embedded migrations of this driver.
    fn migrator(&self) -> sqlx::migrate::Migrator {
        match self {
            #[cfg(feature = "sqlite")]
            Db::Sqlite(..) => sqlx::migrate!("migrations/sqlite"),
            #[cfg(feature = "postgres")]
            Db::Postgres(_) => sqlx::migrate!("migrations/postgres"),
        }
    }

    /// Fails unless every embedded migration has been applied (read-only
    /// commands never migrate; they refuse a database that is not ready).
    async fn check_migrated(&self) -> Result<(), StoreError> {
        let not_ready = || {
            StoreError::Config(
                "the database is not initialised at this version; run `mandate migrate` first"
                    .into(),
            )
        };
        let applied: Vec<i64> = on_db!(self, |p| sqlx::query_scalar(
            "SELECT version FROM _sqlx_migrations WHERE success"
        )
        .fetch_all(p)
        .await)
        .map_err(|_| not_ready())?;
        if self.migrator().iter().all(|m| applied.contains(&m.version)) {
            Ok(())
        } else {
            Err(not_ready())
        }
    }

    /// Applies the embedded migrations for this driver. Safe to run from
    /// several instances at once (sqlx takes a lock).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let migrator = self.migrator();
        on_db!(self, |p| migrator.run(p).await)?;
        Ok(())
    }

    pub async fn begin(&self) -> Result<Tx, StoreError> {
        Ok(match self {
            #[cfg(feature = "sqlite")]
            Db::Sqlite(p, lock) => {
                // SQLite has one writer. Queue this process's writers on a
                // fair async lock instead of SQLite's busy handler (which
                // sleeps in steps of up to 100 ms: the p99 of contended
                // writes), and take the write lock at BEGIN (IMMEDIATE) so a
                // transaction never fails to upgrade from read to write.
                let guard = lock.0.clone().lock_owned().await;
                Tx::Sqlite(p.begin_with("BEGIN IMMEDIATE").await?, guard)
            }
            #[cfg(feature = "postgres")]
            Db::Postgres(p) => Tx::Postgres(p.begin().await?),
        })
    }

    /// Readiness: the database answers a trivial query.
    pub async fn ping(&self) -> Result<(), StoreError> {
        on_db!(self, |p| sqlx::query("SELECT 1")
            .execute(p)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// (open, idle) connections of the pool.
    pub fn pool_use(&self) -> (u32, usize) {
        on_db!(self, |p| (p.size(), p.num_idle()))
    }

    pub async fn close(&self) {
        on_db!(self, |p| p.close().await)
    }
}

impl Tx {
    pub async fn commit(self) -> Result<(), StoreError> {
        match self {
            #[cfg(feature = "sqlite")]
            Tx::Sqlite(t, _guard) => t.commit().await?,
            #[cfg(feature = "postgres")]
            Tx::Postgres(t) => t.commit().await?,
        }
        Ok(())
    }
}

/// Creates a missing SQLite database file with mode 0600 (and its missing
/// directories with 0700) before SQLite opens it: the file holds secret
/// hashes and the audit trail. SQLite gives its `-wal` and `-shm` files the
/// database file's mode. An existing file keeps its mode; a group- or
/// world-readable one is reported.
#[cfg(feature = "sqlite")]
fn create_sqlite_file(path: &std::path::Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    let fail = |what: &std::path::Path, e: std::io::Error| {
        StoreError::Config(format!(
            "database_url: cannot create {}: {e}",
            what.display()
        ))
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| fail(dir, e))?;
        }
    }
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            if let Ok(meta) = std::fs::metadata(path) {
                let mode = meta.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    tracing::warn!(
                        path = %path.display(),
                        mode = format!("{mode:o}"),
                        "the database file is readable by other users; run chmod 600"
                    );
                }
            }
            Ok(())
        }
        Err(e) => Err(fail(path, e)),
    }
}

/// Encodes a list as the JSON text stored in list columns.
pub(crate) fn to_json_list(items: &[String]) -> String {
    serde_json::to_string(items).unwrap_or_else(|_| "[]".into())
}

pub(crate) fn from_json_list(column: &str, text: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{column}: {e}")))
}

/// sqlx's default `sslmode` is `prefer`: TLS when the server offers it,
/// unverified. To a PostgreSQL on this host (loopback or a Unix socket)
/// that protects nothing and costs a TLS handshake per pooled connection
/// (~100 ms of CPU loading the system's root certificates). So with no
/// `sslmode` in the URL, loopback connects in the clear; any other host
/// keeps sqlx's default (set `sslmode=verify-full` for a remote database).
#[cfg(feature = "postgres")]
fn loopback_without_tls(url: &str, opts: PgConnectOptions) -> PgConnectOptions {
    let explicit = url::Url::parse(url)
        .map(|u| {
            u.query_pairs()
                .any(|(k, _)| k == "sslmode" || k == "ssl-mode")
        })
        .unwrap_or(true);
    let host = opts.get_host();
    let local = host.starts_with('/')
        || host == "localhost"
        || host
            .trim_matches(|c| c == '[' || c == ']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if explicit || !local {
        return opts;
    }
    opts.ssl_mode(sqlx::postgres::PgSslMode::Disable)
}

#[cfg(test)]
mod tests {
    /// Both drivers must carry the same migration versions (STYLE §5).
    #[test]
    fn migration_versions_match() {
        let names = |dir: &str| {
            let mut v: Vec<String> = std::fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        };
        let s = names(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite"));
        let p = names(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres"));
        assert!(!s.is_empty());
        assert_eq!(s, p);
    }

    /// TLS is dropped only for a database on this host with no `sslmode`.
    #[cfg(feature = "postgres")]
    #[test]
    fn loopback_postgres_skips_tls_unless_asked() {
        use sqlx::postgres::{PgConnectOptions, PgSslMode};
        use std::str::FromStr;
        let mode = |url: &str| {
            let opts = super::loopback_without_tls(url, PgConnectOptions::from_str(url).unwrap());
            format!("{:?}", opts.get_ssl_mode())
        };
        let (off, prefer, full) = (
            format!("{:?}", PgSslMode::Disable),
            format!("{:?}", PgSslMode::Prefer),
            format!("{:?}", PgSslMode::VerifyFull),
        );
        assert_eq!(mode("postgres://u@127.0.0.1:5432/db"), off);
        assert_eq!(mode("postgres://u@localhost/db"), off);
        assert_eq!(mode("postgres://u@[::1]/db"), off);
        assert_eq!(mode("postgres://u@db.example.com/db"), prefer);
        assert_eq!(mode("postgres://u@10.0.0.5/db"), prefer);
        assert_eq!(mode("postgres://u@127.0.0.1/db?sslmode=verify-full"), full);
        assert_eq!(mode("postgres://u@127.0.0.1/db?sslmode=prefer"), prefer);
    }
}
