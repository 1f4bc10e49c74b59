//! Validation of client registrations (operator-created now; dynamic
//! registration reuses the same checks). Pure: no I/O.

use url::{Host, Url};

use secrecy::SecretString;

use super::types::{AuthMethod, ClientOrigin, ClientType, GrantType};
use crate::config::Config;
use crate::secret;
use crate::store::clients::Client;

/// What an operator asked for on `mandate client create`.
#[derive(Debug, Default, Clone)]
pub struct ClientSpec {
    pub client_id: Option<String>,
    pub name: String,
    pub public: bool,
    pub client_type: Option<String>,
    pub grants: Vec<String>,
    pub redirect_uris: Vec<String>,
    pub resources: Vec<String>,
    pub scopes: Vec<String>,
    pub owns_resources: Vec<String>,
    pub exchange_to: Vec<String>,
    pub dpop: bool,
    pub jwks_uri: Option<String>,
    pub jwks: Option<serde_json::Value>,
}

/// A registered redirect URI: absolute, no fragment, `https` or `http` on a
/// loopback host (RFC 9700 §2.1, RFC 8252 §7.3).
pub fn check_redirect_uri(uri: &str) -> Result<Url, String> {
    let url =
        Url::parse(uri).map_err(|_| format!("redirect URI `{uri}` is not an absolute URL"))?;
    if url.fragment().is_some() {
        return Err(format!("redirect URI `{uri}` must not contain a fragment"));
    }
    match url.scheme() {
        "https" => Ok(url),
        "http" if is_loopback(&url) => Ok(url),
        "http" => Err(format!(
            "redirect URI `{uri}`: http is only allowed on a loopback host (127.0.0.1, [::1], localhost)"
        )),
        s => Err(format!("redirect URI `{uri}`: scheme `{s}` is not allowed; use https")),
    }
}

pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Domain(d)) => d == "localhost",
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Builds an operator-created client from `spec`, checked against `config`.
/// Returns the client and, for a confidential one, its secret (shown once).
pub fn operator_client(
    config: &Config,
    spec: ClientSpec,
    now: i64,
) -> Result<(Client, Option<SecretString>), String> {
    if spec.name.trim().is_empty() {
        return Err("--name must not be empty".into());
    }
    let client_type = match spec.client_type.as_deref() {
        None => ClientType::AiAgent,
        Some(t) => ClientType::from_wire(t).ok_or_else(|| {
            format!("--client-type `{t}` is not one of ai-agent, service, web, native")
        })?,
    };
    let mut grant_types: Vec<GrantType> = Vec::new();
    for g in &spec.grants {
        let Some(grant) = GrantType::from_cli_name(g) else {
            return Err(format!(
                "--grant `{g}` is not one of authorization_code, refresh_token, client_credentials, token-exchange, ciba"
            ));
        };
        if !grant_types.contains(&grant) {
            grant_types.push(grant);
        }
    }
    if grant_types.is_empty() {
        grant_types = if spec.public {
            vec![GrantType::AuthorizationCode, GrantType::RefreshToken]
        } else {
            vec![GrantType::ClientCredentials]
        };
    }
    if spec.public {
        if let Some(g) = grant_types.iter().find(|g| g.needs_client_authentication()) {
            return Err(format!(
                "a public client cannot use `{g}`: it needs client authentication"
            ));
        }
    }
    for uri in &spec.redirect_uris {
        check_redirect_uri(uri)?;
    }
    if grant_types.contains(&GrantType::AuthorizationCode) && spec.redirect_uris.is_empty() {
        return Err("authorization_code needs at least one --redirect-uri".into());
    }
    for (flag, list) in [
        ("--resource", &spec.resources),
        ("--owns-resource", &spec.owns_resources),
        ("--exchange-to", &spec.exchange_to),
    ] {
        for r in list {
            if config.resource(r).is_none() {
                return Err(format!(
                    "{flag} `{r}` is not a resource in the configuration"
                ));
            }
        }
    }
    for s in &spec.scopes {
        let Some((owner, _)) = config.scope(s) else {
            return Err(format!("--scope `{s}` is not a scope in the configuration"));
        };
        if !spec.resources.contains(&owner.id) && !spec.exchange_to.contains(&owner.id) {
            return Err(format!(
                "--scope `{s}` belongs to `{}`, which is not among this client's --resource",
                owner.id
            ));
        }
    }
    if spec.jwks_uri.is_some() && spec.jwks.is_some() {
        return Err("use --jwks-uri or --jwks-file, not both".into());
    }
    if let Some(u) = &spec.jwks_uri {
        match Url::parse(u) {
            Ok(url) if url.scheme() == "https" || (url.scheme() == "http" && is_loopback(&url)) => {
            }
            _ => return Err(format!("--jwks-uri `{u}` must be an https URL")),
        }
    }
    if let Some(j) = &spec.jwks {
        if !j.get("keys").is_some_and(|k| k.is_array()) {
            return Err("--jwks-file must hold a JWK Set ({\"keys\": [...]})".into());
        }
    }
    let client_id = match spec.client_id {
        Some(id)
            if !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            id
        }
        Some(id) => {
            return Err(format!(
                "--client-id `{id}` must be 1 to 128 visible ASCII characters"
            ))
        }
        None => format!("mc_{}", &secret::random_token()[..22]),
    };
    let secret = (!spec.public).then(|| SecretString::from(secret::random_token()));
    let client = Client {
        client_id,
        name: spec.name,
        client_type,
        public: spec.public,
        secret_hash: secret
            .as_ref()
            .map(|s| secret::hash(secrecy::ExposeSecret::expose_secret(s))),
        origin: ClientOrigin::Operator,
        token_endpoint_auth_method: if spec.public {
            AuthMethod::None
        } else {
            AuthMethod::ClientSecretBasic
        },
        metadata: None,
        grant_types,
        redirect_uris: spec.redirect_uris,
        resources: spec.resources,
        scopes: spec.scopes,
        owns_resources: spec.owns_resources,
        exchange_to: spec.exchange_to,
        dpop_bound_access_tokens: spec.dpop,
        jwks_uri: spec.jwks_uri,
        jwks: spec.jwks,
        created_at: now,
        updated_at: now,
    };
    Ok((client, secret))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn config() -> Config {
        Config::from_toml(
            "[[resources]]\nid = \"https://api.example.com\"\n[[resources.scopes]]\nname = \"invoices:read\"",
            &BTreeMap::new(),
        )
        .unwrap()
    }

    #[test]
    fn redirect_uris_are_https_or_loopback() {
        assert!(check_redirect_uri("https://app.example.com/cb").is_ok());
        assert!(check_redirect_uri("http://127.0.0.1:8000/cb").is_ok());
        assert!(check_redirect_uri("http://[::1]/cb").is_ok());
        assert!(check_redirect_uri("http://localhost/cb").is_ok());
        assert!(check_redirect_uri("http://app.example.com/cb").is_err());
        assert!(check_redirect_uri("https://app.example.com/cb#x").is_err());
        assert!(check_redirect_uri("javascript:alert(1)").is_err());
        assert!(check_redirect_uri("/cb").is_err());
    }

    #[test]
    fn confidential_client_gets_a_256_bit_secret_stored_hashed() {
        let spec = ClientSpec {
            name: "a".into(),
            resources: vec!["https://api.example.com".into()],
            scopes: vec!["invoices:read".into()],
            ..Default::default()
        };
        let (c, s) = operator_client(&config(), spec, 1).unwrap();
        let s = s.unwrap();
        assert!(!format!("{s:?}").contains(secrecy::ExposeSecret::expose_secret(&s)));
        let s = secrecy::ExposeSecret::expose_secret(&s).to_string();
        assert!(s.len() >= 43);
        assert_eq!(c.secret_hash.as_deref(), Some(secret::hash(&s).as_str()));
        assert_eq!(c.grant_types, vec![GrantType::ClientCredentials]);
    }

    //  * unknown resource or scope
    //  * scope of a resource the client does not use
    //  * public client with client_credentials
    #[test]
    fn bad_specs_are_refused() {
        let base = ClientSpec {
            name: "a".into(),
            ..Default::default()
        };
        let cases = [
            ClientSpec {
                resources: vec!["https://nope".into()],
                ..base.clone()
            },
            ClientSpec {
                scopes: vec!["nope".into()],
                ..base.clone()
            },
            ClientSpec {
                scopes: vec!["invoices:read".into()],
                ..base.clone()
            },
            ClientSpec {
                public: true,
                grants: vec!["client_credentials".into()],
                ..base.clone()
            },
            ClientSpec {
                client_type: Some("robot".into()),
                ..base.clone()
            },
        ];
        for spec in cases {
            assert!(
                operator_client(&config(), spec.clone(), 1).is_err(),
                "{spec:?}"
            );
        }
    }
}
