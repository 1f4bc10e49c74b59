//! `client_credentials` (RFC 6749 §4.4): an agent or service acting as itself.
//! `sub` is the client id and there is no `act` (SPEC §3). Nothing is
//! single-use, so the issuance goes through the group-commit writer.

use crate::audit::{AuditEvent, EventKind};
use crate::oauth::access_token::{new_jti, AccessClaims};
use crate::oauth::error::OAuthError;
use crate::oauth::scope::{client_credentials_scopes, expiry, resolve_audience};
use crate::oauth::token::{ClientCredentialsRequest, Issue, Refusal};
use crate::oauth::types::GrantType;
use crate::state::AppState;
use crate::store::clients::Client;

pub async fn grant(
    app: &AppState,
    client: &Client,
    req: ClientCredentialsRequest,
    audit: &mut AuditEvent,
    now: i64,
) -> Result<Issue, Refusal> {
    if client.public || !client.allows_grant(GrantType::ClientCredentials) {
        return Err(OAuthError::unauthorized_client(
            "this client may not use the client_credentials grant",
        )
        .into());
    }
    let requested: Vec<&str> = req.resource.iter().map(String::as_str).collect();
    let audience = resolve_audience(&app.config, &requested, &client.resources)?;
    audit.audience = Some(audience.id.clone());
    let scopes =
        client_credentials_scopes(&app.config, audience, req.scope.as_deref(), &client.scopes)?;
    let claims = AccessClaims {
        iss: app.config.issuer.clone(),
        sub: client.client_id.clone(),
        aud: audience.id.clone(),
        exp: expiry(now, audience.access_token_ttl_secs, None),
        iat: now,
        jti: new_jti(),
        client_id: client.client_id.clone(),
        scope: scopes.join(" "),
        client_type: client.client_type,
        act: None,
        acr: None,
        amr: None,
        auth_time: None,
        cnf: None,
        authorization_details: None,
    };
    Ok(Issue::bearer(claims, EventKind::TokenIssued))
}
