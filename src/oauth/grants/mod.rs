//! The grants of the token endpoint.

pub mod client_credentials;

/// Grant type identifiers (RFC 6749, RFC 8693, CIBA).
pub const CLIENT_CREDENTIALS: &str = "client_credentials";
pub const AUTHORIZATION_CODE: &str = "authorization_code";
pub const REFRESH_TOKEN: &str = "refresh_token";
pub const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
pub const CIBA: &str = "urn:openid:params:grant-type:ciba";

/// The grant types this build implements; the metadata lists exactly these.
pub const IMPLEMENTED: &[&str] = &[CLIENT_CREDENTIALS];

/// What `--grant` accepts on `client create` (short names for the URNs).
pub fn from_cli_name(name: &str) -> Option<&'static str> {
    Some(match name {
        "authorization_code" => AUTHORIZATION_CODE,
        "refresh_token" => REFRESH_TOKEN,
        "client_credentials" => CLIENT_CREDENTIALS,
        "token-exchange" | TOKEN_EXCHANGE => TOKEN_EXCHANGE,
        "ciba" | CIBA => CIBA,
        _ => return None,
    })
}

/// A bounded label for metrics: a known grant type, `none` or `other`.
pub fn label(grant_type: Option<&str>) -> &'static str {
    match grant_type {
        None => "none",
        Some(g) => [
            CLIENT_CREDENTIALS,
            AUTHORIZATION_CODE,
            REFRESH_TOKEN,
            TOKEN_EXCHANGE,
            CIBA,
        ]
        .into_iter()
        .find(|k| *k == g)
        .unwrap_or("other"),
    }
}
