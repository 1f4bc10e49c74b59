//! Token exchange (RFC 8693, SPEC §5): an API that received a token and must
//! call the next service exchanges it for a token minted for that hop.
//!
//! Every rule of SPEC §5, each with its own error:
//!  1. the subject token is this issuer's, valid, unexpired, and it and every
//!     token it descends from (and its grant) unrevoked — `invalid_request`;
//!  2. the caller owns the subject token's audience — `invalid_request`;
//!  3. the new audience is one the caller may exchange to — `invalid_target`;
//!  4. scopes ⊆ the root grant's scopes ∩ the new audience's — `invalid_scope`;
//!  5. the new chain is at most `max_delegation_depth` actors — `invalid_request`;
//!  6. `sub`, `acr`, `amr`, `auth_time` kept; the caller nested over the
//!     subject token's `act`; `exp` ≤ the subject token's; no refresh token.
//!
//! There is no impersonation path: the new `act` is built from the subject
//! token's claims, never from the request, so a chain can only grow.

use crate::audit::{AuditEvent, EventKind};
use crate::oauth::access_token::{new_jti, AccessClaims};
use crate::oauth::act::Actor;
use crate::oauth::authorize::acr_rank;
use crate::oauth::client_auth::ClientRows;
use crate::oauth::error::OAuthError;
use crate::oauth::lineage;
use crate::oauth::scope::{expiry, intersect, narrow};
use crate::oauth::token::{Issue, Refusal, TokenExchangeRequest};
use crate::oauth::types::{GrantType, TokenTypeUri};
use crate::state::AppState;
use crate::store::clients::Client;

