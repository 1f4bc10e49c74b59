//! Refresh tokens (SPEC §3): rotated on every use; one presented again after
//! its rotation is a replay, and its whole grant is revoked. Stored as hashes.

use sqlx::FromRow;

use super::{from_json_list, to_json_list, Conn, StoreError};
use crate::on_conn;

#[derive(Debug, Clone)]
pub struct RefreshToken {
    pub hash: String,
    pub grant_id: String,
    pub client_id: String,
    /// The scopes of the grant this token may refresh (never widened).
    pub scopes: Vec<String>,
    pub issued_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
}

#[derive(FromRow)]
struct Row {
    hash: String,
    grant_id: String,
    client_id: String,
    scopes: String,
    issued_at: i64,
    expires_at: i64,
    used_at: Option<i64>,
}

impl TryFrom<Row> for RefreshToken {
    type Error = StoreError;
    fn try_from(r: Row) -> Result<RefreshToken, StoreError> {
        Ok(RefreshToken {
            scopes: from_json_list("refresh_tokens.scopes", &r.scopes)?,
            hash: r.hash,
            grant_id: r.grant_id,
            client_id: r.client_id,
            issued_at: r.issued_at,
            expires_at: r.expires_at,
            used_at: r.used_at,
        })
    }
}

const COLUMNS: &str = "hash, grant_id, client_id, scopes, issued_at, expires_at, used_at";

pub async fn insert(conn: impl Into<Conn<'_>>, t: &RefreshToken) -> Result<(), StoreError> {
    on_conn!(conn, |c| sqlx::query(
        "INSERT INTO refresh_tokens (hash, grant_id, client_id, scopes, issued_at, expires_at, \
         used_at) VALUES ($1, $2, $3, $4, $5, $6, $7)"
    )
    .bind(&t.hash)
    .bind(&t.grant_id)
    .bind(&t.client_id)
    .bind(to_json_list(&t.scopes))
    .bind(t.issued_at)
    .bind(t.expires_at)
    .bind(t.used_at)
    .execute(c)
    .await
    .map(|r| r.rows_affected()))
    .map_err(StoreError::from_insert)?;
    Ok(())
}

#[derive(Debug)]
pub enum Rotated {
    /// This call spent the token.
    Fresh(RefreshToken),
    /// Spent before: a replay.
    AlreadyUsed(RefreshToken),
    /// Expired, or no such token.
    Unknown,
}

/// Spends the refresh token with hash `hash` (the first statement of the
/// caller's transaction).
pub async fn rotate(
    conn: impl Into<Conn<'_>> + Send,
    hash: &str,
    now: i64,
) -> Result<Rotated, StoreError> {
    let mut conn = conn.into();
    let sql = format!(
        "UPDATE refresh_tokens SET used_at = $1 \
         WHERE hash = $2 AND used_at IS NULL AND expires_at > $1 RETURNING {COLUMNS}"
    );
    let fresh: Option<Row> = on_conn!(&mut conn, |c| sqlx::query_as(&sql)
        .bind(now)
        .bind(hash)
        .fetch_optional(c)
        .await)?;
    if let Some(row) = fresh {
        return Ok(Rotated::Fresh(row.try_into()?));
    }
    let sql = format!("SELECT {COLUMNS} FROM refresh_tokens WHERE hash = $1");
    let known: Option<Row> = on_conn!(&mut conn, |c| sqlx::query_as(&sql)
        .bind(hash)
        .fetch_optional(c)
        .await)?;
    Ok(match known.map(RefreshToken::try_from).transpose()? {
        Some(t) if t.used_at.is_some() => Rotated::AlreadyUsed(t),
        _ => Rotated::Unknown,
    })
}

/// The refresh token with hash `hash`, used or not.
pub async fn get(
    conn: impl Into<Conn<'_>>,
    hash: &str,
) -> Result<Option<RefreshToken>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM refresh_tokens WHERE hash = $1");
    let row: Option<Row> = on_conn!(conn, |c| sqlx::query_as(&sql)
        .bind(hash)
        .fetch_optional(c)
        .await)?;
    row.map(RefreshToken::try_from).transpose()
}
