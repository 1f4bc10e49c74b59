//! The browser flow's handlers (SPEC §4): `/authorize`, `/login`,
//! `/consent`, `/logout` and `/account`. Thin: the decisions live in
//! `oauth::authorize` and `oauth::login`; this module reads cookies and
//! forms, picks pages and redirects.
//!
//! Every form carries the session's CSRF token; a POST without it (or with
//! another) is refused with a page and changes nothing.

use axum::body::Body as AxumBody;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;

use super::session::{self, csrf_ok};
use super::token::read_body;
use super::views::{
    page, with_page_headers, AccountView, ConsentLine, ConsentView, ErrorView, GrantLine,
    LoginView, LogoutView, ResourceBlock, ScopeLine,
};
use super::{ClientIp, RequestId};
use crate::audit::{rfc3339, AuditEvent, EventKind, Outcome};
use crate::oauth::authorize::{
    self, find_client, next_step, AuthRequest, AuthorizeError, ErrorRedirect, Next, ResourceScopes,
};
use crate::oauth::error::OAuthError;
use crate::oauth::form::{self, Params};
use crate::oauth::login::{self, Attempt};
use crate::oauth::types::{ClientOrigin, ClientType};
use crate::secret;
use crate::state::AppState;
use crate::store::audit::{self as audit_store, Entry};
use crate::store::authorization_requests::{self, NewRequest};
use crate::store::clients::Client;
use crate::store::sessions::{self, Session};
use crate::store::{consents, grants, StoreError};

/// Largest accepted form body.
const MAX_FORM_BYTES: usize = 16 * 1024;

/// What a browser handler produces on failure: a page, never JSON.
struct PageError {
    status: StatusCode,
    title: &'static str,
    message: String,
}

impl PageError {
    fn new(status: StatusCode, title: &'static str, message: impl Into<String>) -> PageError {
        PageError {
            status,
            title,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> PageError {
        PageError::new(
            StatusCode::BAD_REQUEST,
            "This request cannot be completed",
            message,
        )
    }

    fn csrf() -> PageError {
        PageError::new(
            StatusCode::FORBIDDEN,
            "This form has expired",
            "The form was not sent by this page, or your session ended. Go back, reload the \
             page and try again.",
        )
    }

    fn render(&self, app: &AppState, request_id: &RequestId) -> Response {
        page(
            self.status,
            &ErrorView {
                issuer_host: issuer_host(app),
                title: self.title,
                message: &self.message,
                request_id: &request_id.0,
            },
        )
    }
}

impl From<StoreError> for PageError {
    fn from(e: StoreError) -> PageError {
        let unavailable = e.is_unavailable();
        tracing::error!(error = %e, "browser request failed");
        if unavailable {
            PageError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "Temporarily unavailable",
                "The server cannot complete this right now. Try again in a moment.",
            )
        } else {
            PageError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "The server could not complete this request.",
            )
        }
    }
}

fn issuer_host(app: &AppState) -> &str {
    app.config
        .issuer
        .split_once("://")
        .map_or(app.config.issuer.as_str(), |(_, h)| h)
}

/// A 303 to `location` (after a POST the browser must GET it).
fn see_other(location: &str) -> Response {
    let mut resp = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    with_page_headers(resp)
}

fn with_cookie(mut resp: Response, cookie: Option<HeaderValue>) -> Response {
    if let Some(c) = cookie {
        resp.headers_mut().append(header::SET_COOKIE, c);
    }
    resp
}

/// The request's session, or a new anonymous one (with its `Set-Cookie`).
async fn ensure_session(
    app: &AppState,
    headers: &HeaderMap,
    now: i64,
) -> Result<(Session, Option<HeaderValue>), StoreError> {
    if let Some(s) = session::current(app, headers, now).await? {
        return Ok((s, None));
    }
    let (raw, s) = login::new_session(None, now);
    sessions::insert(&app.db, &s).await?;
    Ok((s, Some(session::set_cookie(app, &raw))))
}

