//! `POST /token`.

use std::net::SocketAddr;

use axum::body::Body as AxumBody;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};

use super::error::NoStore;
use super::RequestId;
use crate::oauth::token::{self, Body, TokenRequest, MAX_BODY_BYTES};
use crate::state::AppState;

/// POST /token: every grant (SPEC §3–§7). The caller authenticates with
/// `client_secret_basic` or `client_secret_post` (or `client_id` alone for a
/// public client). Errors are RFC 6749 §5.2 JSON; every answer carries
/// `Cache-Control: no-store`.
pub async fn token_post(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Extension(request_id): Extension<RequestId>,
    headers: HeaderMap,
    body: AxumBody,
) -> Response {
    let header_str = |name| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let req = TokenRequest {
        authorization: header_str(header::AUTHORIZATION),
        content_type: header_str(header::CONTENT_TYPE),
        body: read_body(&headers, body, MAX_BODY_BYTES).await,
        ip: Some(peer.ip().to_string()),
        request_id: Some(request_id.0),
    };
    match token::token(&app, req, app.clock.now()).await {
        Ok(resp) => NoStore(Json(resp)).into_response(),
        Err(e) => e.into_response(),
    }
}

/// Reads at most `limit` bytes of `body`.
pub async fn read_body(headers: &HeaderMap, body: AxumBody, limit: usize) -> Body {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Body::TooLarge;
    }
    match axum::body::to_bytes(body, limit).await {
        Ok(b) => Body::Bytes(b.to_vec()),
        Err(e) => {
            let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
            while let Some(s) = source {
                if s.is::<http_body_util::LengthLimitError>() {
                    return Body::TooLarge;
                }
                source = s.source();
            }
            Body::Unreadable
        }
    }
}
