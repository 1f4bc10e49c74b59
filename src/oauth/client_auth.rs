//! Client authentication at the token endpoint (RFC 6749 §2.3, OAuth 2.1 §2.4).
//!
//! `client_secret_basic` and `client_secret_post` are accepted for confidential
//! clients; a public client identifies itself with `client_id` alone. Using
//! two methods at once is refused (RFC 6749 §2.3: "MUST NOT use more than one
//! authentication method in each request"). Every failure is one
//! `invalid_client` with the same description, so a caller cannot probe which
//! client ids exist.

use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use secrecy::{ExposeSecret, SecretString};

use super::error::OAuthError;
use super::form::{decode, Params};
use crate::secret;
use crate::state::AppState;
use crate::store::clients::{self, Client};
use crate::store::StoreError;

/// The `Authorization` header as received. A header that is not text is
/// not "no header": it is a failed authentication, so the one-method rule
/// cannot be dodged with bytes the server would otherwise ignore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthHeader {
    Absent,
    Text(String),
    NotText,
    Repeated,
}

/// Credentials as presented, before they are checked. Secrets are
/// [`SecretString`]: `Debug` never shows them.
#[derive(Debug)]
pub enum Presented {
    Basic {
        client_id: String,
        secret: SecretString,
    },
    Post {
        client_id: String,
        secret: SecretString,
    },
    /// `client_id` alone: a public client.
    IdOnly {
        client_id: String,
    },
    Nothing,
}

impl Presented {
    pub fn client_id(&self) -> Option<&str> {
        match self {
            Presented::Basic { client_id, .. }
            | Presented::Post { client_id, .. }
            | Presented::IdOnly { client_id } => Some(client_id),
            Presented::Nothing => None,
        }
    }
}

/// Reads the credentials from the `Authorization` header and the body.
pub fn presented(authorization: &AuthHeader, params: &Params) -> Result<Presented, OAuthError> {
    let body_id = params.get("client_id");
    let body_secret = params.get("client_secret");
    let header = match authorization {
        AuthHeader::Absent => None,
        AuthHeader::Text(h) => Some(h.as_str()),
        AuthHeader::NotText => return Err(bad_client("malformed Authorization header")),
        AuthHeader::Repeated => {
            return Err(OAuthError::invalid_request(
                "send one Authorization header, not several",
            ))
        }
    };
    if let Some(header) = header {
        let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
        if !scheme.eq_ignore_ascii_case("basic") {
            return Err(bad_client("unsupported Authorization scheme; use Basic"));
        }
        if body_secret.is_some() {
            return Err(OAuthError::invalid_request(
                "use one client authentication method, not Basic and client_secret together",
            ));
        }
        let raw = STANDARD
            .decode(rest.trim())
            .map_err(|_| bad_client("malformed Basic credentials"))?;
        let pos = raw
            .iter()
            .position(|b| *b == b':')
            .ok_or_else(|| bad_client("malformed Basic credentials"))?;
        // RFC 6749 §2.3.1: both parts are form-urlencoded before base64.
        let client_id =
            decode(&raw[..pos]).map_err(|_| bad_client("malformed Basic credentials"))?;
        let secret =
            decode(&raw[pos + 1..]).map_err(|_| bad_client("malformed Basic credentials"))?;
        if let Some(id) = body_id {
            if id != client_id {
                return Err(OAuthError::invalid_request(
                    "client_id in the body differs from the authenticated client",
                ));
            }
        }
        return Ok(Presented::Basic {
            client_id,
            secret: SecretString::from(secret),
        });
    }
    Ok(match (body_id, body_secret) {
        (Some(id), Some(s)) => Presented::Post {
            client_id: id.into(),
            secret: SecretString::from(s),
        },
        (Some(id), None) => Presented::IdOnly {
            client_id: id.into(),
        },
        (None, Some(_)) => {
            return Err(OAuthError::invalid_request(
                "client_secret without client_id",
            ))
        }
        (None, None) => Presented::Nothing,
    })
}

fn bad_client(detail: &'static str) -> OAuthError {
    OAuthError::invalid_client(detail)
}

const FAILED: &str = "client authentication failed";

/// Where a decision may find client rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// This process's [`crate::store::client_cache`] first. Only for a
    /// decision whose audit entry names the cached rows it used
    /// ([`crate::store::audit::Entry::clients`], from [`ClientRows::relied`]).
    Cached,
    /// The database.
    Fresh,
}

/// The client rows one decision reads, and which of them came from the
/// cache (those the audit commit must find unchanged).
#[derive(Debug)]
pub struct ClientRows {
    lookup: Lookup,
    relied: Vec<Arc<Client>>,
}

impl ClientRows {
    pub fn new(lookup: Lookup) -> ClientRows {
        ClientRows {
            lookup,
            relied: Vec::new(),
        }
    }

    /// From now on, reads the database only.
    pub fn read_fresh(&mut self) {
        self.lookup = Lookup::Fresh;
    }

    /// A row just read from the database, shared; kept in the cache only
    /// by decisions that use the cache (an introspection, which never
    /// reads it, takes no write lock on it).
    fn keep(&self, app: &AppState, client: Client) -> Arc<Client> {
        match self.lookup {
            Lookup::Cached => app.client_cache.put(client),
            Lookup::Fresh => Arc::new(client),
        }
    }

    /// The cached rows this decision used.
    pub fn relied(&self) -> &[Arc<Client>] {
        &self.relied
    }

