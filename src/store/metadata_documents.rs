//! The cache of fetched Client ID Metadata Documents
//! (draft-ietf-oauth-client-id-metadata-document): kept in the database so
//! every instance shares it, for as long as the document's HTTP caching
//! allows. Only documents that passed validation are stored.

use sqlx::FromRow;

use super::{Conn, StoreError};
use crate::on_conn;

/// A cached document, as fetched from `url`.
#[derive(Debug, Clone, FromRow)]
pub struct CachedDocument {
    pub url: String,
    /// The document's JSON text.
    pub document: String,
    pub fetched_at: i64,
    pub expires_at: i64,
}

/// The cached document for `url` that is still fresh at `now`, if any.
pub async fn get_fresh(
    conn: impl Into<Conn<'_>>,
    url: &str,
    now: i64,
) -> Result<Option<CachedDocument>, StoreError> {
    Ok(on_conn!(conn, |c| sqlx::query_as(
        "SELECT url, document, fetched_at, expires_at FROM client_metadata_documents \
         WHERE url = $1 AND expires_at > $2"
    )
    .bind(url)
    .bind(now)
    .fetch_optional(c)
    .await)?)
}

/// Stores (or replaces) the document for `url`.
pub async fn put(conn: impl Into<Conn<'_>>, doc: &CachedDocument) -> Result<(), StoreError> {
    on_conn!(conn, |c| sqlx::query(
        "INSERT INTO client_metadata_documents (url, document, fetched_at, expires_at) \
         VALUES ($1, $2, $3, $4) \
         ON CONFLICT (url) DO UPDATE SET document = excluded.document, \
         fetched_at = excluded.fetched_at, expires_at = excluded.expires_at"
    )
    .bind(&doc.url)
    .bind(&doc.document)
    .bind(doc.fetched_at)
    .bind(doc.expires_at)
    .execute(c)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

/// Forgets the document for `url` (a fetch said it must not be stored).
pub async fn delete(conn: impl Into<Conn<'_>>, url: &str) -> Result<(), StoreError> {
    on_conn!(conn, |c| sqlx::query(
        "DELETE FROM client_metadata_documents WHERE url = $1"
    )
    .bind(url)
    .execute(c)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

/// Deletes documents whose freshness ended before `now`.
pub async fn purge_expired(conn: impl Into<Conn<'_>>, now: i64) -> Result<u64, StoreError> {
    Ok(on_conn!(conn, |c| sqlx::query(
        "DELETE FROM client_metadata_documents WHERE expires_at <= $1"
    )
    .bind(now)
    .execute(c)
    .await
    .map(|r| r.rows_affected()))?)
}
