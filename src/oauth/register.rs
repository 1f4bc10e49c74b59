//! Dynamic client registration: `POST /register` (RFC 7591, SPEC §3).
//!
//! The mode comes from `[registration] mode`: `open` (anyone), `token` (an
//! initial access token from `mandate registration-token create`, single
//! use, RFC 7591 §3) or `closed`. A dynamically registered client may use
//! only `authorization_code` and `refresh_token` — user consent is its gate —
//! and never `client_credentials`, token exchange or CIBA (SPEC §3: "those are
//! for operator-created clients"). Metadata mandate does not use is kept
//! in `Client.metadata`, never an error (RFC 7591 §2).
//!
//! Every decision is audited (`client.registered`, success or failure): a
//! registration commits together with its event and, in mode `token`, with
//! the redemption of its initial access token. No secret or token ever
//! enters the audit trail. No HTTP types here; `http::register` adapts.

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};

use super::client_auth::AuthHeader;
use super::clients::check_redirect_uri;
use super::error::{OAuthError, StatusHint};
use super::token::Body;
use super::types::{AuthMethod, ClientOrigin, ClientType, GrantType};
use crate::audit::{AuditEvent, EventKind, Outcome};
use crate::config::{valid_scope_token, Config, RegistrationMode};
use crate::secret;
use crate::state::AppState;
use crate::store::audit::{self as audit_store, Entry};
use crate::store::clients::{self, Client};
use crate::store::registration_tokens;

/// Largest accepted registration body.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Longest accepted `client_name`, in characters.
pub const MAX_CLIENT_NAME_CHARS: usize = 200;

/// Longest `reason` written to the audit trail for a refusal, in characters.
const MAX_AUDIT_REASON_CHARS: usize = 512;

/// The name of a client that registered none.
pub const DEFAULT_CLIENT_NAME: &str = "Unnamed client";

/// Members the server assigns (RFC 7591 §3.2.1, RFC 7592): never taken from
/// the request, never stored from it (a `client_secret` sent by the caller
/// must not sit in the database in clear).
const SERVER_ASSIGNED: [&str; 6] = [
    "client_id",
    "client_secret",
    "client_id_issued_at",
    "client_secret_expires_at",
    "registration_access_token",
    "registration_client_uri",
];

/// What the grants allowed to a dynamic client are called in errors.
const ALLOWED_GRANTS: &str = "authorization_code and refresh_token";

/// A registration request as the HTTP layer hands it over.
pub struct RegisterRequest {
    pub authorization: AuthHeader,
    pub content_type: Option<String>,
    pub body: Body,
    /// The client address (after `trusted_proxies`), for the audit trail.
    pub ip: Option<String>,
    pub request_id: Option<String>,
}

/// The RFC 7591 §3.2.1 answer: the registered metadata, with `client_id`
/// and (confidential clients) `client_secret`. Deliberately not `Debug`: it
/// holds the secret.
pub struct RegisterResponse {
    pub body: Value,
}

/// A valid registration, as the request asked for it (defaults applied).
#[derive(Debug, Clone, PartialEq)]
pub struct Registration {
    pub client_name: String,
    pub redirect_uris: Vec<String>,
    pub grant_types: Vec<GrantType>,
    pub auth_method: AuthMethod,
    pub client_type: ClientType,
    /// The registered scopes, space-separated, when the request named any.
    pub scope: Option<String>,
    /// The request's metadata object without the server-assigned members.
    pub metadata: Map<String, Value>,
}

impl Registration {
    /// A public client: `token_endpoint_auth_method` `none`, no secret, PKCE.
    pub fn is_public(&self) -> bool {
        self.auth_method == AuthMethod::None
    }
}

/// Handles one registration. The audit event is durable before this
/// returns; if it cannot be written nothing is registered.
pub async fn register(
    app: &AppState,
    req: RegisterRequest,
    now: i64,
) -> Result<RegisterResponse, OAuthError> {
    let mut audit = AuditEvent::new(EventKind::ClientRegistered, Outcome::Failure, now);
    audit.ip = req.ip.clone();
    audit.request_id = req.request_id.clone();
    match decide(app, &req, now).await {
        Ok(accepted) => complete(app, audit, accepted, now).await,
        Err(error) => Err(refuse(app, audit, error).await),
    }
}