async fn read_form(
    headers: &HeaderMap,
    body: AxumBody,
    repeatable: &[&str],
) -> Result<Params, PageError> {
    let bytes = match read_body(headers, body, MAX_FORM_BYTES).await {
        crate::oauth::token::Body::Bytes(b) => b,
        _ => return Err(PageError::bad_request("The form could not be read.")),
    };
    form::check_content_type(
        headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
    )
    .map_err(|e| PageError::bad_request(e.description.to_string()))?;
    form::parse(&bytes, repeatable).map_err(|e| PageError::bad_request(e.description.to_string()))
}

fn browser_event(kind: EventKind, ip: &ClientIp, request_id: &RequestId, now: i64) -> AuditEvent {
    let mut e = AuditEvent::new(kind, Outcome::Failure, now);
    e.ip = Some(ip.0.to_string());
    e.request_id = Some(request_id.0.clone());
    e
}

/// Records a refusal of the flow (best effort: the user is refused anyway).
async fn record(app: &AppState, mut event: AuditEvent, error: &OAuthError) {
    event.reason = Some(format!("{}: {}", error.code.as_str(), error.description));
    if let Err(e) = app.audit.record(Entry::event(event)).await {
        tracing::error!(error = %e, "could not record a refusal");
    }
}

/// GET /authorize (SPEC §4). An unknown client or a redirect URI that is not
/// registered is shown as a page and never redirects; other errors redirect
/// with `error`, `state` and `iss`.
pub async fn authorize_get(
    State(app): State<AppState>,
    Extension(ip): Extension<ClientIp>,
    Extension(request_id): Extension<RequestId>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let now = app.clock.now();
    let event = browser_event(EventKind::Consent, &ip, &request_id, now);
    match authorize::validate(&app, query.as_deref().unwrap_or(""), now).await {
        Err(AuthorizeError::Page(message)) => {
            let error = OAuthError::invalid_request(message.clone());
            record(&app, event, &error).await;
            PageError::bad_request(message).render(&app, &request_id)
        }
        Err(AuthorizeError::Redirect(r)) => {
            record(&app, event, &r.error).await;
            see_other(&r.url(&app.config.issuer))
        }
        Ok((client, req)) => match ensure_session(&app, &headers, now).await {
            Ok((session, cookie)) => {
                let resp = proceed(&app, &session, &client, req, None, event, now).await;
                with_cookie(resp, cookie)
            }
            Err(e) => PageError::from(e).render(&app, &request_id),
        },
    }
}

/// Takes a validated request to its next step: login, consent, or the code.
/// `stored` is the id of the request when it is already stored.
async fn proceed(
    app: &AppState,
    session: &Session,
    client: &Client,
    req: AuthRequest,
    stored: Option<&str>,
    mut event: AuditEvent,
    now: i64,
) -> Response {
    event.client_id = Some(client.client_id.clone());
    event.client_type = Some(client.client_type.as_str().into());
    let redirect_error = |error: OAuthError| ErrorRedirect {
        redirect_uri: req.redirect_uri.clone(),
        state: req.state.clone(),
        error,
    };
    let remembered = match authorize::remembered(app, session.login.as_ref()).await {
        Ok(r) => r,
        Err(e) => {
            return PageError::from(e).render(
                app,
                &RequestId(event.request_id.clone().unwrap_or_default()),
            )
        }
    };
    let step = match next_step(&req, session.login.as_ref(), &remembered, now) {
        Ok(step) => step,
        Err(error) => {
            record(app, event, &error).await;
            return see_other(&redirect_error(error).url(&app.config.issuer));
        }
    };
    let request_id = RequestId(event.request_id.clone().unwrap_or_default());
    match step {
        Next::Issue => {
            let Some(login) = &session.login else {
                return PageError::bad_request("Sign in first.").render(app, &request_id);
            };
            event.outcome = Outcome::Success;
            event.reason = Some("covered by remembered consent".into());
            let granted = req.resources.clone();
            match authorize::issue_code(app, client, &req, &granted, login, false, event, now).await
            {
                Ok(url) => see_other(&url),
                Err(e) => PageError::from(e).render(app, &request_id),
            }
        }
        Next::Login | Next::Consent => {
            let id = match stored {
                Some(id) => id.to_string(),
                None => match store_request(app, session, &req, now).await {
                    Ok(id) => id,
                    Err(e) => return PageError::from(e).render(app, &request_id),
                },
            };
            let path = if matches!(step, Next::Login) {
                "/login"
            } else {
                "/consent"
            };
            see_other(&format!("{path}?req={id}"))
        }
    }
}

