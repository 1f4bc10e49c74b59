//! Audience (RFC 8707) and scope decisions. Pure: no I/O, unit-tested.
//!
//! Every token has exactly one audience. Scopes only ever narrow: an unknown
//! scope, a scope of another resource, or one the client may not use is
//! `invalid_scope`, never silently dropped (SPEC §3).

use url::Url;

use super::error::OAuthError;
use crate::config::{Config, Resource, Scope};

/// Refuses a `resource` (or `audience`) holding whitespace or a control
/// character, without echoing it. URL parsers drop tabs and newlines (WHATWG
/// URL), so `https://api%0A` could otherwise parse as a valid URL.
pub fn check_resource_text(id: &str) -> Result<(), OAuthError> {
    if id
        .chars()
        .any(|c| c.is_whitespace() || crate::text::is_unsafe(c))
    {
        return Err(OAuthError::invalid_target(
            "`resource` must be an absolute URI without whitespace or control characters",
        ));
    }
    Ok(())
}

/// Picks the one audience of a token from the `resource` values of a request.
/// With none, a client permitted exactly one resource gets that one.
pub fn resolve_audience<'c>(
    config: &'c Config,
    requested: &[&str],
    permitted: &[String],
) -> Result<&'c Resource, OAuthError> {
    let id = match requested {
        [] => match permitted {
            [only] => only.as_str(),
            [] => {
                return Err(OAuthError::invalid_target(
                    "this client may not request tokens for any resource",
                ))
            }
            _ => {
                return Err(OAuthError::invalid_target(
                    "this client may use several resources; name the audience with `resource`",
                ))
            }
        },
        [one] => one,
        _ => {
            return Err(OAuthError::invalid_target(
                "a token has exactly one audience; send one `resource`",
            ))
        }
    };
    check_resource_text(id)?;
    // RFC 8707 §2: "MUST be an absolute URI ... MUST NOT include a fragment component."
    match Url::parse(id) {
        Ok(u) if u.fragment().is_none() => {}
        _ => {
            return Err(OAuthError::invalid_target(
                "`resource` must be an absolute URI without a fragment",
            ))
        }
    }
    let Some(resource) = config.resource(id) else {
        return Err(OAuthError::invalid_target(format!(
            "unknown resource `{id}`"
        )));
    };
    if !permitted.iter().any(|p| p == id) {
        return Err(OAuthError::invalid_target(format!(
            "this client may not request tokens for `{id}`"
        )));
    }
    Ok(resource)
}

/// The `exp` of a new token: `ttl_secs` from `now`, never beyond `ceiling`
/// (the `exp` of the token it derives from: an exchange never outlives its
/// subject token, SPEC §3).
pub fn expiry(now: i64, ttl_secs: u64, ceiling: Option<i64>) -> i64 {
    let own = now.saturating_add(ttl_secs.min(crate::config::MAX_ACCESS_TOKEN_TTL) as i64);
    match ceiling {
        Some(c) => own.min(c),
        None => own,
    }
}

/// Narrows `allowed` by a requested `scope`: every requested scope must be
/// in `allowed` (`invalid_scope` otherwise, never silently dropped); without
/// a request the result is `allowed`; an empty result is `invalid_scope`.
/// Refresh and token exchange narrow this way.
pub fn narrow(allowed: &[String], requested: Option<&str>) -> Result<Vec<String>, OAuthError> {
    let result = match requested {
        None => allowed.to_vec(),
        Some(r) => {
            let names = parse_scope(r)?;
            if let Some(extra) = names.iter().find(|n| !allowed.contains(n)) {
                return Err(OAuthError::invalid_scope(format!(
                    "scope `{extra}` is not among the scopes this grant allows"
                )));
            }
            names
        }
    };
    if result.is_empty() {
        return Err(OAuthError::invalid_scope("no scope remains for this token"));
    }
    Ok(result)
}

/// The scopes both lists hold, in the order of `a`.
pub fn intersect(a: &[String], b: &[String]) -> Vec<String> {
    a.iter().filter(|s| b.contains(s)).cloned().collect()
}

/// Splits a `scope` parameter (RFC 6749 §3.3) into distinct scope tokens.
pub fn parse_scope(value: &str) -> Result<Vec<String>, OAuthError> {
    let mut out: Vec<String> = Vec::new();
    for s in value.split(' ') {
        if s.is_empty() {
            continue;
        }
        if !crate::config::valid_scope_token(s) {
            return Err(OAuthError::invalid_scope(
                "`scope` holds a malformed scope token",
            ));
        }
        if !out.iter().any(|o| o == s) {
            out.push(s.to_string());
        }
    }
    Ok(out)
}

