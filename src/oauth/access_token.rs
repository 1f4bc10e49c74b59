//! RFC 9068 JWT access tokens: the claims, their signing and their
//! validation. The claims are one typed struct in both directions, so a token
//! this issuer reads back (token exchange, introspection) is the struct it wrote.

use serde::{Deserialize, Serialize};

use super::act::Actor;
use super::types::ClientType;
use crate::keys::{KeyError, KeyRing};

pub use crate::keys::TokenInvalid;

/// The `typ` header of an access token (RFC 9068 §2.1), and the long form a
/// validator must also accept (RFC 9068 §4).
pub const TYP: &str = "at+jwt";
const TYPS: [&str; 2] = [TYP, "application/at+jwt"];

/// How far in the future `iat` may be before a token is "not yet valid":
/// clock skew between instances.
pub const LEEWAY_SECS: i64 = 60;

/// `cnf` (RFC 7800 §3.1; RFC 9449 §6.1): the DPoP key's thumbprint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confirmation {
    pub jkt: String,
}

/// The claims of an access token (SPEC §3). Absent options are omitted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub sub: String,
    /// Exactly one audience, as a string.
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    pub jti: String,
    pub client_id: String,
    pub scope: String,
    pub client_type: ClientType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Actor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acr: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amr: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cnf: Option<Confirmation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_details: Option<serde_json::Value>,
}

impl AccessClaims {
    /// Signs the claims as `typ: at+jwt` with the active key (RFC 9068 §2.1).
    pub fn sign(&self, keys: &KeyRing) -> Result<String, KeyError> {
        let payload = serde_json::to_vec(self).map_err(|e| KeyError::Sign(e.to_string()))?;
        keys.sign(TYP, &payload, self.iat)
    }

    /// The scopes as a list.
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.scope.split(' ').filter(|s| !s.is_empty())
    }
}

/// Validates an access token of this issuer: an ES256 signature by a
/// published key, `typ: at+jwt`, claims of the shape this issuer writes,
/// `iss`, `exp` in the future and `iat` not in the future (RFC 9068 §4).
/// Revocation and audience are the caller's to check.
pub fn validate(
    keys: &KeyRing,
    issuer: &str,
    token: &str,
    now: i64,
) -> Result<AccessClaims, TokenInvalid> {
    let payload = keys.verify(token, &TYPS, now)?;
    let claims: AccessClaims =
        serde_json::from_slice(&payload).map_err(|_| TokenInvalid::BadClaims)?;
    check_claims(&claims, issuer, now)?;
    Ok(claims)
}

/// The time and issuer checks of [`validate`], on claims already read.
/// The claims of a compact JWS, read without verifying anything: only for
/// a token already known to be this issuer's own (its SHA-256 matched the
/// stored one, see [`crate::oauth::lineage::read`]). `None` when the token
/// is not three base64url parts with our claims in the middle.
pub fn unverified_claims(token: &str) -> Option<AccessClaims> {
    use base64::Engine;
    let mut parts = token.split('.');
    let (Some(_), Some(payload), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

pub fn check_claims(claims: &AccessClaims, issuer: &str, now: i64) -> Result<(), TokenInvalid> {
    if claims.iss != issuer {
        return Err(TokenInvalid::WrongIssuer);
    }
    if claims.exp <= now {
        return Err(TokenInvalid::Expired);
    }
    if claims.iat > now + LEEWAY_SECS {
        return Err(TokenInvalid::NotYetValid);
    }
    Ok(())
}

/// A fresh token id: a UUIDv7 (time-ordered, 74 random bits). Time order
/// makes the token table's primary key an append, not a random insert; `jti`
/// needs uniqueness, not secrecy (the token's signature protects it).
pub fn new_jti() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_800_000_000;
    const ISS: &str = "https://auth.example.com";

    fn claims() -> AccessClaims {
        AccessClaims {
            iss: ISS.into(),
            sub: "alice".into(),
            aud: "https://api.example.com".into(),
            exp: T0 + 300,
            iat: T0,
            jti: new_jti(),
            client_id: "mcp".into(),
            scope: "invoices:read".into(),
            client_type: ClientType::Service,
            act: Some(Actor::over(
                "mcp",
                ClientType::Service,
                Some(&Actor::new("agent", ClientType::AiAgent)),
            )),
            acr: Some("urn:mandate:acr:pwd".into()),
            amr: Some(vec!["pwd".into()]),
            auth_time: Some(T0 - 10),
            cnf: None,
            authorization_details: None,
        }
    }

    #[test]
    fn signed_claims_read_back_identically() {
        let dir = tempfile::tempdir().unwrap();
        let ring = KeyRing::open(dir.path(), T0).unwrap();
        let c = claims();
        let token = c.sign(&ring).unwrap();
        assert_eq!(validate(&ring, ISS, &token, T0 + 1).unwrap(), c);
    }

    //  * expired (exp == now counts as expired)
    //  * issued in the future beyond the leeway
    //  * another issuer
    //  * claims of another shape (aud as an array, act without client_type)
    #[test]
    fn validation_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let ring = KeyRing::open(dir.path(), T0).unwrap();
        let token = claims().sign(&ring).unwrap();
        assert_eq!(
            validate(&ring, ISS, &token, T0 + 300),
            Err(TokenInvalid::Expired)
        );
        assert_eq!(
            validate(&ring, ISS, &token, T0 - LEEWAY_SECS - 1),
            Err(TokenInvalid::NotYetValid)
        );
        assert_eq!(
            validate(&ring, "https://evil.example.com", &token, T0),
            Err(TokenInvalid::WrongIssuer)
        );
        let mut v = serde_json::to_value(claims()).unwrap();
        v["aud"] = serde_json::json!(["a", "b"]);
        let odd = ring.sign(TYP, v.to_string().as_bytes(), T0).unwrap();
        assert_eq!(validate(&ring, ISS, &odd, T0), Err(TokenInvalid::BadClaims));
        let mut v = serde_json::to_value(claims()).unwrap();
        v["act"] = serde_json::json!({"sub": "x"});
        let odd = ring.sign(TYP, v.to_string().as_bytes(), T0).unwrap();
        assert_eq!(validate(&ring, ISS, &odd, T0), Err(TokenInvalid::BadClaims));
    }
}