/// A registration that passed every check, waiting to be stored.
struct Accepted {
    registration: Registration,
    /// The hash of the initial access token to spend (mode `token`).
    token_hash: Option<String>,
}

/// Every check that needs no write: the mode, the initial access token
/// (looked up, not yet spent), the body and its metadata.
async fn decide(app: &AppState, req: &RegisterRequest, now: i64) -> Result<Accepted, OAuthError> {
    let token_hash = match app.config.registration.mode {
        RegistrationMode::Closed => {
            return Err(
                OAuthError::access_denied("dynamic client registration is disabled")
                    .with_status(StatusHint::Forbidden),
            )
        }
        RegistrationMode::Open => None,
        RegistrationMode::Token => {
            let hash = secret::hash(bearer(&req.authorization)?);
            if !registration_tokens::is_usable(&app.db, &hash, now).await? {
                return Err(unusable_token());
            }
            Some(hash)
        }
    };
    let bytes = match &req.body {
        Body::Bytes(b) => b,
        Body::TooLarge => {
            return Err(OAuthError::invalid_client_metadata(format!(
                "the request body is larger than {MAX_BODY_BYTES} bytes"
            ))
            .with_status(StatusHint::PayloadTooLarge))
        }
        Body::Unreadable => {
            return Err(OAuthError::invalid_client_metadata(
                "the request body could not be read",
            ))
        }
    };
    let metadata = parse_metadata(req.content_type.as_deref(), bytes)?;
    let registration = validate(&app.config, metadata)?;
    Ok(Accepted {
        registration,
        token_hash,
    })
}

/// Stores the client, spends the initial access token and appends the
/// event in one transaction, then builds the answer.
async fn complete(
    app: &AppState,
    mut audit: AuditEvent,
    accepted: Accepted,
    now: i64,
) -> Result<RegisterResponse, OAuthError> {
    let Accepted {
        registration,
        token_hash,
    } = accepted;
    let (client, client_secret) = new_client(&registration, now);
    let mut tx = app.db.begin().await?;
    if let Some(hash) = &token_hash {
        // The guarded UPDATE decides: of two requests racing with one
        // token (on any instances), exactly one spends it.
        if !registration_tokens::redeem(&mut tx, hash, now).await? {
            drop(tx);
            return Err(refuse(app, audit, unusable_token()).await);
        }
    }
    clients::insert(&mut tx, &client).await?;
    audit.outcome = Outcome::Success;
    audit.client_id = Some(client.client_id.clone());
    audit.client_type = Some(client.client_type.as_str().into());
    audit_store::append(&mut tx, &mut [Entry::event(audit)]).await?;
    tx.commit().await?;
    Ok(RegisterResponse {
        body: response_body(&registration, &client, client_secret.as_ref()),
    })
}

/// Records a refusal and returns its error. If even the refusal cannot be
/// written the request is refused all the same (and the operator told).
async fn refuse(app: &AppState, mut audit: AuditEvent, error: OAuthError) -> OAuthError {
    audit.outcome = Outcome::Failure;
    // The description may quote the caller's metadata (escaped already);
    // the audit trail keeps a bounded prefix.
    let reason = format!("{}: {}", error.code.as_str(), error.description);
    audit.reason = Some(reason.chars().take(MAX_AUDIT_REASON_CHARS).collect());
    if let Err(e) = app.audit.record(Entry::event(audit)).await {
        tracing::error!(error = %e, "could not record client.registered");
    }
    error
}

fn unusable_token() -> OAuthError {
    OAuthError::invalid_token("the initial access token is unknown, expired or already used")
}

/// The initial access token of an `Authorization: Bearer` header (RFC 6750
/// §2.1). Its absence is `invalid_token` too: mode `token` admits nobody
/// without one.
fn bearer(header: &AuthHeader) -> Result<&str, OAuthError> {
    let text = match header {
        AuthHeader::Absent => {
            return Err(OAuthError::invalid_token(
                "an initial access token is required: send `Authorization: Bearer <token>`",
            ))
        }
        AuthHeader::Repeated => {
            return Err(OAuthError::invalid_token(
                "send one Authorization header, not several",
            ))
        }
        AuthHeader::NotText => {
            return Err(OAuthError::invalid_token("malformed Authorization header"))
        }
        AuthHeader::Text(t) => t.as_str(),
    };
    let (scheme, token) = text.split_once(' ').unwrap_or((text, ""));
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(OAuthError::invalid_token(
            "send the initial access token as `Authorization: Bearer <token>`",
        ));
    }
    Ok(token)
}