async fn store_request(
    app: &AppState,
    session: &Session,
    req: &AuthRequest,
    now: i64,
) -> Result<String, StoreError> {
    let id = secret::random_token();
    let json = serde_json::to_string(req)
        .map_err(|e| StoreError::Corrupt(format!("authorization request: {e}")))?;
    authorization_requests::insert(
        &app.db,
        &NewRequest {
            id: &id,
            session_hash: &session.id_hash,
            client_id: &req.client_id,
            request: &json,
            created_at: now,
            expires_at: now + authorize::REQUEST_TTL_SECS,
        },
    )
    .await?;
    Ok(id)
}

/// The stored request `id` of this session, with its client.
async fn load_request(
    app: &AppState,
    session: &Session,
    id: &str,
    now: i64,
) -> Result<(AuthRequest, Client), PageError> {
    let expired = || {
        PageError::bad_request(
            "This sign-in request has expired or belongs to another browser. Go back to the \
             application and start again.",
        )
    };
    let Some(json) = authorization_requests::get(&app.db, id, &session.id_hash, now).await? else {
        return Err(expired());
    };
    let req: AuthRequest = serde_json::from_str(&json).map_err(|_| expired())?;
    let client = find_client(app, &req.client_id, now)
        .await
        .map_err(PageError::bad_request)?;
    Ok((req, client))
}

/// GET /login: the sign-in form (inputs `Username`, `Password`, button `Sign in`).
pub async fn login_get(
    State(app): State<AppState>,
    Extension(request_id): Extension<RequestId>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let now = app.clock.now();
    let req_id = query_param(query.as_deref(), "req").unwrap_or_default();
    let (session, cookie) = match ensure_session(&app, &headers, now).await {
        Ok(s) => s,
        Err(e) => return PageError::from(e).render(&app, &request_id),
    };
    let client_name = if req_id.is_empty() {
        None
    } else {
        match load_request(&app, &session, &req_id, now).await {
            Ok((_, client)) => Some(client.name),
            Err(e) => return with_cookie(e.render(&app, &request_id), cookie),
        }
    };
    let view = LoginView {
        issuer_host: issuer_host(&app),
        csrf: &session.csrf,
        req: &req_id,
        client_name: client_name.as_deref(),
        username: "",
        error: None,
    };
    with_cookie(page(StatusCode::OK, &view), cookie)
}

fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    let params = form::parse(query.unwrap_or("").as_bytes(), &[]).ok()?;
    params.get(name).map(str::to_owned)
}

