//! `GET /authorize` (SPEC §4; RFC 6749 §4.1, RFC 7636, RFC 8707, RFC 9207,
//! RFC 8252 §7.3): validating the request, deciding what the user must do
//! next, and issuing the code. No HTTP types here.
//!
//! Order matters. Until the client and its redirect URI are known to be
//! good, every error is shown as a page and never redirects (RFC 6749
//! §4.1.2.1: "the authorization server SHOULD inform the resource owner of
//! the error and MUST NOT automatically redirect the user-agent to the invalid
//! redirection URI"). After that, errors redirect with `error`, `state` and
//! `iss`.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use url::Url;

use super::clients::is_loopback;
use super::error::{ErrorCode, OAuthError};
use super::form::{self, Params};
use super::types::{ClientOrigin, GrantType};
use crate::audit::{AuditEvent, EventKind, Outcome};
use crate::config::{Config, ACR_LEVELS};
use crate::secret;
use crate::state::AppState;
use crate::store::audit::{self as audit_store, Entry};
use crate::store::clients::{self, Client};
use crate::store::codes::{self, Code};
use crate::store::consents::{self, Consent};
use crate::store::grants::{self, Grant};
use crate::store::sessions::Login;
use crate::store::StoreError;

/// How long a code lives (SPEC §4).
pub const CODE_TTL_SECS: i64 = 60;
/// How long a validated request waits for login and consent.
pub const REQUEST_TTL_SECS: i64 = 15 * 60;
/// The level a password login reaches.
pub const ACR_PWD: &str = "urn:mandate:acr:pwd";

/// `prompt` values (OpenID Connect Core §3.1.2.1), as SPEC §4 honours them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Prompt {
    None,
    Login,
    Consent,
}

/// A validated authorization request, kept between `/authorize`, `/login`
/// and `/consent`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthRequest {
    pub client_id: String,
    pub redirect_uri: String,
    /// Whether the request named `redirect_uri` (the token request must then repeat it).
    pub redirect_uri_given: bool,
    pub state: Option<String>,
    pub code_challenge: String,
    /// The grant's resources (RFC 8707), each with the scopes asked of it.
    pub resources: Vec<ResourceScopes>,
    pub prompt: Vec<Prompt>,
    /// The strictest of `max_age` and the scopes' `max_auth_age_secs`.
    pub max_age: Option<i64>,
    /// The level the token must carry (`acr_values`, scopes' `min_acr`).
    pub required_acr: Option<String>,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceScopes {
    pub resource: String,
    pub scopes: Vec<String>,
}

impl AuthRequest {
    pub fn all_scopes(&self) -> Vec<String> {
        self.resources
            .iter()
            .flat_map(|r| r.scopes.iter().cloned())
            .collect()
    }

    pub fn resource_ids(&self) -> Vec<String> {
        self.resources.iter().map(|r| r.resource.clone()).collect()
    }
}

/// Why `/authorize` cannot go on.
#[derive(Debug)]
pub enum AuthorizeError {
    /// Shown to the user; never a redirect.
    Page(String),
    /// Sent back to the client's redirect URI.
    Redirect(ErrorRedirect),
}

/// An error redirect: `redirect_uri?error=…&error_description=…&state=…&iss=…`.
#[derive(Debug)]
pub struct ErrorRedirect {
    pub redirect_uri: String,
    pub state: Option<String>,
    pub error: OAuthError,
}

impl ErrorRedirect {
    pub fn url(&self, issuer: &str) -> String {
        let mut pairs = vec![
            ("error", self.error.code.as_str().to_string()),
            ("error_description", self.error.description.to_string()),
        ];
        if let Some(s) = &self.state {
            pairs.push(("state", s.clone()));
        }
        pairs.push(("iss", issuer.to_string()));
        with_query(&self.redirect_uri, &pairs)
    }
}

/// `uri` with `pairs` appended to its query (RFC 6749 §4.1.2: "retaining any
/// existing query component").
pub fn with_query(uri: &str, pairs: &[(&str, String)]) -> String {
    match Url::parse(uri) {
        Ok(mut url) => {
            {
                let mut q = url.query_pairs_mut();
                for (k, v) in pairs {
                    q.append_pair(k, v);
                }
            }
            url.to_string()
        }
        Err(_) => uri.to_string(),
    }
}

