//! `POST /token`.

use axum::body::Body as AxumBody;
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};

use super::error::NoStore;
use super::{ClientIp, RequestId};
use crate::oauth::client_auth::AuthHeader;
use crate::oauth::token::{self, Body, TokenRequest, MAX_BODY_BYTES};
use crate::state::AppState;

/// POST /token: every grant (SPEC §3–§7). The caller authenticates with
/// `client_secret_basic` or `client_secret_post` (or `client_id` alone for a
/// public client). Errors are RFC 6749 §5.2 JSON; every answer carries
/// `Cache-Control: no-store`.
pub async fn token_post(
    State(app): State<AppState>,
    Extension(ClientIp(ip)): Extension<ClientIp>,
    Extension(request_id): Extension<RequestId>,
    headers: HeaderMap,
    body: AxumBody,
) -> Response {
    let req = TokenRequest {
        authorization: authorization(&headers),
        content_type: headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        body: read_body(&headers, body, MAX_BODY_BYTES).await,
        ip: Some(ip.to_string()),
        request_id: Some(request_id.0),
    };
    match token::token(&app, req, app.clock.now()).await {
        Ok(resp) => NoStore(Json(resp)).into_response(),
        Err(e) => e.into_response(),
    }
}

/// The `Authorization` header as received: absent, text, not text, or sent
/// more than once.
pub fn authorization(headers: &HeaderMap) -> AuthHeader {
    let mut all = headers.get_all(header::AUTHORIZATION).iter();
    match (all.next(), all.next()) {
        (None, _) => AuthHeader::Absent,
        (Some(_), Some(_)) => AuthHeader::Repeated,
        (Some(v), None) => match v.to_str() {
            Ok(text) => AuthHeader::Text(text.to_owned()),
            Err(_) => AuthHeader::NotText,
        },
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
