//! A user's grant to a client (SPEC §4, §8): what one authorization allowed,
//! across its resources. Codes, refresh tokens and access tokens carry its
//! id; revoking it revokes all of them at once, on every instance.

use sqlx::FromRow;

use super::{from_json_list, to_json_list, Conn, StoreError, Tx};
use crate::{on_conn, on_tx};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub id: String,
    pub user_id: String,
    pub username: String,
    pub client_id: String,
    pub client_type: String,
    pub resources: Vec<String>,
    pub scopes: Vec<String>,
    pub acr: Option<String>,
    pub amr: Vec<String>,
    pub auth_time: Option<i64>,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

#[derive(FromRow)]
struct Row {
    id: String,
    user_id: String,
    username: String,
    client_id: String,
    client_type: String,
    resources: String,
    scopes: String,
    acr: Option<String>,
    amr: Option<String>,
    auth_time: Option<i64>,
    created_at: i64,
    last_used_at: Option<i64>,
    revoked_at: Option<i64>,
}

impl TryFrom<Row> for Grant {
    type Error = StoreError;
    fn try_from(r: Row) -> Result<Grant, StoreError> {
        Ok(Grant {
            resources: from_json_list("grants.resources", &r.resources)?,
            scopes: from_json_list("grants.scopes", &r.scopes)?,
            amr: from_json_list("grants.amr", r.amr.as_deref().unwrap_or("[]"))?,
            id: r.id,
            user_id: r.user_id,
            username: r.username,
            client_id: r.client_id,
            client_type: r.client_type,
            acr: r.acr,
            auth_time: r.auth_time,
            created_at: r.created_at,
            last_used_at: r.last_used_at,
            revoked_at: r.revoked_at,
        })
    }
}

const SELECT: &str = "SELECT id, user_id, username, client_id, client_type, resources, scopes, \
    acr, amr, auth_time, created_at, last_used_at, revoked_at FROM grants";

pub async fn insert(conn: impl Into<Conn<'_>>, g: &Grant) -> Result<(), StoreError> {
    on_conn!(conn, |c| sqlx::query(
        "INSERT INTO grants (id, user_id, username, client_id, client_type, resources, scopes, \
         acr, amr, auth_time, created_at, last_used_at, revoked_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
    )
    .bind(&g.id)
    .bind(&g.user_id)
    .bind(&g.username)
    .bind(&g.client_id)
    .bind(&g.client_type)
    .bind(to_json_list(&g.resources))
    .bind(to_json_list(&g.scopes))
    .bind(&g.acr)
    .bind(to_json_list(&g.amr))
    .bind(g.auth_time)
    .bind(g.created_at)
    .bind(g.last_used_at)
    .bind(g.revoked_at)
    .execute(c)
    .await
    .map(|r| r.rows_affected()))
    .map_err(StoreError::from_insert)?;
    Ok(())
}

pub async fn get(conn: impl Into<Conn<'_>>, id: &str) -> Result<Option<Grant>, StoreError> {
    let sql = format!("{SELECT} WHERE id = $1");
    let row: Option<Row> = on_conn!(conn, |c| sqlx::query_as(&sql)
        .bind(id)
        .fetch_optional(c)
        .await)?;
    row.map(Grant::try_from).transpose()
}

/// The live (unrevoked) grants of a user, newest first.
pub async fn live_for_user(
    conn: impl Into<Conn<'_>>,
    user_id: &str,
) -> Result<Vec<Grant>, StoreError> {
    let sql =
        format!("{SELECT} WHERE user_id = $1 AND revoked_at IS NULL ORDER BY created_at DESC");
    let rows: Vec<Row> = on_conn!(conn, |c| sqlx::query_as(&sql)
        .bind(user_id)
        .fetch_all(c)
        .await)?;
    rows.into_iter().map(Grant::try_from).collect()
}

pub async fn touch(conn: impl Into<Conn<'_>>, id: &str, now: i64) -> Result<(), StoreError> {
    on_conn!(conn, |c| sqlx::query(
        "UPDATE grants SET last_used_at = $1 WHERE id = $2"
    )
    .bind(now)
    .bind(id)
    .execute(c)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

/// Revokes grant `id` and everything issued from it: its access tokens (at
/// any depth of exchange, since every token of the grant carries its id), its
/// refresh tokens and its unused codes. Returns whether the grant was live.
pub async fn revoke(tx: &mut Tx, id: &str, now: i64) -> Result<bool, StoreError> {
    let live = on_tx!(&mut *tx, |c| sqlx::query(
        "UPDATE grants SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL"
    )
    .bind(now)
    .bind(id)
    .execute(c)
    .await
    .map(|r| r.rows_affected()))?;
    // Everything issued from the grant carries its id.
    for sql in [
        "UPDATE tokens SET revoked_at = $1 WHERE grant_id = $2 AND revoked_at IS NULL",
        "UPDATE refresh_tokens SET used_at = $1 WHERE grant_id = $2 AND used_at IS NULL",
        "UPDATE codes SET used_at = $1 WHERE grant_id = $2 AND used_at IS NULL",
    ] {
        on_tx!(&mut *tx, |c| sqlx::query(sql)
            .bind(now)
            .bind(id)
            .execute(c)
            .await
            .map(|r| r.rows_affected()))?;
    }
    Ok(live > 0)
}
