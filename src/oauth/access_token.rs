//! RFC 9068 JWT access tokens: the claims and their signing.

use josekit::jwt::JwtPayload;
use serde::Serialize;

use crate::keys::{KeyError, KeyRing};

/// The claims of an access token (SPEC §3). Absent options are omitted.
#[derive(Debug, Clone, Serialize)]
pub struct AccessClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    pub jti: String,
    pub client_id: String,
    pub scope: String,
    pub client_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub act: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acr: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amr: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cnf: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authorization_details: Option<serde_json::Value>,
}

impl AccessClaims {
    /// Signs the claims as `typ: at+jwt` with the active key (RFC 9068 §2.1).
    pub fn sign(&self, keys: &KeyRing) -> Result<String, KeyError> {
        let map = match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(m)) => m,
            _ => {
                return Err(KeyError::Sign(
                    "claims did not serialise to an object".into(),
                ))
            }
        };
        let payload = JwtPayload::from_map(map).map_err(|e| KeyError::Sign(e.to_string()))?;
        keys.sign("at+jwt", &payload, self.iat)
    }
}

/// Validates an access token of this issuer: signature by a published key
/// (ES256 only), `typ: at+jwt`, `iss`, and `exp` in the future (RFC 9068 §4).
/// Returns the claims. Revocation and audience are the caller's to check.
pub fn validate(
    keys: &KeyRing,
    issuer: &str,
    token: &str,
    now: i64,
) -> Result<serde_json::Map<String, serde_json::Value>, KeyError> {
    let payload = keys.verify(token, "at+jwt", now)?;
    let claims = payload.claims_set().clone();
    if claims.get("iss").and_then(|v| v.as_str()) != Some(issuer) {
        return Err(KeyError::Invalid("issued by another issuer".into()));
    }
    match claims.get("exp").and_then(|v| v.as_i64()) {
        Some(exp) if exp > now => Ok(claims),
        Some(_) => Err(KeyError::Invalid("expired".into())),
        None => Err(KeyError::Invalid("no exp claim".into())),
    }
}

/// A fresh token id: a UUIDv7 (time-ordered, 74 random bits). Time order
/// makes the token table's primary key an append, not a random insert; `jti`
/// needs uniqueness, not secrecy (the token's signature protects it).
pub fn new_jti() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}
