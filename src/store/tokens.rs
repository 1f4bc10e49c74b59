//! Issued access tokens: the record behind introspection, revocation and
//! lineage (`parent_jti`, `grant_id`). Written by [`super::audit::append`] in
//! the same transaction as the audit event that describes the issuance.

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

/// The columns of `tokens` an insert writes, in order (one bind each).
pub const COLUMNS: [&str; 9] = [
    "jti",
    "client_id",
    "subject",
    "audience",
    "scope",
    "parent_jti",
    "grant_id",
    "issued_at",
    "expires_at",
];

fn insert_sql() -> &'static str {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SQL.get_or_init(|| format!("INSERT INTO tokens ({}) ", COLUMNS.join(", ")))
}

/// Inserts `tokens` in one statement (nothing when empty). The caller keeps
/// `tokens.len()` within [`super::audit::MAX_BATCH`].
pub async fn insert_many(tx: &mut Tx, tokens: &[&NewToken]) -> Result<(), StoreError> {
    if tokens.is_empty() {
        return Ok(());
    }
    on_tx!(tx, |c| {
        let mut q = sqlx::QueryBuilder::new(insert_sql());
        q.push_values(tokens, |mut b, t| {
            b.push_bind(&t.jti)
                .push_bind(&t.client_id)
                .push_bind(&t.subject)
                .push_bind(&t.audience)
                .push_bind(&t.scope)
                .push_bind(&t.parent_jti)
                .push_bind(&t.grant_id)
                .push_bind(t.issued_at)
                .push_bind(t.expires_at);
        });
        q.build()
            .persistent(false)
            .execute(c)
            .await
            .map(|r| r.rows_affected())
    })
    .map_err(StoreError::from_insert)?;
    Ok(())
}
