//! The resource-server module (SPEC §9): what a Rust API adds, in a few
//! lines, to accept mandate's access tokens.
//!
//! ```ignore
//! let rs = ResourceServer::new(RsConfig::new("https://auth.example.com",
//!     "https://api.example.com", "https://api.example.com"));
//! let app = Router::new()
//!     .route("/invoices", get(list))
//!     .merge(rs.metadata_router())
//!     .with_state(rs);
//! async fn list(Bearer(token): Bearer, State(rs): State<Arc<ResourceServer>>)
//!     -> Result<Json<Value>, Challenge> {
//!     rs.require_scope(&token, "invoices:read")?;
//!     …
//! }
//! ```
//!
//! It fetches the issuer's JWKS and caches the keys by `kid`, refetching on
//! an unknown `kid` at most once per [`RsConfig::min_refetch`]; validates the
//! ES256 signature, `typ` (`at+jwt`), `iss`, `aud`, and `exp`/`iat` with a
//! small leeway; checks scopes and authentication strength; answers failures
//! with RFC 6750 / RFC 9470 `WWW-Authenticate` challenges that carry
//! `resource_metadata` (RFC 9728 §5.1); serves RFC 9728 protected-resource
//! metadata; and, for routes that must see a revocation at once, can ask the
//! issuer's introspection endpoint instead of trusting the signature alone.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use josekit::jws::alg::ecdsa::EcdsaJwsVerifier;
use josekit::jws::ES256;
use serde_json::{json, Value};

use crate::keys::{verify_compact, TokenInvalid};
use crate::oauth::access_token::AccessClaims;
use crate::oauth::authorize::acr_rank;

/// How a resource server finds and trusts its authorization server.
#[derive(Debug, Clone)]
pub struct RsConfig {
    /// The issuer whose tokens are accepted (`iss`).
    pub issuer: String,
    /// This resource's identifier: the `aud` its tokens carry.
    pub resource: String,
    /// Where this resource is served (its metadata URL is derived from it).
    pub public_url: String,
    /// The JWKS (default: `{issuer}/jwks.json`).
    pub jwks_uri: String,
    /// Clock skew allowed on `exp` and `iat`.
    pub leeway_secs: i64,
    /// Least time between two JWKS fetches (an unknown `kid` never causes
    /// more fetches than this allows).
    pub min_refetch: Duration,
    /// Scopes advertised in the protected-resource metadata.
    pub scopes_supported: Vec<String>,
    /// Introspection credentials, for routes that must see revocation at once.
    pub introspection: Option<IntrospectionClient>,
}

#[derive(Debug, Clone)]
pub struct IntrospectionClient {
    pub endpoint: String,
    pub client_id: String,
    pub client_secret: String,
}

impl RsConfig {
    pub fn new(issuer: &str, resource: &str, public_url: &str) -> RsConfig {
        let issuer = issuer.trim_end_matches('/').to_string();
        RsConfig {
            jwks_uri: format!("{issuer}/jwks.json"),
            issuer,
            resource: resource.to_string(),
            public_url: public_url.trim_end_matches('/').to_string(),
            leeway_secs: 30,
            min_refetch: Duration::from_secs(10),
            scopes_supported: Vec::new(),
            introspection: None,
        }
    }
}

/// A request refused, as an RFC 6750 §3 / RFC 9470 §3 challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// No token (RFC 6750 §3.1: then no error code).
    Missing {
        metadata: String,
    },
    InvalidRequest {
        description: String,
        metadata: String,
    },
    InvalidToken {
        description: String,
        metadata: String,
    },
    InsufficientScope {
        scope: String,
        metadata: String,
    },
    /// RFC 9470 §3: authenticate again, at `acr` and within `max_age`.
    InsufficientUserAuthentication {
        acr: String,
        max_age: Option<i64>,
        description: String,
        metadata: String,
    },
    /// The issuer could not be reached to check the token.
    Unavailable {
        metadata: String,
    },
}

