//! Configuration: `mandate.toml` first, then `MANDATE_*` environment overrides,
//! validated once into typed fields (SPEC §1). A bad value is a [`ConfigError`]
//! whose Display names the field; the process exits non-zero with that one line.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::Url;

use crate::oauth::types::ClientType;

/// The ACR levels mandate knows, weakest first (SPEC §6).
pub const ACR_LEVELS: [&str; 3] = [
    "urn:mandate:acr:pwd",
    "urn:mandate:acr:mfa",
    "urn:mandate:acr:phr",
];

/// Hard ceiling for any access token lifetime (SPEC §3).
pub const MAX_ACCESS_TOKEN_TTL: u64 = 3600;

#[derive(Debug, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ConfigError {
    pub field: String,
    pub message: String,
}

fn err(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.into(),
        message: message.into(),
    }
}

/// The file as written; every field optional so that defaults and env overrides apply.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    issuer: Option<String>,
    bind: Option<String>,
    database_url: Option<String>,
    keys_dir: Option<PathBuf>,
    #[serde(default)]
    trusted_proxies: Vec<String>,
    #[serde(default)]
    tokens: RawTokens,
    #[serde(default)]
    registration: RawRegistration,
    #[serde(default)]
    keys: RawKeys,
    #[serde(default)]
    resources: Vec<RawResource>,
    #[serde(default)]
    authorization_details_types: Vec<RawDetailsType>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTokens {
    access_token_ttl_secs: Option<i64>,
    refresh_token_ttl_secs: Option<i64>,
    max_delegation_depth: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegistration {
    mode: Option<String>,
    default_client_type: Option<String>,
    client_id_metadata_documents: Option<bool>,
    allow_loopback_client_ids: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKeys {
    activation_delay_secs: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResource {
    id: String,
    name: Option<String>,
    access_token_ttl_secs: Option<i64>,
    #[serde(default)]
    scopes: Vec<RawScope>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScope {
    name: String,
    description: Option<String>,
    min_acr: Option<String>,
    max_auth_age_secs: Option<i64>,
    #[serde(default)]
    approval: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDetailsType {
    #[serde(rename = "type")]
    type_: String,
    description: Option<String>,
    #[serde(default)]
    approval: bool,
}

/// Validated configuration. Built once at start and shared read-only.
#[derive(Debug, Clone)]
pub struct Config {
    /// Issuer without a trailing slash, e.g. `http://127.0.0.1:8080`.
    pub issuer: String,
    pub bind: SocketAddr,
    pub database_url: DatabaseUrl,
    pub keys_dir: PathBuf,
    /// Peers whose `X-Forwarded-For` is believed (load balancers, reverse
    /// proxies); from any other peer the socket address is the client address.
    pub trusted_proxies: Vec<IpNet>,
    pub tokens: TokensConfig,
    pub registration: RegistrationConfig,
    pub keys: KeysConfig,
    pub resources: Vec<Resource>,
    pub authorization_details_types: Vec<DetailsType>,
}

#[derive(Debug, Clone)]
pub struct TokensConfig {
    pub access_token_ttl_secs: u64,
    pub refresh_token_ttl_secs: u64,
    pub max_delegation_depth: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistrationMode {
    Open,
    Token,
    Closed,
}

#[derive(Debug, Clone)]
pub struct RegistrationConfig {
    pub mode: RegistrationMode,
    pub default_client_type: ClientType,
    pub client_id_metadata_documents: bool,
    pub allow_loopback_client_ids: bool,
}

#[derive(Debug, Clone)]
pub struct KeysConfig {
    pub activation_delay_secs: u64,
}

#[derive(Debug, Clone)]
pub struct Resource {
    pub id: String,
    pub name: String,
    pub access_token_ttl_secs: u64,
    pub scopes: Vec<Scope>,
}

#[derive(Debug, Clone)]
pub struct Scope {
    pub name: String,
    pub description: String,
    pub min_acr: Option<String>,
    pub max_auth_age_secs: Option<u64>,
    pub approval: bool,
}

#[derive(Debug, Clone)]
pub struct DetailsType {
    pub type_: String,
    pub description: String,
    pub approval: bool,
}

/// The database URL. It may carry a password, so `Debug` shows it with the
/// password replaced; [`DatabaseUrl::expose`] is for connecting only.
#[derive(Clone)]
pub struct DatabaseUrl(SecretString);

impl DatabaseUrl {
    pub fn new(url: impl Into<String>) -> DatabaseUrl {
        DatabaseUrl(SecretString::from(url.into()))
    }

    /// The URL with its password, to open the connection.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// The URL without its password (for messages).
    pub fn redacted(&self) -> String {
        match Url::parse(self.expose()) {
            Ok(mut u) if u.password().is_some() => {
                let _ = u.set_password(Some("REDACTED"));
                u.to_string()
            }
            Ok(u) => u.to_string(),
            Err(_) => "(unparseable database URL)".into(),
        }
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("DatabaseUrl")
            .field(&self.redacted())
            .finish()
    }
}

impl Config {
    /// Loads `path` (when given or when `mandate.toml` exists in the working
    /// directory), applies `MANDATE_*` overrides from `env`, then validates.
    pub fn load(
        path: Option<&Path>,
        env: &BTreeMap<String, String>,
    ) -> Result<Config, ConfigError> {
        let raw = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| err("config", format!("cannot read {}: {e}", p.display())))?;
                parse_toml(&text)?
            }
            None if Path::new("mandate.toml").exists() => {
                let text = std::fs::read_to_string("mandate.toml")
                    .map_err(|e| err("config", format!("cannot read mandate.toml: {e}")))?;
                parse_toml(&text)?
            }
            None => RawConfig::default(),
        };
        Self::from_raw(raw, env)
    }

    /// Parses TOML text (no file access) and applies overrides; used by tests.
    pub fn from_toml(text: &str, env: &BTreeMap<String, String>) -> Result<Config, ConfigError> {
        Self::from_raw(parse_toml(text)?, env)
    }

    fn from_raw(raw: RawConfig, env: &BTreeMap<String, String>) -> Result<Config, ConfigError> {
        let pick = |name: &str, file: Option<String>, default: &str| -> String {
            env.get(name)
                .cloned()
                .or(file)
                .unwrap_or_else(|| default.to_string())
        };
        let issuer = validate_issuer(&pick("MANDATE_ISSUER", raw.issuer, "http://127.0.0.1:8080"))?;
        let bind_text = pick("MANDATE_BIND", raw.bind, "127.0.0.1:8080");
        let bind: SocketAddr = bind_text.parse().map_err(|_| {
            err(
                "bind",
                format!("`{bind_text}` is not an address like 127.0.0.1:8080"),
            )
        })?;
        let database_url = pick(
            "MANDATE_DATABASE_URL",
            raw.database_url,
            "sqlite://data/mandate.db",
        );
        if !(database_url.starts_with("sqlite:")
            || database_url.starts_with("postgres://")
            || database_url.starts_with("postgresql://"))
        {
            return Err(err(
                "database_url",
                "must start with sqlite:, postgres:// or postgresql://",
            ));
        }
        let database_url = DatabaseUrl::new(database_url);
        let trusted_proxies = raw
            .trusted_proxies
            .iter()
            .enumerate()
            .map(|(i, text)| {
                text.parse::<IpNet>()
                    .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        err(
                            format!("trusted_proxies[{i}]"),
                            format!("`{text}` is not an IP address or CIDR (e.g. 10.0.0.0/8)"),
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let keys_dir = env
            .get("MANDATE_KEYS_DIR")
            .map(PathBuf::from)
            .or(raw.keys_dir)
            .unwrap_or_else(|| PathBuf::from("keys"));
        if keys_dir.as_os_str().is_empty() {
            return Err(err("keys_dir", "must not be empty"));
        }

        let access_token_ttl_secs = ttl(
            "tokens.access_token_ttl_secs",
            raw.tokens.access_token_ttl_secs.unwrap_or(300),
            MAX_ACCESS_TOKEN_TTL,
        )?;
        let refresh_token_ttl_secs = ttl(
            "tokens.refresh_token_ttl_secs",
            raw.tokens.refresh_token_ttl_secs.unwrap_or(86_400),
            365 * 86_400,
        )?;
        let depth = raw.tokens.max_delegation_depth.unwrap_or(4);
        if !(1..=16).contains(&depth) {
            return Err(err(
                "tokens.max_delegation_depth",
                "must be between 1 and 16",
            ));
        }

        let mode = match raw.registration.mode.as_deref().unwrap_or("open") {
            "open" => RegistrationMode::Open,
            "token" => RegistrationMode::Token,
            "closed" => RegistrationMode::Closed,
            other => {
                return Err(err(
                    "registration.mode",
                    format!("`{other}` is not one of open, token, closed"),
                ))
            }
        };
        let default_client_type = match raw.registration.default_client_type.as_deref() {
            None => ClientType::AiAgent,
            Some(t) => ClientType::from_wire(t).ok_or_else(|| {
                err(
                    "registration.default_client_type",
                    format!("`{t}` is not one of ai-agent, service, web, native"),
                )
            })?,
        };

        let activation = raw.keys.activation_delay_secs.unwrap_or(600);
        if !(0..=7 * 86_400).contains(&activation) {
            return Err(err(
                "keys.activation_delay_secs",
                "must be between 0 and 604800",
            ));
        }

        let mut resources = Vec::new();
        let mut seen_ids = HashSet::new();
        let mut seen_scopes = HashSet::new();
        for (i, r) in raw.resources.into_iter().enumerate() {
            let at = format!("resources[{i}]");
            let parsed = Url::parse(&r.id).map_err(|_| {
                err(
                    format!("{at}.id"),
                    format!("`{}` is not an absolute URI", r.id),
                )
            })?;
            if parsed.fragment().is_some() {
                return Err(err(
                    format!("{at}.id"),
                    "must not contain a fragment (RFC 8707)",
                ));
            }
            if !seen_ids.insert(r.id.clone()) {
                return Err(err(
                    format!("{at}.id"),
                    format!("`{}` is listed twice", r.id),
                ));
            }
            let rttl = ttl(
                &format!("{at}.access_token_ttl_secs"),
                r.access_token_ttl_secs
                    .unwrap_or(access_token_ttl_secs as i64),
                MAX_ACCESS_TOKEN_TTL,
            )?;
            let mut scopes = Vec::new();
            for (j, s) in r.scopes.into_iter().enumerate() {
                let sat = format!("{at}.scopes[{j}]");
                if !valid_scope_token(&s.name) {
                    return Err(err(
                        format!("{sat}.name"),
                        format!("`{}` is not a valid scope token (RFC 6749 §3.3)", s.name),
                    ));
                }
                if !seen_scopes.insert(s.name.clone()) {
                    return Err(err(
                        format!("{sat}.name"),
                        format!(
                            "`{}` is used more than once; scope names are unique across the file",
                            s.name
                        ),
                    ));
                }
                if let Some(acr) = &s.min_acr {
                    if !ACR_LEVELS.contains(&acr.as_str()) {
                        return Err(err(
                            format!("{sat}.min_acr"),
                            format!("`{acr}` is not one of {}", ACR_LEVELS.join(", ")),
                        ));
                    }
                }
                let max_auth_age_secs = match s.max_auth_age_secs {
                    None => None,
                    Some(v) if v > 0 => Some(v as u64),
                    Some(_) => {
                        return Err(err(format!("{sat}.max_auth_age_secs"), "must be positive"))
                    }
                };
                scopes.push(Scope {
                    description: s.description.unwrap_or_else(|| s.name.clone()),
                    name: s.name,
                    min_acr: s.min_acr,
                    max_auth_age_secs,
                    approval: s.approval,
                });
            }
            resources.push(Resource {
                name: r.name.unwrap_or_else(|| r.id.clone()),
                id: r.id,
                access_token_ttl_secs: rttl,
                scopes,
            });
        }

        let mut types = Vec::new();
        let mut seen_types = HashSet::new();
        for (i, t) in raw.authorization_details_types.into_iter().enumerate() {
            if t.type_.is_empty() || !seen_types.insert(t.type_.clone()) {
                return Err(err(
                    format!("authorization_details_types[{i}].type"),
                    "must be non-empty and unique",
                ));
            }
            types.push(DetailsType {
                description: t.description.unwrap_or_else(|| t.type_.clone()),
                type_: t.type_,
                approval: t.approval,
            });
        }

        Ok(Config {
            issuer,
            bind,
            database_url,
            keys_dir,
            trusted_proxies,
            tokens: TokensConfig {
                access_token_ttl_secs,
                refresh_token_ttl_secs,
                max_delegation_depth: depth as u32,
            },
            registration: RegistrationConfig {
                mode,
                default_client_type,
                client_id_metadata_documents: raw
                    .registration
                    .client_id_metadata_documents
                    .unwrap_or(true),
                allow_loopback_client_ids: raw
                    .registration
                    .allow_loopback_client_ids
                    .unwrap_or(false),
            },
            keys: KeysConfig {
                activation_delay_secs: activation as u64,
            },
            resources,
            authorization_details_types: types,
        })
    }

    pub fn resource(&self, id: &str) -> Option<&Resource> {
        self.resources.iter().find(|r| r.id == id)
    }

    /// The resource that defines scope `name`, with the scope.
    pub fn scope(&self, name: &str) -> Option<(&Resource, &Scope)> {
        self.resources
            .iter()
            .find_map(|r| r.scopes.iter().find(|s| s.name == name).map(|s| (r, s)))
    }

    /// `issuer` + `path`, e.g. `endpoint("/token")`.
    pub fn endpoint(&self, path: &str) -> String {
        format!("{}{}", self.issuer, path)
    }

    /// The environment variables that override the file (SPEC §1).
    pub fn env_overrides() -> BTreeMap<String, String> {
        std::env::vars()
            .filter(|(k, _)| {
                matches!(
                    k.as_str(),
                    "MANDATE_ISSUER" | "MANDATE_BIND" | "MANDATE_DATABASE_URL" | "MANDATE_KEYS_DIR"
                )
            })
            .collect()
    }
}

/// Parses the file, naming the field of a value of the wrong type
/// (`tokens.max_delegation_depth: invalid type: string "4", expected i64
/// (line 3)`), not only its line.
fn parse_toml(text: &str) -> Result<RawConfig, ConfigError> {
    let de = toml::Deserializer::new(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let e = e.into_inner();
        // toml's message spans several lines with a caret diagram; keep the first.
        let msg = e
            .message()
            .lines()
            .next()
            .unwrap_or("invalid TOML")
            .to_string();
        let msg = match e.span() {
            Some(span) => {
                let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                format!("{msg} (line {line})")
            }
            None => msg,
        };
        // An empty path is the document itself (a syntax error, an unknown
        // top-level key).
        let field = if path.is_empty() || path == "." {
            "config".to_string()
        } else {
            path
        };
        err(field, msg)
    })
}

fn ttl(field: &str, value: i64, max: u64) -> Result<u64, ConfigError> {
    if value < 1 || value as u64 > max {
        return Err(err(field, format!("must be between 1 and {max}")));
    }
    Ok(value as u64)
}

/// RFC 6749 §3.3: `scope-token = 1*( %x21 / %x23-5B / %x5D-7E )`.
pub fn valid_scope_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
}

/// RFC 8414 §2: the issuer is an https URL without query or fragment. mandate
/// also refuses a path (it serves its endpoints at the root) and only accepts
/// `http://` for loopback hosts, for development.
fn validate_issuer(text: &str) -> Result<String, ConfigError> {
    let url = Url::parse(text).map_err(|_| err("issuer", format!("`{text}` is not a URL")))?;
    let loopback = match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        "http" => {
            return Err(err(
                "issuer",
                "http:// is only allowed for loopback hosts; use https://",
            ))
        }
        _ => return Err(err("issuer", "must be an https:// URL")),
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(err(
            "issuer",
            "must not have a query or fragment (RFC 8414 §2)",
        ));
    }
    if url.path() != "/" || !url.username().is_empty() || url.password().is_some() {
        return Err(err(
            "issuer",
            "must be scheme://host[:port] without a path or credentials",
        ));
    }
    Ok(text.trim_end_matches('/').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_apply() {
        let c = Config::from_toml("", &env(&[])).unwrap();
        assert_eq!(c.issuer, "http://127.0.0.1:8080");
        assert_eq!(c.bind.to_string(), "127.0.0.1:8080");
        assert_eq!(c.database_url.expose(), "sqlite://data/mandate.db");
        assert!(c.trusted_proxies.is_empty());
        assert_eq!(c.tokens.access_token_ttl_secs, 300);
        assert_eq!(c.keys.activation_delay_secs, 600);
    }

    #[test]
    fn env_overrides_file() {
        let c = Config::from_toml(
            "issuer = \"https://a.example\"",
            &env(&[("MANDATE_ISSUER", "https://b.example/")]),
        )
        .unwrap();
        assert_eq!(c.issuer, "https://b.example");
    }

    //  * http issuer on a public host
    //  * issuer with a path or query
    //  * ttl over the 3600 s ceiling
    //  * duplicate scope names across resources
    //  * unknown field
    #[test]
    fn bad_values_name_the_field() {
        let cases = [
            ("issuer = \"http://auth.example.com\"", "issuer"),
            ("issuer = \"https://auth.example.com/x?y=1\"", "issuer"),
            ("[tokens]\naccess_token_ttl_secs = 3601", "tokens.access_token_ttl_secs"),
            ("bind = \"nope\"", "bind"),
            ("[registration]\nmode = \"wide\"", "registration.mode"),
            (
                "[[resources]]\nid = \"https://a\"\n[[resources.scopes]]\nname = \"x\"\n[[resources]]\nid = \"https://b\"\n[[resources.scopes]]\nname = \"x\"",
                "resources[1].scopes[0].name",
            ),
            ("colour = 1", "colour"),
            ("[tokens]\nlifetime = 1", "tokens.lifetime"),
            ("issuer = ", "config"),
            ("[tokens]\nmax_delegation_depth = \"4\"", "tokens.max_delegation_depth"),
            ("[registration]\nmode = 3", "registration.mode"),
            (
                "[[resources]]\nid = \"https://a\"\naccess_token_ttl_secs = \"x\"",
                "resources[0].access_token_ttl_secs",
            ),
            ("trusted_proxies = [\"10.0.0.0/99\"]", "trusted_proxies[0]"),
            ("trusted_proxies = \"10.0.0.0/8\"", "trusted_proxies"),
        ];
        for (text, field) in cases {
            let e = Config::from_toml(text, &env(&[])).unwrap_err();
            assert_eq!(e.field, field, "{text}: {e}");
            assert!(!e.to_string().contains('\n'), "one line: {e}");
        }
    }

    #[test]
    fn trusted_proxies_take_cidrs_and_addresses() {
        let c = Config::from_toml(
            "trusted_proxies = [\"10.0.0.0/8\", \"192.0.2.1\", \"::1\"]",
            &env(&[]),
        )
        .unwrap();
        assert_eq!(c.trusted_proxies.len(), 3);
        assert!(c.trusted_proxies[1].contains(&"192.0.2.1".parse::<std::net::IpAddr>().unwrap()));
    }

    /// A database password never shows in `Debug` output.
    #[test]
    fn database_password_is_redacted_in_debug() {
        let c = Config::from_toml(
            "",
            &env(&[(
                "MANDATE_DATABASE_URL",
                "postgres://mandate:hunter2secret@db/mandate",
            )]),
        )
        .unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2secret"), "{shown}");
        assert!(
            shown.contains("postgres://mandate:REDACTED@db/mandate"),
            "{shown}"
        );
        assert_eq!(
            c.database_url.expose(),
            "postgres://mandate:hunter2secret@db/mandate"
        );
    }
}
