//! Validated `/authorize` requests waiting for login or consent (SPEC §4),
//! bound to the session that made them. The request itself is JSON: the
//! protocol layer owns its shape.

use super::{Conn, StoreError};
use crate::on_conn;

pub struct NewRequest<'a> {
    pub id: &'a str,
    pub session_hash: &'a str,
    pub client_id: &'a str,
    pub request: &'a str,
    pub created_at: i64,
    pub expires_at: i64,
}

pub async fn insert(conn: impl Into<Conn<'_>>, r: &NewRequest<'_>) -> Result<(), StoreError> {
    on_conn!(conn, |c| sqlx::query(
        "INSERT INTO authorization_requests (id, session_hash, client_id, request, created_at, \
         expires_at) VALUES ($1, $2, $3, $4, $5, $6)"
    )
    .bind(r.id)
    .bind(r.session_hash)
    .bind(r.client_id)
    .bind(r.request)
    .bind(r.created_at)
    .bind(r.expires_at)
    .execute(c)
    .await
    .map(|r| r.rows_affected()))
    .map_err(StoreError::from_insert)?;
    Ok(())
}

/// The JSON of request `id` if it belongs to the session and is still live.
pub async fn get(
    conn: impl Into<Conn<'_>>,
    id: &str,
    session_hash: &str,
    now: i64,
) -> Result<Option<String>, StoreError> {
    Ok(on_conn!(conn, |c| sqlx::query_scalar(
        "SELECT request FROM authorization_requests \
         WHERE id = $1 AND session_hash = $2 AND expires_at > $3"
    )
    .bind(id)
    .bind(session_hash)
    .bind(now)
    .fetch_optional(c)
    .await)?)
}

/// Takes request `id` (once: a consent decision is made at most once).
pub async fn take(
    conn: impl Into<Conn<'_>>,
    id: &str,
    session_hash: &str,
    now: i64,
) -> Result<Option<String>, StoreError> {
    Ok(on_conn!(conn, |c| sqlx::query_scalar(
        "DELETE FROM authorization_requests \
         WHERE id = $1 AND session_hash = $2 AND expires_at > $3 RETURNING request"
    )
    .bind(id)
    .bind(session_hash)
    .bind(now)
    .fetch_optional(c)
    .await)?)
}

pub async fn purge_expired(conn: impl Into<Conn<'_>>, now: i64) -> Result<u64, StoreError> {
    Ok(on_conn!(conn, |c| sqlx::query(
        "DELETE FROM authorization_requests WHERE expires_at < $1"
    )
    .bind(now)
    .execute(c)
    .await
    .map(|r| r.rows_affected()))?)
}