/// The metadata object of a registration body (RFC 7591 §3.1: "the client
/// sends an HTTP POST ... with a content type of `application/json`").
pub fn parse_metadata(
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Map<String, Value>, OAuthError> {
    let json = content_type.is_some_and(|ct| {
        let mut parts = ct.split(';').map(str::trim);
        let essence = parts.next().unwrap_or("");
        essence.eq_ignore_ascii_case("application/json")
            && parts.all(|p| {
                p.is_empty()
                    || p.eq_ignore_ascii_case("charset=utf-8")
                    || p.eq_ignore_ascii_case("charset=\"utf-8\"")
            })
    });
    if !json {
        return Err(OAuthError::invalid_client_metadata(
            "the body must be application/json",
        ));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(OAuthError::invalid_client_metadata(
            "the body must be a JSON object of client metadata",
        )),
        Err(e) => Err(OAuthError::invalid_client_metadata(format!(
            "the body is not valid JSON: {e}"
        ))),
    }
}

/// A member of a known field of the wrong JSON type.
fn wrong_type(field: &str, expected: &str) -> OAuthError {
    OAuthError::invalid_client_metadata(format!("`{field}` must be {expected}"))
}

/// A present, non-null member.
fn member<'a>(metadata: &'a Map<String, Value>, field: &str) -> Option<&'a Value> {
    metadata.get(field).filter(|v| !v.is_null())
}

/// An optional array of strings, without duplicates (first occurrence kept).
fn string_list(
    metadata: &Map<String, Value>,
    field: &str,
) -> Result<Option<Vec<String>>, OAuthError> {
    let Some(value) = member(metadata, field) else {
        return Ok(None);
    };
    let expected = "an array of strings";
    let Value::Array(items) = value else {
        return Err(wrong_type(field, expected));
    };
    let mut out: Vec<String> = Vec::with_capacity(items.len());
    for item in items {
        let Value::String(s) = item else {
            return Err(wrong_type(field, expected));
        };
        if !out.contains(s) {
            out.push(s.clone());
        }
    }
    Ok(Some(out))
}

fn optional_string<'a>(
    metadata: &'a Map<String, Value>,
    field: &str,
) -> Result<Option<&'a str>, OAuthError> {
    match member(metadata, field) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(_) => Err(wrong_type(field, "a string")),
    }
}

