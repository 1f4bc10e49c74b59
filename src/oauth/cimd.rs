//! Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document,
//! SPEC §3; the MCP authorization specification asks servers to support
//! them): a `client_id` that is an `https` URL names a JSON document, hosted
//! by the client, that describes it. [`resolve`] fetches it (or takes it from
//! the shared cache), checks it and returns the client it describes: a public
//! `ai-agent` client that may use only the code and refresh grants.
//!
//! Fetching a URL a caller chose is server-side request forgery waiting to
//! happen, so the fetch is narrow: `https` only, a real HTTP client (reqwest)
//! with short timeouts, no redirects, no proxy, a 64 KiB body limit, and
//! only public unicast addresses — checked on the addresses the connection
//! actually uses (a resolver that filters what DNS returns, so a name that
//! re-binds to 10.0.0.1 between two lookups gains nothing), and on IP
//! literals, which never reach a resolver. Loopback is allowed only with
//! `[registration] allow_loopback_client_ids = true` (tests).
//!
//! The cache is the `client_metadata_documents` table, so every instance
//! shares it, and it honours the document's `Cache-Control`. This module never
//! touches axum; errors are one sentence for the error page (SPEC §3).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{HeaderMap, ACCEPT, CACHE_CONTROL};
use serde_json::{Map, Value};
use url::{Host, Url};

use super::clients::check_redirect_uri;
use super::types::{AuthMethod, ClientOrigin, ClientType, GrantType};
use crate::state::AppState;
use crate::store::clients::Client;
use crate::store::metadata_documents::{self, CachedDocument};
use crate::store::StoreError;
use crate::text::escape_unsafe;

/// Largest document accepted.
pub const MAX_DOCUMENT_BYTES: usize = 64 * 1024;

/// Longest `client_id` URL accepted.
pub const MAX_URL_BYTES: usize = 2048;

/// How long a connection (DNS, TCP and TLS) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// How long the whole fetch, body included, may take.
const TOTAL_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a document without freshness information is cached.
pub const DEFAULT_CACHE_SECS: i64 = 300;

/// The longest a document is cached, whatever its `max-age`.
pub const MAX_CACHE_SECS: i64 = 86_400;

/// Longest `client_name` accepted, in characters (as at `/register`).
const MAX_CLIENT_NAME_CHARS: usize = 200;

/// Why a metadata-document client cannot be used. Each Display is one
/// sentence for the error page; text from the caller or the document in it
/// is escaped and bounded.
#[derive(Debug, thiserror::Error)]
pub enum CimdError {
    #[error("Client ID Metadata Documents are disabled on this server")]
    Disabled,
    #[error(
        "The client_id `{client_id}` is not a valid Client ID Metadata Document URL: it {why}"
    )]
    InvalidUrl {
        client_id: String,
        why: &'static str,
    },
    #[error(
        "The client's metadata document at {url} cannot be fetched: the address {addr} is not \
         allowed (private, loopback, link-local and reserved addresses are refused)"
    )]
    AddressNotAllowed { url: String, addr: IpAddr },
    #[error("The client's metadata document at {url} could not be fetched: {why}")]
    Fetch { url: String, why: String },
    #[error(
        "The client's metadata document at {url} answered with a redirect (HTTP {status}); \
         redirects are not followed"
    )]
    Redirect { url: String, status: u16 },
    #[error("The client's metadata document at {url} answered HTTP {status} instead of 200")]
    Status { url: String, status: u16 },
    #[error("The client's metadata document at {url} is larger than 64 KiB")]
    TooLarge { url: String },
    #[error("The client's metadata document at {url} is not valid JSON")]
    NotJson { url: String },
    #[error(
        "The client's metadata document at {url} names the client_id `{found}`, which is not \
         its own URL"
    )]
    ClientIdMismatch { url: String, found: String },
    #[error("The client's metadata document at {url} is not acceptable: {why}")]
    Invalid { url: String, why: String },
    #[error("The server could not read or store the client's metadata document; try again")]
    Store(#[from] StoreError),
}

