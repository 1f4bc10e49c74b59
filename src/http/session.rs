//! The browser session cookie and CSRF checks (SPEC §4). The cookie holds
//! only the opaque session id; the session lives in the database.
//! `HttpOnly`, `SameSite=Lax`, `Path=/`, and `Secure` (with the `__Host-`
//! prefix) when the issuer is https.

use axum::http::{header, HeaderMap, HeaderValue};
use subtle::ConstantTimeEq;

use crate::oauth::login::SESSION_TTL_SECS;
use crate::secret;
use crate::state::AppState;
use crate::store::sessions::{self, Session};
use crate::store::StoreError;

/// The cookie's name: `__Host-` prefixed (browser-enforced Secure, no
/// Domain, Path=/) when the issuer is https.
pub fn cookie_name(app: &AppState) -> &'static str {
    if app.config.issuer.starts_with("https://") {
        "__Host-mandate_session"
    } else {
        "mandate_session"
    }
}

/// The raw session id the browser sent, if any.
pub fn presented_id(app: &AppState, headers: &HeaderMap) -> Option<String> {
    let name = cookie_name(app);
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
        .filter(|v| !v.is_empty() && v.len() <= 128)
}

/// The live session of this request, if it has one.
pub async fn current(
    app: &AppState,
    headers: &HeaderMap,
    now: i64,
) -> Result<Option<Session>, StoreError> {
    match presented_id(app, headers) {
        Some(raw) => sessions::get(&app.db, &secret::hash(&raw), now).await,
        None => Ok(None),
    }
}

/// The `Set-Cookie` value for session id `raw` (empty `raw`: delete it).
pub fn set_cookie(app: &AppState, raw: &str) -> HeaderValue {
    let secure = if app.config.issuer.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    let max_age = if raw.is_empty() { 0 } else { SESSION_TTL_SECS };
    let value = format!(
        "{}={raw}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}",
        cookie_name(app)
    );
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Whether a form's `csrf` value is the session's token (constant time).
pub fn csrf_ok(session: &Session, presented: Option<&str>) -> bool {
    match presented {
        Some(p) => p.as_bytes().ct_eq(session.csrf.as_bytes()).into(),
        None => false,
    }
}
