//! OAuth errors: one enum of RFC error codes (RFC 6749 §5.2, RFC 8707 §2,
//! RFC 8693, RFC 9449, CIBA). Rendering to HTTP happens once, in `http::error`.

use std::borrow::Cow;

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    InvalidRequest,
    InvalidClient,
    InvalidGrant,
    UnauthorizedClient,
    UnsupportedGrantType,
    UnsupportedResponseType,
    InvalidScope,
    InvalidTarget,
    AccessDenied,
    AuthorizationPending,
    SlowDown,
    ExpiredToken,
    InvalidDpopProof,
    UseDpopNonce,
    TemporarilyUnavailable,
    ServerError,
    /// OpenID Connect Core §3.1.2.6, used by `prompt=none` (SPEC §4).
    LoginRequired,
    ConsentRequired,
    InteractionRequired,
    /// RFC 7591 §3.2.2.
    InvalidRedirectUri,
    InvalidClientMetadata,
    /// RFC 6750 §3.1: a bad bearer token (initial access token at /register).
    InvalidToken,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidClient => "invalid_client",
            ErrorCode::InvalidGrant => "invalid_grant",
            ErrorCode::UnauthorizedClient => "unauthorized_client",
            ErrorCode::UnsupportedGrantType => "unsupported_grant_type",
            ErrorCode::UnsupportedResponseType => "unsupported_response_type",
            ErrorCode::InvalidScope => "invalid_scope",
            ErrorCode::InvalidTarget => "invalid_target",
            ErrorCode::AccessDenied => "access_denied",
            ErrorCode::AuthorizationPending => "authorization_pending",
            ErrorCode::SlowDown => "slow_down",
            ErrorCode::ExpiredToken => "expired_token",
            ErrorCode::InvalidDpopProof => "invalid_dpop_proof",
            ErrorCode::UseDpopNonce => "use_dpop_nonce",
            ErrorCode::TemporarilyUnavailable => "temporarily_unavailable",
            ErrorCode::ServerError => "server_error",
            ErrorCode::LoginRequired => "login_required",
            ErrorCode::ConsentRequired => "consent_required",
            ErrorCode::InteractionRequired => "interaction_required",
            ErrorCode::InvalidRedirectUri => "invalid_redirect_uri",
            ErrorCode::InvalidClientMetadata => "invalid_client_metadata",
            ErrorCode::InvalidToken => "invalid_token",
        }
    }
}

/// Why an HTTP status other than the code's default applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusHint {
    /// 413: the body is over the endpoint's size limit.
    PayloadTooLarge,
    /// 403: the request is understood and refused as such (registration
    /// closed, RFC 7591 §3).
    Forbidden,
}

#[derive(Debug, thiserror::Error)]
#[error("{}: {description}", code.as_str())]
pub struct OAuthError {
    pub code: ErrorCode,
    pub description: Cow<'static, str>,
    pub status_hint: Option<StatusHint>,
    /// Logged with the request id, never sent.
    #[source]
    pub cause: Option<anyhow::Error>,
}

macro_rules! constructors {
    ($($name:ident => $code:ident),* $(,)?) => {
        $(pub fn $name(description: impl Into<Cow<'static, str>>) -> OAuthError {
            OAuthError::new(ErrorCode::$code, description)
        })*
    };
}

impl OAuthError {
    /// An error with `description`. Descriptions often quote the caller's
    /// input; any control character in it is escaped here, once, so it never
    /// reaches the response, the audit `reason` or a log line raw.
    pub fn new(code: ErrorCode, description: impl Into<Cow<'static, str>>) -> OAuthError {
        OAuthError {
            code,
            description: crate::text::escape_cow(description.into()),
            status_hint: None,
            cause: None,
        }
    }

    constructors! {
        invalid_request => InvalidRequest,
        invalid_client => InvalidClient,
        invalid_grant => InvalidGrant,
        unauthorized_client => UnauthorizedClient,
        unsupported_grant_type => UnsupportedGrantType,
        invalid_scope => InvalidScope,
        invalid_target => InvalidTarget,
        access_denied => AccessDenied,
        temporarily_unavailable => TemporarilyUnavailable,
        unsupported_response_type => UnsupportedResponseType,
        login_required => LoginRequired,
        consent_required => ConsentRequired,
        interaction_required => InteractionRequired,
        invalid_redirect_uri => InvalidRedirectUri,
        invalid_client_metadata => InvalidClientMetadata,
        invalid_token => InvalidToken,
    }

    /// An internal failure; the detail goes to the log only.
    pub fn server_error(cause: impl Into<anyhow::Error>) -> OAuthError {
        OAuthError::new(
            ErrorCode::ServerError,
            "the server could not complete the request",
        )
        .caused_by(cause)
    }

    pub fn caused_by(mut self, cause: impl Into<anyhow::Error>) -> OAuthError {
        self.cause = Some(cause.into());
        self
    }

    pub fn with_status(mut self, hint: StatusHint) -> OAuthError {
        self.status_hint = Some(hint);
        self
    }
}

impl From<crate::store::StoreError> for OAuthError {
    /// A database (or audit writer) that cannot be reached is
    /// `temporarily_unavailable` (503, worth a retry); anything else, a
    /// permanent failure to write the audit trail included, is `server_error`
    /// (500). The cause is logged, never sent.
    fn from(e: crate::store::StoreError) -> OAuthError {
        if e.is_unavailable() {
            OAuthError::temporarily_unavailable(
                "the server is temporarily unable to complete the request",
            )
            .caused_by(e)
        } else {
            OAuthError::server_error(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Caller input quoted in a description never carries a raw newline.
    #[test]
    fn descriptions_escape_control_characters() {
        let e = OAuthError::invalid_scope(format!("unknown scope `{}`", "a\nforged log line"));
        assert_eq!(e.description, "unknown scope `a\\u{a}forged log line`");
        assert!(!e.to_string().contains('\n'));
    }
}