/// POST /login: checks the password (Argon2id, throttled), changes the
/// session id, and goes on with the pending authorization request.
pub async fn login_post(
    State(app): State<AppState>,
    Extension(ip): Extension<ClientIp>,
    Extension(request_id): Extension<RequestId>,
    headers: HeaderMap,
    body: AxumBody,
) -> Response {
    let now = app.clock.now();
    let result = async {
        let form = read_form(&headers, body, &[]).await?;
        let Some(session) = session::current(&app, &headers, now).await? else {
            return Err(PageError::csrf());
        };
        if !csrf_ok(&session, form.get("csrf")) {
            let mut event = login::event(Some(ip.0.to_string()), Some(request_id.0.clone()), now);
            event.reason = Some("the sign-in form had no valid CSRF token".into());
            let _ = app.audit.record(Entry::event(event)).await;
            return Err(PageError::csrf());
        }
        let req_id = form.get("req").unwrap_or("").to_string();
        let pending = if req_id.is_empty() {
            None
        } else {
            Some(load_request(&app, &session, &req_id, now).await?)
        };
        let username = form.get("username").unwrap_or("").to_string();
        let password = form.get("password").unwrap_or("");
        let mut event = login::event(Some(ip.0.to_string()), Some(request_id.0.clone()), now);
        if let Some((_, client)) = &pending {
            event.client_id = Some(client.client_id.clone());
            event.client_type = Some(client.client_type.as_str().into());
        }
        // Empty fields too: counted, throttled and audited like any failure.
        let attempt = login::attempt(&app, &username, password, event, now).await?;
        let Attempt::Success(login) = attempt else {
            let message = attempt.message();
            let view = LoginView {
                issuer_host: issuer_host(&app),
                csrf: &session.csrf,
                req: &req_id,
                client_name: pending.as_ref().map(|(_, c)| c.name.as_str()),
                username: &username,
                error: Some(&message),
            };
            let status = match attempt {
                Attempt::Throttled(_) => StatusCode::TOO_MANY_REQUESTS,
                _ => StatusCode::UNAUTHORIZED,
            };
            return Ok(page(status, &view));
        };
        let (raw, fresh) = login::rotate(&app, Some(&session), login, now).await?;
        let cookie = Some(session::set_cookie(&app, &raw));
        let resp = match pending {
            None => see_other("/account"),
            Some((req, client)) => {
                let event = browser_event(EventKind::Consent, &ip, &request_id, now);
                proceed(&app, &fresh, &client, req, Some(&req_id), event, now).await
            }
        };
        Ok(with_cookie(resp, cookie))
    }
    .await;
    result.unwrap_or_else(|e| e.render(&app, &request_id))
}

/// What the consent page says about a scope that needs more than consent.
fn scope_mark(app: &AppState, name: &str) -> Option<String> {
    let (_, s) = app.config.scope(name)?;
    if s.approval {
        Some("Needs your approval each time".into())
    } else if s.min_acr.is_some() {
        Some("Needs a second factor".into())
    } else if s.max_auth_age_secs.is_some() {
        Some("Needs a recent sign-in".into())
    } else {
        None
    }
}

fn host_of(url: &str) -> String {
    url::Url::parse(url)
        .ok()
        .and_then(|u| {
            u.host_str().map(|h| match u.port() {
                Some(p) => format!("{h}:{p}"),
                None => h.to_string(),
            })
        })
        .unwrap_or_else(|| url.to_string())
}

fn encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn login_url(req_id: &str) -> String {
    format!("/login?req={}", encode(req_id))
}

/// GET /consent: who asks, for what, `Allow` / `Deny` (SPEC §4).
pub async fn consent_get(
    State(app): State<AppState>,
    Extension(request_id): Extension<RequestId>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let now = app.clock.now();
    let result = async {
        let req_id = query_param(query.as_deref(), "req").unwrap_or_default();
        let Some(session) = session::current(&app, &headers, now).await? else {
            return Ok(see_other(&login_url(&req_id)));
        };
        let Some(login) = &session.login else {
            return Ok(see_other(&login_url(&req_id)));
        };
        let (req, client) = load_request(&app, &session, &req_id, now).await?;
        let resources = req
            .resources
            .iter()
            .enumerate()
            .map(|(i, r)| ResourceBlock {
                index: i + 1,
                id: r.resource.clone(),
                name: app
                    .config
                    .resource(&r.resource)
                    .map_or(r.resource.clone(), |c| c.name.clone()),
                scopes: r
                    .scopes
                    .iter()
                    .map(|s| ScopeLine {
                        name: s.clone(),
                        description: app
                            .config
                            .scope(s)
                            .map_or(s.clone(), |(_, c)| c.description.clone()),
                        mark: scope_mark(&app, s),
                    })
                    .collect(),
            })
            .collect();
        let view = ConsentView {
            issuer_host: issuer_host(&app),
            csrf: &session.csrf,
            req: &req_id,
            client_name: &client.name,
            is_agent: client.client_type == ClientType::AiAgent,
            username: &login.username,
            document_host: (client.origin == ClientOrigin::MetadataDocument)
                .then(|| host_of(&client.client_id)),
            redirect_host: host_of(&req.redirect_uri),
            resources,
        };
        Ok(page(StatusCode::OK, &view))
    }
    .await;
    result.unwrap_or_else(|e: PageError| e.render(&app, &request_id))
}

