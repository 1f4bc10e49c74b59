//! The token endpoint's decision (SPEC §2, §3, §8): parse the body, build the
//! audit context as the request is understood, authenticate the client, parse
//! the grant once into a [`TokenGrant`], run it, sign, and record the decision
//! in the audit trail before answering. No HTTP types here; `http::token`
//! adapts.
//!
//! A grant returns one [`Issue`] (what the endpoint must do) or a
//! [`Refusal`]. Either may carry an open transaction: a grant that redeems a
//! single-use value (a code, a refresh rotation, an approval) does so in it,
//! and the audit event (with the token record) is appended to that same
//! transaction, so the redemption and its event commit together or not at
//! all. Without one, the event goes through the group-commit writer.

use std::sync::Arc;

use serde::Serialize;

use super::access_token::AccessClaims;
use super::client_auth::{self, AuthHeader, ClientRows, Lookup};
use super::error::{OAuthError, StatusHint};
use super::form::{self, Params};
use super::grants::{authorization_code, client_credentials, refresh_token, token_exchange};
use super::types::{GrantType, TokenType, TokenTypeUri};
use crate::audit::{AuditEvent, EventKind, Outcome};
use crate::metrics::TokenLabels;
use crate::state::AppState;
use crate::store::audit::{self as audit_store, Entry};
use crate::store::clients::Client;
use crate::store::tokens::NewToken;
use crate::store::{StoreError, Tx};
use crate::text::escape_unsafe;

/// Largest accepted token request body.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Longest caller-supplied text copied into an audit field.
const MAX_AUDIT_TEXT: usize = 256;

/// The request body as read by the HTTP layer.
pub enum Body {
    Bytes(Vec<u8>),
    TooLarge,
    Unreadable,
}

/// A token request as the HTTP layer hands it over.
pub struct TokenRequest {
    pub authorization: AuthHeader,
    pub content_type: Option<String>,
    pub body: Body,
    /// The client address (after `trusted_proxies`), for the audit trail.
    pub ip: Option<String>,
    pub request_id: Option<String>,
}