fn quoted(s: &str) -> String {
    s.replace(['\\', '"'], "'")
}

impl IntoResponse for Challenge {
    fn into_response(self) -> Response {
        let (status, params, error) = match &self {
            Challenge::Missing { metadata } => (
                StatusCode::UNAUTHORIZED,
                format!("resource_metadata=\"{}\"", quoted(metadata)),
                None,
            ),
            Challenge::InvalidRequest { description, metadata } => (
                StatusCode::BAD_REQUEST,
                format!(
                    "error=\"invalid_request\", error_description=\"{}\", resource_metadata=\"{}\"",
                    quoted(description),
                    quoted(metadata)
                ),
                Some(("invalid_request", description.clone())),
            ),
            Challenge::InvalidToken { description, metadata } => (
                StatusCode::UNAUTHORIZED,
                format!(
                    "error=\"invalid_token\", error_description=\"{}\", resource_metadata=\"{}\"",
                    quoted(description),
                    quoted(metadata)
                ),
                Some(("invalid_token", description.clone())),
            ),
            Challenge::InsufficientScope { scope, metadata } => (
                StatusCode::FORBIDDEN,
                format!(
                    "error=\"insufficient_scope\", error_description=\"this needs scope {}\", scope=\"{}\", resource_metadata=\"{}\"",
                    quoted(scope),
                    quoted(scope),
                    quoted(metadata)
                ),
                Some(("insufficient_scope", format!("this needs scope {scope}"))),
            ),
            Challenge::InsufficientUserAuthentication { acr, max_age, description, metadata } => (
                StatusCode::UNAUTHORIZED,
                format!(
                    "error=\"insufficient_user_authentication\", error_description=\"{}\", acr_values=\"{}\"{}, resource_metadata=\"{}\"",
                    quoted(description),
                    quoted(acr),
                    max_age.map(|m| format!(", max_age={m}")).unwrap_or_default(),
                    quoted(metadata)
                ),
                Some(("insufficient_user_authentication", description.clone())),
            ),
            Challenge::Unavailable { metadata } => (
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "error=\"temporarily_unavailable\", resource_metadata=\"{}\"",
                    quoted(metadata)
                ),
                Some(("temporarily_unavailable", "the authorization server cannot be reached".into())),
            ),
        };
        let challenge = format!("Bearer {params}");
        let body = match error {
            Some((code, description)) => json!({"error": code, "error_description": description}),
            None => {
                json!({"error": "invalid_request", "error_description": "an access token is required"})
            }
        };
        let mut resp = (status, Json(body)).into_response();
        if let Ok(v) = HeaderValue::from_str(&challenge) {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        resp.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        resp
    }
}

/// A resource server: configuration, the JWKS cache and an HTTP client.
pub struct ResourceServer {
    pub config: RsConfig,
    http: reqwest::Client,
    keys: RwLock<HashMap<String, EcdsaJwsVerifier>>,
    last_fetch: Mutex<Option<Instant>>,
    fetches: std::sync::atomic::AtomicU64,
}

