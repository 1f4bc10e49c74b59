//! Storage over SQLite or PostgreSQL with one set of SQL strings.
//!
//! [`Db`] holds one concrete pool; [`on_db!`] and [`on_tx!`] write a body once
//! and compile it once per driver (STYLE §5). SQL uses the shared dialect:
//! `$n` placeholders, TEXT ids, BIGINT unix-second times bound from Rust, JSON
//! as TEXT, `ON CONFLICT`, `RETURNING`. Single-use facts are primary keys or
//! guarded updates, so they hold across every instance sharing the database.
//! This module never touches HTTP.

pub mod audit;
pub mod clients;
pub mod replay;
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
    #[error("unavailable: {0}")]
    Unavailable(String),
}

impl StoreError {
    /// Maps a unique-key violation to [`StoreError::Conflict`].
    pub fn from_insert(e: sqlx::Error) -> StoreError {
        match &e {
            sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::Conflict,
            _ => StoreError::Db(e),
        }
    }
}

/// One connection pool, SQLite or PostgreSQL, chosen by the database URL.
#[derive(Clone, Debug)]
pub enum Db {
    #[cfg(feature = "sqlite")]
    Sqlite(sqlx::SqlitePool),
    #[cfg(feature = "postgres")]
    Postgres(sqlx::PgPool),
}

/// An open transaction on either driver.
pub enum Tx {
    #[cfg(feature = "sqlite")]
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
    #[cfg(feature = "postgres")]
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
}

/// Runs `$body` with `$p` bound to the concrete pool of `$db`.
#[macro_export]
macro_rules! on_db {
    ($db:expr, |$p:ident| $body:expr) => {
        match $db {
            #[cfg(feature = "sqlite")]
            $crate::store::Db::Sqlite($p) => $body,
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
            $crate::store::Tx::Sqlite(t) => {
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

impl Db {
    /// Opens the pool for `url`. SQLite files (and their directory) are created
    /// on first start, in WAL mode with full fsync: an acknowledged write survives
    /// a crash or power loss.
    pub async fn connect(url: &str) -> Result<Db, StoreError> {
        if url.starts_with("sqlite:") {
            #[cfg(feature = "sqlite")]
            {
                let opts = SqliteConnectOptions::from_str(url)?
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Full)
                    .foreign_keys(true)
                    .busy_timeout(Duration::from_secs(10));
                let path = opts.get_filename();
                if let Some(dir) = path.parent() {
                    if !dir.as_os_str().is_empty() {
                        std::fs::create_dir_all(dir).map_err(|e| {
                            StoreError::Config(format!(
                                "database_url: cannot create {}: {e}",
                                dir.display()
                            ))
                        })?;
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
                return Ok(Db::Sqlite(pool));
            }
            #[cfg(not(feature = "sqlite"))]
            return Err(StoreError::Config(
                "database_url: this build has no SQLite support".into(),
            ));
        }
        #[cfg(feature = "postgres")]
        {
            let opts = PgConnectOptions::from_str(url)?;
            let pool = PgPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(opts)
                .await?;
            Ok(Db::Postgres(pool))
        }
        #[cfg(not(feature = "postgres"))]
        Err(StoreError::Config(
            "database_url: this build has no PostgreSQL support".into(),
        ))
    }

    /// Applies the embedded migrations for this driver. Safe to run from
    /// several instances at once (sqlx takes a lock).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match self {
            #[cfg(feature = "sqlite")]
            Db::Sqlite(p) => sqlx::migrate!("migrations/sqlite").run(p).await?,
            #[cfg(feature = "postgres")]
            Db::Postgres(p) => sqlx::migrate!("migrations/postgres").run(p).await?,
        }
        Ok(())
    }

    pub async fn begin(&self) -> Result<Tx, StoreError> {
        Ok(match self {
            #[cfg(feature = "sqlite")]
            Db::Sqlite(p) => Tx::Sqlite(p.begin().await?),
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

    pub async fn close(&self) {
        on_db!(self, |p| p.close().await)
    }
}

impl Tx {
    pub async fn commit(self) -> Result<(), StoreError> {
        match self {
            #[cfg(feature = "sqlite")]
            Tx::Sqlite(t) => t.commit().await?,
            #[cfg(feature = "postgres")]
            Tx::Postgres(t) => t.commit().await?,
        }
        Ok(())
    }
}

/// Encodes a list as the JSON text stored in list columns.
pub(crate) fn to_json_list(items: &[String]) -> String {
    serde_json::to_string(items).unwrap_or_else(|_| "[]".into())
}

pub(crate) fn from_json_list(column: &str, text: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{column}: {e}")))
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
}
