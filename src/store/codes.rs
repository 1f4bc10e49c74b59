//! Authorization codes (SPEC §4): 60 s, single-use, bound to the client,
//! the redirect URI, the PKCE challenge and the grant. Stored as hashes; the
//! guarded UPDATE of `used_at` decides the one redemption, on every instance.

use sqlx::FromRow;

use super::{Conn, StoreError};
use crate::on_conn;

#[derive(Debug, Clone, FromRow)]
pub struct Code {
    pub hash: String,
    pub grant_id: String,
    pub client_id: String,
    pub redirect_uri: String,
    /// Whether `/authorize` named the redirect URI (RFC 6749 §4.1.3: then the
    /// token request must repeat it).
    pub redirect_uri_given: i64,
    pub code_challenge: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
}

pub async fn insert(conn: impl Into<Conn<'_>>, code: &Code) -> Result<(), StoreError> {
    on_conn!(conn, |c| sqlx::query(
        "INSERT INTO codes (hash, grant_id, client_id, redirect_uri, redirect_uri_given, \
         code_challenge, created_at, expires_at, used_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
    )
    .bind(&code.hash)
    .bind(&code.grant_id)
    .bind(&code.client_id)
    .bind(&code.redirect_uri)
    .bind(code.redirect_uri_given)
    .bind(&code.code_challenge)
    .bind(code.created_at)
    .bind(code.expires_at)
    .bind(code.used_at)
    .execute(c)
    .await
    .map(|r| r.rows_affected()))
    .map_err(StoreError::from_insert)?;
    Ok(())
}

/// How a redemption went.
#[derive(Debug)]
pub enum Redeemed {
    /// This call spent the code.
    Fresh(Code),
    /// The code was spent before: a replay (its grant must be revoked).
    AlreadyUsed(Code),
    /// Expired, or no such code.
    Unknown,
}

const COLUMNS: &str = "hash, grant_id, client_id, redirect_uri, redirect_uri_given, \
    code_challenge, created_at, expires_at, used_at";

/// Spends the code with hash `hash` (first statement of the caller's
/// transaction: it takes the write lock at once).
pub async fn redeem(
    conn: impl Into<Conn<'_>> + Send,
    hash: &str,
    now: i64,
) -> Result<Redeemed, StoreError> {
    let mut conn = conn.into();
    let sql = format!(
        "UPDATE codes SET used_at = $1 WHERE hash = $2 AND used_at IS NULL AND expires_at > $1 \
         RETURNING {COLUMNS}"
    );
    let fresh: Option<Code> = on_conn!(&mut conn, |c| sqlx::query_as(&sql)
        .bind(now)
        .bind(hash)
        .fetch_optional(c)
        .await)?;
    if let Some(code) = fresh {
        return Ok(Redeemed::Fresh(code));
    }
    let sql = format!("SELECT {COLUMNS} FROM codes WHERE hash = $1");
    let known: Option<Code> = on_conn!(&mut conn, |c| sqlx::query_as(&sql)
        .bind(hash)
        .fetch_optional(c)
        .await)?;
    Ok(match known {
        Some(code) if code.used_at.is_some() => Redeemed::AlreadyUsed(code),
        _ => Redeemed::Unknown,
    })
}

pub async fn purge_expired(conn: impl Into<Conn<'_>>, before: i64) -> Result<u64, StoreError> {
    Ok(on_conn!(conn, |c| sqlx::query(
        "DELETE FROM codes WHERE expires_at < $1"
    )
    .bind(before)
    .execute(c)
    .await
    .map(|r| r.rows_affected()))?)
}
