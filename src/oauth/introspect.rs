//! `POST /introspect` (RFC 7662) and `POST /revoke` (RFC 7009). No HTTP
//! types here.
//!
//! Introspection: the caller authenticates as a client, and sees
//! `active: true` only for a live token whose audience it owns or that was
//! issued to it. Everything else — revoked (itself, an ancestor or its
//! grant), expired, foreign, malformed, or not the caller's to see — is
//! exactly `{"active": false}` (RFC 7662 §2.2: no hint why).
//!
//! Revocation: a token issued to the caller is revoked with every token
//! exchanged from it; a refresh token ends its grant and every token from
//! it. Someone else's token or an unknown one answers 200 and changes
//! nothing (RFC 7009 §2.2).

use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::access_token::AccessClaims;
use super::client_auth::{self, AuthHeader, ClientRows, Lookup};
use super::error::{OAuthError, StatusHint};
use super::form;
use super::lineage;
use super::token::{Body, MAX_BODY_BYTES};
use crate::audit::{AuditEvent, EventKind, Outcome};
use crate::secret;
use crate::state::AppState;
use crate::store::audit::{self as audit_store, Entry};
use crate::store::clients::Client;
use crate::store::refresh_tokens;
use crate::store::{grants, tokens, StoreError};

/// An introspection or revocation request as the HTTP layer hands it over.
pub struct TokenQuery {
    pub authorization: AuthHeader,
    pub content_type: Option<String>,
    pub body: Body,
    pub ip: Option<String>,
    pub request_id: Option<String>,
}

/// What a request asks about: the authenticated caller, the `token`, and
/// (when asked for with `identify_at`) what the token is.
struct Read {
    client: Arc<Client>,
    token: String,
    known: Option<Result<Known, StoreError>>,
}

/// The authenticated caller and the `token` it asks about. With
/// `identify_at`, the token is looked up while the client is: two queries
/// in flight at once, one wait instead of two. Nothing about the token
/// leaves here unless the client authenticated.
async fn read(
    app: &AppState,
    q: &TokenQuery,
    audit: &mut AuditEvent,
    identify_at: Option<i64>,
) -> Result<Read, OAuthError> {
    let bytes = match &q.body {
        Body::Bytes(b) => b,
        Body::TooLarge => {
            return Err(OAuthError::invalid_request(format!(
                "the request body is larger than {MAX_BODY_BYTES} bytes"
            ))
            .with_status(StatusHint::PayloadTooLarge))
        }
        Body::Unreadable => {
            return Err(OAuthError::invalid_request(
                "the request body could not be read",
            ))
        }
    };
    form::check_content_type(q.content_type.as_deref())?;
    let params = form::parse(bytes, &[])?;
    let presented = client_auth::presented(&q.authorization, &params)?;
    audit.client_id = presented
        .client_id()
        .map(|id| crate::text::escape_unsafe(id).chars().take(256).collect());
    // Introspection answers are not audit events (only refusals are), so
    // nothing would check a cached row: always the database.
    let mut rows = ClientRows::new(Lookup::Fresh);
    let authenticate = client_auth::authenticate(app, &presented, &mut rows);
    // RFC 7009 §2.1 / RFC 7662 §2.1: `token_type_hint` is a hint; the
    // server looks the token up either way.
    let token = params.get("token");
    let (client, known) = match (token, identify_at) {
        (Some(token), Some(now)) => {
            let (client, known) = tokio::join!(authenticate, identify(app, token, now));
            (client, Some(known))
        }
        _ => (authenticate.await, None),
    };
    let client = client?;
    audit.client_type = Some(client.client_type.as_str().into());
    let Some(token) = token else {
        return Err(OAuthError::invalid_request("missing `token`"));
    };
    Ok(Read {
        client,
        token: token.to_string(),
        known,
    })
}

fn event(kind: EventKind, q: &TokenQuery, now: i64) -> AuditEvent {
    let mut e = AuditEvent::new(kind, Outcome::Failure, now);
    e.ip = q.ip.clone();
    e.request_id = q.request_id.clone();
    e
}

/// What a token is, as far as this server can tell.
enum Known {
    Access(Box<lineage::Presented>),
    Refresh(refresh_tokens::RefreshToken),
    Nothing(String),
}

async fn identify(app: &AppState, token: &str, now: i64) -> Result<Known, StoreError> {
    if token.matches('.').count() == 2 {
        return Ok(match lineage::read(app, token, now).await? {
            Ok(presented) => Known::Access(Box::new(presented)),
            Err(why) => Known::Nothing(format!("not a valid access token: {why}")),
        });
    }
    Ok(
        match refresh_tokens::get(&app.db, &secret::hash(token)).await? {
            Some(t) => Known::Refresh(t),
            None => Known::Nothing("unknown token".into()),
        },
    )
}