/// POST /consent: `Allow` issues the code for the scopes left ticked;
/// `Deny` answers `access_denied`. A request is decided once.
pub async fn consent_post(
    State(app): State<AppState>,
    Extension(ip): Extension<ClientIp>,
    Extension(request_id): Extension<RequestId>,
    headers: HeaderMap,
    body: AxumBody,
) -> Response {
    let now = app.clock.now();
    let result = async {
        let form = read_form(&headers, body, &["scope"]).await?;
        let mut event = browser_event(EventKind::Consent, &ip, &request_id, now);
        let Some(session) = session::current(&app, &headers, now).await? else {
            return Err(PageError::csrf());
        };
        if !csrf_ok(&session, form.get("csrf")) {
            event.reason = Some("the consent form had no valid CSRF token".into());
            let _ = app.audit.record(Entry::event(event)).await;
            return Err(PageError::csrf());
        }
        let Some(login) = session.login.clone() else {
            return Err(PageError::csrf());
        };
        event.user = Some(login.username.clone());
        let req_id = form.get("req").unwrap_or("");
        let (req, client) = load_request(&app, &session, req_id, now).await?;
        event.client_id = Some(client.client_id.clone());
        event.client_type = Some(client.client_type.as_str().into());
        // Decided once: a replayed or double-submitted form finds nothing.
        if authorization_requests::take(&app.db, req_id, &session.id_hash, now)
            .await?
            .is_none()
        {
            return Err(PageError::bad_request("This request was already decided."));
        }
        let deny = |why: &str| ErrorRedirect {
            redirect_uri: req.redirect_uri.clone(),
            state: req.state.clone(),
            error: OAuthError::access_denied(why.to_string()),
        };
        let ticked = form.all("scope");
        let granted: Vec<ResourceScopes> = req
            .resources
            .iter()
            .map(|r| ResourceScopes {
                resource: r.resource.clone(),
                scopes: r
                    .scopes
                    .iter()
                    .filter(|s| ticked.contains(&s.as_str()))
                    .cloned()
                    .collect(),
            })
            .filter(|r| !r.scopes.is_empty())
            .collect();
        let redirect = match form.get("decision") {
            Some("allow") if !granted.is_empty() => {
                event.outcome = Outcome::Success;
                event.reason = Some("allowed by the user".into());
                let remember = form.get("remember") == Some("yes");
                authorize::issue_code(&app, &client, &req, &granted, &login, remember, event, now)
                    .await?
            }
            Some("allow") => {
                let r = deny("the user allowed no scope");
                record(&app, event, &r.error).await;
                r.url(&app.config.issuer)
            }
            _ => {
                let r = deny("the user denied the request");
                record(&app, event, &r.error).await;
                r.url(&app.config.issuer)
            }
        };
        Ok(see_other(&redirect))
    }
    .await;
    result.unwrap_or_else(|e| e.render(&app, &request_id))
}

