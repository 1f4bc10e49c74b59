//! `refresh_token` (RFC 6749 §6, SPEC §3): every use rotates the token; one
//! presented again after its rotation is a replay and revokes the whole grant
//! (OAuth 2.1 §4.3.1, RFC 9700 §4.14.2). A refresh may narrow scope, never
//! widen it, names its one audience with `resource`, and carries the grant's
//! `acr` unchanged (never restoring a level).

use super::{grant_audience, new_refresh_token, revoked_event, scopes_for, user_claims};
use crate::audit::{AuditEvent, EventKind};
use crate::oauth::error::OAuthError;
use crate::oauth::scope::narrow;
use crate::oauth::token::{Issue, RefreshTokenRequest, Refusal};
use crate::oauth::types::GrantType;
use crate::secret;
use crate::state::AppState;
use crate::store::clients::Client;
use crate::store::grants;
use crate::store::refresh_tokens::{self, Rotated};

pub async fn grant(
    app: &AppState,
    client: &Client,
    req: RefreshTokenRequest,
    audit: &mut AuditEvent,
    now: i64,
) -> Result<Issue, Refusal> {
    if !client.allows_grant(GrantType::RefreshToken) {
        return Err(OAuthError::unauthorized_client(
            "this client may not use the refresh_token grant",
        )
        .into());
    }
    let mut tx = app.db.begin().await?;
    let old = match refresh_tokens::rotate(&mut tx, &secret::hash(&req.refresh_token), now).await? {
        Rotated::Fresh(t) => t,
        Rotated::Unknown => {
            return Err(
                OAuthError::invalid_grant("the refresh token is invalid or has expired").into(),
            )
        }
        Rotated::AlreadyUsed(t) => {
            // Spent by a revocation (the user, a code replay, /revoke) rather
            // than by a rotation: say so, and there is nothing more to revoke.
            if let Some(g) = grants::get(&mut tx, &t.grant_id).await? {
                if g.revoked_at.is_some() {
                    audit.user = Some(g.username);
                    return Err(OAuthError::invalid_grant(
                        "the refresh token's grant has been revoked",
                    )
                    .into());
                }
            }
            grants::revoke(&mut tx, &t.grant_id, now).await?;
            let revoked = revoked_event(audit, &t.grant_id, "refresh token reused");
            return Err(Refusal::with_tx(
                OAuthError::invalid_grant(
                    "the refresh token was already used; its grant and every token from it are revoked",
                ),
                tx,
                vec![revoked],
            ));
        }
    };
    let refuse = |tx, error: OAuthError| Refusal::with_tx(error, tx, Vec::new());
    if old.client_id != client.client_id {
        return Err(refuse(
            tx,
            OAuthError::invalid_grant("the refresh token was issued to another client"),
        ));
    }
    let Some(grant) = grants::get(&mut tx, &old.grant_id).await? else {
        return Err(refuse(
            tx,
            OAuthError::invalid_grant("the grant of this refresh token is gone"),
        ));
    };
    audit.user = Some(grant.username.clone());
    if grant.revoked_at.is_some() {
        return Err(refuse(
            tx,
            OAuthError::invalid_grant("the grant was revoked"),
        ));
    }
    let audience = match grant_audience(app, &grant, &req.resource) {
        Ok(a) => a,
        Err(e) => return Err(refuse(tx, e)),
    };
    audit.audience = Some(audience.id.clone());
    // RFC 6749 §6: the requested scope "MUST NOT include any scope not
    // originally granted"; the new refresh token keeps the original scopes.
    let allowed = match scopes_for(audience, &old.scopes) {
        Ok(s) => s,
        Err(e) => return Err(refuse(tx, e)),
    };
    let scopes = match narrow(&allowed, req.scope.as_deref()) {
        Ok(s) => s,
        Err(e) => return Err(refuse(tx, e)),
    };
    let claims = user_claims(app, client, &grant, audience, &scopes, now);
    let refresh_token = new_refresh_token(app, &mut tx, client, &grant, &old.scopes, now).await?;
    grants::touch(&mut tx, &grant.id, now).await?;
    Ok(Issue {
        grant_id: Some(grant.id.clone()),
        refresh_token,
        tx: Some(tx),
        ..Issue::bearer(claims, EventKind::TokenRefreshed)
    })
}