/// `POST /introspect`. Returns the RFC 7662 response object.
pub async fn introspect(app: &AppState, q: TokenQuery, now: i64) -> Result<Value, OAuthError> {
    let mut audit = event(EventKind::TokenIntrospected, &q, now);
    // RFC 7662 §2.1: the endpoint MUST require some form of authorization; a
    // public client's bare client_id proves nothing.
    let read = read(app, &q, &mut audit, Some(now)).await.and_then(|r| {
        if r.client.public {
            Err(OAuthError::invalid_client(
                "introspection needs an authenticated (confidential) client",
            ))
        } else {
            Ok(r)
        }
    });
    let Read {
        client,
        token,
        known,
    } = match read {
        Ok(r) => r,
        Err(e) => {
            audit.reason = Some(format!("{}: {}", e.code.as_str(), e.description));
            record(app, audit).await;
            return Err(e);
        }
    };
    let inactive = |why: String, mut audit: AuditEvent| async move {
        audit.reason = Some(format!("inactive: {why}"));
        record(app, audit).await;
        Ok(json!({"active": false}))
    };
    let known = match known {
        Some(known) => known?,
        None => identify(app, &token, now).await?,
    };
    match known {
        Known::Nothing(why) => inactive(why, audit).await,
        Known::Refresh(t) => {
            let grant = grants::get(&app.db, &t.grant_id)
                .await?
                .filter(|g| g.revoked_at.is_none());
            let Some(grant) = grant.filter(|_| t.used_at.is_none() && t.expires_at > now) else {
                return inactive("refresh token used, expired or revoked".into(), audit).await;
            };
            if t.client_id != client.client_id {
                return inactive("a refresh token of another client".into(), audit).await;
            }
            Ok(json!({
                "active": true,
                "token_type": "refresh_token",
                "client_id": t.client_id,
                "scope": t.scopes.join(" "),
                "sub": grant.username,
                "iat": t.issued_at,
                "exp": t.expires_at,
                "iss": app.config.issuer,
            }))
        }
        Known::Access(presented) => {
            let lineage::Presented { claims, live } = *presented;
            audit.jti = Some(claims.jti.clone());
            audit.audience = Some(claims.aud.clone());
            audit.actor_chain = claims.act.as_ref().map(|a| a.subs());
            if let Err(dead) = live {
                return inactive(dead.to_string(), audit).await;
            }
            let owner = client.owns_resources.contains(&claims.aud);
            if !owner && claims.client_id != client.client_id {
                return inactive(
                    "the caller neither owns the audience nor holds the token".into(),
                    audit,
                )
                .await;
            }
            Ok(active_response(&claims))
        }
    }
}

/// The RFC 7662 §2.2 members of a live access token.
fn active_response(claims: &AccessClaims) -> Value {
    let mut out = Map::new();
    out.insert("active".into(), json!(true));
    if let Ok(Value::Object(m)) = serde_json::to_value(claims) {
        for (k, v) in m {
            out.insert(k, v);
        }
    }
    let token_type = if claims.cnf.is_some() {
        "DPoP"
    } else {
        "Bearer"
    };
    out.insert("token_type".into(), json!(token_type));
    Value::Object(out)
}

/// `POST /revoke`. Always 200 once the caller is authenticated.
pub async fn revoke(app: &AppState, q: TokenQuery, now: i64) -> Result<(), OAuthError> {
    let mut audit = event(EventKind::TokenRevoked, &q, now);
    let Read { client, token, .. } = match read(app, &q, &mut audit, None).await {
        Ok(r) => r,
        Err(e) => {
            audit.reason = Some(format!("{}: {}", e.code.as_str(), e.description));
            record(app, audit).await;
            return Err(e);
        }
    };
    let mut tx = app.db.begin().await?;
    match identify_for_revocation(app, &token, now).await? {
        Some(Target::Access {
            jti,
            client_id,
            aud,
            act,
        }) => {
            audit.jti = Some(jti.clone());
            audit.audience = Some(aud);
            audit.actor_chain = act;
            if client_id == client.client_id {
                let n = tokens::revoke_tree(&mut tx, &jti, now).await?;
                audit.outcome = Outcome::Success;
                audit.reason = Some(format!("revoked with its descendants ({n} tokens)"));
            } else {
                audit.reason = Some("not revoked: the token was issued to another client".into());
            }
        }
        Some(Target::Refresh(t)) => {
            audit.event = EventKind::GrantRevoked;
            if t.client_id == client.client_id {
                grants::revoke(&mut tx, &t.grant_id, now).await?;
                audit.outcome = Outcome::Success;
                audit.reason = Some(format!(
                    "grant {} revoked with its refresh token",
                    t.grant_id
                ));
            } else {
                audit.reason =
                    Some("not revoked: the refresh token belongs to another client".into());
            }
        }
        None => audit.reason = Some("not revoked: unknown token".into()),
    }
    audit_store::append(&mut tx, &mut [Entry::event(audit)]).await?;
    tx.commit().await?;
    Ok(())
}

enum Target {
    Access {
        jti: String,
        client_id: String,
        aud: String,
        act: Option<Vec<String>>,
    },
    Refresh(refresh_tokens::RefreshToken),
}

/// The token to revoke: an access token this issuer signed (expired ones
/// too: revoking them is harmless) or a refresh token it stored.
async fn identify_for_revocation(
    app: &AppState,
    token: &str,
    now: i64,
) -> Result<Option<Target>, StoreError> {
    if token.matches('.').count() == 2 {
        let Ok(payload) = app
            .keys
            .verify(token, &["at+jwt", "application/at+jwt"], now)
        else {
            return Ok(None);
        };
        let Ok(claims) = serde_json::from_slice::<AccessClaims>(&payload) else {
            return Ok(None);
        };
        if claims.iss != app.config.issuer {
            return Ok(None);
        }
        return Ok(Some(Target::Access {
            act: claims.act.as_ref().map(|a| a.subs()),
            jti: claims.jti,
            client_id: claims.client_id,
            aud: claims.aud,
        }));
    }
    Ok(refresh_tokens::get(&app.db, &secret::hash(token))
        .await?
        .map(Target::Refresh))
}

async fn record(app: &AppState, event: AuditEvent) {
    if let Err(e) = app.audit.record(Entry::event(event)).await {
        tracing::error!(error = %e, "could not record an introspection or revocation refusal");
    }
}
