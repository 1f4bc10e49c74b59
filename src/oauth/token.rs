//! The token endpoint's decision: parse, authenticate the client, run the
//! grant, sign, and record the decision in the audit trail before answering
//! (SPEC §2, §3, §8). No HTTP types here; `http::token` adapts.

use serde::Serialize;

use super::access_token::AccessClaims;
use super::client_auth;
use super::error::{OAuthError, StatusHint};
use super::form::{self, Params};
use super::grants::{self, client_credentials};
use crate::audit::{AuditEvent, Outcome};
use crate::metrics::TokenLabels;
use crate::state::AppState;
use crate::store::tokens::NewToken;

/// Largest accepted token request body.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The request body as read by the HTTP layer.
pub enum Body {
    Bytes(Vec<u8>),
    TooLarge,
    Unreadable,
}

pub struct TokenRequest {
    pub authorization: Option<String>,
    pub content_type: Option<String>,
    pub body: Body,
    pub ip: Option<String>,
    pub request_id: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    pub scope: String,
}

/// What is known about the request so far, for the audit event.
#[derive(Debug)]
pub struct Decision {
    /// Metrics label of the requested grant (`none` until parsed).
    pub grant_type: &'static str,
    pub client_id: Option<String>,
    pub client_type: Option<String>,
    pub audience: Option<String>,
    pub scope_requested: Option<String>,
}

/// Handles one token request. The audit event (`token.issued` or
/// `token.denied`) is durable before this returns; if it cannot be written no
/// token is issued.
pub async fn token(
    app: &AppState,
    req: TokenRequest,
    now: i64,
) -> Result<TokenResponse, OAuthError> {
    let mut decision = Decision {
        grant_type: "none",
        client_id: None,
        client_type: None,
        audience: None,
        scope_requested: None,
    };
    let result = decide(app, &req, &mut decision, now)
        .await
        .and_then(|claims| {
            let signed = claims.sign(&app.keys).map_err(OAuthError::server_error)?;
            Ok((claims, signed))
        });
    let mut event = AuditEvent::new("token.denied", Outcome::Failure, now);
    event.ip = req.ip;
    event.request_id = req.request_id;
    let grant_label = decision.grant_type;
    event.client_id = decision.client_id;
    event.client_type = decision.client_type;
    event.audience = decision.audience;
    event.scope_requested = decision.scope_requested;
    match result {
        Ok((claims, access_token)) => {
            event.event = "token.issued".into();
            event.outcome = Outcome::Success;
            event.scope_granted = Some(claims.scope.clone());
            event.jti = Some(claims.jti.clone());
            let record = NewToken {
                jti: claims.jti.clone(),
                client_id: claims.client_id.clone(),
                subject: claims.sub.clone(),
                audience: claims.aud.clone(),
                scope: claims.scope.clone(),
                parent_jti: None,
                grant_id: None,
                issued_at: claims.iat,
                expires_at: claims.exp,
            };
            app.audit.record(event, Some(record)).await?;
            count(app, grant_label, "issued");
            Ok(TokenResponse {
                access_token,
                token_type: "Bearer",
                expires_in: claims.exp - claims.iat,
                scope: claims.scope,
            })
        }
        Err(e) => {
            event.reason = Some(format!("{}: {}", e.code.as_str(), e.description));
            count(app, grant_label, e.code.as_str());
            if let Err(store) = app.audit.record(event, None).await {
                // The request is refused either way; an unrecorded denial is
                // worth an operator's attention.
                tracing::error!(error = %store, "could not record token.denied");
            }
            Err(e)
        }
    }
}

fn count(app: &AppState, grant_type: &'static str, outcome: &'static str) {
    app.metrics
        .tokens
        .get_or_create(&TokenLabels {
            grant_type,
            outcome,
        })
        .inc();
}

async fn decide(
    app: &AppState,
    req: &TokenRequest,
    decision: &mut Decision,
    now: i64,
) -> Result<AccessClaims, OAuthError> {
    let bytes = match &req.body {
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
    form::check_content_type(req.content_type.as_deref())?;
    let params: Params = form::parse(bytes, &["resource", "audience"])?;
    decision.grant_type = grants::label(params.get("grant_type"));
    decision.scope_requested = params.get("scope").map(str::to_owned);
    let presented = client_auth::presented(req.authorization.as_deref(), &params)?;
    decision.client_id = presented
        .client_id()
        .map(|id| id.chars().take(256).collect());
    let client = client_auth::authenticate(&app.db, &presented).await?;
    decision.client_type = Some(client.client_type.clone());

    let Some(grant_type) = params.get("grant_type") else {
        return Err(OAuthError::invalid_request("missing `grant_type`"));
    };
    match grant_type {
        grants::CLIENT_CREDENTIALS => {
            client_credentials::issue(app, &client, &params, decision, now)
        }
        _ => Err(OAuthError::unsupported_grant_type(
            "this server does not support that grant_type",
        )),
    }
}