pub async fn grant(
    app: &AppState,
    client: &Client,
    req: TokenExchangeRequest,
    audit: &mut AuditEvent,
    rows: &mut ClientRows,
    now: i64,
) -> Result<Issue, Refusal> {
    if client.public || !client.allows_grant(GrantType::TokenExchange) {
        return Err(
            OAuthError::unauthorized_client("this client may not use token exchange").into(),
        );
    }
    if req.subject_token_type != TokenTypeUri::AccessToken.as_str() {
        return Err(OAuthError::invalid_request(
            "subject_token_type must be urn:ietf:params:oauth:token-type:access_token",
        )
        .into());
    }
    if let Some(t) = &req.requested_token_type {
        if t != TokenTypeUri::AccessToken.as_str() {
            return Err(OAuthError::invalid_request(
                "requested_token_type must be urn:ietf:params:oauth:token-type:access_token",
            )
            .into());
        }
    }
    // Rule 1: a valid token of this issuer, live with all its ancestors.
    let lineage::Presented {
        claims: subject,
        live,
    } = lineage::read(app, &req.subject_token, now)
        .await?
        .map_err(|why| OAuthError::invalid_request(format!("subject_token is not valid: {why}")))?;
    audit.parent_jti = Some(subject.jti.clone());
    // The chain this exchange would make, for the audit event of any outcome.
    let act = Actor::over(
        client.client_id.clone(),
        client.client_type,
        subject.act.as_ref(),
    );
    audit.actor_chain = Some(act.subs());
    let live = match live {
        Ok(live) => live,
        Err(dead) => {
            return Err(
                OAuthError::invalid_request(format!("subject_token is not active: {dead}")).into(),
            )
        }
    };
    if live.grant.is_some() {
        audit.user = Some(subject.sub.clone());
    }
    // Rule 2: a stolen token is useless to anyone but the hop it was minted for.
    if !client.owns_resources.contains(&subject.aud) {
        return Err(OAuthError::invalid_request(format!(
            "this client does not own the subject token's audience `{}`",
            subject.aud
        ))
        .into());
    }
    // Rule 3: the next hop, default deny.
    let target_id = target(&req)?;
    audit.audience = Some(target_id.clone());
    let Some(target) = app.config.resource(&target_id) else {
        return Err(OAuthError::invalid_target(format!("unknown resource `{target_id}`")).into());
    };
    if !client.exchange_to.contains(&target.id) {
        return Err(OAuthError::invalid_target(format!(
            "this client may not exchange tokens to `{}`",
            target.id
        ))
        .into());
    }
    // The optional actor token proves the caller's identity: a live token issued to it.
    if let Some(actor) = &req.actor_token {
        if req.actor_token_type.as_deref() != Some(TokenTypeUri::AccessToken.as_str()) {
            return Err(OAuthError::invalid_request(
                "actor_token_type must be urn:ietf:params:oauth:token-type:access_token",
            )
            .into());
        }
        let lineage::Presented { claims, live } =
            lineage::read(app, actor, now).await?.map_err(|why| {
                OAuthError::invalid_request(format!("actor_token is not valid: {why}"))
            })?;
        if claims.client_id != client.client_id {
            return Err(
                OAuthError::invalid_request("actor_token was not issued to this client").into(),
            );
        }
        if let Err(dead) = live {
            return Err(
                OAuthError::invalid_request(format!("actor_token is not active: {dead}")).into(),
            );
        }
    } else if req.actor_token_type.is_some() {
        return Err(OAuthError::invalid_request("actor_token_type without actor_token").into());
    }
    // Rule 4: what the root allowed, for this audience, narrowed by `scope`.
    let root_scopes = match (&live.grant, live.root()) {
        (Some(grant), _) => grant.scopes.clone(),
        (None, Some(root)) => match rows.get(app, &root.client_id).await? {
            Some(c) => c.scopes.clone(),
            None => Vec::new(),
        },
        (None, None) => Vec::new(),
    };
    let theirs: Vec<String> = target
        .scopes
        .iter()
        .filter(|s| !s.approval && meets(&subject, s, now))
        .map(|s| s.name.clone())
        .collect();
    let allowed = intersect(&root_scopes, &theirs);
    if let Some(requested) = &req.scope {
        for name in crate::oauth::scope::parse_scope(requested)? {
            if !allowed.contains(&name) {
                return Err(OAuthError::invalid_scope(format!(
                    "scope `{name}` is not among what the root grant allows for `{}`",
                    target.id
                ))
                .into());
            }
        }
    }
    let scopes = narrow(&allowed, req.scope.as_deref()).map_err(|_| {
        OAuthError::invalid_scope(format!(
            "the root grant allows no scope for `{}`",
            target.id
        ))
    })?;
    // Rule 5: the chain grows by one actor, the caller; never beyond the limit.
    let act = Actor::over(
        client.client_id.clone(),
        client.client_type,
        subject.act.as_ref(),
    );
    let max = app.config.tokens.max_delegation_depth as usize;
    if act.depth() > max {
        return Err(OAuthError::invalid_request(format!(
            "the delegation chain would be {} actors long; the limit is {max}",
            act.depth()
        ))
        .into());
    }
    // Rule 6.
    let claims = AccessClaims {
        iss: app.config.issuer.clone(),
        sub: subject.sub.clone(),
        aud: target.id.clone(),
        exp: expiry(now, target.access_token_ttl_secs, Some(subject.exp)),
        iat: now,
        jti: new_jti(),
        client_id: client.client_id.clone(),
        scope: scopes.join(" "),
        client_type: client.client_type,
        act: Some(act),
        acr: subject.acr.clone(),
        amr: subject.amr.clone(),
        auth_time: subject.auth_time,
        cnf: None,
        authorization_details: None,
    };
    Ok(Issue {
        parent_jti: Some(subject.jti.clone()),
        grant_id: live.chain.first().and_then(|t| t.grant_id.clone()),
        issued_token_type: Some(TokenTypeUri::AccessToken),
        ..Issue::bearer(claims, EventKind::TokenExchanged)
    })
}

/// The one target of the exchange: `resource` or `audience` (RFC 8693 §2.1),
/// which must agree when both are sent.
fn target(req: &TokenExchangeRequest) -> Result<String, OAuthError> {
    let mut all: Vec<&String> = req.resource.iter().chain(req.audience.iter()).collect();
    all.dedup();
    match all.as_slice() {
        [] => Err(OAuthError::invalid_target(
            "name the next hop with `resource` or `audience`",
        )),
        [one] => {
            crate::oauth::scope::check_resource_text(one)?;
            Ok((*one).clone())
        }
        _ => Err(OAuthError::invalid_target(
            "a token has exactly one audience; send one `resource` or `audience`",
        )),
    }
}

/// Whether the subject token's authentication meets scope `s`'s step-up
/// requirements (a level is never restored by an exchange).
fn meets(subject: &AccessClaims, s: &crate::config::Scope, now: i64) -> bool {
    let level_ok = match &s.min_acr {
        None => true,
        Some(min) => subject
            .acr
            .as_deref()
            .is_some_and(|a| acr_rank(a) >= acr_rank(min)),
    };
    let age_ok = match s.max_auth_age_secs {
        None => true,
        Some(max) => subject.auth_time.is_some_and(|t| now - t <= max as i64),
    };
    level_ok && age_ok
}
