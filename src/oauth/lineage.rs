//! Token lineage (SPEC §5 rule 7): every exchanged token records its parent
//! and its root grant. A token is live only if it, every token it descends
//! from, and its user grant are unrevoked — checked at every use (exchange,
//! introspection), on every instance, by walking the ancestors in the
//! database. That check at use is what makes revocation race-free: a
//! descendant minted in the same instant as its ancestor's revocation is
//! refused the moment it is presented, because its ancestor is revoked.

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

/// Whether token `jti` is live, and its lineage when it is.
pub async fn check(app: &AppState, jti: &str) -> Result<Result<Live, Dead>, StoreError> {
    let chain = tokens::lineage(&app.db, jti).await?;
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
