//! Remembered consent (SPEC §4): per (user, client, resource), the scopes the
//! user allowed. A request within them skips the consent page; one asking
//! for more asks again. Listed and revocable on `/account`.

use sqlx::FromRow;

use super::{from_json_list, to_json_list, Conn, StoreError};
use crate::on_conn;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consent {
    pub user_id: String,
    pub client_id: String,
    pub resource: String,
    pub scopes: Vec<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(FromRow)]
struct Row {
    user_id: String,
    client_id: String,
    resource: String,
    scopes: String,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<Row> for Consent {
    type Error = StoreError;
    fn try_from(r: Row) -> Result<Consent, StoreError> {
        Ok(Consent {
            scopes: from_json_list("consents.scopes", &r.scopes)?,
            user_id: r.user_id,
            client_id: r.client_id,
            resource: r.resource,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

/// Remembers `scopes` for (user, client, resource), replacing what was there.
pub async fn remember(conn: impl Into<Conn<'_>>, c: &Consent) -> Result<(), StoreError> {
    on_conn!(conn, |p| sqlx::query(
        "INSERT INTO consents (user_id, client_id, resource, scopes, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $5) \
         ON CONFLICT (user_id, client_id, resource) DO UPDATE SET scopes = $4, updated_at = $5"
    )
    .bind(&c.user_id)
    .bind(&c.client_id)
    .bind(&c.resource)
    .bind(to_json_list(&c.scopes))
    .bind(c.updated_at)
    .execute(p)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

/// Every remembered consent of a user (for `/account` and the consent check).
pub async fn for_user(
    conn: impl Into<Conn<'_>>,
    user_id: &str,
) -> Result<Vec<Consent>, StoreError> {
    let rows: Vec<Row> = on_conn!(conn, |p| sqlx::query_as(
        "SELECT user_id, client_id, resource, scopes, created_at, updated_at FROM consents \
         WHERE user_id = $1 ORDER BY updated_at DESC"
    )
    .bind(user_id)
    .fetch_all(p)
    .await)?;
    rows.into_iter().map(Consent::try_from).collect()
}

/// Forgets a remembered consent; returns whether there was one.
pub async fn forget(
    conn: impl Into<Conn<'_>>,
    user_id: &str,
    client_id: &str,
    resource: &str,
) -> Result<bool, StoreError> {
    let n = on_conn!(conn, |p| sqlx::query(
        "DELETE FROM consents WHERE user_id = $1 AND client_id = $2 AND resource = $3"
    )
    .bind(user_id)
    .bind(client_id)
    .bind(resource)
    .execute(p)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(n > 0)
}