fn page(message: impl Into<String>) -> AuthorizeError {
    AuthorizeError::Page(message.into())
}

/// Looks up the client of a request: a registered one, or a Client ID
/// Metadata Document URL.
pub async fn find_client(app: &AppState, client_id: &str, now: i64) -> Result<Client, String> {
    if super::cimd::is_metadata_url(client_id) {
        return super::cimd::resolve(app, client_id, now)
            .await
            .map_err(|e| e.to_string());
    }
    match clients::get(&app.db, client_id).await {
        Ok(Some(c)) => Ok(c),
        Ok(None) => Err("This application is not known to this server (unknown client_id).".into()),
        Err(e) => {
            tracing::error!(error = %e, "client lookup failed");
            Err("The server could not look up this application; try again later.".into())
        }
    }
}

/// Validates the query of `GET /authorize`.
pub async fn validate(
    app: &AppState,
    query: &str,
    now: i64,
) -> Result<(Client, AuthRequest), AuthorizeError> {
    let params = form::parse(query.as_bytes(), &["resource"]).map_err(|e| {
        page(format!(
            "The authorization request is malformed: {}.",
            e.description
        ))
    })?;
    let Some(client_id) = params.get("client_id") else {
        return Err(page(
            "The authorization request names no client (client_id is missing).",
        ));
    };
    let client = find_client(app, client_id, now).await.map_err(page)?;
    let (redirect_uri, given) = match params.get("redirect_uri") {
        Some(uri) if redirect_uri_matches(&client, uri) => (uri.to_string(), true),
        Some(_) => {
            return Err(page(
                "The redirect URI of this request is not registered for this application, so \
                 the server will not send you back to it.",
            ))
        }
        None => match client.redirect_uris.as_slice() {
            [only] => (only.clone(), false),
            _ => {
                return Err(page(
                    "The authorization request must name its redirect_uri (this application \
                     has several or none).",
                ))
            }
        },
    };
    let state = params.get("state").map(str::to_owned);
    let redirect = |error: OAuthError| {
        AuthorizeError::Redirect(ErrorRedirect {
            redirect_uri: redirect_uri.clone(),
            state: state.clone(),
            error,
        })
    };
    let req = check(&app.config, &client, &params, &redirect_uri, given, now).map_err(redirect)?;
    Ok((client, req))
}

/// RFC 9700 §4.1.3: exact string match; for public (native) clients a
/// loopback IP redirect may use any port (RFC 8252 §7.3).
pub fn redirect_uri_matches(client: &Client, uri: &str) -> bool {
    if client.redirect_uris.iter().any(|r| r == uri) {
        return true;
    }
    if !client.public {
        return false;
    }
    let Ok(asked) = Url::parse(uri) else {
        return false;
    };
    if asked.scheme() != "http" || !is_loopback(&asked) {
        return false;
    }
    client.redirect_uris.iter().any(|r| {
        Url::parse(r).is_ok_and(|reg| {
            reg.scheme() == asked.scheme()
                && reg.host() == asked.host()
                && reg.path() == asked.path()
                && reg.query() == asked.query()
                && reg.fragment().is_none()
                && is_loopback(&reg)
        })
    })
}

