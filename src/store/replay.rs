//! Single-use facts: a value of a kind may be remembered once. The second
//! attempt fails with [`StoreError::Conflict`] on every instance, because the
//! primary key of `used_once` decides, not process memory.

use super::{Conn, StoreError};
use crate::on_conn;

/// Remembers `value` of `kind` until `expires_at`; a second call for the same
/// pair is [`StoreError::Conflict`] (the caller turns it into a replay error).
pub async fn remember(
    conn: impl Into<Conn<'_>>,
    kind: &str,
    value: &str,
    expires_at: i64,
) -> Result<(), StoreError> {
    on_conn!(conn, |p| sqlx::query(
        "INSERT INTO used_once (kind, value, expires_at) VALUES ($1, $2, $3)"
    )
    .bind(kind)
    .bind(value)
    .bind(expires_at)
    .execute(p)
    .await
    .map(|r| r.rows_affected()))
    .map_err(StoreError::from_insert)?;
    Ok(())
}

/// Drops facts that can no longer be replayed (their artefact has expired).
pub async fn purge_expired(conn: impl Into<Conn<'_>>, now: i64) -> Result<u64, StoreError> {
    Ok(on_conn!(conn, |p| sqlx::query(
        "DELETE FROM used_once WHERE expires_at < $1"
    )
    .bind(now)
    .execute(p)
    .await
    .map(|r| r.rows_affected()))?)
}