/// GET /logout: a confirmation form (signing out is a POST with CSRF).
pub async fn logout_get(
    State(app): State<AppState>,
    Extension(request_id): Extension<RequestId>,
    headers: HeaderMap,
) -> Response {
    let now = app.clock.now();
    match session::current(&app, &headers, now).await {
        Ok(Some(s)) => page(
            StatusCode::OK,
            &LogoutView {
                issuer_host: issuer_host(&app),
                csrf: &s.csrf,
                signed_out: false,
            },
        ),
        Ok(None) => page(
            StatusCode::OK,
            &LogoutView {
                issuer_host: issuer_host(&app),
                csrf: "",
                signed_out: true,
            },
        ),
        Err(e) => PageError::from(e).render(&app, &request_id),
    }
}

/// POST /logout: ends the session (the row is deleted, the cookie cleared).
pub async fn logout_post(
    State(app): State<AppState>,
    Extension(request_id): Extension<RequestId>,
    headers: HeaderMap,
    body: AxumBody,
) -> Response {
    let now = app.clock.now();
    let result = async {
        let form = read_form(&headers, body, &[]).await?;
        if let Some(s) = session::current(&app, &headers, now).await? {
            if !csrf_ok(&s, form.get("csrf")) {
                return Err(PageError::csrf());
            }
            sessions::delete(&app.db, &s.id_hash).await?;
        }
        let view = LogoutView {
            issuer_host: issuer_host(&app),
            csrf: "",
            signed_out: true,
        };
        Ok(with_cookie(
            page(StatusCode::OK, &view),
            Some(session::set_cookie(&app, "")),
        ))
    }
    .await;
    result.unwrap_or_else(|e| e.render(&app, &request_id))
}

/// GET /account: the signed-in user's grants and remembered consents (a
/// minimal page; the dashboard of SPEC §8 builds on it).
pub async fn account_get(
    State(app): State<AppState>,
    Extension(request_id): Extension<RequestId>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let now = app.clock.now();
    let result = async {
        let Some(session) = session::current(&app, &headers, now).await? else {
            return Ok(see_other("/login"));
        };
        let Some(login) = &session.login else {
            return Ok(see_other("/login"));
        };
        let mut grant_lines = Vec::new();
        for g in grants::live_for_user(&app.db, &login.user_id).await? {
            let (client, is_agent) = client_label(&app, &g.client_id, now).await;
            grant_lines.push(GrantLine {
                id: g.id,
                client,
                is_agent,
                resources: g
                    .resources
                    .iter()
                    .map(|r| app.config.resource(r).map_or(r.clone(), |c| c.name.clone()))
                    .collect::<Vec<_>>()
                    .join(", "),
                scopes: g.scopes.join(" "),
                created: rfc3339(g.created_at),
                last_used: g.last_used_at.map_or("never".into(), rfc3339),
            });
        }
        let mut consent_lines = Vec::new();
        for c in consents::for_user(&app.db, &login.user_id).await? {
            let (client, _) = client_label(&app, &c.client_id, now).await;
            consent_lines.push(ConsentLine {
                client,
                client_id: c.client_id,
                resource: app
                    .config
                    .resource(&c.resource)
                    .map_or(c.resource.clone(), |r| r.name.clone()),
                resource_id: c.resource,
                scopes: c.scopes.join(" "),
            });
        }
        let notice = match query_param(query.as_deref(), "done").as_deref() {
            Some("revoked") => Some("Access revoked: every token of that grant is now invalid."),
            Some("forgotten") => Some("Consent forgotten: the application will ask you again."),
            _ => None,
        };
        let view = AccountView {
            issuer_host: issuer_host(&app),
            csrf: &session.csrf,
            username: &login.username,
            notice,
            grants: grant_lines,
            consents: consent_lines,
        };
        Ok(page(StatusCode::OK, &view))
    }
    .await;
    result.unwrap_or_else(|e: PageError| e.render(&app, &request_id))
}