/// A grant, parsed once from the request's parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenGrant {
    /// RFC 6749 §4.4.
    ClientCredentials(ClientCredentialsRequest),
    /// RFC 6749 §4.1.3 with RFC 7636 §4.5.
    AuthorizationCode(AuthorizationCodeRequest),
    /// RFC 6749 §6.
    RefreshToken(RefreshTokenRequest),
    /// RFC 8693 §2.1.
    TokenExchange(TokenExchangeRequest),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenExchangeRequest {
    pub subject_token: String,
    pub subject_token_type: String,
    pub actor_token: Option<String>,
    pub actor_token_type: Option<String>,
    pub requested_token_type: Option<String>,
    pub resource: Vec<String>,
    pub audience: Vec<String>,
    pub scope: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationCodeRequest {
    pub code: String,
    pub redirect_uri: Option<String>,
    pub code_verifier: String,
    pub resource: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshTokenRequest {
    pub refresh_token: String,
    pub scope: Option<String>,
    pub resource: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCredentialsRequest {
    /// Every `resource` sent (RFC 8707); the grant insists on one audience.
    pub resource: Vec<String>,
    pub scope: Option<String>,
}

impl TokenGrant {
    /// Reads `grant_type` and that grant's parameters.
    pub fn parse(params: &Params) -> Result<TokenGrant, OAuthError> {
        let Some(wire) = params.get("grant_type") else {
            return Err(OAuthError::invalid_request("missing `grant_type`"));
        };
        let resource = || -> Vec<String> {
            params
                .all("resource")
                .into_iter()
                .map(str::to_owned)
                .collect()
        };
        let required = |name: &str| {
            params
                .get(name)
                .map(str::to_owned)
                .ok_or_else(|| OAuthError::invalid_request(format!("missing `{name}`")))
        };
        match GrantType::from_wire(wire) {
            Some(GrantType::ClientCredentials) => {
                Ok(TokenGrant::ClientCredentials(ClientCredentialsRequest {
                    resource: resource(),
                    scope: params.get("scope").map(str::to_owned),
                }))
            }
            Some(GrantType::AuthorizationCode) => {
                let code = required("code")?;
                let Some(code_verifier) = params.get("code_verifier") else {
                    return Err(OAuthError::invalid_request(
                        "PKCE is required: send the code_verifier",
                    ));
                };
                Ok(TokenGrant::AuthorizationCode(AuthorizationCodeRequest {
                    code,
                    redirect_uri: params.get("redirect_uri").map(str::to_owned),
                    code_verifier: code_verifier.to_owned(),
                    resource: resource(),
                }))
            }
            Some(GrantType::TokenExchange) => Ok(TokenGrant::TokenExchange(TokenExchangeRequest {
                subject_token: required("subject_token")?,
                subject_token_type: required("subject_token_type")?,
                actor_token: params.get("actor_token").map(str::to_owned),
                actor_token_type: params.get("actor_token_type").map(str::to_owned),
                requested_token_type: params.get("requested_token_type").map(str::to_owned),
                resource: resource(),
                audience: params
                    .all("audience")
                    .into_iter()
                    .map(str::to_owned)
                    .collect(),
                scope: params.get("scope").map(str::to_owned),
            })),
            Some(GrantType::RefreshToken) => Ok(TokenGrant::RefreshToken(RefreshTokenRequest {
                refresh_token: required("refresh_token")?,
                scope: params.get("scope").map(str::to_owned),
                resource: resource(),
            })),
            _ => Err(OAuthError::unsupported_grant_type(
                "this server does not support that grant_type",
            )),
        }
    }

    pub fn grant_type(&self) -> GrantType {
        match self {
            TokenGrant::ClientCredentials(_) => GrantType::ClientCredentials,
            TokenGrant::AuthorizationCode(_) => GrantType::AuthorizationCode,
            TokenGrant::RefreshToken(_) => GrantType::RefreshToken,
            TokenGrant::TokenExchange(_) => GrantType::TokenExchange,
        }
    }
}

/// What a grant decided to issue, and everything the endpoint must do with it.
pub struct Issue {
    pub claims: AccessClaims,
    /// `token.issued`, `token.exchanged`, `token.refreshed`, …
    pub event: EventKind,
    /// The token this one was exchanged from (lineage).
    pub parent_jti: Option<String>,
    /// The user's grant this token belongs to (revocation cascades by it).
    pub grant_id: Option<String>,
    /// A new refresh token to hand out (its hash is stored by the grant, in `tx`).
    pub refresh_token: Option<String>,
    pub token_type: TokenType,
    /// RFC 8693 §2.2.1: set on token-exchange responses.
    pub issued_token_type: Option<TokenTypeUri>,
    /// The transaction of a single-use redemption, committed with the event.
    pub tx: Option<Tx>,
}

impl Issue {
    /// A Bearer access token with no lineage and nothing single-use.
    pub fn bearer(claims: AccessClaims, event: EventKind) -> Issue {
        Issue {
            claims,
            event,
            parent_jti: None,
            grant_id: None,
            refresh_token: None,
            token_type: TokenType::Bearer,
            issued_token_type: None,
            tx: None,
        }
    }
}

/// A refused request, with the transaction of whatever the refusal itself
/// must change (e.g. revoking a grant on refresh-token reuse), committed with
/// the `token.denied` event.
pub struct Refusal {
    pub error: OAuthError,
    pub tx: Option<Tx>,
    /// Further events the refusal caused (e.g. `grant.revoked`), recorded
    /// after the `token.denied` event in the same transaction.
    pub events: Vec<AuditEvent>,
}

impl Refusal {
    /// A refusal whose side effects in `tx` (and `events`) must commit.
    pub fn with_tx(error: OAuthError, tx: Tx, events: Vec<AuditEvent>) -> Refusal {
        Refusal {
            error,
            tx: Some(tx),
            events,
        }
    }
}

impl From<OAuthError> for Refusal {
    fn from(error: OAuthError) -> Refusal {
        Refusal {
            error,
            tx: None,
            events: Vec::new(),
        }
    }
}

impl From<StoreError> for Refusal {
    fn from(e: StoreError) -> Refusal {
        OAuthError::from(e).into()
    }
}

/// The successful answer (RFC 6749 §5.1). Deliberately not `Debug`: it holds
/// the raw tokens.
#[derive(Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issued_token_type: Option<TokenTypeUri>,
    pub token_type: TokenType,
    pub expires_in: i64,
    pub scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
}

/// Handles one token request. The audit event (`token.issued` or
/// `token.denied`, …) is durable before this returns; if it cannot be
/// written no token is issued.
///
/// The client's row may come from this process's cache; the audit commit
/// then checks it is still the stored row, and if it is not (rotated,
/// changed or deleted meanwhile, by any process) nothing was written and
/// the request is decided once more on a fresh read.
pub async fn token(
    app: &AppState,
    req: TokenRequest,
    now: i64,
) -> Result<TokenResponse, OAuthError> {
    let mut label = GrantType::label(None);
    let mut lookup = Lookup::Cached;
    let outcome = loop {
        let mut audit = AuditEvent::new(EventKind::TokenDenied, Outcome::Failure, now);
        audit.ip = req.ip.clone();
        audit.request_id = req.request_id.clone();
        let mut rows = ClientRows::new(lookup);
        let decision = decide(app, &req, &mut audit, &mut label, &mut rows, now).await;
        let relied = rows.relied();
        let written = match decision {
            Ok(issue) => issue_token(app, audit, issue, relied).await,
            Err(refusal) => refuse(app, audit, refusal, relied).await.map(Err),
        };
        match written {
            Ok(outcome) => break outcome,
            Err(ClientChanged) => {
                for c in relied {
                    app.client_cache.forget(&c.client_id);
                }
                if lookup == Lookup::Fresh {
                    break Err(OAuthError::server_error(anyhow::anyhow!(
                        "a fresh client read was reported changed"
                    )));
                }
                lookup = Lookup::Fresh;
            }
        }
    };
    let result = match &outcome {
        Ok(_) => "issued",
        Err(e) => e.code.as_str(),
    };
    app.metrics
        .tokens
        .get_or_create(&TokenLabels {
            grant_type: label,
            outcome: result,
        })
        .inc();
    outcome
}

/// Caller text for an audit field: escaped and bounded.
fn audit_text(s: &str) -> String {
    escape_unsafe(s).chars().take(MAX_AUDIT_TEXT).collect()
}

/// A decision made on a cached client row was not written: the row changed.
struct ClientChanged;

async fn decide(
    app: &AppState,
    req: &TokenRequest,
    audit: &mut AuditEvent,
    label: &mut &'static str,
    rows: &mut ClientRows,
    now: i64,
) -> Result<Issue, Refusal> {
    let bytes = match &req.body {
        Body::Bytes(b) => b,
        Body::TooLarge => {
            return Err(OAuthError::invalid_request(format!(
                "the request body is larger than {MAX_BODY_BYTES} bytes"
            ))
            .with_status(StatusHint::PayloadTooLarge)
            .into())
        }
        Body::Unreadable => {
            return Err(OAuthError::invalid_request("the request body could not be read").into())
        }
    };
    form::check_content_type(req.content_type.as_deref())?;
    let params = form::parse(bytes, &["resource", "audience"])?;
    *label = GrantType::label(params.get("grant_type"));
    audit.scope_requested = params.get("scope").map(audit_text);
    let presented = client_auth::presented(&req.authorization, &params)?;
    audit.client_id = presented.client_id().map(audit_text);
    // A grant that redeems a single-use value decides inside a transaction
    // holding the write lock: it reads its client before, from the database,
    // rather than make that transaction re-check a cached row.
    if !matches!(
        params.get("grant_type").and_then(GrantType::from_wire),
        Some(GrantType::ClientCredentials | GrantType::TokenExchange)
    ) {
        rows.read_fresh();
    }
    let client = client_auth::authenticate(app, &presented, rows).await?;
    audit.client_type = Some(client.client_type.as_str().into());
    match TokenGrant::parse(&params)? {
        TokenGrant::ClientCredentials(r) => {
            client_credentials::grant(app, &client, r, audit, now).await
        }
        TokenGrant::AuthorizationCode(r) => {
            authorization_code::grant(app, &client, r, audit, now).await
        }
        TokenGrant::RefreshToken(r) => refresh_token::grant(app, &client, r, audit, now).await,
        TokenGrant::TokenExchange(r) => {
            token_exchange::grant(app, &client, r, audit, rows, now).await
        }
    }
}

/// Signs, records the issuance (in the grant's transaction or by group
/// commit) and builds the response. Nothing is returned unless the event and
/// the token record are durable.
async fn issue_token(
    app: &AppState,
    mut audit: AuditEvent,
    issue: Issue,
    relied: &[Arc<Client>],
) -> Result<Result<TokenResponse, OAuthError>, ClientChanged> {
    let Issue {
        claims,
        event,
        parent_jti,
        grant_id,
        refresh_token,
        token_type,
        issued_token_type,
        tx,
    } = issue;
    let access_token = match claims.sign(&app.keys) {
        Ok(t) => t,
        Err(e) => {
            // The grant's transaction rolls back (before the refusal is
            // written: it must not hold the write lock): nothing single-use
            // is spent.
            drop(tx);
            let refusal = OAuthError::server_error(e).into();
            return refuse(app, audit, refusal, relied).await.map(Err);
        }
    };
    audit.event = event;
    audit.outcome = Outcome::Success;
    audit.jti = Some(claims.jti.clone());
    audit.scope_granted = Some(claims.scope.clone());
    audit.acr = claims.acr.clone();
    audit.actor_chain = claims.act.as_ref().map(|a| a.subs());
    audit.parent_jti = parent_jti.clone();
    let record = NewToken {
        jti: claims.jti.clone(),
        client_id: claims.client_id.clone(),
        subject: claims.sub.clone(),
        audience: claims.aud.clone(),
        scope: claims.scope.clone(),
        parent_jti,
        grant_id,
        issued_at: claims.iat,
        expires_at: claims.exp,
        token_hash: crate::secret::hash(&access_token),
    };
    let entry = Entry {
        event: audit,
        token: Some(record),
        clients: relied.to_vec(),
    };
    match write(app, tx, vec![entry]).await {
        Ok(()) => {}
        Err(StoreError::ClientChanged(_)) => return Err(ClientChanged),
        Err(e) => return Ok(Err(e.into())),
    }
    Ok(Ok(TokenResponse {
        access_token,
        issued_token_type,
        token_type,
        expires_in: claims.exp - claims.iat,
        scope: claims.scope,
        refresh_token,
    }))
}

/// Records a refusal and returns its error. If even the denial cannot be
/// written the request is refused all the same (and the operator told).
async fn refuse(
    app: &AppState,
    mut audit: AuditEvent,
    refusal: Refusal,
    relied: &[Arc<Client>],
) -> Result<OAuthError, ClientChanged> {
    let Refusal { error, tx, events } = refusal;
    audit.reason = Some(format!("{}: {}", error.code.as_str(), error.description));
    let mut entries: Vec<Entry> = std::iter::once(audit)
        .chain(events)
        .map(Entry::event)
        .collect();
    entries[0].clients = relied.to_vec();
    match write(app, tx, entries).await {
        Ok(()) => {}
        Err(StoreError::ClientChanged(_)) => return Err(ClientChanged),
        Err(e) => tracing::error!(error = %e, "could not record token.denied"),
    }
    Ok(error)
}

/// Appends `entries` inside `tx` and commits, or hands them to the group
/// writer when there is no transaction.
async fn write(app: &AppState, tx: Option<Tx>, mut entries: Vec<Entry>) -> Result<(), StoreError> {
    match tx {
        Some(mut tx) => {
            audit_store::check_clients(&mut tx, &entries).await?;
            audit_store::append(&mut tx, &mut entries).await?;
            tx.commit().await
        }
        None => {
            for entry in entries {
                app.audit.record(entry).await?;
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oauth::error::ErrorCode;

    fn grant(body: &str) -> Result<TokenGrant, OAuthError> {
        TokenGrant::parse(&form::parse(body.as_bytes(), &["resource", "audience"]).unwrap())
    }

    #[test]
    fn grants_parse_once_into_their_type() {
        assert_eq!(
            grant("grant_type=client_credentials&resource=https%3A%2F%2Fa&scope=x").unwrap(),
            TokenGrant::ClientCredentials(ClientCredentialsRequest {
                resource: vec!["https://a".into()],
                scope: Some("x".into()),
            })
        );
        assert_eq!(
            grant("grant_type=client_credentials").unwrap().grant_type(),
            GrantType::ClientCredentials
        );
    }

    //  * no grant_type
    //  * an unknown grant type
    //  * a known grant this build does not implement yet
    //  * code without a verifier, refresh without its token
    #[test]
    fn unknown_or_missing_grants_are_refused() {
        assert_eq!(
            grant("scope=x").unwrap_err().code,
            ErrorCode::InvalidRequest
        );
        assert_eq!(
            grant("grant_type=authorization_code&code=x")
                .unwrap_err()
                .description,
            "PKCE is required: send the code_verifier"
        );
        assert_eq!(
            grant("grant_type=refresh_token").unwrap_err().code,
            ErrorCode::InvalidRequest
        );
        for g in [
            "password",
            "urn:ietf:params:oauth:grant-type:jwt-bearer",
            "urn:openid:params:grant-type:ciba",
            "implicit",
        ] {
            assert_eq!(
                grant(&format!("grant_type={g}")).unwrap_err().code,
                ErrorCode::UnsupportedGrantType,
                "{g}"
            );
        }
    }
}
