//! Token lineage (SPEC §5 rule 7): every exchanged token records its parent
//! and its root grant. A token is live only if it, every token it descends
//! from, and its user grant are unrevoked — checked at every use (exchange,
//! introspection), on every instance, by walking the ancestors in the
//! database. That check at use is what makes revocation race-free: a
//! descendant minted in the same instant as its ancestor's revocation is
//! refused the moment it is presented, because its ancestor is revoked.

use super::access_token::{self, AccessClaims, TokenInvalid};
use crate::secret;
use crate::state::AppState;
use crate::store::grants::{self, Grant};
use crate::store::tokens::{self, TokenRow};
use crate::store::StoreError;

/// A live token: its row and ancestors (self first, root last) and its grant.
#[derive(Debug)]
pub struct Live {
    pub chain: Vec<TokenRow>,
    pub grant: Option<Grant>,
}

impl Live {
    /// The first token of the chain (a user-grant or client-credentials token).
    pub fn root(&self) -> Option<&TokenRow> {
        self.chain.last()
    }
}

/// Why a validly signed token is not live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Dead {
    #[error("this issuer has no record of the token")]
    Unknown,
    #[error("the token has been revoked")]
    Revoked,
    #[error("a token it was exchanged from has been revoked")]
    AncestorRevoked,
    #[error("the grant it belongs to has been revoked")]
    GrantRevoked,
}

/// An access token presented back to its issuer: its authentic claims, and
/// whether it is live.
#[derive(Debug)]
pub struct Presented {
    pub claims: AccessClaims,
    pub live: Result<Live, Dead>,
}

/// Reads an access token presented to this issuer (token exchange,
/// introspection) with one lineage query. A token whose SHA-256 equals the
/// one stored when it was issued is, byte for byte, the token this server
/// signed: its claims are read without an ECDSA verification (which costs
/// more than the query). Any other token — unknown, forged, or from before
/// token hashes were stored — is verified by signature as before, so the
/// answer is the same either way; only its cost differs.
pub async fn read(
    app: &AppState,
    token: &str,
    now: i64,
) -> Result<Result<Presented, TokenInvalid>, StoreError> {
    let peeked = access_token::unverified_claims(token);
    let looked_up = peeked.as_ref().map(|c| c.jti.clone());
    let mut chain = match &looked_up {
        Some(jti) => tokens::lineage(&app.db, jti).await?,
        None => Vec::new(),
    };
    let own = chain
        .first()
        .and_then(|row| row.token_hash.as_deref())
        .is_some_and(|stored| secret::verify_hash(token, stored));
    let claims = match peeked {
        Some(claims) if own => {
            if let Err(why) = access_token::check_claims(&claims, &app.config.issuer, now) {
                return Ok(Err(why));
            }
            claims
        }
        _ => match access_token::validate(&app.keys, &app.config.issuer, token, now) {
            Ok(claims) => claims,
            Err(why) => return Ok(Err(why)),
        },
    };
    if looked_up.as_deref() != Some(claims.jti.as_str()) {
        chain = tokens::lineage(&app.db, &claims.jti).await?;
    }
    let live = live(app, chain).await?;
    Ok(Ok(Presented { claims, live }))
}

/// Whether the token whose lineage is `chain` (self first) is live.
async fn live(app: &AppState, chain: Vec<TokenRow>) -> Result<Result<Live, Dead>, StoreError> {
    let Some(own) = chain.first() else {
        return Ok(Err(Dead::Unknown));
    };
    if own.revoked_at.is_some() {
        return Ok(Err(Dead::Revoked));
    }
    if chain.iter().any(|t| t.revoked_at.is_some()) {
        return Ok(Err(Dead::AncestorRevoked));
    }
    let grant = match &own.grant_id {
        Some(id) => match grants::get(&app.db, id).await? {
            Some(g) if g.revoked_at.is_none() => Some(g),
            _ => return Ok(Err(Dead::GrantRevoked)),
        },
        None => None,
    };
    Ok(Ok(Live { chain, grant }))
}