impl ResourceServer {
    pub fn new(config: RsConfig) -> Arc<ResourceServer> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Arc::new(ResourceServer {
            config,
            http,
            keys: RwLock::new(HashMap::new()),
            last_fetch: Mutex::new(None),
            fetches: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// The URL of this resource's RFC 9728 metadata.
    pub fn metadata_url(&self) -> String {
        format!(
            "{}/.well-known/oauth-protected-resource",
            self.config.public_url
        )
    }

    /// RFC 9728 §2 protected-resource metadata.
    pub fn metadata(&self) -> Value {
        json!({
            "resource": self.config.resource,
            "authorization_servers": [self.config.issuer],
            "scopes_supported": self.config.scopes_supported,
            "bearer_methods_supported": ["header"],
            "resource_signing_alg_values_supported": ["ES256"],
        })
    }

    /// A router serving the metadata at `/.well-known/oauth-protected-resource`.
    pub fn metadata_router<S: Clone + Send + Sync + 'static>(self: &Arc<Self>) -> Router<S> {
        let doc = self.metadata();
        Router::new().route(
            "/.well-known/oauth-protected-resource",
            get(move || {
                let doc = doc.clone();
                async move { Json(doc) }
            }),
        )
    }

    /// How many times the JWKS was fetched (to see caching work).
    pub fn jwks_fetches(&self) -> u64 {
        self.fetches.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn invalid(&self, description: impl Into<String>) -> Challenge {
        Challenge::InvalidToken {
            description: description.into(),
            metadata: self.metadata_url(),
        }
    }

    /// The bearer token of `headers` (RFC 6750 §2.1; the header only).
    pub fn bearer<'h>(&self, headers: &'h HeaderMap) -> Result<&'h str, Challenge> {
        let mut all = headers.get_all(header::AUTHORIZATION).iter();
        let (Some(value), None) = (all.next(), all.next()) else {
            return Err(Challenge::Missing {
                metadata: self.metadata_url(),
            });
        };
        let text = value.to_str().map_err(|_| Challenge::InvalidRequest {
            description: "the Authorization header is not valid text".into(),
            metadata: self.metadata_url(),
        })?;
        match text.split_once(' ') {
            Some((scheme, token))
                if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
            {
                Ok(token.trim())
            }
            _ => Err(Challenge::Missing {
                metadata: self.metadata_url(),
            }),
        }
    }

    /// Validates `token` locally (signature by a key of the issuer's JWKS,
    /// `typ`, `iss`, `aud`, `exp`/`iat` with leeway).
    pub async fn validate(&self, token: &str, now: i64) -> Result<AccessClaims, Challenge> {
        let payload = match self.verify_with_cache(token) {
            Err(TokenInvalid::UnknownKey) => {
                // A key rotated in since the last fetch: refetch (rate-limited).
                self.refresh_keys().await?;
                self.verify_with_cache(token)
            }
            other => other,
        }
        .map_err(|why| self.invalid(format!("the access token is not valid: {why}")))?;
        let claims: AccessClaims = serde_json::from_slice(&payload)
            .map_err(|_| self.invalid("the access token's claims are malformed"))?;
        self.check(&claims, now)?;
        Ok(claims)
    }

    fn check(&self, claims: &AccessClaims, now: i64) -> Result<(), Challenge> {
        if claims.iss != self.config.issuer {
            return Err(self.invalid("the access token is from another issuer"));
        }
        if claims.aud != self.config.resource {
            return Err(self.invalid(format!(
                "the access token is for `{}`, not for this resource",
                claims.aud
            )));
        }
        if claims.exp + self.config.leeway_secs <= now {
            return Err(self.invalid("the access token has expired"));
        }
        if claims.iat > now + self.config.leeway_secs {
            return Err(self.invalid("the access token is not valid yet"));
        }
        Ok(())
    }

    fn verify_with_cache(&self, token: &str) -> Result<Vec<u8>, TokenInvalid> {
        let keys = match self.keys.read() {
            Ok(k) => k,
            Err(p) => p.into_inner(),
        };
        verify_compact(token, &["at+jwt", "application/at+jwt"], |kid| {
            keys.get(kid?).map(|v| v as &dyn josekit::jws::JwsVerifier)
        })
    }

