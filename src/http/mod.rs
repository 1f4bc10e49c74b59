//! The only axum code: the router, request context, error rendering, handlers.

pub mod browser;
pub mod discovery;
pub mod error;
pub mod introspect;
pub mod ops;
pub mod register;
pub mod session;
pub mod token;
pub mod views;

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use ipnet::IpNet;
use tracing::Instrument;

use crate::oauth::error::OAuthError;
use crate::state::AppState;

/// The id of one request: on every log line of the request and in the
/// `X-Request-Id` response header.
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

/// The client's address: the socket peer, or from `X-Forwarded-For` when the
/// peer is a trusted proxy (see [`client_ip`]).
#[derive(Clone, Copy, Debug)]
pub struct ClientIp(pub IpAddr);

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

pub fn router(state: AppState) -> Router {
    Router::new()
        .route(
            "/.well-known/oauth-authorization-server",
            get(discovery::metadata_get),
        )
        .route(
            "/.well-known/openid-configuration",
            get(discovery::metadata_get),
        )
        .route("/jwks.json", get(discovery::jwks_get))
        .route("/token", post(token::token_post))
        .route("/introspect", post(introspect::introspect_post))
        .route("/revoke", post(introspect::revoke_post))
        .route("/register", post(register::register_post))
        .route("/authorize", get(browser::authorize_get))
        .route("/login", get(browser::login_get).post(browser::login_post))
        .route(
            "/consent",
            get(browser::consent_get).post(browser::consent_post),
        )
        .route(
            "/logout",
            get(browser::logout_get).post(browser::logout_post),
        )
        .route("/account", get(browser::account_get))
        .route("/account/grants/revoke", post(browser::grant_revoke_post))
        .route(
            "/account/consents/forget",
            post(browser::consent_forget_post),
        )
        .route("/static/mandate.css", get(browser::stylesheet_get))
        .route("/healthz", get(ops::healthz_get))
        .route("/readyz", get(ops::readyz_get))
        .route("/metrics", get(ops::metrics_get))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            request_context,
        ))
        .with_state(state)
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(serde_json::json!({"error": "not_found", "error_description": "no such endpoint"})),
    )
        .into_response()
}

async fn method_not_allowed() -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        Json(serde_json::json!({
            "error": "invalid_request",
            "error_description": "this endpoint does not accept that HTTP method"
        })),
    )
        .into_response()
}

/// Runs the rest of the stack within `request_timeout`. A request that runs
/// out of time gets an RFC 6749 JSON error (503 `temporarily_unavailable`: a
/// retry may succeed), not an empty body.
async fn within_deadline(app: &AppState, req: Request, next: Next) -> Response {
    let limit = app.request_timeout;
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => OAuthError::temporarily_unavailable(format!(
            "the request did not complete within {} s; try again",
            limit.as_secs().max(1)
        ))
        .into_response(),
    }
}

/// The client address of a request whose socket peer is `peer`. Only when
/// the peer is one of `trusted` (a load balancer) is `X-Forwarded-For`
/// believed, and then its rightmost address that is not itself a trusted
/// proxy: the entries left of that one were written by the client and prove
/// nothing. An unparseable entry stops the walk at the last trusted hop.
pub fn client_ip(peer: IpAddr, headers: &axum::http::HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let peer = peer.to_canonical();
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let mut hops: Vec<&str> = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        let Ok(text) = value.to_str() else {
            return peer;
        };
        hops.extend(text.split(',').map(str::trim));
    }
    let mut client = peer;
    for hop in hops.iter().rev() {
        let Ok(ip) = hop.parse::<IpAddr>().map(|ip| ip.to_canonical()) else {
            return client;
        };
        client = ip;
        if !is_trusted(&ip) {
            break;
        }
    }
    client
}

/// Accepts an incoming `X-Request-Id` only when it is short and plain (it ends
/// up in logs and the audit trail); otherwise makes a new one.
fn request_id(req: &Request) -> String {
    req.headers()
        .get(&X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        })
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// Gives each request an id, a client address, a deadline and a span, logs its outcome (method, path and
/// status only: query strings may hold codes and are never logged), and sets
/// headers every response carries.
async fn request_context(State(app): State<AppState>, mut req: Request, next: Next) -> Response {
    let id = request_id(&req);
    let method = crate::metrics::method_label(req.method());
    let endpoint = crate::metrics::endpoint_label(req.uri().path());
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::from([127, 0, 0, 1]));
    let ip = client_ip(peer, req.headers(), &app.config.trusted_proxies);
    req.extensions_mut().insert(RequestId(id.clone()));
    req.extensions_mut().insert(ClientIp(ip));
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %req.method(),
        path = %req.uri().path(),
    );
    let started = Instant::now();
    let mut resp = within_deadline(&app, req, next)
        .instrument(span.clone())
        .await;
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&id) {
        h.insert(X_REQUEST_ID.clone(), v);
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    let status = resp.status().as_u16();
    app.metrics
        .http_requests
        .get_or_create(&crate::metrics::HttpLabels { method, status })
        .inc();
    app.metrics
        .http_duration
        .get_or_create(&crate::metrics::EndpointLabels {
            endpoint,
            outcome: crate::metrics::outcome_label(status),
        })
        .observe(started.elapsed().as_secs_f64());
    span.in_scope(|| {
        tracing::info!(
            status = resp.status().as_u16(),
            latency_us = started.elapsed().as_micros() as u64,
            "request"
        )
    });
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderMap;

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    //  * an untrusted peer's X-Forwarded-For is ignored
    //  * a trusted proxy's header names the client (rightmost untrusted)
    //  * addresses the client wrote left of that prove nothing
    //  * garbage stops at the last trusted hop
    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let lb = ip("10.0.0.5");
        assert_eq!(
            client_ip(ip("198.51.100.1"), &xff(&["203.0.113.7"]), &trusted),
            ip("198.51.100.1")
        );
        assert_eq!(
            client_ip(lb, &xff(&["203.0.113.7"]), &trusted),
            ip("203.0.113.7")
        );
        assert_eq!(
            client_ip(lb, &xff(&["6.6.6.6, 203.0.113.7", "10.0.0.9"]), &trusted),
            ip("203.0.113.7")
        );
        assert_eq!(client_ip(lb, &xff(&["not-an-ip"]), &trusted), lb);
        assert_eq!(
            client_ip(lb, &xff(&["203.0.113.7, junk, 10.0.0.9"]), &trusted),
            ip("10.0.0.9")
        );
        assert_eq!(client_ip(lb, &HeaderMap::new(), &trusted), lb);
        assert_eq!(client_ip(lb, &xff(&["203.0.113.7"]), &[]), lb);
        assert_eq!(
            client_ip(ip("::ffff:10.0.0.5"), &xff(&["203.0.113.7"]), &trusted),
            ip("203.0.113.7")
        );
    }
}