/// Checks `metadata` against RFC 7591 §2 and SPEC §3 and applies defaults.
/// Pure: no I/O.
pub fn validate(
    config: &Config,
    mut metadata: Map<String, Value>,
) -> Result<Registration, OAuthError> {
    for name in SERVER_ASSIGNED {
        metadata.remove(name);
    }

    let redirect_uris = match string_list(&metadata, "redirect_uris")? {
        Some(uris) if !uris.is_empty() => uris,
        _ => {
            return Err(OAuthError::invalid_client_metadata(
                "`redirect_uris` is required: register at least one redirect URI",
            ))
        }
    };
    for uri in &redirect_uris {
        check_redirect_uri(uri).map_err(OAuthError::invalid_redirect_uri)?;
    }

    let grant_types = match string_list(&metadata, "grant_types")? {
        None => vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
        Some(names) => {
            let mut grants = Vec::with_capacity(names.len());
            for name in &names {
                match GrantType::from_wire(name) {
                    Some(g @ (GrantType::AuthorizationCode | GrantType::RefreshToken)) => {
                        grants.push(g)
                    }
                    Some(_) => {
                        return Err(OAuthError::invalid_client_metadata(format!(
                            "grant type `{name}` is for operator-created clients only; \
                             a dynamically registered client may use {ALLOWED_GRANTS}"
                        )))
                    }
                    None => {
                        return Err(OAuthError::invalid_client_metadata(format!(
                            "grant type `{name}` is not supported; \
                             a dynamically registered client may use {ALLOWED_GRANTS}"
                        )))
                    }
                }
            }
            // RFC 7591 §2.1: `code` (the only response type) goes with
            // `authorization_code`; without it the client could get no token.
            if !grants.contains(&GrantType::AuthorizationCode) {
                return Err(OAuthError::invalid_client_metadata(
                    "`grant_types` must include authorization_code",
                ));
            }
            grants
        }
    };

    if let Some(types) = string_list(&metadata, "response_types")? {
        if types.is_empty() {
            return Err(OAuthError::invalid_client_metadata(
                "`response_types` must not be empty; register [\"code\"]",
            ));
        }
        if let Some(t) = types.iter().find(|t| *t != "code") {
            return Err(OAuthError::invalid_client_metadata(format!(
                "response type `{t}` is not supported; only `code` (the authorization code flow with PKCE)"
            )));
        }
    }

    let auth_method = match optional_string(&metadata, "token_endpoint_auth_method")? {
        None => AuthMethod::ClientSecretBasic,
        Some(m) => match AuthMethod::from_wire(m) {
            Some(AuthMethod::PrivateKeyJwt) => {
                return Err(OAuthError::invalid_client_metadata(
                    "token_endpoint_auth_method `private_key_jwt` is not supported for dynamic registration yet",
                ))
            }
            Some(method) => method,
            None => {
                return Err(OAuthError::invalid_client_metadata(format!(
                    "token_endpoint_auth_method `{m}` is not supported; \
                     use none, client_secret_basic or client_secret_post"
                )))
            }
        },
    };

    let client_type = match optional_string(&metadata, "client_type")? {
        None => config.registration.default_client_type,
        Some(t) => ClientType::from_wire(t).ok_or_else(|| {
            OAuthError::invalid_client_metadata(format!(
                "client_type `{t}` is not one of ai-agent, service, web, native"
            ))
        })?,
    };

    let scope = match optional_string(&metadata, "scope")? {
        None => None,
        Some(text) => {
            let mut names: Vec<&str> = Vec::new();
            for name in text.split(' ').filter(|s| !s.is_empty()) {
                if !valid_scope_token(name) {
                    return Err(OAuthError::invalid_client_metadata(format!(
                        "scope `{name}` is not a valid scope token"
                    )));
                }
                let Some((_, s)) = config.scope(name) else {
                    return Err(OAuthError::invalid_client_metadata(format!(
                        "scope `{name}` is not a scope of this server"
                    )));
                };
                if s.approval {
                    return Err(OAuthError::invalid_client_metadata(format!(
                        "scope `{name}` is granted only through a human approval and cannot be registered"
                    )));
                }
                if !names.contains(&name) {
                    names.push(name);
                }
            }
            Some(names.join(" ")).filter(|s| !s.is_empty())
        }
    };

    let client_name = match optional_string(&metadata, "client_name")? {
        None => DEFAULT_CLIENT_NAME.to_string(),
        Some(name) => {
            let name = name.trim();
            if name.chars().count() > MAX_CLIENT_NAME_CHARS {
                return Err(OAuthError::invalid_client_metadata(format!(
                    "`client_name` must be at most {MAX_CLIENT_NAME_CHARS} characters"
                )));
            }
            // The consent page shows it: no control characters, no
            // bidirectional overrides that would disguise it.
            if name.chars().any(crate::text::is_unsafe) {
                return Err(OAuthError::invalid_client_metadata(
                    "`client_name` must not contain control or formatting characters",
                ));
            }
            if name.is_empty() {
                DEFAULT_CLIENT_NAME.to_string()
            } else {
                name.to_string()
            }
        }
    };

    Ok(Registration {
        client_name,
        redirect_uris,
        grant_types,
        auth_method,
        client_type,
        scope,
        metadata,
    })
}

/// The client for `reg`, with its secret (confidential clients; shown once,
/// stored as SHA-256). A dynamic client names no resources or scopes: it may
/// ask for any configured resource and any scope that is not approval-only,
/// and consent is its gate (SPEC §3).
pub fn new_client(reg: &Registration, now: i64) -> (Client, Option<SecretString>) {
    let public = reg.is_public();
    let client_secret = (!public).then(|| SecretString::from(secret::random_token()));
    let client = Client {
        client_id: format!("dyn_{}", &secret::random_token()[..22]),
        name: reg.client_name.clone(),
        client_type: reg.client_type,
        public,
        secret_hash: client_secret
            .as_ref()
            .map(|s| secret::hash(s.expose_secret())),
        origin: ClientOrigin::Dynamic,
        token_endpoint_auth_method: reg.auth_method,
        grant_types: reg.grant_types.clone(),
        redirect_uris: reg.redirect_uris.clone(),
        resources: Vec::new(),
        scopes: Vec::new(),
        owns_resources: Vec::new(),
        exchange_to: Vec::new(),
        dpop_bound_access_tokens: false,
        jwks_uri: None,
        jwks: None,
        metadata: Some(Value::Object(reg.metadata.clone())),
        created_at: now,
        updated_at: now,
    };
    (client, client_secret)
}

