//! Initial access tokens for registration mode `token` (RFC 7591 §3,
//! "initial access token"). Only the SHA-256 of a token is stored; a token is
//! single-use, and the guarded UPDATE of `used_at` decides the one
//! redemption on every instance sharing the database.

use super::{Conn, StoreError};
use crate::on_conn;

/// Stores the hash of a new token.
pub async fn insert(
    conn: impl Into<Conn<'_>>,
    hash: &str,
    expires_at: i64,
    now: i64,
) -> Result<(), StoreError> {
    on_conn!(conn, |c| sqlx::query(
        "INSERT INTO registration_tokens (hash, created_at, expires_at, used_at) \
         VALUES ($1, $2, $3, NULL)"
    )
    .bind(hash)
    .bind(now)
    .bind(expires_at)
    .execute(c)
    .await
    .map(|r| r.rows_affected()))
    .map_err(StoreError::from_insert)?;
    Ok(())
}

/// Whether the token with hash `hash` exists, is unused and unexpired. A
/// read only: [`redeem`] decides, in the transaction of the registration.
pub async fn is_usable(
    conn: impl Into<Conn<'_>>,
    hash: &str,
    now: i64,
) -> Result<bool, StoreError> {
    let n: i64 = on_conn!(conn, |c| sqlx::query_scalar(
        "SELECT COUNT(*) FROM registration_tokens \
         WHERE hash = $1 AND used_at IS NULL AND expires_at > $2"
    )
    .bind(hash)
    .bind(now)
    .fetch_one(c)
    .await)?;
    Ok(n > 0)
}

/// Spends the token with hash `hash`: true if this call did, false if it is
/// unknown, expired or already spent (by this or another instance).
pub async fn redeem(conn: impl Into<Conn<'_>>, hash: &str, now: i64) -> Result<bool, StoreError> {
    let n = on_conn!(conn, |c| sqlx::query(
        "UPDATE registration_tokens SET used_at = $1 \
         WHERE hash = $2 AND used_at IS NULL AND expires_at > $1"
    )
    .bind(now)
    .bind(hash)
    .execute(c)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(n == 1)
}

/// Deletes tokens that expired before `before` (used or not).
pub async fn purge_expired(conn: impl Into<Conn<'_>>, before: i64) -> Result<u64, StoreError> {
    Ok(on_conn!(conn, |c| sqlx::query(
        "DELETE FROM registration_tokens WHERE expires_at < $1"
    )
    .bind(before)
    .execute(c)
    .await
    .map(|r| r.rows_affected()))?)
}