/// Caller or document text for a message: escaped and bounded.
fn quote(text: &str) -> String {
    let escaped = escape_unsafe(text);
    let mut out: String = escaped.chars().take(200).collect();
    if escaped.chars().count() > 200 {
        out.push('…');
    }
    out
}

/// Checks `client_id` as a Client ID Metadata Document URL (draft §3): an
/// `https` URL with a host and a path (not just `/`), without a fragment or
/// user name and password, in the normalised form the URL parser writes (so
/// it has no dot segments and compares as a plain string: the document's
/// `client_id` must equal it exactly). A query and a port are allowed.
pub fn check_url(client_id: &str) -> Result<Url, &'static str> {
    if client_id.len() > MAX_URL_BYTES {
        return Err("is longer than 2048 bytes");
    }
    let url = Url::parse(client_id).map_err(|_| "is not a URL")?;
    if url.scheme() != "https" {
        return Err("does not use https");
    }
    if url.host().is_none() {
        return Err("has no host");
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("contains a user name or password");
    }
    if url.fragment().is_some() {
        return Err("contains a fragment");
    }
    if url.path() == "/" {
        return Err("has no path (e.g. https://app.example.com/client.json)");
    }
    if url.as_str() != client_id {
        return Err("is not in normalised form (dot segments, upper-case scheme or host, a default port or unencoded characters)");
    }
    Ok(url)
}

/// Whether `client_id` is a Client ID Metadata Document URL (draft §3; see
/// [`check_url`]). Whether such documents are enabled is checked by
/// [`resolve`].
pub fn is_metadata_url(client_id: &str) -> bool {
    check_url(client_id).is_ok()
}

/// The client described by the metadata document at `client_id`: from the
/// cache while it is fresh, otherwise fetched (and cached as its HTTP
/// caching allows). Refused when the documents are disabled, the URL or the
/// address is not allowed, the fetch fails or the document is not
/// acceptable.
pub async fn resolve(app: &AppState, client_id: &str, now: i64) -> Result<Client, CimdError> {
    if !app.config.registration.client_id_metadata_documents {
        return Err(CimdError::Disabled);
    }
    let url = check_url(client_id).map_err(|why| CimdError::InvalidUrl {
        client_id: quote(client_id),
        why,
    })?;
    if let Some(cached) = metadata_documents::get_fresh(&app.db, client_id, now).await? {
        match serde_json::from_str::<Value>(&cached.document) {
            Ok(doc) => return client_from_document(client_id, &url, doc, now),
            Err(e) => {
                tracing::warn!(error = %e, "a cached metadata document is corrupt; fetching it again")
            }
        }
    }
    let fetched = fetch(&url, app.config.registration.allow_loopback_client_ids).await?;
    let doc: Value = serde_json::from_slice(&fetched.body).map_err(|_| CimdError::NotJson {
        url: client_id.to_string(),
    })?;
    let text = doc.to_string();
    let client = client_from_document(client_id, &url, doc, now)?;
    // The cache only saves a fetch: failing to write it fails nothing.
    let stored = if fetched.cache_secs > 0 {
        metadata_documents::put(
            &app.db,
            &CachedDocument {
                url: client_id.to_string(),
                document: text,
                fetched_at: now,
                expires_at: now + fetched.cache_secs,
            },
        )
        .await
    } else {
        metadata_documents::delete(&app.db, client_id).await
    };
    if let Err(e) = stored {
        tracing::warn!(error = %e, "could not update the metadata document cache");
    }
    Ok(client)
}

