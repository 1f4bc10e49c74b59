//! The browser pages (askama templates in `templates/`), one `*View` per
//! template, and the headers every page carries. Pages work without
//! JavaScript; labels are real `<label for>` elements (SPEC §4).

use askama::Template;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// `Content-Security-Policy` of every page: nothing but our own stylesheet,
/// never framed (clickjacking on the consent page). `form-action` is left
/// out on purpose: browsers apply it to the redirect after a form POST, and
/// the consent form's answer is a redirect to the client.
pub const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; \
    base-uri 'none'; frame-ancestors 'none'";

#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorView<'a> {
    pub issuer_host: &'a str,
    pub title: &'a str,
    pub message: &'a str,
    pub request_id: &'a str,
}

#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginView<'a> {
    pub issuer_host: &'a str,
    pub csrf: &'a str,
    pub req: &'a str,
    pub client_name: Option<&'a str>,
    pub username: &'a str,
    pub error: Option<&'a str>,
}

pub struct ScopeLine {
    pub name: String,
    pub description: String,
    /// "Needs a second factor", "Needs your approval each time", …
    pub mark: Option<String>,
}

pub struct ResourceBlock {
    pub index: usize,
    pub id: String,
    pub name: String,
    pub scopes: Vec<ScopeLine>,
}

#[derive(Template)]
#[template(path = "consent.html")]
pub struct ConsentView<'a> {
    pub issuer_host: &'a str,
    pub csrf: &'a str,
    pub req: &'a str,
    pub client_name: &'a str,
    pub is_agent: bool,
    pub username: &'a str,
    /// For a Client ID Metadata Document client: the document URL's host.
    pub document_host: Option<String>,
    /// The host of the redirect URI in use.
    pub redirect_host: String,
    pub resources: Vec<ResourceBlock>,
}

pub struct GrantLine {
    pub id: String,
    pub client: String,
    pub is_agent: bool,
    pub resources: String,
    pub scopes: String,
    pub created: String,
    pub last_used: String,
}

pub struct ConsentLine {
    pub client: String,
    pub client_id: String,
    pub resource: String,
    pub resource_id: String,
    pub scopes: String,
}

#[derive(Template)]
#[template(path = "account.html")]
pub struct AccountView<'a> {
    pub issuer_host: &'a str,
    pub csrf: &'a str,
    pub username: &'a str,
    pub notice: Option<&'a str>,
    pub grants: Vec<GrantLine>,
    pub consents: Vec<ConsentLine>,
}

#[derive(Template)]
#[template(path = "logout.html")]
pub struct LogoutView<'a> {
    pub issuer_host: &'a str,
    pub csrf: &'a str,
    pub signed_out: bool,
}

/// Renders `view` as an HTML page with `status` and the page headers.
pub fn page(status: StatusCode, view: &impl Template) -> Response {
    match view.render() {
        Ok(html) => with_page_headers((status, html).into_response()),
        Err(e) => {
            tracing::error!(error = %e, "could not render a page");
            with_page_headers(
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "The page could not be shown.".to_string(),
                )
                    .into_response(),
            )
        }
    }
}

/// Adds the headers of every browser page (and of redirects from them).
pub fn with_page_headers(mut resp: Response) -> Response {
    let redirect = resp.status().is_redirection();
    let h = resp.headers_mut();
    if !redirect {
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
    }
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// The stylesheet, served at `/static/mandate.css`.
pub const STYLESHEET: &str = include_str!("../../templates/mandate.css");
