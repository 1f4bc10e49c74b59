//! Browser sessions (SPEC §4), in the database so any instance continues
//! any session. The cookie carries a 256-bit random id; only its SHA-256 is
//! stored. The CSRF token is bound to the session row.

use sqlx::FromRow;

use super::{from_json_list, to_json_list, Conn, StoreError};
use crate::on_conn;

/// How the user of a session authenticated (SPEC §6: `acr`, `amr`, `auth_time`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    pub user_id: String,
    pub username: String,
    pub auth_time: i64,
    pub acr: String,
    pub amr: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Session {
    pub id_hash: String,
    pub csrf: String,
    pub login: Option<Login>,
    pub created_at: i64,
    pub expires_at: i64,
}

#[derive(FromRow)]
struct Row {
    id_hash: String,
    csrf: String,
    user_id: Option<String>,
    username: Option<String>,
    auth_time: Option<i64>,
    acr: Option<String>,
    amr: Option<String>,
    created_at: i64,
    expires_at: i64,
}

impl TryFrom<Row> for Session {
    type Error = StoreError;
    fn try_from(r: Row) -> Result<Session, StoreError> {
        let login = match (r.user_id, r.username, r.auth_time, r.acr) {
            (Some(user_id), Some(username), Some(auth_time), Some(acr)) => Some(Login {
                user_id,
                username,
                auth_time,
                acr,
                amr: from_json_list("sessions.amr", r.amr.as_deref().unwrap_or("[]"))?,
            }),
            _ => None,
        };
        Ok(Session {
            id_hash: r.id_hash,
            csrf: r.csrf,
            login,
            created_at: r.created_at,
            expires_at: r.expires_at,
        })
    }
}

pub async fn insert(conn: impl Into<Conn<'_>>, s: &Session) -> Result<(), StoreError> {
    let l = s.login.as_ref();
    on_conn!(conn, |c| sqlx::query(
        "INSERT INTO sessions (id_hash, csrf, user_id, username, auth_time, acr, amr, \
         created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
    )
    .bind(&s.id_hash)
    .bind(&s.csrf)
    .bind(l.map(|l| &l.user_id))
    .bind(l.map(|l| &l.username))
    .bind(l.map(|l| l.auth_time))
    .bind(l.map(|l| &l.acr))
    .bind(l.map(|l| to_json_list(&l.amr)))
    .bind(s.created_at)
    .bind(s.expires_at)
    .execute(c)
    .await
    .map(|r| r.rows_affected()))
    .map_err(StoreError::from_insert)?;
    Ok(())
}

/// The live session whose id hashes to `id_hash`.
pub async fn get(
    conn: impl Into<Conn<'_>>,
    id_hash: &str,
    now: i64,
) -> Result<Option<Session>, StoreError> {
    let row: Option<Row> = on_conn!(conn, |c| sqlx::query_as(
        "SELECT id_hash, csrf, user_id, username, auth_time, acr, amr, created_at, expires_at \
         FROM sessions WHERE id_hash = $1 AND expires_at > $2"
    )
    .bind(id_hash)
    .bind(now)
    .fetch_optional(c)
    .await)?;
    row.map(Session::try_from).transpose()
}

pub async fn delete(conn: impl Into<Conn<'_>>, id_hash: &str) -> Result<u64, StoreError> {
    Ok(on_conn!(conn, |c| sqlx::query(
        "DELETE FROM sessions WHERE id_hash = $1"
    )
    .bind(id_hash)
    .execute(c)
    .await
    .map(|r| r.rows_affected()))?)
}

/// Moves the pending authorization requests of one session to another (the
/// session id changes at login).
pub async fn move_requests(
    conn: impl Into<Conn<'_>>,
    from_hash: &str,
    to_hash: &str,
) -> Result<u64, StoreError> {
    Ok(on_conn!(conn, |c| sqlx::query(
        "UPDATE authorization_requests SET session_hash = $1 WHERE session_hash = $2"
    )
    .bind(to_hash)
    .bind(from_hash)
    .execute(c)
    .await
    .map(|r| r.rows_affected()))?)
}

pub async fn purge_expired(conn: impl Into<Conn<'_>>, now: i64) -> Result<u64, StoreError> {
    Ok(on_conn!(conn, |c| sqlx::query(
        "DELETE FROM sessions WHERE expires_at < $1"
    )
    .bind(now)
    .execute(c)
    .await
    .map(|r| r.rows_affected()))?)
}
