//! Clients (operator-created and, later, dynamically registered).

use serde::Serialize;
use sqlx::FromRow;

use std::collections::{BTreeSet, HashMap};

use super::{from_json_list, to_json_list, Conn, StoreError, Tx};
use crate::oauth::types::{AuthMethod, ClientOrigin, ClientType, GrantType};
use crate::{on_conn, on_tx};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Client {
    pub client_id: String,
    pub name: String,
    pub client_type: ClientType,
    pub public: bool,
    #[serde(skip)]
    pub secret_hash: Option<String>,
    pub origin: ClientOrigin,
    pub token_endpoint_auth_method: AuthMethod,
    pub grant_types: Vec<GrantType>,
    pub redirect_uris: Vec<String>,
    pub resources: Vec<String>,
    pub scopes: Vec<String>,
    pub owns_resources: Vec<String>,
    pub exchange_to: Vec<String>,
    pub dpop_bound_access_tokens: bool,
    pub jwks_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwks: Option<serde_json::Value>,
    /// Registration metadata as sent (RFC 7591 §2: kept, never an error).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Value>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl Client {
    pub fn allows_grant(&self, grant: GrantType) -> bool {
        self.grant_types.contains(&grant)
    }
}

#[derive(FromRow)]
struct ClientRow {
    client_id: String,
    name: String,
    client_type: String,
    public: i64,
    secret_hash: Option<String>,
    origin: String,
    grant_types: String,
    redirect_uris: String,
    resources: String,
    scopes: String,
    owns_resources: String,
    exchange_to: String,
    dpop: i64,
    jwks_uri: Option<String>,
    jwks: Option<String>,
    token_endpoint_auth_method: String,
    metadata: Option<String>,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<ClientRow> for Client {
    type Error = StoreError;
    fn try_from(r: ClientRow) -> Result<Client, StoreError> {
        let corrupt = |column: &str, value: &str| StoreError::Corrupt(format!("{column}: {value}"));
        let grant_types = from_json_list("clients.grant_types", &r.grant_types)?
            .iter()
            .map(|g| GrantType::from_wire(g).ok_or_else(|| corrupt("clients.grant_types", g)))
            .collect::<Result<_, _>>()?;
        Ok(Client {
            client_type: ClientType::from_wire(&r.client_type)
                .ok_or_else(|| corrupt("clients.client_type", &r.client_type))?,
            grant_types,
            redirect_uris: from_json_list("clients.redirect_uris", &r.redirect_uris)?,
            resources: from_json_list("clients.resources", &r.resources)?,
            scopes: from_json_list("clients.scopes", &r.scopes)?,
            owns_resources: from_json_list("clients.owns_resources", &r.owns_resources)?,
            exchange_to: from_json_list("clients.exchange_to", &r.exchange_to)?,
            jwks: json_column("clients.jwks", r.jwks.as_deref())?,
            metadata: json_column("clients.metadata", r.metadata.as_deref())?,
            origin: ClientOrigin::from_wire(&r.origin)
                .ok_or_else(|| corrupt("clients.origin", &r.origin))?,
            token_endpoint_auth_method: AuthMethod::from_wire(&r.token_endpoint_auth_method)
                .ok_or_else(|| {
                    corrupt(
                        "clients.token_endpoint_auth_method",
                        &r.token_endpoint_auth_method,
                    )
                })?,
            client_id: r.client_id,
            name: r.name,
            public: r.public != 0,
            secret_hash: r.secret_hash,
            dpop_bound_access_tokens: r.dpop != 0,
            jwks_uri: r.jwks_uri,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

fn json_column(column: &str, text: Option<&str>) -> Result<Option<serde_json::Value>, StoreError> {
    text.map(|t| serde_json::from_str(t).map_err(|e| StoreError::Corrupt(format!("{column}: {e}"))))
        .transpose()
}

macro_rules! select {
    ($rest:literal) => {
        concat!(
            "SELECT client_id, name, client_type, public, secret_hash, origin, grant_types, \
             redirect_uris, resources, scopes, owns_resources, exchange_to, dpop, jwks_uri, jwks, \
             token_endpoint_auth_method, metadata, created_at, updated_at FROM clients ",
            $rest
        )
    };
}

const INSERT: &str = "INSERT INTO clients (client_id, name, client_type, public, secret_hash, \
    origin, grant_types, redirect_uris, resources, scopes, owns_resources, exchange_to, dpop, \
    jwks_uri, jwks, token_endpoint_auth_method, metadata, created_at, updated_at) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $18)";

/// Inserts `c`; an existing `client_id` is [`StoreError::Conflict`].
pub async fn insert(conn: impl Into<Conn<'_>>, c: &Client) -> Result<(), StoreError> {
    let jwks = c.jwks.as_ref().map(|j| j.to_string());
    let metadata = c.metadata.as_ref().map(|j| j.to_string());
    let grant_types: Vec<String> = c.grant_types.iter().map(|g| g.as_str().into()).collect();
    on_conn!(conn, |p| sqlx::query(INSERT)
        .bind(&c.client_id)
        .bind(&c.name)
        .bind(c.client_type.as_str())
        .bind(c.public as i64)
        .bind(&c.secret_hash)
        .bind(c.origin.as_str())
        .bind(to_json_list(&grant_types))
        .bind(to_json_list(&c.redirect_uris))
        .bind(to_json_list(&c.resources))
        .bind(to_json_list(&c.scopes))
        .bind(to_json_list(&c.owns_resources))
        .bind(to_json_list(&c.exchange_to))
        .bind(c.dpop_bound_access_tokens as i64)
        .bind(&c.jwks_uri)
        .bind(&jwks)
        .bind(c.token_endpoint_auth_method.as_str())
        .bind(&metadata)
        .bind(c.created_at)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
    .map_err(StoreError::from_insert)?;
    Ok(())
}

pub async fn get(conn: impl Into<Conn<'_>>, client_id: &str) -> Result<Option<Client>, StoreError> {
    let sql = select!("WHERE client_id = $1");
    let row: Option<ClientRow> = on_conn!(conn, |p| sqlx::query_as(sql)
        .bind(client_id)
        .fetch_optional(p)
        .await)?;
    row.map(Client::try_from).transpose()
}

/// The stored rows of `ids` (deleted ones absent), read in `tx` with one
/// query. The audit commit compares them with the cached rows its entries
/// were decided on ([`super::client_cache`]).
pub async fn get_many(
    tx: &mut Tx,
    ids: &BTreeSet<&str>,
) -> Result<HashMap<String, Client>, StoreError> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<ClientRow> = on_tx!(tx, |c| {
        let mut q = sqlx::QueryBuilder::new(select!("WHERE client_id IN ("));
        let mut list = q.separated(", ");
        for id in ids {
            list.push_bind(*id);
        }
        q.push(")");
        q.build_query_as().persistent(false).fetch_all(c).await
    })?;
    rows.into_iter()
        .map(|row| Client::try_from(row).map(|c| (c.client_id.clone(), c)))
        .collect()
}

pub async fn list(conn: impl Into<Conn<'_>>) -> Result<Vec<Client>, StoreError> {
    let sql = select!("ORDER BY created_at, client_id");
    let rows: Vec<ClientRow> = on_conn!(conn, |p| sqlx::query_as(sql).fetch_all(p).await)?;
    rows.into_iter().map(Client::try_from).collect()
}

/// Deletes a client; tokens already issued stay valid until they expire.
pub async fn delete(conn: impl Into<Conn<'_>>, client_id: &str) -> Result<(), StoreError> {
    let r = on_conn!(conn, |p| sqlx::query(
        "DELETE FROM clients WHERE client_id = $1"
    )
    .bind(client_id)
    .execute(p)
    .await
    .map(|r| r.rows_affected()))?;
    if r == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

/// Replaces the secret hash of a confidential client.
pub async fn set_secret_hash(
    conn: impl Into<Conn<'_>>,
    client_id: &str,
    secret_hash: &str,
    now: i64,
) -> Result<(), StoreError> {
    let r = on_conn!(conn, |p| {
        sqlx::query(
        "UPDATE clients SET secret_hash = $1, updated_at = $2 WHERE client_id = $3 AND public = 0"
    )
    .bind(secret_hash)
    .bind(now)
    .bind(client_id)
    .execute(p)
    .await
    .map(|r| r.rows_affected())
    })?;
    if r == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}