/// Builds the client `doc` describes, after checking it (draft §4.1: its
/// `client_id` equals the URL; it holds no shared secret).
fn client_from_document(
    client_id: &str,
    url: &Url,
    doc: Value,
    now: i64,
) -> Result<Client, CimdError> {
    let invalid = |why: String| CimdError::Invalid {
        url: client_id.to_string(),
        why,
    };
    let Value::Object(map) = &doc else {
        return Err(invalid("it is not a JSON object".into()));
    };
    match map.get("client_id") {
        None => return Err(invalid("it has no `client_id`".into())),
        Some(Value::String(s)) if s == client_id => {}
        Some(Value::String(s)) => {
            return Err(CimdError::ClientIdMismatch {
                url: client_id.to_string(),
                found: quote(s),
            })
        }
        Some(_) => return Err(invalid("its `client_id` is not a string".into())),
    }
    // Draft §4.1: "client_secret and client_secret_expires_at MUST NOT be used".
    if let Some(key) = map.keys().find(|k| k.starts_with("client_secret")) {
        return Err(invalid(format!(
            "it holds `{}`, and a public document cannot hold a client secret",
            quote(key)
        )));
    }
    let redirect_uris = redirect_uris(map).map_err(invalid)?;
    let (method, jwks_uri) = auth_method(map).map_err(invalid)?;
    let name = match map.get("client_name") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => {
            let s = s.trim();
            if s.chars().count() > MAX_CLIENT_NAME_CHARS {
                return Err(invalid(format!(
                    "its `client_name` is longer than {MAX_CLIENT_NAME_CHARS} characters"
                )));
            }
            // The consent page shows it next to the host: nothing that
            // would hide or reorder text.
            if s.chars().any(crate::text::is_unsafe) {
                return Err(invalid(
                    "its `client_name` contains control or formatting characters".into(),
                ));
            }
            Some(s.to_string()).filter(|s| !s.is_empty())
        }
        Some(_) => return Err(invalid("its `client_name` is not a string".into())),
    };
    let name = name.unwrap_or_else(|| url.host_str().unwrap_or(client_id).to_string());
    Ok(Client {
        client_id: client_id.to_string(),
        name,
        client_type: ClientType::AiAgent,
        public: method == AuthMethod::None,
        secret_hash: None,
        origin: ClientOrigin::MetadataDocument,
        token_endpoint_auth_method: method,
        grant_types: vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
        redirect_uris,
        resources: Vec::new(),
        scopes: Vec::new(),
        owns_resources: Vec::new(),
        exchange_to: Vec::new(),
        dpop_bound_access_tokens: false,
        jwks_uri,
        jwks: None,
        metadata: Some(doc),
        created_at: now,
        updated_at: now,
    })
}

/// The document's `redirect_uris`: a non-empty array of strings, each a
/// redirect URI mandate accepts for any client.
fn redirect_uris(map: &Map<String, Value>) -> Result<Vec<String>, String> {
    let Some(value) = map.get("redirect_uris") else {
        return Err("it has no `redirect_uris`".into());
    };
    let Value::Array(items) = value else {
        return Err("its `redirect_uris` is not an array of strings".into());
    };
    if items.is_empty() {
        return Err("its `redirect_uris` is empty".into());
    }
    let mut uris: Vec<String> = Vec::with_capacity(items.len());
    for item in items {
        let Value::String(uri) = item else {
            return Err("its `redirect_uris` is not an array of strings".into());
        };
        check_redirect_uri(uri).map_err(|why| quote(&why))?;
        if !uris.contains(uri) {
            uris.push(uri.clone());
        }
    }
    Ok(uris)
}

/// `token_endpoint_auth_method`: `none` (the default), or `private_key_jwt`
/// with a `jwks_uri`. A method built on a shared secret cannot work: the
/// document is public (draft §4.1).
fn auth_method(map: &Map<String, Value>) -> Result<(AuthMethod, Option<String>), String> {
    let method = match map.get("token_endpoint_auth_method") {
        None | Some(Value::Null) => return Ok((AuthMethod::None, None)),
        Some(Value::String(m)) => m.as_str(),
        Some(_) => return Err("its `token_endpoint_auth_method` is not a string".into()),
    };
    match method {
        "none" => Ok((AuthMethod::None, None)),
        "private_key_jwt" => match map.get("jwks_uri") {
            Some(Value::String(u))
                if Url::parse(u).is_ok_and(|url| {
                    url.scheme() == "https" && url.host().is_some() && url.fragment().is_none()
                }) =>
            {
                Ok((AuthMethod::PrivateKeyJwt, Some(u.clone())))
            }
            _ => Err("`private_key_jwt` needs a `jwks_uri` that is an https URL".into()),
        },
        "client_secret_basic" | "client_secret_post" | "client_secret_jwt" => Err(format!(
            "its `token_endpoint_auth_method` `{method}` needs a shared secret, which a public document cannot hold"
        )),
        other => Err(format!(
            "its `token_endpoint_auth_method` `{}` is not supported (use none or private_key_jwt)",
            quote(other)
        )),
    }
}

