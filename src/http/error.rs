//! Renders [`OAuthError`] as RFC 6749 §5.2 JSON, once for every endpoint.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::oauth::error::{ErrorCode, OAuthError, StatusHint};

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let status = match (self.status_hint, self.code) {
            (Some(StatusHint::PayloadTooLarge), _) => StatusCode::PAYLOAD_TOO_LARGE,
            (Some(StatusHint::Forbidden), _) => StatusCode::FORBIDDEN,
            (_, ErrorCode::InvalidClient | ErrorCode::InvalidToken) => StatusCode::UNAUTHORIZED,
            (_, ErrorCode::ServerError) => StatusCode::INTERNAL_SERVER_ERROR,
            (_, ErrorCode::TemporarilyUnavailable) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        };
        match &self.cause {
            Some(cause) => tracing::error!(error = %self, cause = ?cause, "request failed"),
            None if status.is_server_error() => tracing::error!(error = %self, "request failed"),
            None => tracing::info!(error = %self, "request refused"),
        }
        let body = serde_json::json!({
            "error": self.code.as_str(),
            "error_description": self.description,
        });
        let mut resp = (status, Json(body)).into_response();
        let h = resp.headers_mut();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        if self.code == ErrorCode::InvalidToken {
            // RFC 6750 §3: a bearer challenge naming the error.
            h.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer error=\"invalid_token\""),
            );
        }
        if self.code == ErrorCode::InvalidClient {
            // RFC 6749 §5.2: a 401 "MUST include the WWW-Authenticate response header field".
            h.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"mandate\", charset=\"UTF-8\""),
            );
        }
        resp
    }
}

/// A JSON response that must not be cached (token responses, RFC 6749 §5.1).
pub struct NoStore<T>(pub T);

impl<T: IntoResponse> IntoResponse for NoStore<T> {
    fn into_response(self) -> Response {
        let mut resp = self.0.into_response();
        let h = resp.headers_mut();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        resp
    }
}
