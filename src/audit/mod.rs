//! Audit events and their SHA-256 hash chain (SPEC §8).
//!
//! Every event carries every field (`null` where it does not apply). The hash of
//! an event covers its canonical JSON (all fields but `hash`, `prev_hash`
//! included), so changing, removing or reordering any stored event breaks the
//! chain at that event. Secrets and raw tokens never enter an event.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The `prev_hash` of the first event.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Success,
    Failure,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
        }
    }
}

/// Declares [`EventKind`] with its wire name, once: both directions of the
/// mapping come from this one list.
macro_rules! event_kinds {
    ($($(#[$m:meta])* $variant:ident => $name:literal,)*) => {
        /// What an audit event records (SPEC §8, plus operator actions).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum EventKind {
            $($(#[$m])* $variant,)*
        }

        impl EventKind {
            pub const ALL: &'static [EventKind] = &[$(EventKind::$variant,)*];

            /// The name stored and shown, e.g. `token.issued`.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(EventKind::$variant => $name,)*
                }
            }

            pub fn parse(name: &str) -> Option<EventKind> {
                match name {
                    $($name => Some(EventKind::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

event_kinds! {
    Login => "login",
    Mfa => "mfa",
    Consent => "consent",
    TokenIssued => "token.issued",
    TokenExchanged => "token.exchanged",
    TokenDenied => "token.denied",
    TokenRefreshed => "token.refreshed",
    TokenRevoked => "token.revoked",
    /// An introspection that answered `active: false` for a reason worth
    /// recording (revoked, foreign, not the caller's to see).
    TokenIntrospected => "token.introspected",
    GrantRevoked => "grant.revoked",
    ApprovalRequested => "approval.requested",
    ApprovalApproved => "approval.approved",
    ApprovalDenied => "approval.denied",
    ClientRegistered => "client.registered",
    /// An operator created a client (`mandate client create`).
    ClientCreated => "client.created",
    ClientDeleted => "client.deleted",
    ClientSecretRotated => "client.secret_rotated",
    UserCreated => "user.created",
    UserDisabled => "user.disabled",
    /// An operator added a signing key (`mandate keys rotate`).
    KeyRotated => "key.rotated",
    /// An operator created an initial access token (`mandate registration-token create`).
    RegistrationTokenCreated => "registration_token.created",
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for EventKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for EventKind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<EventKind, D::Error> {
        let name = String::deserialize(d)?;
        EventKind::parse(&name)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown audit event `{name}`")))
    }
}

/// One security decision. Field order is the canonical order for hashing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub id: String,
    pub time: String,
    /// `time` in unix seconds, for queries; not part of the wire form or the hash.
    #[serde(skip)]
    pub at: i64,
    pub event: EventKind,
    pub outcome: Outcome,
    pub reason: Option<String>,
    pub user: Option<String>,
    pub client_id: Option<String>,
    pub client_type: Option<String>,
    /// Actor `sub`s, outermost (current) actor first.
    pub actor_chain: Option<Vec<String>>,
    pub audience: Option<String>,
    pub scope_requested: Option<String>,
    pub scope_granted: Option<String>,
    pub jti: Option<String>,
    pub parent_jti: Option<String>,
    pub acr: Option<String>,
    pub ip: Option<String>,
    pub request_id: Option<String>,
    pub prev_hash: String,
    pub hash: String,
}

/// The hashed view: everything but `hash`, in the same order.
#[derive(Serialize)]
struct Hashed<'a> {
    id: &'a str,
    time: &'a str,
    event: EventKind,
    outcome: Outcome,
    reason: &'a Option<String>,
    user: &'a Option<String>,
    client_id: &'a Option<String>,
    client_type: &'a Option<String>,
    actor_chain: &'a Option<Vec<String>>,
    audience: &'a Option<String>,
    scope_requested: &'a Option<String>,
    scope_granted: &'a Option<String>,
    jti: &'a Option<String>,
    parent_jti: &'a Option<String>,
    acr: &'a Option<String>,
    ip: &'a Option<String>,
    request_id: &'a Option<String>,
    prev_hash: &'a str,
}

impl AuditEvent {
    /// A new event of kind `event` at unix time `now`; chain fields are filled
    /// in by the writer.
    pub fn new(event: EventKind, outcome: Outcome, now: i64) -> AuditEvent {
        AuditEvent {
            // Time-ordered, so the unique index on `id` grows at its end.
            id: uuid::Uuid::now_v7().to_string(),
            time: rfc3339(now),
            at: now,
            event,
            outcome,
            reason: None,
            user: None,
            client_id: None,
            client_type: None,
            actor_chain: None,
            audience: None,
            scope_requested: None,
            scope_granted: None,
            jti: None,
            parent_jti: None,
            acr: None,
            ip: None,
            request_id: None,
            prev_hash: String::new(),
            hash: String::new(),
        }
    }

    /// SHA-256 (hex) over the canonical JSON of every field but `hash`.
    pub fn compute_hash(&self) -> String {
        let body = Hashed {
            id: &self.id,
            time: &self.time,
            event: self.event,
            outcome: self.outcome,
            reason: &self.reason,
            user: &self.user,
            client_id: &self.client_id,
            client_type: &self.client_type,
            actor_chain: &self.actor_chain,
            audience: &self.audience,
            scope_requested: &self.scope_requested,
            scope_granted: &self.scope_granted,
            jti: &self.jti,
            parent_jti: &self.parent_jti,
            acr: &self.acr,
            ip: &self.ip,
            request_id: &self.request_id,
            prev_hash: &self.prev_hash,
        };
        // Serialising a struct of strings and options cannot fail.
        let json = serde_json::to_vec(&body).unwrap_or_default();
        hex(&Sha256::digest(&json))
    }

    /// Links this event after `prev_hash` and seals it.
    pub fn seal(&mut self, prev_hash: &str) {
        self.prev_hash = prev_hash.to_string();
        self.hash = self.compute_hash();
    }
}

/// Where a chain first breaks, if it does.
#[derive(Debug, PartialEq, Eq)]
pub struct ChainBreak {
    pub index: usize,
    pub id: String,
    pub why: &'static str,
}

/// Verifies that `events` (in chain order, from the first event ever) form an
/// unbroken chain from [`GENESIS`] to `head`.
pub fn verify_chain<'a>(
    events: impl IntoIterator<Item = &'a AuditEvent>,
    head: &str,
) -> Result<usize, ChainBreak> {
    let mut prev = GENESIS.to_string();
    let mut n = 0;
    let mut last_id = String::from("(none)");
    for (i, e) in events.into_iter().enumerate() {
        if e.prev_hash != prev {
            return Err(ChainBreak {
                index: i,
                id: e.id.clone(),
                why: "prev_hash does not match the previous event",
            });
        }
        if e.compute_hash() != e.hash {
            return Err(ChainBreak {
                index: i,
                id: e.id.clone(),
                why: "hash does not match the event's content",
            });
        }
        prev = e.hash.clone();
        last_id = e.id.clone();
        n = i + 1;
    }
    if prev != head {
        return Err(ChainBreak {
            index: n,
            id: last_id,
            why: "the chain ends before the recorded head (events removed)",
        });
    }
    Ok(n)
}

/// RFC 3339 UTC time for unix seconds.
pub fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| unix.to_string())
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: usize) -> Vec<AuditEvent> {
        let mut prev = GENESIS.to_string();
        (0..n)
            .map(|i| {
                let mut e = AuditEvent::new(
                    EventKind::TokenIssued,
                    Outcome::Success,
                    1_700_000_000 + i as i64,
                );
                e.client_id = Some(format!("c{i}"));
                e.seal(&prev);
                prev = e.hash.clone();
                e
            })
            .collect()
    }

    #[test]
    fn intact_chain_verifies() {
        let c = chain(3);
        assert_eq!(verify_chain(&c, &c[2].hash), Ok(3));
        assert_eq!(verify_chain(&[], GENESIS), Ok(0));
    }

    //  * a changed field
    //  * a removed event in the middle
    //  * a removed last event (head no longer matches)
    #[test]
    fn tampering_is_detected() {
        let mut c = chain(3);
        let head = c[2].hash.clone();
        c[1].scope_granted = Some("admin".into());
        assert_eq!(verify_chain(&c, &head).unwrap_err().index, 1);

        let mut c = chain(3);
        c.remove(1);
        assert_eq!(verify_chain(&c, &head).unwrap_err().index, 1);

        let mut c = chain(3);
        c.pop();
        assert_eq!(verify_chain(&c, &head).unwrap_err().index, 2);
    }

    #[test]
    fn event_kinds_round_trip() {
        for k in EventKind::ALL {
            assert_eq!(EventKind::parse(k.as_str()), Some(*k));
            let json = serde_json::to_string(k).unwrap();
            assert_eq!(json, format!("\"{}\"", k.as_str()));
        }
        assert_eq!(EventKind::parse("token.stolen"), None);
    }

    #[test]
    fn time_is_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    }
}