/// A fetched document: its bytes, and how long it may be cached (0: not).
struct Fetched {
    body: Vec<u8>,
    cache_secs: i64,
}

/// GETs `url`: no redirects, no proxy, only allowed addresses, at most
/// [`MAX_DOCUMENT_BYTES`], within [`TOTAL_TIMEOUT`].
async fn fetch(url: &Url, allow_loopback: bool) -> Result<Fetched, CimdError> {
    let shown = || url.as_str().to_string();
    // An IP literal is connected to directly, without the resolver.
    let literal = match url.host() {
        Some(Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
        Some(Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
        _ => None,
    };
    if let Some(addr) = literal.filter(|ip| !is_allowed_address(*ip, allow_loopback)) {
        return Err(CimdError::AddressNotAllowed { url: shown(), addr });
    }
    // A client per fetch (cache misses only): it reads the trusted roots
    // (`SSL_CERT_FILE`, `SSL_CERT_DIR`) as they are now.
    let client = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(TOTAL_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .https_only(true)
        .dns_resolver(Arc::new(GuardedResolver { allow_loopback }))
        .user_agent(concat!("mandate/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| fetch_error(url, e))?;
    let mut resp = client
        .get(url.clone())
        .header(ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| fetch_error(url, e))?;
    let status = resp.status();
    if status.is_redirection() {
        return Err(CimdError::Redirect {
            url: shown(),
            status: status.as_u16(),
        });
    }
    if status != reqwest::StatusCode::OK {
        return Err(CimdError::Status {
            url: shown(),
            status: status.as_u16(),
        });
    }
    if resp
        .content_length()
        .is_some_and(|n| n > MAX_DOCUMENT_BYTES as u64)
    {
        return Err(CimdError::TooLarge { url: shown() });
    }
    let cache_secs = cache_secs(resp.headers());
    let mut body: Vec<u8> = Vec::new();
    // Streamed: a body without (or lying about) its length stops at the limit.
    while let Some(chunk) = resp.chunk().await.map_err(|e| fetch_error(url, e))? {
        if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
            return Err(CimdError::TooLarge { url: shown() });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Fetched { body, cache_secs })
}

/// A fetch that failed: a refused address (found in the error's causes), a
/// timeout, a connection or TLS failure, or another HTTP error. The detail
/// is logged; the message names the kind.
fn fetch_error(url: &Url, e: reqwest::Error) -> CimdError {
    let shown = url.as_str().to_string();
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    let mut root = String::new();
    while let Some(s) = source {
        if let Some(refused) = s.downcast_ref::<AddressRefused>() {
            return CimdError::AddressNotAllowed {
                url: shown,
                addr: refused.addr,
            };
        }
        root = s.to_string();
        source = s.source();
    }
    let (timeout, connect) = (e.is_timeout(), e.is_connect());
    tracing::info!(error = %e.without_url(), cause = %root, "metadata document fetch failed");
    let why = if timeout {
        format!(
            "it did not answer within {} seconds",
            TOTAL_TIMEOUT.as_secs()
        )
    } else if connect && root.contains("certificate") {
        "the host's TLS certificate could not be verified".to_string()
    } else if connect {
        "the connection to the host failed".to_string()
    } else {
        "the HTTP request failed".to_string()
    };
    CimdError::Fetch { url: shown, why }
}

/// How long a response may be cached, from its `Cache-Control` (RFC 9111
/// §5.2.2): `no-store` or `no-cache` → 0 (not cached; `no-cache` would need
/// revalidation every time), `max-age` → that many seconds within
/// `[0, MAX_CACHE_SECS]`, nothing said → [`DEFAULT_CACHE_SECS`]. An
/// unreadable header or `max-age` caches nothing.
pub fn cache_secs(headers: &HeaderMap) -> i64 {
    let mut max_age: Option<i64> = None;
    for value in headers.get_all(CACHE_CONTROL) {
        let Ok(text) = value.to_str() else {
            return 0;
        };
        for directive in text.split(',').map(str::trim) {
            let (name, arg) = match directive.split_once('=') {
                Some((n, a)) => (n.trim(), Some(a.trim().trim_matches('"'))),
                None => (directive, None),
            };
            if name.eq_ignore_ascii_case("no-store") || name.eq_ignore_ascii_case("no-cache") {
                return 0;
            }
            if name.eq_ignore_ascii_case("max-age") {
                match arg.and_then(|a| a.parse::<u64>().ok()) {
                    Some(secs) => {
                        let secs = secs.min(MAX_CACHE_SECS as u64) as i64;
                        max_age = Some(max_age.map_or(secs, |m| m.min(secs)));
                    }
                    None => return 0,
                }
            }
        }
    }
    max_age.unwrap_or(DEFAULT_CACHE_SECS)
}

/// Whether a metadata document may be fetched from `ip`: a public unicast
/// address, or loopback when `allow_loopback` (tests). IPv4-mapped IPv6
/// addresses are judged as the IPv4 address they carry.
pub fn is_allowed_address(ip: IpAddr, allow_loopback: bool) -> bool {
    let ip = ip.to_canonical();
    if allow_loopback && ip.is_loopback() {
        return true;
    }
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

/// IPv4 blocks that are not public unicast (IANA special-purpose registry,
/// RFC 6890 and successors), as (network, prefix length).
const V4_REFUSED: [(u32, u32); 15] = [
    (0x0000_0000, 8),  // 0.0.0.0/8 "this network", unspecified (RFC 791)
    (0x0A00_0000, 8),  // 10.0.0.0/8 private (RFC 1918)
    (0x6440_0000, 10), // 100.64.0.0/10 shared address space, CGNAT (RFC 6598)
    (0x7F00_0000, 8),  // 127.0.0.0/8 loopback
    (0xA9FE_0000, 16), // 169.254.0.0/16 link-local (RFC 3927)
    (0xAC10_0000, 12), // 172.16.0.0/12 private (RFC 1918)
    (0xC000_0000, 24), // 192.0.0.0/24 IETF protocol assignments (RFC 6890)
    (0xC000_0200, 24), // 192.0.2.0/24 TEST-NET-1 (RFC 5737)
    (0xC058_6300, 24), // 192.88.99.0/24 6to4 relay anycast (RFC 7526)
    (0xC0A8_0000, 16), // 192.168.0.0/16 private (RFC 1918)
    (0xC612_0000, 15), // 198.18.0.0/15 benchmarking (RFC 2544)
    (0xC633_6400, 24), // 198.51.100.0/24 TEST-NET-2 (RFC 5737)
    (0xCB00_7100, 24), // 203.0.113.0/24 TEST-NET-3 (RFC 5737)
    (0xE000_0000, 4),  // 224.0.0.0/4 multicast
    (0xF000_0000, 4),  // 240.0.0.0/4 reserved, and 255.255.255.255 broadcast
];

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let bits = u32::from(ip);
    !V4_REFUSED
        .iter()
        .any(|&(net, len)| bits & (u32::MAX << (32 - len)) == net)
}

/// IPv6 blocks inside global unicast (2000::/3) that are not public.
const V6_REFUSED: [(u128, u32); 4] = [
    (0x2001_0000 << 96, 23), // 2001::/23 IETF protocol assignments: Teredo, ORCHID, benchmarking
    (0x2001_0db8 << 96, 32), // 2001:db8::/32 documentation (RFC 3849)
    (0x2002 << 112, 16),     // 2002::/16 6to4 (RFC 7526): carries any IPv4 address
    (0x3fff << 112, 20),     // 3fff::/20 documentation (RFC 9637)
];

/// The NAT64 well-known prefix 64:ff9b::/96 (RFC 6052): reaches the IPv4
/// address in its last 32 bits.
const NAT64: (u128, u32) = (0x0064_ff9b << 96, 96);

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let bits = u128::from(ip);
    let within = |(net, len): (u128, u32)| bits & (u128::MAX << (128 - len)) == net;
    if within(NAT64) {
        return is_public_v4(Ipv4Addr::from(bits as u32));
    }
    // Everything outside 2000::/3 is loopback, unspecified, IPv4-compatible,
    // unique-local (fc00::/7), link-local (fe80::/10), multicast (ff00::/8),
    // discard-only (100::/64), local NAT64 (64:ff9b:1::/48) or unassigned.
    within((0x2000 << 112, 3)) && !V6_REFUSED.iter().any(|&block| within(block))
}

/// A name that resolved to no allowed address.
#[derive(Debug, thiserror::Error)]
#[error("{host} resolves to {addr}, an address that is not allowed")]
struct AddressRefused {
    host: String,
    addr: IpAddr,
}

/// Resolves names with the system resolver and keeps only the allowed
/// addresses: reqwest connects to exactly what this returns, so the check
/// holds for the address actually connected to, whatever DNS answers the
/// next time.
struct GuardedResolver {
    allow_loopback: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_loopback = self.allow_loopback;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let resolved = tokio::net::lookup_host((host.as_str(), 0)).await?;
            let mut refused: Option<IpAddr> = None;
            let allowed: Vec<SocketAddr> = resolved
                .filter(|a| {
                    let ok = is_allowed_address(a.ip(), allow_loopback);
                    if !ok {
                        refused.get_or_insert(a.ip());
                    }
                    ok
                })
                .collect();
            match (allowed.is_empty(), refused) {
                (true, Some(addr)) => Err(Box::new(AddressRefused { host, addr }) as _),
                (true, None) => Err(format!("{host} has no address").into()),
                (false, _) => Ok(Box::new(allowed.into_iter()) as Addrs),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(text: &str) -> bool {
        is_allowed_address(text.parse().unwrap(), false)
    }

    //  * private, shared (CGNAT), loopback and link-local IPv4
    //  * loopback, unique-local and link-local IPv6
    //  * an IPv4-mapped IPv6 address of a private IPv4 address
    //  * documentation, benchmarking, multicast, unspecified
    #[test]
    fn private_and_reserved_addresses_are_refused() {
        for ip in [
            "10.0.0.1",
            "10.255.255.255",
            "192.168.1.1",
            "172.16.0.1",
            "172.31.255.254",
            "127.0.0.1",
            "127.8.9.10",
            "100.64.0.1",
            "100.127.255.255",
            "169.254.169.254",
            "0.0.0.0",
            "192.0.2.1",
            "198.18.0.1",
            "203.0.113.9",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "febf::1",
            "ff02::1",
            "::ffff:10.0.0.1",
            "::ffff:127.0.0.1",
            "::10.0.0.1",
            "64:ff9b::10.0.0.1",
            "2001:db8::1",
            "2002:0a00:0001::1",
            "2001::1",
            "3fff::1",
            "100::1",
        ] {
            assert!(!allowed(ip), "{ip} must be refused");
        }
    }

    #[test]
    fn public_addresses_are_allowed() {
        for ip in [
            "93.184.216.34",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1",
            "2a00:1450:4001::1",
            "::ffff:93.184.216.34",
            "64:ff9b::93.184.216.34",
        ] {
            assert!(allowed(ip), "{ip} must be allowed");
        }
    }

    #[test]
    fn loopback_only_when_allowed() {
        for ip in ["127.0.0.1", "::1", "::ffff:127.0.0.1"] {
            assert!(is_allowed_address(ip.parse().unwrap(), true), "{ip}");
        }
        for ip in ["10.0.0.1", "192.168.0.1", "fe80::1", "169.254.169.254"] {
            assert!(!is_allowed_address(ip.parse().unwrap(), true), "{ip}");
        }
    }

    //  * http, no path, fragment, user info, dot segments, upper case
    #[test]
    fn metadata_urls_follow_the_draft() {
        assert!(is_metadata_url("https://app.example.com/client.json"));
        assert!(is_metadata_url("https://app.example.com:8443/c?v=1"));
        for bad in [
            "http://app.example.com/client.json",
            "https://app.example.com",
            "https://app.example.com/",
            "https://app.example.com/c#f",
            "https://user:pw@app.example.com/c",
            "https://app.example.com/a/../c",
            "https://app.example.com/./c",
            "HTTPS://app.example.com/c",
            "https://App.example.com/c",
            "https://app.example.com:443/c",
            "client-123",
            "",
        ] {
            assert!(!is_metadata_url(bad), "{bad}");
        }
    }

    #[test]
    fn cache_control_decides_the_lifetime() {
        let h = |v: &[&str]| {
            let mut m = HeaderMap::new();
            for x in v {
                m.append(CACHE_CONTROL, x.parse().unwrap());
            }
            m
        };
        assert_eq!(cache_secs(&h(&[])), DEFAULT_CACHE_SECS);
        assert_eq!(cache_secs(&h(&["public"])), DEFAULT_CACHE_SECS);
        assert_eq!(cache_secs(&h(&["max-age=60"])), 60);
        assert_eq!(cache_secs(&h(&["public, max-age=\"60\""])), 60);
        assert_eq!(cache_secs(&h(&["max-age=999999999"])), MAX_CACHE_SECS);
        assert_eq!(cache_secs(&h(&["max-age=0"])), 0);
        assert_eq!(cache_secs(&h(&["max-age=60, no-store"])), 0);
        assert_eq!(cache_secs(&h(&["No-Cache"])), 0);
        assert_eq!(cache_secs(&h(&["max-age=-1"])), 0);
        assert_eq!(cache_secs(&h(&["max-age=60", "max-age=30"])), 30);
    }

    fn doc(v: Value) -> Result<Client, CimdError> {
        let id = "https://app.example.com/client.json";
        client_from_document(id, &check_url(id).unwrap(), v, 1)
    }

    #[test]
    fn documents_describe_public_agents() {
        let c = doc(serde_json::json!({
            "client_id": "https://app.example.com/client.json",
            "redirect_uris": ["http://127.0.0.1:4000/cb"],
        }))
        .unwrap();
        assert_eq!(c.name, "app.example.com");
        assert!(c.public);
        assert_eq!(c.token_endpoint_auth_method, AuthMethod::None);
        assert_eq!(c.origin, ClientOrigin::MetadataDocument);
        assert_eq!(c.client_type, ClientType::AiAgent);
        let c = doc(serde_json::json!({
            "client_id": "https://app.example.com/client.json",
            "client_name": "Agent",
            "redirect_uris": ["https://app.example.com/cb"],
            "token_endpoint_auth_method": "private_key_jwt",
            "jwks_uri": "https://app.example.com/jwks.json",
        }))
        .unwrap();
        assert_eq!(c.name, "Agent");
        assert!(!c.public);
        assert_eq!(c.token_endpoint_auth_method, AuthMethod::PrivateKeyJwt);
        assert_eq!(
            c.jwks_uri.as_deref(),
            Some("https://app.example.com/jwks.json")
        );
    }

    //  * not an object, no client_id, another client_id
    //  * a secret, a secret-based auth method, private_key_jwt without keys
    //  * no or bad redirect_uris
    #[test]
    fn bad_documents_are_refused() {
        let id = "https://app.example.com/client.json";
        let cb = serde_json::json!(["https://app.example.com/cb"]);
        for v in [
            serde_json::json!([]),
            serde_json::json!({"redirect_uris": cb}),
            serde_json::json!({"client_id": "https://evil.example.com/c", "redirect_uris": cb}),
            serde_json::json!({"client_id": id}),
            serde_json::json!({"client_id": id, "redirect_uris": []}),
            serde_json::json!({"client_id": id, "redirect_uris": ["http://evil.example.com/cb"]}),
            serde_json::json!({"client_id": id, "redirect_uris": cb, "client_secret": "x"}),
            serde_json::json!({"client_id": id, "redirect_uris": cb, "token_endpoint_auth_method": "client_secret_basic"}),
            serde_json::json!({"client_id": id, "redirect_uris": cb, "token_endpoint_auth_method": "private_key_jwt"}),
            serde_json::json!({"client_id": id, "redirect_uris": cb, "client_name": 5}),
        ] {
            assert!(doc(v.clone()).is_err(), "{v}");
        }
        let e = doc(
            serde_json::json!({"client_id": "https://evil.example.com/c\n", "redirect_uris": cb}),
        )
        .unwrap_err();
        assert!(!e.to_string().contains('\n'), "{e}");
    }
}