    /// Fetches the JWKS unless it was fetched within `min_refetch`.
    async fn refresh_keys(&self) -> Result<(), Challenge> {
        {
            let mut last = match self.last_fetch.lock() {
                Ok(l) => l,
                Err(p) => p.into_inner(),
            };
            if last.is_some_and(|t| t.elapsed() < self.config.min_refetch) {
                return Ok(());
            }
            *last = Some(Instant::now());
        }
        self.fetches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let unavailable = || Challenge::Unavailable {
            metadata: self.metadata_url(),
        };
        let resp = self
            .http
            .get(&self.config.jwks_uri)
            .send()
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "could not fetch the JWKS");
                unavailable()
            })?;
        let set: Value = resp.json().await.map_err(|_| unavailable())?;
        let mut fresh = HashMap::new();
        for jwk in set["keys"].as_array().into_iter().flatten() {
            let (Some(kid), Value::Object(map)) = (jwk["kid"].as_str(), jwk.clone()) else {
                continue;
            };
            let Ok(jwk) = josekit::jwk::Jwk::from_map(map) else {
                continue;
            };
            if let Ok(v) = ES256.verifier_from_jwk(&jwk) {
                fresh.insert(kid.to_string(), v);
            }
        }
        let mut keys = match self.keys.write() {
            Ok(k) => k,
            Err(p) => p.into_inner(),
        };
        *keys = fresh;
        Ok(())
    }

    /// Asks the issuer (RFC 7662) whether `token` is active now: for routes
    /// that must see a revocation at once. Falls back to nothing: without
    /// introspection credentials this is an error of configuration.
    pub async fn introspect(&self, token: &str, now: i64) -> Result<AccessClaims, Challenge> {
        let Some(i) = &self.config.introspection else {
            return Err(Challenge::Unavailable {
                metadata: self.metadata_url(),
            });
        };
        let resp = self
            .http
            .post(&i.endpoint)
            .basic_auth(&i.client_id, Some(&i.client_secret))
            .form(&[("token", token)])
            .send()
            .await
            .map_err(|_| Challenge::Unavailable {
                metadata: self.metadata_url(),
            })?;
        let v: Value = resp.json().await.map_err(|_| Challenge::Unavailable {
            metadata: self.metadata_url(),
        })?;
        if v["active"] != json!(true) {
            return Err(self.invalid("the access token is not active (revoked or expired)"));
        }
        let claims: AccessClaims = serde_json::from_value(v)
            .map_err(|_| self.invalid("unexpected introspection answer"))?;
        self.check(&claims, now)?;
        Ok(claims)
    }

    /// `403 insufficient_scope` unless the token carries `scope`.
    pub fn require_scope(&self, token: &AccessClaims, scope: &str) -> Result<(), Challenge> {
        if token.scopes().any(|s| s == scope) {
            Ok(())
        } else {
            Err(Challenge::InsufficientScope {
                scope: scope.to_string(),
                metadata: self.metadata_url(),
            })
        }
    }

    /// RFC 9470: unless the user authenticated at `min_acr` or stronger,
    /// within `max_age` seconds, challenge for a fresh, stronger sign-in.
    pub fn require_authentication(
        &self,
        token: &AccessClaims,
        min_acr: &str,
        max_age: Option<i64>,
        now: i64,
    ) -> Result<(), Challenge> {
        let strong = token
            .acr
            .as_deref()
            .is_some_and(|a| acr_rank(a).is_some() && acr_rank(a) >= acr_rank(min_acr));
        let recent = match max_age {
            None => true,
            Some(m) => token.auth_time.is_some_and(|t| now - t <= m),
        };
        if strong && recent {
            return Ok(());
        }
        let description = if !strong {
            format!("this needs authentication at {min_acr}")
        } else {
            "this needs a more recent sign-in".to_string()
        };
        Err(Challenge::InsufficientUserAuthentication {
            acr: min_acr.to_string(),
            max_age,
            description,
            metadata: self.metadata_url(),
        })
    }
}

/// An axum extractor: the validated access token of the request (local
/// validation; call [`ResourceServer::introspect`] where revocation must be
/// seen at once).
pub struct Bearer(pub AccessClaims);

impl<S> FromRequestParts<S> for Bearer
where
    Arc<ResourceServer>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Challenge;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Bearer, Challenge> {
        let rs = Arc::<ResourceServer>::from_ref(state);
        let token = rs.bearer(&parts.headers)?.to_string();
        let now = crate::state::Clock::default().now();
        rs.validate(&token, now).await.map(Bearer)
    }
}
