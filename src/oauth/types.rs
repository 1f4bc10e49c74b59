//! The protocol's closed sets as types: grant types (RFC 6749, RFC 8693,
//! CIBA), client types (SPEC §3) and token types. Each wire name is written
//! once, in the `match` of its `as_str`; parsing goes through the same list.

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! wire_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident => $wire:literal,)* }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vm])* $variant,)*
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];

            /// The wire name.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $wire,)*
                }
            }

            /// The value named `wire`, if there is one.
            pub fn from_wire(wire: &str) -> Option<$name> {
                $name::ALL.iter().copied().find(|v| v.as_str() == wire)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<$name, D::Error> {
                let wire = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                $name::from_wire(&wire).ok_or_else(|| {
                    serde::de::Error::custom(format!(
                        concat!("unknown ", stringify!($name), " `{}`"),
                        wire
                    ))
                })
            }
        }
    };
}

wire_enum! {
    /// A grant of the token endpoint.
    GrantType {
        AuthorizationCode => "authorization_code",
        RefreshToken => "refresh_token",
        ClientCredentials => "client_credentials",
        TokenExchange => "urn:ietf:params:oauth:grant-type:token-exchange",
        Ciba => "urn:openid:params:grant-type:ciba",
    }
}

impl GrantType {
    /// The grants this build implements; the metadata lists exactly these.
    pub const IMPLEMENTED: &'static [GrantType] = &[
        GrantType::AuthorizationCode,
        GrantType::RefreshToken,
        GrantType::ClientCredentials,
        GrantType::TokenExchange,
    ];

    /// What `--grant` accepts on `client create`: the wire names, and short
    /// names for the URNs.
    pub fn from_cli_name(name: &str) -> Option<GrantType> {
        match name {
            "token-exchange" => Some(GrantType::TokenExchange),
            "ciba" => Some(GrantType::Ciba),
            _ => GrantType::from_wire(name),
        }
    }

    /// Grants that need an authenticated (confidential) client.
    pub fn needs_client_authentication(self) -> bool {
        matches!(
            self,
            GrantType::ClientCredentials | GrantType::TokenExchange | GrantType::Ciba
        )
    }

    /// A bounded metrics label: a known grant type, `none` or `other`.
    pub fn label(wire: Option<&str>) -> &'static str {
        match wire {
            None => "none",
            Some(w) => GrantType::from_wire(w).map_or("other", GrantType::as_str),
        }
    }
}

wire_enum! {
    /// The kind of client holding a token (SPEC §3), carried as `client_type`
    /// in tokens and in every entry of an `act` chain.
    ClientType {
        AiAgent => "ai-agent",
        Service => "service",
        Web => "web",
        Native => "native",
    }
}

wire_enum! {
    /// How a client came to exist; decides which grants it may ever use (SPEC §3).
    ClientOrigin {
        /// `mandate client create`: any grant its registration names.
        Operator => "operator",
        /// RFC 7591 `POST /register`: code and refresh only.
        Dynamic => "dynamic",
        /// A Client ID Metadata Document URL: code and refresh only, public.
        MetadataDocument => "metadata_document",
    }
}

wire_enum! {
    /// `token_endpoint_auth_method` (RFC 7591 §2, RFC 7523).
    AuthMethod {
        ClientSecretBasic => "client_secret_basic",
        ClientSecretPost => "client_secret_post",
        PrivateKeyJwt => "private_key_jwt",
        /// A public client: `client_id` alone, PKCE mandatory.
        None => "none",
    }
}

wire_enum! {
    /// `token_type` of a token response (RFC 6749 §7.1, RFC 9449 §5).
    TokenType {
        Bearer => "Bearer",
        DPoP => "DPoP",
    }
}

wire_enum! {
    /// RFC 8693 §3 token type identifiers (`subject_token_type`,
    /// `issued_token_type`).
    TokenTypeUri {
        AccessToken => "urn:ietf:params:oauth:token-type:access_token",
        RefreshToken => "urn:ietf:params:oauth:token-type:refresh_token",
        Jwt => "urn:ietf:params:oauth:token-type:jwt",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_round_trip() {
        for g in GrantType::ALL {
            assert_eq!(GrantType::from_wire(g.as_str()), Some(*g));
        }
        for c in ClientType::ALL {
            let json = serde_json::to_string(c).unwrap();
            assert_eq!(serde_json::from_str::<ClientType>(&json).unwrap(), *c);
        }
        assert_eq!(
            GrantType::from_cli_name("token-exchange"),
            Some(GrantType::TokenExchange)
        );
        assert_eq!(GrantType::from_cli_name("password"), None);
        assert!(serde_json::from_str::<ClientType>("\"robot\"").is_err());
    }

    /// A caller's made-up grant type never becomes a new metrics series.
    #[test]
    fn metric_labels_are_bounded() {
        assert_eq!(GrantType::label(None), "none");
        assert_eq!(
            GrantType::label(Some("client_credentials")),
            "client_credentials"
        );
        assert_eq!(GrantType::label(Some("urn:x:made-up")), "other");
    }
}