/// A client's name and whether it is an AI agent (its id if it is gone).
async fn client_label(app: &AppState, id: &str, now: i64) -> (String, bool) {
    find_client(app, id, now)
        .await
        .map(|c| (c.name, c.client_type == ClientType::AiAgent))
        .unwrap_or_else(|_| (id.to_string(), false))
}

/// The signed-in session of a form POST, after its CSRF check.
async fn form_session(
    app: &AppState,
    headers: &HeaderMap,
    form: &Params,
    now: i64,
) -> Result<(Session, crate::store::sessions::Login), PageError> {
    let Some(session) = session::current(app, headers, now).await? else {
        return Err(PageError::csrf());
    };
    if !csrf_ok(&session, form.get("csrf")) {
        return Err(PageError::csrf());
    }
    let Some(login) = session.login.clone() else {
        return Err(PageError::csrf());
    };
    Ok((session, login))
}

/// POST /account/grants/revoke: revokes one of the user's grants and every
/// token issued from it, with its `grant.revoked` event, in one transaction.
pub async fn grant_revoke_post(
    State(app): State<AppState>,
    Extension(ip): Extension<ClientIp>,
    Extension(request_id): Extension<RequestId>,
    headers: HeaderMap,
    body: AxumBody,
) -> Response {
    let now = app.clock.now();
    let result = async {
        let form = read_form(&headers, body, &[]).await?;
        let (_, login) = form_session(&app, &headers, &form, now).await?;
        let id = form.get("grant_id").unwrap_or("");
        let grant = grants::get(&app.db, id).await?;
        let Some(grant) = grant.filter(|g| g.user_id == login.user_id) else {
            return Err(PageError::bad_request(
                "There is no such grant on your account.",
            ));
        };
        let mut tx = app.db.begin().await?;
        grants::revoke(&mut tx, &grant.id, now).await?;
        let mut event = browser_event(EventKind::GrantRevoked, &ip, &request_id, now);
        event.outcome = Outcome::Success;
        event.user = Some(login.username.clone());
        event.client_id = Some(grant.client_id.clone());
        event.client_type = Some(grant.client_type.clone());
        event.scope_granted = Some(grant.scopes.join(" "));
        event.reason = Some(format!("grant {} revoked by the user", grant.id));
        audit_store::append(&mut tx, &mut [Entry::event(event)]).await?;
        tx.commit().await?;
        Ok(see_other("/account?done=revoked"))
    }
    .await;
    result.unwrap_or_else(|e| e.render(&app, &request_id))
}

/// POST /account/consents/forget: forgets a remembered consent.
pub async fn consent_forget_post(
    State(app): State<AppState>,
    Extension(ip): Extension<ClientIp>,
    Extension(request_id): Extension<RequestId>,
    headers: HeaderMap,
    body: AxumBody,
) -> Response {
    let now = app.clock.now();
    let result = async {
        let form = read_form(&headers, body, &[]).await?;
        let (_, login) = form_session(&app, &headers, &form, now).await?;
        let client_id = form.get("client_id").unwrap_or("");
        let resource = form.get("resource").unwrap_or("");
        let mut tx = app.db.begin().await?;
        if !consents::forget(&mut tx, &login.user_id, client_id, resource).await? {
            return Err(PageError::bad_request(
                "There is no such consent on your account.",
            ));
        }
        let mut event = browser_event(EventKind::Consent, &ip, &request_id, now);
        event.outcome = Outcome::Success;
        event.user = Some(login.username.clone());
        event.client_id = Some(client_id.to_string());
        event.audience = Some(resource.to_string());
        event.reason = Some("remembered consent withdrawn by the user".into());
        audit_store::append(&mut tx, &mut [Entry::event(event)]).await?;
        tx.commit().await?;
        Ok(see_other("/account?done=forgotten"))
    }
    .await;
    result.unwrap_or_else(|e| e.render(&app, &request_id))
}

/// GET /static/mandate.css.
pub async fn stylesheet_get() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        super::views::STYLESHEET,
    )
        .into_response()
}