/// The scopes of a client-credentials token for `audience`: no user is
/// present, so step-up scopes (`min_acr`, `max_auth_age_secs`) and
/// approval-only scopes can never be met and are refused.
pub fn client_credentials_scopes(
    config: &Config,
    audience: &Resource,
    requested: Option<&str>,
    registered: &[String],
) -> Result<Vec<String>, OAuthError> {
    let usable = |s: &Scope| !s.approval && s.min_acr.is_none() && s.max_auth_age_secs.is_none();
    let Some(requested) = requested else {
        let default: Vec<String> = audience
            .scopes
            .iter()
            .filter(|s| usable(s) && registered.contains(&s.name))
            .map(|s| s.name.clone())
            .collect();
        if default.is_empty() {
            return Err(OAuthError::invalid_scope(format!(
                "no scope requested and this client has no default scope for `{}`",
                audience.id
            )));
        }
        return Ok(default);
    };
    let names = parse_scope(requested)?;
    if names.is_empty() {
        return Err(OAuthError::invalid_scope("`scope` is empty"));
    }
    for name in &names {
        let Some((owner, scope)) = config.scope(name) else {
            return Err(OAuthError::invalid_scope(format!("unknown scope `{name}`")));
        };
        if owner.id != audience.id {
            return Err(OAuthError::invalid_scope(format!(
                "scope `{name}` belongs to `{}`, not to the audience `{}`",
                owner.id, audience.id
            )));
        }
        if scope.approval {
            return Err(OAuthError::invalid_scope(format!(
                "scope `{name}` needs a human approval; request it with CIBA (/bc-authorize)"
            )));
        }
        if let Some(acr) = &scope.min_acr {
            return Err(OAuthError::invalid_scope(format!(
                "scope `{name}` needs a user authenticated at `{acr}`; client credentials carry no user"
            )));
        }
        if scope.max_auth_age_secs.is_some() {
            return Err(OAuthError::invalid_scope(format!(
                "scope `{name}` needs a recent user authentication; client credentials carry no user"
            )));
        }
        if !registered.contains(name) {
            return Err(OAuthError::invalid_scope(format!(
                "this client is not registered for scope `{name}`"
            )));
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::oauth::error::ErrorCode;

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

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn audience_defaults_only_for_a_single_resource() {
        let c = config();
        let one = v(&["https://api.example.com"]);
        assert_eq!(
            resolve_audience(&c, &[], &one).unwrap().id,
            "https://api.example.com"
        );
        let two = v(&["https://api.example.com", "https://files.example.com"]);
        assert_eq!(
            resolve_audience(&c, &[], &two).unwrap_err().code,
            ErrorCode::InvalidTarget
        );
        assert_eq!(
            resolve_audience(&c, &["https://files.example.com"], &two)
                .unwrap()
                .id,
            "https://files.example.com"
        );
    }

    //  * unknown resource
    //  * known but not permitted for the client
    //  * relative URI, or with a fragment
    //  * two audiences for one token
    #[test]
    fn audience_errors_are_invalid_target() {
        let c = config();
        let one = v(&["https://api.example.com"]);
        for req in [
            vec!["https://nope.example.com"],
            vec!["https://files.example.com"],
            vec!["api"],
            vec!["https://api.example.com#x"],
            vec!["https://api.example.com", "https://files.example.com"],
            vec!["https://api.example.com\nevil"],
            vec!["https://api.example.com\t"],
            vec![" https://api.example.com"],
        ] {
            assert_eq!(
                resolve_audience(&c, &req, &one).unwrap_err().code,
                ErrorCode::InvalidTarget,
                "{req:?}"
            );
        }
    }

    //  * unknown scope
    //  * scope of another resource (audience confusion)
    //  * approval-only scope
    //  * step-up scope without a user
    //  * scope the client is not registered for
    #[test]
    fn scope_escalation_is_invalid_scope() {
        let c = config();
        let aud = c.resource("https://api.example.com").unwrap();
        let reg = v(&[
            "invoices:read",
            "invoices:write",
            "payments:send",
            "files:read",
        ]);
        for req in [
            "admin",
            "files:read",
            "payments:send",
            "invoices:write",
            "invoices:read bad\"scope",
        ] {
            let e = client_credentials_scopes(&c, aud, Some(req), &reg).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidScope, "{req}");
        }
        let e = client_credentials_scopes(&c, aud, Some("invoices:read"), &[]).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidScope);
    }

    #[test]
    fn default_scope_is_the_usable_registered_ones() {
        let c = config();
        let aud = c.resource("https://api.example.com").unwrap();
        let reg = v(&["invoices:read", "invoices:write", "payments:send"]);
        assert_eq!(
            client_credentials_scopes(&c, aud, None, &reg).unwrap(),
            v(&["invoices:read"])
        );
        assert_eq!(
            client_credentials_scopes(&c, aud, Some("invoices:read invoices:read"), &reg).unwrap(),
            v(&["invoices:read"])
        );
    }
}

#[cfg(test)]
mod decisions {
    use super::*;
    use crate::oauth::error::ErrorCode;

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    //  * the resource's ttl applies
    //  * a parent token's exp caps it
    //  * the 3600 s ceiling holds whatever the ttl says
    #[test]
    fn expiry_is_capped() {
        assert_eq!(expiry(1000, 300, None), 1300);
        assert_eq!(expiry(1000, 300, Some(1100)), 1100);
        assert_eq!(expiry(1000, 300, Some(5000)), 1300);
        assert_eq!(expiry(1000, 99_999, None), 1000 + 3600);
    }

    //  * widening is refused, not dropped
    //  * the default is everything allowed
    //  * nothing left is invalid_scope
    #[test]
    fn scopes_only_narrow() {
        let allowed = v(&["invoices:read", "files:read"]);
        assert_eq!(narrow(&allowed, None).unwrap(), allowed);
        assert_eq!(
            narrow(&allowed, Some("files:read")).unwrap(),
            v(&["files:read"])
        );
        let e = narrow(&allowed, Some("files:read invoices:write")).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidScope);
        assert_eq!(narrow(&[], None).unwrap_err().code, ErrorCode::InvalidScope);
        assert_eq!(
            intersect(&allowed, &v(&["files:read", "x"])),
            v(&["files:read"])
        );
    }
}