/// The checks after the redirect URI is trusted; errors redirect.
fn check(
    config: &Config,
    client: &Client,
    params: &Params,
    redirect_uri: &str,
    redirect_uri_given: bool,
    now: i64,
) -> Result<AuthRequest, OAuthError> {
    if !client.allows_grant(GrantType::AuthorizationCode) {
        return Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "this client may not use the authorization code flow",
        ));
    }
    match params.get("response_type") {
        Some("code") => {}
        None => return Err(OAuthError::invalid_request("missing `response_type`")),
        Some(_) => {
            return Err(OAuthError::unsupported_response_type(
                "only response_type=code is supported",
            ))
        }
    }
    // SPEC §4: PKCE with S256 for every client; `plain` and no challenge are refused.
    let Some(challenge) = params.get("code_challenge") else {
        return Err(OAuthError::invalid_request(
            "PKCE is required: send code_challenge with code_challenge_method=S256",
        ));
    };
    match params.get("code_challenge_method") {
        Some("S256") => {}
        Some("plain") => {
            return Err(OAuthError::invalid_request(
                "code_challenge_method plain is not allowed; use S256",
            ))
        }
        None => {
            return Err(OAuthError::invalid_request(
                "code_challenge_method is required and must be S256",
            ))
        }
        Some(_) => {
            return Err(OAuthError::invalid_request(
                "code_challenge_method must be S256",
            ))
        }
    }
    if !valid_pkce_value(challenge) {
        return Err(OAuthError::invalid_request(
            "code_challenge must be 43 to 128 characters of [A-Za-z0-9-._~]",
        ));
    }
    let prompt = parse_prompt(params.get("prompt"))?;
    let mut max_age = match params.get("max_age") {
        None => None,
        Some(v) => match v.parse::<i64>() {
            Ok(n) if n >= 0 => Some(n),
            _ => {
                return Err(OAuthError::invalid_request(
                    "max_age must be a non-negative integer",
                ))
            }
        },
    };
    if params.get("request").is_some() || params.get("request_uri").is_some() {
        return Err(OAuthError::new(
            ErrorCode::InvalidRequest,
            "request objects (request, request_uri) are not supported",
        ));
    }
    let resources = resolve_grant(config, client, &params.all("resource"), params.get("scope"))?;
    let mut required_acr = strongest_known(params.get("acr_values"));
    for r in &resources {
        for name in &r.scopes {
            if let Some((_, scope)) = config.scope(name) {
                if let Some(acr) = &scope.min_acr {
                    required_acr = Some(stronger(required_acr.as_deref(), acr).to_string());
                }
                if let Some(age) = scope.max_auth_age_secs {
                    let age = age as i64;
                    max_age = Some(max_age.map_or(age, |m| m.min(age)));
                }
            }
        }
    }
    Ok(AuthRequest {
        client_id: client.client_id.clone(),
        redirect_uri: redirect_uri.to_string(),
        redirect_uri_given,
        state: params.get("state").map(str::to_owned),
        code_challenge: challenge.to_string(),
        resources,
        prompt,
        max_age,
        required_acr,
        created_at: now,
    })
}

