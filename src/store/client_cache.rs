//! Client rows this process has recently authenticated, so the token
//! endpoint's hot path need not read the `clients` table on every request.
//!
//! A cached row is a claim, never a fact: every decision made on one names
//! it in its audit [`Entry::clients`](super::audit::Entry), and the audit
//! commit compares it with the stored row *in the transaction that records
//! the decision* ([`super::clients::get_many`]). A client rotated, changed or
//! deleted by any process — another instance, `mandate client rotate-secret`
//! — is therefore refused from the first commit after the change, with no
//! bounded delay to document: the decision is retried on a fresh read.
//! Failed authentications always re-read the database, so the cache never
//! makes a wrong secret, a new secret or an unknown client look different.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use super::clients::Client;

/// Most rows kept; when full the cache starts over (clients are few, and a
/// row gets here only when a caller authenticates as it or presents a valid
/// token it is the root of).
pub const MAX_ENTRIES: usize = 4096;

#[derive(Default)]
pub struct ClientCache {
    rows: RwLock<HashMap<String, Arc<Client>>>,
}

impl ClientCache {
    pub fn get(&self, client_id: &str) -> Option<Arc<Client>> {
        let rows = self.rows.read().unwrap_or_else(|p| p.into_inner());
        rows.get(client_id).cloned()
    }

    /// Keeps `client` (as read from the database) and returns it shared.
    pub fn put(&self, client: Client) -> Arc<Client> {
        let client = Arc::new(client);
        let mut rows = self.rows.write().unwrap_or_else(|p| p.into_inner());
        if rows.len() >= MAX_ENTRIES && !rows.contains_key(&client.client_id) {
            rows.clear();
        }
        rows.insert(client.client_id.clone(), client.clone());
        client
    }

    pub fn forget(&self, client_id: &str) {
        let mut rows = self.rows.write().unwrap_or_else(|p| p.into_inner());
        rows.remove(client_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oauth::types::ClientOrigin;

    fn client(id: &str) -> Client {
        let mut c = crate::oauth::authorize::tests::client(ClientOrigin::Operator, false);
        c.client_id = id.into();
        c
    }

    /// Bounded: a new row beyond the bound starts the cache over; a row
    /// already there is replaced in place; `forget` removes one row.
    #[test]
    fn bounded_replace_and_forget() {
        let cache = ClientCache::default();
        for i in 0..MAX_ENTRIES {
            cache.put(client(&format!("c{i}")));
        }
        let mut newer = client("c7");
        newer.name = "renamed".into();
        cache.put(newer);
        assert_eq!(cache.get("c7").unwrap().name, "renamed");
        assert!(
            cache.get("c0").is_some(),
            "replacing a row cleared the cache"
        );
        cache.put(client("one-more"));
        assert!(cache.get("c0").is_none(), "the bound was not kept");
        assert!(cache.get("one-more").is_some());
        cache.forget("one-more");
        assert!(cache.get("one-more").is_none());
    }
}
