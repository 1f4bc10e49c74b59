//! Issued access tokens: the record behind introspection, revocation and
//! lineage (`parent_jti`, `grant_id`). Written by [`super::audit::append`] in
//! the same transaction as the audit event that describes the issuance.

use super::{Conn, StoreError, Tx};
use crate::{on_conn, on_tx};

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
    /// SHA-256 of the compact JWS ([`crate::secret::hash`]): lets this
    /// issuer recognise its own token without verifying the signature.
    pub token_hash: String,
}

/// The columns of `tokens` an insert writes, in order (one bind each).
pub const COLUMNS: [&str; 10] = [
    "jti",
    "client_id",
    "subject",
    "audience",
    "scope",
    "parent_jti",
    "grant_id",
    "issued_at",
    "expires_at",
    "token_hash",
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
                .push_bind(t.expires_at)
                .push_bind(&t.token_hash);
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

/// What the database knows of one issued access token.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TokenRow {
    pub jti: String,
    pub client_id: String,
    pub subject: String,
    pub audience: String,
    pub scope: String,
    pub parent_jti: Option<String>,
    pub grant_id: Option<String>,
    pub issued_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
    /// Absent on rows written before migration 0003.
    pub token_hash: Option<String>,
}

/// Depth bound of the lineage walk: longer than any chain can be
/// (`max_delegation_depth` ≤ 16), so a corrupt cycle cannot loop.
const MAX_LINEAGE: i64 = 64;

/// Token `jti` and its ancestors (parent, grandparent, … root), self first.
/// Empty when the token is unknown.
pub async fn lineage(conn: impl Into<Conn<'_>>, jti: &str) -> Result<Vec<TokenRow>, StoreError> {
    let mut rows: Vec<(i64, TokenRow)> = on_conn!(conn, |c| {
        let rows: Vec<LineageRow> = sqlx::query_as(
            "WITH RECURSIVE up(depth, jti, client_id, subject, audience, scope, parent_jti, \
             grant_id, issued_at, expires_at, revoked_at, token_hash) AS ( \
               SELECT CAST(0 AS BIGINT), jti, client_id, subject, audience, scope, parent_jti, grant_id, \
                      issued_at, expires_at, revoked_at, token_hash FROM tokens WHERE jti = $1 \
               UNION ALL \
               SELECT up.depth + 1, t.jti, t.client_id, t.subject, t.audience, t.scope, \
                      t.parent_jti, t.grant_id, t.issued_at, t.expires_at, t.revoked_at, t.token_hash \
               FROM tokens t JOIN up ON t.jti = up.parent_jti WHERE up.depth < $2 \
             ) SELECT depth, jti, client_id, subject, audience, scope, parent_jti, grant_id, \
               issued_at, expires_at, revoked_at, token_hash FROM up ORDER BY depth",
        )
        .bind(jti)
        .bind(MAX_LINEAGE)
        .fetch_all(c)
        .await?;
        Ok::<_, sqlx::Error>(rows.into_iter().map(LineageRow::split).collect())
    })?;
    rows.sort_by_key(|(d, _)| *d);
    Ok(rows.into_iter().map(|(_, r)| r).collect())
}

#[derive(sqlx::FromRow)]
struct LineageRow {
    depth: i64,
    #[sqlx(flatten)]
    row: TokenRow,
}

impl LineageRow {
    fn split(self) -> (i64, TokenRow) {
        (self.depth, self.row)
    }
}

/// Revokes token `jti` and every token exchanged from it, at any depth.
/// (Use-time checks walk the ancestors too, so a descendant minted while
/// this runs is dead on arrival: see `lineage`.) Returns how many rows changed.
pub async fn revoke_tree(
    conn: impl Into<Conn<'_>>,
    jti: &str,
    now: i64,
) -> Result<u64, StoreError> {
    Ok(on_conn!(conn, |c| sqlx::query(
        "WITH RECURSIVE down(jti, depth) AS ( \
           SELECT jti, CAST(0 AS BIGINT) FROM tokens WHERE jti = $1 \
           UNION ALL \
           SELECT t.jti, down.depth + 1 FROM tokens t JOIN down ON t.parent_jti = down.jti \
           WHERE down.depth < $3 \
         ) UPDATE tokens SET revoked_at = $2 \
         WHERE jti IN (SELECT jti FROM down) AND revoked_at IS NULL"
    )
    .bind(jti)
    .bind(now)
    .bind(MAX_LINEAGE)
    .execute(c)
    .await
    .map(|r| r.rows_affected()))?)
}
