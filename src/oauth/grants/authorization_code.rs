//! `authorization_code` (RFC 6749 §4.1.3, RFC 7636 §4.5, SPEC §4): a code is
//! redeemed once, in the transaction that records the issuance. A code
//! presented again is a replay: it fails, and every token issued from it is
//! revoked with its grant (RFC 6749 §4.1.2: "If an authorization code is used
//! more than once, the authorization server MUST deny the request and SHOULD
//! revoke (when possible) all tokens previously issued based on that
//! authorization code").

use super::{grant_audience, new_refresh_token, revoked_event, scopes_for, user_claims};
use crate::audit::{AuditEvent, EventKind};
use crate::oauth::authorize::{pkce_matches, valid_pkce_value};
use crate::oauth::error::OAuthError;
use crate::oauth::token::{AuthorizationCodeRequest, Issue, Refusal};
use crate::oauth::types::GrantType;
use crate::secret;
use crate::state::AppState;
use crate::store::clients::Client;
use crate::store::codes::{self, Redeemed};
use crate::store::grants;

pub async fn grant(
    app: &AppState,
    client: &Client,
    req: AuthorizationCodeRequest,
    audit: &mut AuditEvent,
    now: i64,
) -> Result<Issue, Refusal> {
    if !client.allows_grant(GrantType::AuthorizationCode) {
        return Err(OAuthError::unauthorized_client(
            "this client may not use the authorization_code grant",
        )
        .into());
    }
    if !valid_pkce_value(&req.code_verifier) {
        return Err(OAuthError::invalid_request(
            "code_verifier must be 43 to 128 characters of [A-Za-z0-9-._~]",
        )
        .into());
    }
    let mut tx = app.db.begin().await?;
    let code = match codes::redeem(&mut tx, &secret::hash(&req.code), now).await? {
        Redeemed::Fresh(code) => code,
        Redeemed::Unknown => {
            return Err(OAuthError::invalid_grant(
                "the authorization code is invalid or has expired",
            )
            .into())
        }
        Redeemed::AlreadyUsed(code) => {
            grants::revoke(&mut tx, &code.grant_id, now).await?;
            let revoked = revoked_event(audit, &code.grant_id, "authorization code reused");
            return Err(Refusal::with_tx(
                OAuthError::invalid_grant(
                    "the authorization code was already used; every token issued from it is revoked",
                ),
                tx,
                vec![revoked],
            ));
        }
    };
    // From here on the code is spent whatever happens: a failed attempt
    // commits its redemption with the refusal, so a code cannot be guessed at.
    let refuse = |tx, error: OAuthError| Refusal::with_tx(error, tx, Vec::new());
    if code.client_id != client.client_id {
        return Err(refuse(
            tx,
            OAuthError::invalid_grant("the authorization code was issued to another client"),
        ));
    }
    let redirect_ok = match (&req.redirect_uri, code.redirect_uri_given != 0) {
        (Some(uri), _) => *uri == code.redirect_uri,
        (None, given) => !given,
    };
    if !redirect_ok {
        return Err(refuse(
            tx,
            OAuthError::invalid_grant(
                "redirect_uri does not match the one of the authorization request",
            ),
        ));
    }
    if !pkce_matches(&req.code_verifier, &code.code_challenge) {
        return Err(refuse(
            tx,
            OAuthError::invalid_grant("PKCE verification failed: wrong code_verifier"),
        ));
    }
    let Some(grant) = grants::get(&mut tx, &code.grant_id).await? else {
        return Err(refuse(
            tx,
            OAuthError::invalid_grant("the grant of this code is gone"),
        ));
    };
    audit.user = Some(grant.username.clone());
    if grant.revoked_at.is_some() {
        return Err(refuse(
            tx,
            OAuthError::invalid_grant("the grant of this code was revoked"),
        ));
    }
    let audience = match grant_audience(app, &grant, &req.resource) {
        Ok(a) => a,
        Err(e) => return Err(refuse(tx, e)),
    };
    audit.audience = Some(audience.id.clone());
    let scopes = match scopes_for(audience, &grant.scopes) {
        Ok(s) => s,
        Err(e) => return Err(refuse(tx, e)),
    };
    let claims = user_claims(app, client, &grant, audience, &scopes, now);
    let refresh_token = new_refresh_token(app, &mut tx, client, &grant, &grant.scopes, now).await?;
    grants::touch(&mut tx, &grant.id, now).await?;
    Ok(Issue {
        grant_id: Some(grant.id.clone()),
        refresh_token,
        tx: Some(tx),
        ..Issue::bearer(claims, EventKind::TokenIssued)
    })
}