/// RFC 7591 §3.2.1: every registered member (the other metadata echoed as
/// sent), the effective values of the ones mandate decides, and the
/// server-assigned ones.
fn response_body(reg: &Registration, client: &Client, secret: Option<&SecretString>) -> Value {
    let mut body = reg.metadata.clone();
    let mut set = |k: &str, v: Value| {
        body.insert(k.to_string(), v);
    };
    set("client_id", Value::from(client.client_id.as_str()));
    set("client_id_issued_at", Value::from(client.created_at));
    if let Some(s) = secret {
        set("client_secret", Value::from(s.expose_secret()));
        // RFC 7591 §3.2.1: 0 means the secret does not expire.
        set("client_secret_expires_at", Value::from(0));
    }
    set("client_name", Value::from(client.name.as_str()));
    set("redirect_uris", Value::from(client.redirect_uris.clone()));
    set(
        "grant_types",
        Value::from(
            client
                .grant_types
                .iter()
                .map(|g| g.as_str())
                .collect::<Vec<_>>(),
        ),
    );
    set("response_types", Value::from(vec!["code"]));
    set(
        "token_endpoint_auth_method",
        Value::from(client.token_endpoint_auth_method.as_str()),
    );
    set("client_type", Value::from(client.client_type.as_str()));
    match &reg.scope {
        Some(scope) => set("scope", Value::from(scope.as_str())),
        None => {
            body.remove("scope");
        }
    }
    Value::Object(body)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;
    use crate::oauth::error::ErrorCode;

    fn config() -> Config {
        Config::from_toml(
            "[[resources]]\nid = \"https://api.example.com\"\n\
             [[resources.scopes]]\nname = \"invoices:read\"\n\
             [[resources.scopes]]\nname = \"payments:send\"\napproval = true",
            &BTreeMap::new(),
        )
        .unwrap()
    }

    fn check(v: Value) -> Result<Registration, OAuthError> {
        let Value::Object(map) = v else {
            panic!("not an object")
        };
        validate(&config(), map)
    }

    #[test]
    fn defaults_apply_and_other_metadata_is_kept() {
        let r = check(json!({
            "redirect_uris": ["http://127.0.0.1:33418/callback"],
            "token_endpoint_auth_method": "none",
            "logo_uri": "https://app.example.com/logo.png",
            "client_secret": "chosen by the caller",
        }))
        .unwrap();
        assert!(r.is_public());
        assert_eq!(r.client_name, DEFAULT_CLIENT_NAME);
        assert_eq!(
            r.grant_types,
            vec![GrantType::AuthorizationCode, GrantType::RefreshToken]
        );
        assert_eq!(r.client_type, ClientType::AiAgent);
        assert_eq!(r.scope, None);
        assert_eq!(r.metadata["logo_uri"], "https://app.example.com/logo.png");
        assert!(!r.metadata.contains_key("client_secret"));
        let (c, s) = new_client(&r, 7);
        assert!(s.is_none() && c.secret_hash.is_none() && c.public);
        assert!(c.client_id.starts_with("dyn_") && c.client_id.len() == 26);
        assert_eq!(c.origin, ClientOrigin::Dynamic);
    }

    #[test]
    fn confidential_client_gets_a_secret_stored_hashed() {
        let r = check(json!({"redirect_uris": ["https://app.example.com/cb"]})).unwrap();
        let (c, s) = new_client(&r, 7);
        let s = s.unwrap();
        assert!(s.expose_secret().len() >= 43);
        assert_eq!(c.secret_hash, Some(secret::hash(s.expose_secret())));
        let body = response_body(&r, &c, Some(&s));
        assert_eq!(body["client_secret"], s.expose_secret());
        assert_eq!(body["client_secret_expires_at"], 0);
        assert_eq!(body["token_endpoint_auth_method"], "client_secret_basic");
    }

    //  * grants reserved for operator-created clients, unknown grants
    //  * a response type other than code
    //  * private_key_jwt, an unknown auth method
    //  * an approval-only scope, an unknown scope
    //  * a bad redirect URI, wrong JSON types
    //  * a client_name with a bidirectional override
    #[test]
    fn refusals_name_the_problem() {
        let cb = json!(["https://app.example.com/cb"]);
        let cases = [
            (json!({}), ErrorCode::InvalidClientMetadata),
            (
                json!({"redirect_uris": []}),
                ErrorCode::InvalidClientMetadata,
            ),
            (
                json!({"redirect_uris": "https://a/cb"}),
                ErrorCode::InvalidClientMetadata,
            ),
            (
                json!({"redirect_uris": [1]}),
                ErrorCode::InvalidClientMetadata,
            ),
            (
                json!({"redirect_uris": ["http://app.example.com/cb"]}),
                ErrorCode::InvalidRedirectUri,
            ),
            (
                json!({"redirect_uris": ["https://app.example.com/cb#x"]}),
                ErrorCode::InvalidRedirectUri,
            ),
            (
                json!({"redirect_uris": ["/cb"]}),
                ErrorCode::InvalidRedirectUri,
            ),
            (
                json!({"redirect_uris": cb, "grant_types": ["client_credentials"]}),
                ErrorCode::InvalidClientMetadata,
            ),
            (
                json!({"redirect_uris": cb, "grant_types": ["password"]}),
                ErrorCode::InvalidClientMetadata,
            ),
            (
                json!({"redirect_uris": cb, "grant_types": ["refresh_token"]}),
                ErrorCode::InvalidClientMetadata,
            ),
            (
                json!({"redirect_uris": cb, "response_types": ["token"]}),
                ErrorCode::InvalidClientMetadata,
            ),
            (
                json!({"redirect_uris": cb, "token_endpoint_auth_method": "private_key_jwt"}),
                ErrorCode::InvalidClientMetadata,
            ),
            (
                json!({"redirect_uris": cb, "token_endpoint_auth_method": "client_secret_jwt"}),
                ErrorCode::InvalidClientMetadata,
            ),
            (
                json!({"redirect_uris": cb, "token_endpoint_auth_method": 3}),
                ErrorCode::InvalidClientMetadata,
            ),
            (
                json!({"redirect_uris": cb, "scope": "payments:send"}),
                ErrorCode::InvalidClientMetadata,
            ),
            (
                json!({"redirect_uris": cb, "scope": "invoices:read nope"}),
                ErrorCode::InvalidClientMetadata,
            ),
            (
                json!({"redirect_uris": cb, "client_type": "robot"}),
                ErrorCode::InvalidClientMetadata,
            ),
            (
                json!({"redirect_uris": cb, "client_name": "Good\u{202e}evil"}),
                ErrorCode::InvalidClientMetadata,
            ),
            (
                json!({"redirect_uris": cb, "client_name": "x".repeat(201)}),
                ErrorCode::InvalidClientMetadata,
            ),
        ];
        for (body, code) in cases {
            let e = check(body.clone()).unwrap_err();
            assert_eq!(e.code, code, "{body}: {}", e.description);
        }
    }

    #[test]
    fn scopes_are_checked_and_deduplicated() {
        let r = check(json!({
            "redirect_uris": ["https://app.example.com/cb"],
            "scope": "invoices:read  invoices:read",
        }))
        .unwrap();
        assert_eq!(r.scope.as_deref(), Some("invoices:read"));
    }

    #[test]
    fn bodies_must_be_json_objects() {
        let ok = parse_metadata(Some("application/json; charset=utf-8"), b"{}");
        assert!(ok.is_ok());
        for (ct, body) in [
            (Some("application/x-www-form-urlencoded"), &b"{}"[..]),
            (None, b"{}"),
            (Some("application/json"), b"[]"),
            (Some("application/json"), b"{"),
        ] {
            let e = parse_metadata(ct, body).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidClientMetadata);
        }
    }

    #[test]
    fn bearer_tokens_are_read_from_the_header() {
        let h = |s: &str| AuthHeader::Text(s.into());
        assert_eq!(bearer(&h("Bearer abc")).unwrap(), "abc");
        assert_eq!(bearer(&h("bearer  abc ")).unwrap(), "abc");
        for bad in [
            h("Basic abc"),
            h("Bearer"),
            h("Bearer "),
            AuthHeader::Absent,
        ] {
            assert_eq!(bearer(&bad).unwrap_err().code, ErrorCode::InvalidToken);
        }
    }
}
