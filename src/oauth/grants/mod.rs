//! The grants of the token endpoint. Each takes the authenticated client,
//! its typed request and the audit context, and returns an
//! [`Issue`](crate::oauth::token::Issue) or a
//! [`Refusal`](crate::oauth::token::Refusal).
//!
//! The user-delegated grants (code, refresh) share what is here: the one
//! audience of a token among the grant's resources, the claims of a token
//! for a user, and a new rotated refresh token.

pub mod authorization_code;
pub mod client_credentials;
pub mod refresh_token;
pub mod token_exchange;

use crate::audit::{AuditEvent, EventKind, Outcome};
use crate::config::Resource;
use crate::oauth::access_token::{new_jti, AccessClaims};
use crate::oauth::act::Actor;
use crate::oauth::error::OAuthError;
use crate::oauth::scope::{expiry, intersect};
use crate::oauth::types::{ClientType, GrantType};
use crate::secret;
use crate::state::AppState;
use crate::store::clients::Client;
use crate::store::grants::Grant;
use crate::store::refresh_tokens::{self, RefreshToken};
use crate::store::{StoreError, Tx};

/// The one audience of a token among a grant's resources (SPEC §4): the
/// requested `resource`, which must be one of them, or the only one.
pub fn grant_audience<'c>(
    app: &'c AppState,
    grant: &Grant,
    requested: &[String],
) -> Result<&'c Resource, OAuthError> {
    let id = match (requested, grant.resources.as_slice()) {
        ([], [only]) => only,
        ([], _) => {
            return Err(OAuthError::invalid_target(
                "this grant covers several resources; name the audience with `resource`",
            ))
        }
        ([one], _) => one,
        _ => {
            return Err(OAuthError::invalid_target(
                "a token has exactly one audience; send one `resource`",
            ))
        }
    };
    crate::oauth::scope::check_resource_text(id)?;
    if !grant.resources.iter().any(|r| r == id) {
        return Err(OAuthError::invalid_target(format!(
            "`{id}` is not one of the resources this grant covers"
        )));
    }
    app.config
        .resource(id)
        .ok_or_else(|| OAuthError::invalid_target(format!("unknown resource `{id}`")))
}

/// The scopes of `allowed` that belong to `audience`; none is `invalid_scope`.
pub fn scopes_for(audience: &Resource, allowed: &[String]) -> Result<Vec<String>, OAuthError> {
    let theirs: Vec<String> = audience.scopes.iter().map(|s| s.name.clone()).collect();
    let scopes = intersect(allowed, &theirs);
    if scopes.is_empty() {
        return Err(OAuthError::invalid_scope(format!(
            "this grant holds no scope for `{}`",
            audience.id
        )));
    }
    Ok(scopes)
}

/// The claims of a token `client` gets for the user of `grant` (SPEC §3):
/// `sub` the user, their `acr`/`amr`/`auth_time`, and for an AI agent the
/// `act` entry naming it.
pub fn user_claims(
    app: &AppState,
    client: &Client,
    grant: &Grant,
    audience: &Resource,
    scopes: &[String],
    now: i64,
) -> AccessClaims {
    AccessClaims {
        iss: app.config.issuer.clone(),
        sub: grant.username.clone(),
        aud: audience.id.clone(),
        exp: expiry(now, audience.access_token_ttl_secs, None),
        iat: now,
        jti: new_jti(),
        client_id: client.client_id.clone(),
        scope: scopes.join(" "),
        client_type: client.client_type,
        act: (client.client_type == ClientType::AiAgent)
            .then(|| Actor::new(client.client_id.clone(), ClientType::AiAgent)),
        acr: grant.acr.clone(),
        amr: (!grant.amr.is_empty()).then(|| grant.amr.clone()),
        auth_time: grant.auth_time,
        cnf: None,
        authorization_details: None,
    }
}

/// A new refresh token for `grant` (when the client may refresh), stored in
/// `tx`; the raw value is returned once.
pub async fn new_refresh_token(
    app: &AppState,
    tx: &mut Tx,
    client: &Client,
    grant: &Grant,
    scopes: &[String],
    now: i64,
) -> Result<Option<String>, StoreError> {
    if !client.allows_grant(GrantType::RefreshToken) {
        return Ok(None);
    }
    let raw = secret::random_token();
    refresh_tokens::insert(
        &mut *tx,
        &RefreshToken {
            hash: secret::hash(&raw),
            grant_id: grant.id.clone(),
            client_id: client.client_id.clone(),
            scopes: scopes.to_vec(),
            issued_at: now,
            expires_at: now + app.config.tokens.refresh_token_ttl_secs as i64,
            used_at: None,
        },
    )
    .await?;
    Ok(Some(raw))
}

/// The `grant.revoked` event of a grant revoked because a single-use value
/// was replayed, with the request's context.
pub fn revoked_event(audit: &AuditEvent, grant_id: &str, why: &str) -> AuditEvent {
    let mut e = audit.clone();
    e.id = uuid::Uuid::now_v7().to_string();
    e.event = EventKind::GrantRevoked;
    e.outcome = Outcome::Success;
    e.reason = Some(format!("grant {grant_id} revoked: {why}"));
    e
}
