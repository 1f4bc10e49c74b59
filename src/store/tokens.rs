//! Issued access tokens: the record behind introspection, revocation and
//! lineage (`parent_jti`). Written in the same transaction as the audit event
//! that describes the issuance.

use super::{StoreError, Tx};
use crate::on_tx;

#[derive(Debug, Clone)]
pub struct NewToken {
    pub jti: String,
    pub client_id: String,
    pub subject: String,
    pub audience: String,
    pub scope: String,
    pub parent_jti: Option<String>,
    pub grant_id: Option<String>,
    pub issued_at: i64,
    pub expires_at: i64,
}

pub async fn insert(tx: &mut Tx, t: &NewToken) -> Result<(), StoreError> {
    on_tx!(tx, |c| sqlx::query(
        "INSERT INTO tokens (jti, client_id, subject, audience, scope, parent_jti, grant_id, \
         issued_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
    )
    .bind(&t.jti)
    .bind(&t.client_id)
    .bind(&t.subject)
    .bind(&t.audience)
    .bind(&t.scope)
    .bind(&t.parent_jti)
    .bind(&t.grant_id)
    .bind(t.issued_at)
    .bind(t.expires_at)
    .execute(c)
    .await
    .map(|r| r.rows_affected()))
    .map_err(StoreError::from_insert)?;
    Ok(())
}