    /// Client `client_id` (not an authentication: e.g. the root client of a
    /// token being exchanged).
    pub async fn get(
        &mut self,
        app: &AppState,
        client_id: &str,
    ) -> Result<Option<Arc<Client>>, StoreError> {
        if self.lookup == Lookup::Cached {
            if let Some(c) = app.client_cache.get(client_id) {
                self.relied.push(c.clone());
                return Ok(Some(c));
            }
        }
        Ok(match clients::get(&app.db, client_id).await? {
            Some(c) => Some(self.keep(app, c)),
            None => {
                app.client_cache.forget(client_id);
                None
            }
        })
    }
}

/// Checks `p` against the stored client (or, for a Client ID Metadata
/// Document URL presented alone, the client its document describes: a
/// public client). Returns the client on success. Only a right secret is
/// ever answered from the cache: anything else reads the database.
pub async fn authenticate(
    app: &AppState,
    p: &Presented,
    rows: &mut ClientRows,
) -> Result<Arc<Client>, OAuthError> {
    let Some(client_id) = p.client_id() else {
        return Err(OAuthError::invalid_client(
            "client authentication is required",
        ));
    };
    if let (Presented::IdOnly { .. }, true) = (p, super::cimd::is_metadata_url(client_id)) {
        return match super::cimd::resolve(app, client_id, app.clock.now()).await {
            Ok(c) if c.public => Ok(Arc::new(c)),
            Ok(_) => Err(OAuthError::invalid_client(
                "this client's metadata document asks for private_key_jwt, which the token endpoint does not support yet",
            )),
            Err(e) => Err(OAuthError::invalid_client(format!("client metadata document: {e}"))),
        };
    }
    if let (Lookup::Cached, Presented::Basic { secret, .. } | Presented::Post { secret, .. }) =
        (rows.lookup, p)
    {
        if let Some(c) = app.client_cache.get(client_id) {
            let right = match (&c.secret_hash, c.public) {
                (Some(stored), false) => secret::verify_hash(secret.expose_secret(), stored),
                _ => false,
            };
            if right {
                rows.relied.push(c.clone());
                return Ok(c);
            }
        }
    }
    let client = clients::get(&app.db, client_id).await?;
    if client.is_none() {
        app.client_cache.forget(client_id);
    }
    // Hash even when the client is unknown, so timing does not reveal which ids exist.
    let (ok, client) = match (p, client) {
        (Presented::Basic { secret, .. } | Presented::Post { secret, .. }, Some(c)) => {
            let ok = match (&c.secret_hash, c.public) {
                (Some(stored), false) => secret::verify_hash(secret.expose_secret(), stored),
                _ => false,
            };
            (ok, Some(c))
        }
        (Presented::Basic { secret, .. } | Presented::Post { secret, .. }, None) => {
            let _ = secret::verify_hash(secret.expose_secret(), "");
            (false, None)
        }
        (Presented::IdOnly { .. }, Some(c)) => (c.public, Some(c)),
        _ => (false, None),
    };
    match (ok, client) {
        (true, Some(c)) => Ok(rows.keep(app, c)),
        _ => Err(OAuthError::invalid_client(FAILED)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oauth::error::ErrorCode;
    use crate::oauth::form::parse;

    fn basic(id: &str, secret: &str) -> String {
        format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
    }

    fn header(h: &str) -> AuthHeader {
        AuthHeader::Text(h.to_string())
    }

    #[test]
    fn reads_basic_and_post() {
        let none = parse(b"", &[]).unwrap();
        match presented(&header(&basic("a%3Ab", "s%2B")), &none).unwrap() {
            Presented::Basic { client_id, secret } => {
                assert_eq!(client_id, "a:b");
                assert_eq!(secret.expose_secret(), "s+");
            }
            other => panic!("{other:?}"),
        }
        let post = parse(b"client_id=a&client_secret=s3cr3t", &[]).unwrap();
        let p = presented(&AuthHeader::Absent, &post).unwrap();
        assert!(matches!(&p, Presented::Post { client_id, secret }
            if client_id == "a" && secret.expose_secret() == "s3cr3t"));
        assert!(
            !format!("{p:?}").contains("s3cr3t"),
            "a secret in Debug output"
        );
    }

    //  * two methods at once
    //  * a Bearer header where Basic is expected
    //  * Basic without a colon
    //  * a secret without a client id
    //  * a header that is not text, with credentials in the body
    //  * two Authorization headers
    #[test]
    fn refuses_ambiguous_or_malformed() {
        let post = parse(b"client_id=a&client_secret=s", &[]).unwrap();
        let code = |h: &AuthHeader, p: &Params| presented(h, p).unwrap_err().code;
        assert_eq!(
            code(&header(&basic("a", "s")), &post),
            ErrorCode::InvalidRequest
        );
        let none = parse(b"", &[]).unwrap();
        assert_eq!(code(&header("Bearer x"), &none), ErrorCode::InvalidClient);
        let nocolon = format!("Basic {}", STANDARD.encode("abc"));
        assert_eq!(code(&header(&nocolon), &none), ErrorCode::InvalidClient);
        let secret_only = parse(b"client_secret=s", &[]).unwrap();
        assert_eq!(
            code(&AuthHeader::Absent, &secret_only),
            ErrorCode::InvalidRequest
        );
        assert_eq!(code(&AuthHeader::NotText, &post), ErrorCode::InvalidClient);
        assert_eq!(
            code(&AuthHeader::Repeated, &post),
            ErrorCode::InvalidRequest
        );
    }
}
