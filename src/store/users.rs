//! Users: people who sign in and delegate to agents.

use serde::Serialize;
use sqlx::FromRow;

use super::{Conn, StoreError};
use crate::on_conn;

#[derive(Debug, Clone, Serialize, FromRow)]
pub struct User {
    pub id: String,
    pub username: String,
    pub email: Option<String>,
    #[serde(skip)]
    pub password_hash: String,
    pub disabled_at: Option<i64>,
    pub created_at: i64,
}

const COLUMNS: &str = "id, username, email, password_hash, disabled_at, created_at";

/// Inserts `u`; a taken username is [`StoreError::Conflict`].
pub async fn insert(conn: impl Into<Conn<'_>>, u: &User) -> Result<(), StoreError> {
    on_conn!(conn, |p| sqlx::query(
        "INSERT INTO users (id, username, email, password_hash, disabled_at, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)"
    )
    .bind(&u.id)
    .bind(&u.username)
    .bind(&u.email)
    .bind(&u.password_hash)
    .bind(u.disabled_at)
    .bind(u.created_at)
    .execute(p)
    .await
    .map(|r| r.rows_affected()))
    .map_err(StoreError::from_insert)?;
    Ok(())
}

pub async fn by_username(
    conn: impl Into<Conn<'_>>,
    username: &str,
) -> Result<Option<User>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM users WHERE username = $1");
    Ok(on_conn!(conn, |p| sqlx::query_as(&sql)
        .bind(username)
        .fetch_optional(p)
        .await)?)
}

pub async fn list(conn: impl Into<Conn<'_>>) -> Result<Vec<User>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM users ORDER BY created_at, username");
    Ok(on_conn!(conn, |p| sqlx::query_as(&sql).fetch_all(p).await)?)
}

/// Disables a user (idempotent: the first disable time is kept).
pub async fn disable(
    conn: impl Into<Conn<'_>>,
    username: &str,
    now: i64,
) -> Result<(), StoreError> {
    let r = on_conn!(conn, |p| sqlx::query(
        "UPDATE users SET disabled_at = COALESCE(disabled_at, $1) WHERE username = $2"
    )
    .bind(now)
    .bind(username)
    .execute(p)
    .await
    .map(|r| r.rows_affected()))?;
    if r == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

/// Sets a new password hash (used by the demo seeding).
pub async fn set_password_hash(
    conn: impl Into<Conn<'_>>,
    username: &str,
    phc: &str,
) -> Result<(), StoreError> {
    let r = on_conn!(conn, |p| sqlx::query(
        "UPDATE users SET password_hash = $1 WHERE username = $2"
    )
    .bind(phc)
    .bind(username)
    .execute(p)
    .await
    .map(|r| r.rows_affected()))?;
    if r == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}
