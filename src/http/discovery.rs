//! RFC 8414 metadata and the JWKS.

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::config::Config;
use crate::oauth::types::GrantType;
use crate::state::AppState;

/// How long resource servers may cache the JWKS. Key rotation publishes a new
/// key `activation_delay_secs` (default 600) before it signs, longer than this.
pub const JWKS_MAX_AGE_SECS: u64 = 300;

/// The metadata document, listing only what this build implements.
pub fn metadata(config: &Config) -> Value {
    let scopes: Vec<&str> = config
        .resources
        .iter()
        .flat_map(|r| r.scopes.iter().map(|s| s.name.as_str()))
        .collect();
    json!({
        "issuer": config.issuer,
        "authorization_endpoint": config.endpoint("/authorize"),
        "token_endpoint": config.endpoint("/token"),
        "jwks_uri": config.endpoint("/jwks.json"),
        "registration_endpoint": config.endpoint("/register"),
        "introspection_endpoint": config.endpoint("/introspect"),
        "revocation_endpoint": config.endpoint("/revoke"),
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "grant_types_supported": GrantType::IMPLEMENTED,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "code_challenge_methods_supported": ["S256"],
        "authorization_response_iss_parameter_supported": true,
        "client_id_metadata_document_supported": config.registration.client_id_metadata_documents,
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "acr_values_supported": ["urn:mandate:acr:pwd"],
        "prompt_values_supported": ["none", "login", "consent"],
        "scopes_supported": scopes,
    })
}

/// GET /.well-known/oauth-authorization-server and /.well-known/openid-configuration.
pub async fn metadata_get(State(app): State<AppState>) -> Response {
    let mut resp = Json(metadata(&app.config)).into_response();
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    resp
}

/// GET /jwks.json: every key a live token may be signed with.
pub async fn jwks_get(State(app): State<AppState>) -> Response {
    if let Err(e) = app.keys.refresh() {
        tracing::warn!(error = %e, "could not re-read the keys directory; serving the keys loaded");
    }
    let mut resp = Json(app.keys.jwks(app.clock.now())).into_response();
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_str(&format!("public, max-age={JWKS_MAX_AGE_SECS}"))
            .unwrap_or(HeaderValue::from_static("public, max-age=300")),
    );
    resp
}
