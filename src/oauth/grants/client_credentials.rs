//! `client_credentials` (RFC 6749 §4.4): an agent or service acting as itself.
//! `sub` is the client id and there is no `act` (SPEC §3).

use super::CLIENT_CREDENTIALS;
use crate::oauth::access_token::{new_jti, AccessClaims};
use crate::oauth::error::OAuthError;
use crate::oauth::form::Params;
use crate::oauth::scope::{client_credentials_scopes, resolve_audience};
use crate::oauth::token::Decision;
use crate::state::AppState;
use crate::store::clients::Client;

pub fn issue(
    app: &AppState,
    client: &Client,
    params: &Params,
    decision: &mut Decision,
    now: i64,
) -> Result<AccessClaims, OAuthError> {
    if client.public || !client.allows_grant(CLIENT_CREDENTIALS) {
        return Err(OAuthError::unauthorized_client(
            "this client may not use the client_credentials grant",
        ));
    }
    let audience = resolve_audience(&app.config, &params.all("resource"), &client.resources)?;
    decision.audience = Some(audience.id.clone());
    let scopes =
        client_credentials_scopes(&app.config, audience, params.get("scope"), &client.scopes)?;
    Ok(AccessClaims {
        iss: app.config.issuer.clone(),
        sub: client.client_id.clone(),
        aud: audience.id.clone(),
        exp: now + audience.access_token_ttl_secs as i64,
        iat: now,
        jti: new_jti(),
        client_id: client.client_id.clone(),
        scope: scopes.join(" "),
        client_type: client.client_type.clone(),
        act: None,
        acr: None,
        amr: None,
        auth_time: None,
        cnf: None,
        authorization_details: None,
    })
}
