//! `POST /register`.

use axum::body::Body as AxumBody;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};

use super::error::NoStore;
use super::token::{authorization, read_body};
use super::{ClientIp, RequestId};
use crate::oauth::register::{self, RegisterRequest, MAX_BODY_BYTES};
use crate::state::AppState;

/// POST /register: RFC 7591 dynamic client registration (SPEC §3). The body
/// is a JSON object of client metadata; in registration mode `token` the
/// caller sends `Authorization: Bearer <initial access token>`. Answers 201
/// with the registered metadata (and, for a confidential client, its secret,
/// shown once); errors are RFC 7591 §3.2.2 JSON — 400
/// `invalid_client_metadata` or `invalid_redirect_uri`, 401 `invalid_token`
/// (with `WWW-Authenticate: Bearer`), 403 `access_denied` when registration
/// is closed, 413 for a body over 64 KiB. Every answer carries
/// `Cache-Control: no-store`.
pub async fn register_post(
    State(app): State<AppState>,
    Extension(ClientIp(ip)): Extension<ClientIp>,
    Extension(request_id): Extension<RequestId>,
    headers: HeaderMap,
    body: AxumBody,
) -> Response {
    let req = RegisterRequest {
        authorization: authorization(&headers),
        content_type: headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        body: read_body(&headers, body, MAX_BODY_BYTES).await,
        ip: Some(ip.to_string()),
        request_id: Some(request_id.0),
    };
    match register::register(&app, req, app.clock.now()).await {
        Ok(resp) => (StatusCode::CREATED, NoStore(Json(resp.body))).into_response(),
        Err(e) => e.into_response(),
    }
}
