//! `POST /introspect` (RFC 7662) and `POST /revoke` (RFC 7009).

use axum::body::Body as AxumBody;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};

use super::error::NoStore;
use super::token::{authorization, read_body};
use super::{ClientIp, RequestId};
use crate::oauth::introspect::{self, TokenQuery};
use crate::oauth::token::MAX_BODY_BYTES;
use crate::state::AppState;

async fn query(
    headers: &HeaderMap,
    body: AxumBody,
    ip: ClientIp,
    request_id: RequestId,
) -> TokenQuery {
    TokenQuery {
        authorization: authorization(headers),
        content_type: headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        body: read_body(headers, body, MAX_BODY_BYTES).await,
        ip: Some(ip.0.to_string()),
        request_id: Some(request_id.0),
    }
}

/// POST /introspect: the caller authenticates as a confidential client
/// (Basic or post). `active: true` only for a live token whose audience the
/// caller owns or that was issued to it; otherwise exactly `{"active": false}`.
pub async fn introspect_post(
    State(app): State<AppState>,
    Extension(ip): Extension<ClientIp>,
    Extension(request_id): Extension<RequestId>,
    headers: HeaderMap,
    body: AxumBody,
) -> Response {
    let q = query(&headers, body, ip, request_id).await;
    match introspect::introspect(&app, q, app.clock.now()).await {
        Ok(v) => NoStore(Json(v)).into_response(),
        Err(e) => e.into_response(),
    }
}

/// POST /revoke: 200 with an empty body for any token once the caller is
/// authenticated (RFC 7009 §2.2); only the caller's own tokens change.
pub async fn revoke_post(
    State(app): State<AppState>,
    Extension(ip): Extension<ClientIp>,
    Extension(request_id): Extension<RequestId>,
    headers: HeaderMap,
    body: AxumBody,
) -> Response {
    let q = query(&headers, body, ip, request_id).await;
    match introspect::revoke(&app, q, app.clock.now()).await {
        Ok(()) => NoStore(StatusCode::OK).into_response(),
        Err(e) => e.into_response(),
    }
}