/// RFC 7636 §4.1: `code_verifier` and (S256) `code_challenge` are
/// 43 to 128 characters of `[A-Z] / [a-z] / [0-9] / "-" / "." / "_" / "~"`.
pub fn valid_pkce_value(v: &str) -> bool {
    (43..=128).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

/// RFC 7636 §4.6: `BASE64URL(SHA256(ASCII(code_verifier))) == code_challenge`,
/// compared in constant time.
pub fn pkce_matches(verifier: &str, challenge: &str) -> bool {
    use base64::Engine;
    let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(Sha256::digest(verifier.as_bytes()));
    subtle::ConstantTimeEq::ct_eq(computed.as_bytes(), challenge.as_bytes()).into()
}

fn parse_prompt(value: Option<&str>) -> Result<Vec<Prompt>, OAuthError> {
    let mut out = Vec::new();
    for p in value.unwrap_or("").split(' ').filter(|p| !p.is_empty()) {
        let v = match p {
            "none" => Prompt::None,
            "login" => Prompt::Login,
            "consent" => Prompt::Consent,
            other => {
                return Err(OAuthError::invalid_request(format!(
                    "prompt `{other}` is not supported (use none, login or consent)"
                )))
            }
        };
        if !out.contains(&v) {
            out.push(v);
        }
    }
    if out.contains(&Prompt::None) && out.len() > 1 {
        return Err(OAuthError::invalid_request(
            "prompt=none cannot be combined with other values",
        ));
    }
    Ok(out)
}

/// The rank of an ACR level (SPEC §6), `None` for one mandate does not know.
pub fn acr_rank(acr: &str) -> Option<usize> {
    ACR_LEVELS.iter().position(|l| *l == acr)
}

fn stronger<'a>(a: Option<&'a str>, b: &'a str) -> &'a str {
    match a {
        Some(a) if acr_rank(a) >= acr_rank(b) => a,
        _ => b,
    }
}

/// `acr_values` asks for any of the listed levels; the weakest known one is
/// what must be met at least (unknown values are ignored).
fn strongest_known(acr_values: Option<&str>) -> Option<String> {
    acr_values?
        .split(' ')
        .filter(|v| acr_rank(v).is_some())
        .min_by_key(|v| acr_rank(v))
        .map(str::to_owned)
}

/// The grant's resources and their scopes (SPEC §3, §4): every named
/// resource must be known and permitted; every scope must be known, belong
/// to one of those resources, and not be approval-only. Without `resource`,
/// the resources are those of the requested scopes (or the client's single
/// one). Without `scope`, a resource gets its default scopes.
pub fn resolve_grant(
    config: &Config,
    client: &Client,
    requested_resources: &[&str],
    scope: Option<&str>,
) -> Result<Vec<ResourceScopes>, OAuthError> {
    let operator = client.origin == ClientOrigin::Operator;
    let permitted = |id: &str| !operator || client.resources.iter().any(|r| r == id);
    let scopes = match scope {
        Some(s) => super::scope::parse_scope(s)?,
        None => Vec::new(),
    };
    let mut resources: Vec<String> = Vec::new();
    for id in requested_resources {
        super::scope::check_resource_text(id)?;
        if config.resource(id).is_none() {
            return Err(OAuthError::invalid_target(format!(
                "unknown resource `{id}`"
            )));
        }
        if !permitted(id) {
            return Err(OAuthError::invalid_target(format!(
                "this client may not request tokens for `{id}`"
            )));
        }
        if !resources.iter().any(|r| r == id) {
            resources.push(id.to_string());
        }
    }
    for name in &scopes {
        let Some((owner, s)) = config.scope(name) else {
            return Err(OAuthError::invalid_scope(format!("unknown scope `{name}`")));
        };
        if s.approval {
            return Err(OAuthError::invalid_scope(format!(
                "scope `{name}` needs a human approval; request it with CIBA (/bc-authorize)"
            )));
        }
        if operator && !client.scopes.iter().any(|c| c == name) {
            return Err(OAuthError::invalid_scope(format!(
                "this client is not registered for scope `{name}`"
            )));
        }
        if requested_resources.is_empty() {
            if !permitted(&owner.id) {
                return Err(OAuthError::invalid_scope(format!(
                    "scope `{name}` belongs to `{}`, which this client may not use",
                    owner.id
                )));
            }
            if !resources.contains(&owner.id) {
                resources.push(owner.id.clone());
            }
        } else if !resources.contains(&owner.id) {
            return Err(OAuthError::invalid_scope(format!(
                "scope `{name}` belongs to `{}`, which is not among the requested resources",
                owner.id
            )));
        }
    }
    if resources.is_empty() {
        match (operator, client.resources.as_slice()) {
            (true, [only]) => resources.push(only.clone()),
            _ => return Err(OAuthError::invalid_scope(
                "name the resource (`resource`) or the scopes (`scope`) this authorization is for",
            )),
        }
    }
    let mut out = Vec::new();
    for id in resources {
        let Some(resource) = config.resource(&id) else {
            return Err(OAuthError::invalid_target(format!(
                "unknown resource `{id}`"
            )));
        };
        let mine: Vec<String> = if scopes.is_empty() {
            // Defaults: what the client may use there, without approval or
            // step-up (a default never demands more of the user).
            resource
                .scopes
                .iter()
                .filter(|s| !s.approval && s.min_acr.is_none() && s.max_auth_age_secs.is_none())
                .filter(|s| !operator || client.scopes.contains(&s.name))
                .map(|s| s.name.clone())
                .collect()
        } else {
            scopes
                .iter()
                .filter(|n| resource.scopes.iter().any(|s| &s.name == *n))
                .cloned()
                .collect()
        };
        if mine.is_empty() {
            return Err(OAuthError::invalid_scope(format!(
                "no scope requested (or available by default) for `{id}`"
            )));
        }
        out.push(ResourceScopes {
            resource: id,
            scopes: mine,
        });
    }
    Ok(out)
}

/// What the user must do next for a validated request.
#[derive(Debug)]
pub enum Next {
    Login,
    Consent,
    /// Everything is in place: issue the code with what was remembered.
    Issue,
}

/// Decides the next step for `req` given the session's login and the
/// user's remembered consents (pure: unit-tested).
pub fn next_step(
    req: &AuthRequest,
    login: Option<&Login>,
    remembered: &[Consent],
    now: i64,
) -> Result<Next, OAuthError> {
    let none = req.prompt.contains(&Prompt::None);
    let fresh_login = login.is_some_and(|l| l.auth_time >= req.created_at);
    let needs_login = match login {
        None => true,
        Some(l) => {
            (req.prompt.contains(&Prompt::Login) && !fresh_login)
                || req.max_age.is_some_and(|m| now - l.auth_time > m)
        }
    };
    if needs_login {
        if none {
            return Err(OAuthError::login_required(
                "the user must sign in, and prompt=none forbids asking",
            ));
        }
        return Ok(Next::Login);
    }
    if let (Some(required), Some(l)) = (&req.required_acr, login) {
        if acr_rank(&l.acr) < acr_rank(required) {
            if none {
                return Err(OAuthError::interaction_required(format!(
                    "this request needs authentication at `{required}`, and prompt=none forbids asking"
                )));
            }
            // Step-up factors (TOTP, passkeys) are not enrolled anywhere yet:
            // never issue a weaker token than asked (SPEC §6).
            return Err(OAuthError::access_denied(format!(
                "this request needs authentication at `{required}`, and this account has no \
                 second factor enrolled"
            )));
        }
    }
    let user = login.map(|l| l.user_id.as_str()).unwrap_or_default();
    let covered = req.resources.iter().all(|r| {
        remembered.iter().any(|c| {
            c.user_id == user
                && c.client_id == req.client_id
                && c.resource == r.resource
                && r.scopes.iter().all(|s| c.scopes.contains(s))
        })
    });
    if req.prompt.contains(&Prompt::Consent) || !covered {
        if none {
            return Err(OAuthError::consent_required(
                "the user has not consented to this, and prompt=none forbids asking",
            ));
        }
        return Ok(Next::Consent);
    }
    Ok(Next::Issue)
}

/// The remembered consents of the user of `login`.
pub async fn remembered(app: &AppState, login: Option<&Login>) -> Result<Vec<Consent>, StoreError> {
    match login {
        Some(l) => consents::for_user(&app.db, &l.user_id).await,
        None => Ok(Vec::new()),
    }
}

/// The audit context of a browser decision.
pub fn event(kind: EventKind, outcome: Outcome, client: &Client, now: i64) -> AuditEvent {
    let mut e = AuditEvent::new(kind, outcome, now);
    e.client_id = Some(client.client_id.clone());
    e.client_type = Some(client.client_type.as_str().into());
    e
}

/// Creates the grant and its code, remembers the consent when `remember`,
/// and records the `consent` event — in one transaction. Returns the success
/// redirect (`code`, `state`, `iss`).
#[allow(clippy::too_many_arguments)]
pub async fn issue_code(
    app: &AppState,
    client: &Client,
    req: &AuthRequest,
    granted: &[ResourceScopes],
    login: &Login,
    remember: bool,
    mut audit: AuditEvent,
    now: i64,
) -> Result<String, StoreError> {
    let grant = Grant {
        id: uuid::Uuid::now_v7().simple().to_string(),
        user_id: login.user_id.clone(),
        username: login.username.clone(),
        client_id: client.client_id.clone(),
        client_type: client.client_type.as_str().into(),
        resources: granted.iter().map(|r| r.resource.clone()).collect(),
        scopes: granted
            .iter()
            .flat_map(|r| r.scopes.iter().cloned())
            .collect(),
        acr: Some(login.acr.clone()),
        amr: login.amr.clone(),
        auth_time: Some(login.auth_time),
        created_at: now,
        last_used_at: None,
        revoked_at: None,
    };
    let code = secret::random_token();
    let mut tx = app.db.begin().await?;
    grants::insert(&mut tx, &grant).await?;
    codes::insert(
        &mut tx,
        &Code {
            hash: secret::hash(&code),
            grant_id: grant.id.clone(),
            client_id: client.client_id.clone(),
            redirect_uri: req.redirect_uri.clone(),
            redirect_uri_given: req.redirect_uri_given as i64,
            code_challenge: req.code_challenge.clone(),
            created_at: now,
            expires_at: now + CODE_TTL_SECS,
            used_at: None,
        },
    )
    .await?;
    if remember {
        for r in granted {
            consents::remember(
                &mut tx,
                &Consent {
                    user_id: login.user_id.clone(),
                    client_id: client.client_id.clone(),
                    resource: r.resource.clone(),
                    scopes: r.scopes.clone(),
                    created_at: now,
                    updated_at: now,
                },
            )
            .await?;
        }
    }
    audit.user = Some(login.username.clone());
    audit.audience = Some(grant.resources.join(" "));
    audit.scope_requested = Some(req.all_scopes().join(" "));
    audit.scope_granted = Some(grant.scopes.join(" "));
    audit.acr = Some(login.acr.clone());
    audit_store::append(&mut tx, &mut [Entry::event(audit)]).await?;
    tx.commit().await?;
    let mut pairs = vec![("code", code)];
    if let Some(s) = &req.state {
        pairs.push(("state", s.clone()));
    }
    pairs.push(("iss", app.config.issuer.clone()));
    Ok(with_query(&req.redirect_uri, &pairs))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::oauth::types::{AuthMethod, ClientType};
    use std::collections::BTreeMap;

    const T0: i64 = 1_800_000_000;

    fn config() -> Config {
        Config::from_toml(
            r#"
            [[resources]]
            id = "https://api.example.com"
            [[resources.scopes]]
            name = "invoices:read"
            [[resources.scopes]]
            name = "invoices:write"
            min_acr = "urn:mandate:acr:mfa"
            [[resources.scopes]]
            name = "payments:send"
            approval = true
            [[resources]]
            id = "https://files.example.com"
            [[resources.scopes]]
            name = "files:read"
            "#,
            &BTreeMap::new(),
        )
        .unwrap()
    }

    /// A client with one resource, one scope and two redirect URIs (also
    /// used by other modules' tests).
    pub(crate) fn client(origin: ClientOrigin, public: bool) -> Client {
        Client {
            client_id: "c".into(),
            name: "C".into(),
            client_type: ClientType::AiAgent,
            public,
            secret_hash: None,
            origin,
            token_endpoint_auth_method: AuthMethod::None,
            grant_types: vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
            redirect_uris: vec![
                "http://127.0.0.1:8000/cb".into(),
                "https://app.example.com/cb?x=1".into(),
            ],
            resources: vec!["https://api.example.com".into()],
            scopes: vec!["invoices:read".into()],
            owns_resources: vec![],
            exchange_to: vec![],
            dpop_bound_access_tokens: false,
            jwks_uri: None,
            jwks: None,
            metadata: None,
            created_at: 0,
            updated_at: 0,
        }
    }

    //  * exact match always
    //  * any loopback port for a public client only
    //  * a different path, host or scheme never
    #[test]
    fn redirect_uris_match_exactly_or_by_loopback_port() {
        let public = client(ClientOrigin::Dynamic, true);
        let confidential = client(ClientOrigin::Operator, false);
        for c in [&public, &confidential] {
            assert!(redirect_uri_matches(c, "http://127.0.0.1:8000/cb"));
            assert!(redirect_uri_matches(c, "https://app.example.com/cb?x=1"));
            assert!(!redirect_uri_matches(c, "https://app.example.com/cb"));
            assert!(!redirect_uri_matches(
                c,
                "https://app.example.com/cb?x=1&y=2"
            ));
            assert!(!redirect_uri_matches(c, "http://127.0.0.1:8000/cb/../evil"));
        }
        assert!(redirect_uri_matches(&public, "http://127.0.0.1:51234/cb"));
        assert!(!redirect_uri_matches(
            &confidential,
            "http://127.0.0.1:51234/cb"
        ));
        assert!(!redirect_uri_matches(
            &public,
            "http://127.0.0.1:51234/other"
        ));
        assert!(!redirect_uri_matches(&public, "http://[::1]:51234/cb"));
        assert!(!redirect_uri_matches(
            &public,
            "https://app.example.com:444/cb?x=1"
        ));
    }

    #[test]
    fn pkce_s256_verifies() {
        // RFC 7636 Appendix B.
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert!(pkce_matches(
            verifier,
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
        assert!(!pkce_matches(
            verifier,
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cN"
        ));
        assert!(valid_pkce_value(verifier));
        assert!(!valid_pkce_value("short"));
        assert!(!valid_pkce_value(&"a".repeat(129)));
        assert!(!valid_pkce_value(&format!("{}+", "a".repeat(43))));
    }

    fn params(q: &str) -> Params {
        form::parse(q.as_bytes(), &["resource"]).unwrap()
    }

    const GOOD: &str = "response_type=code&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256";

    //  * PKCE missing, plain, or another method
    //  * response_type other than code
    //  * approval-only, unknown, foreign scopes
    //  * prompt=none with another value
    #[test]
    fn bad_requests_are_refused_with_their_code() {
        let cfg = config();
        let c = client(ClientOrigin::Dynamic, true);
        let code = |q: &str| {
            check(&cfg, &c, &params(q), "http://127.0.0.1:8000/cb", true, T0)
                .unwrap_err()
                .code
        };
        let base = "response_type=code&scope=invoices:read";
        assert_eq!(code(base), ErrorCode::InvalidRequest);
        assert_eq!(code(&format!("{base}&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=plain")), ErrorCode::InvalidRequest);
        assert_eq!(
            code(&format!(
                "{base}&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
            )),
            ErrorCode::InvalidRequest
        );
        assert_eq!(
            code(&GOOD.replace("response_type=code", "response_type=token")),
            ErrorCode::UnsupportedResponseType
        );
        assert_eq!(
            code(&format!("{GOOD}&scope=payments:send")),
            ErrorCode::InvalidScope
        );
        assert_eq!(code(&format!("{GOOD}&scope=nope")), ErrorCode::InvalidScope);
        assert_eq!(
            code(&format!(
                "{GOOD}&scope=files:read&resource=https%3A%2F%2Fapi.example.com"
            )),
            ErrorCode::InvalidScope
        );
        assert_eq!(
            code(&format!("{GOOD}&scope=invoices:read&prompt=none+login")),
            ErrorCode::InvalidRequest
        );
        assert_eq!(
            code(&format!("{GOOD}&resource=https%3A%2F%2Fnope")),
            ErrorCode::InvalidTarget
        );
    }

    #[test]
    fn resources_follow_scopes_and_repeat() {
        let cfg = config();
        let c = client(ClientOrigin::Dynamic, true);
        let req = check(
            &cfg,
            &c,
            &params(&format!("{GOOD}&scope=invoices:read+files:read")),
            "http://127.0.0.1:8000/cb",
            true,
            T0,
        )
        .unwrap();
        assert_eq!(
            req.resource_ids(),
            vec!["https://api.example.com", "https://files.example.com"]
        );
        let req = check(
            &cfg,
            &c,
            &params(&format!("{GOOD}&resource=https%3A%2F%2Fapi.example.com&resource=https%3A%2F%2Ffiles.example.com")),
            "http://127.0.0.1:8000/cb",
            true,
            T0,
        )
        .unwrap();
        // Defaults leave out step-up and approval scopes.
        assert_eq!(req.resources[0].scopes, vec!["invoices:read"]);
        assert_eq!(req.resources[1].scopes, vec!["files:read"]);
        let req = check(
            &cfg,
            &c,
            &params(&format!("{GOOD}&scope=invoices:write")),
            "http://127.0.0.1:8000/cb",
            true,
            T0,
        )
        .unwrap();
        assert_eq!(req.required_acr.as_deref(), Some("urn:mandate:acr:mfa"));
    }

    fn login(auth_time: i64) -> Login {
        Login {
            user_id: "u1".into(),
            username: "alice".into(),
            auth_time,
            acr: ACR_PWD.into(),
            amr: vec!["pwd".into()],
        }
    }

    fn request(prompt: &[Prompt], max_age: Option<i64>) -> AuthRequest {
        AuthRequest {
            client_id: "c".into(),
            redirect_uri: "http://127.0.0.1:8000/cb".into(),
            redirect_uri_given: true,
            state: None,
            code_challenge: "x".into(),
            resources: vec![ResourceScopes {
                resource: "https://api.example.com".into(),
                scopes: vec!["invoices:read".into()],
            }],
            prompt: prompt.to_vec(),
            max_age,
            required_acr: None,
            created_at: T0,
        }
    }

    fn consent(scopes: &[&str]) -> Consent {
        Consent {
            user_id: "u1".into(),
            client_id: "c".into(),
            resource: "https://api.example.com".into(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            created_at: 0,
            updated_at: 0,
        }
    }

    //  * no session: login (prompt=none: login_required)
    //  * no consent: consent (prompt=none: consent_required)
    //  * remembered consent covering the scopes: issue at once
    //  * scopes grown beyond the remembered ones: ask again
    //  * prompt=login / max_age force a fresh login
    //  * a level above the session's: never a weaker token
    #[test]
    fn next_step_follows_session_consent_and_prompt() {
        let l = login(T0 - 100);
        let r = request(&[], None);
        assert!(matches!(next_step(&r, None, &[], T0), Ok(Next::Login)));
        assert_eq!(
            next_step(&request(&[Prompt::None], None), None, &[], T0)
                .unwrap_err()
                .code,
            ErrorCode::LoginRequired
        );
        assert!(matches!(
            next_step(&r, Some(&l), &[], T0),
            Ok(Next::Consent)
        ));
        assert_eq!(
            next_step(&request(&[Prompt::None], None), Some(&l), &[], T0)
                .unwrap_err()
                .code,
            ErrorCode::ConsentRequired
        );
        let remembered = [consent(&["invoices:read", "files:read"])];
        assert!(matches!(
            next_step(&r, Some(&l), &remembered, T0),
            Ok(Next::Issue)
        ));
        let mut grown = request(&[], None);
        grown.resources[0].scopes.push("invoices:admin".into());
        assert!(matches!(
            next_step(&grown, Some(&l), &remembered, T0),
            Ok(Next::Consent)
        ));
        assert!(matches!(
            next_step(
                &request(&[Prompt::Consent], None),
                Some(&l),
                &remembered,
                T0
            ),
            Ok(Next::Consent)
        ));
        assert!(matches!(
            next_step(&request(&[Prompt::Login], None), Some(&l), &remembered, T0),
            Ok(Next::Login)
        ));
        assert!(matches!(
            next_step(
                &request(&[Prompt::Login], None),
                Some(&login(T0)),
                &remembered,
                T0
            ),
            Ok(Next::Issue)
        ));
        assert!(matches!(
            next_step(&request(&[], Some(50)), Some(&l), &remembered, T0),
            Ok(Next::Login)
        ));
        let mut strong = request(&[], None);
        strong.required_acr = Some("urn:mandate:acr:mfa".into());
        assert_eq!(
            next_step(&strong, Some(&l), &remembered, T0)
                .unwrap_err()
                .code,
            ErrorCode::AccessDenied
        );
    }

    #[test]
    fn error_redirect_keeps_the_query_and_adds_state_and_iss() {
        let r = ErrorRedirect {
            redirect_uri: "https://app.example.com/cb?x=1".into(),
            state: Some("s 1".into()),
            error: OAuthError::access_denied("the user said no"),
        };
        assert_eq!(
            r.url("https://auth.example.com"),
            "https://app.example.com/cb?x=1&error=access_denied&error_description=the+user+said+no&state=s+1&iss=https%3A%2F%2Fauth.example.com"
        );
    }
}
