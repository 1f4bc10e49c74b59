//! RFC 8693 §4.1 actor chains: `act` claims, the current actor outermost and
//! prior actors nested inside. Every entry names the actor's `client_type`
//! (SPEC §3). Pure: no I/O.

use serde::{Deserialize, Serialize};

use super::types::ClientType;

/// One actor of a chain and, nested, the actors before it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Actor {
    pub sub: String,
    pub client_type: ClientType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Box<Actor>>,
}

impl Actor {
    /// A chain of one actor.
    pub fn new(sub: impl Into<String>, client_type: ClientType) -> Actor {
        Actor {
            sub: sub.into(),
            client_type,
            act: None,
        }
    }

    /// `sub` as the current actor, nested over `prior` (the subject token's
    /// chain), as a token exchange builds it.
    pub fn over(sub: impl Into<String>, client_type: ClientType, prior: Option<&Actor>) -> Actor {
        Actor {
            act: prior.map(|p| Box::new(p.clone())),
            ..Actor::new(sub, client_type)
        }
    }

    /// How many actors the chain holds.
    pub fn depth(&self) -> usize {
        self.iter().count()
    }

    /// The actors, outermost (current) first.
    pub fn iter(&self) -> impl Iterator<Item = &Actor> {
        std::iter::successors(Some(self), |a| a.act.as_deref())
    }

    /// The actors' `sub`s, outermost first: the audit trail's `actor_chain`.
    pub fn subs(&self) -> Vec<String> {
        self.iter().map(|a| a.sub.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_puts_the_current_actor_outermost() {
        let agent = Actor::new("agent-a", ClientType::AiAgent);
        let mcp = Actor::over("mcp-server", ClientType::Service, Some(&agent));
        assert_eq!(
            serde_json::to_value(&mcp).unwrap(),
            serde_json::json!({"sub": "mcp-server", "client_type": "service",
                "act": {"sub": "agent-a", "client_type": "ai-agent"}})
        );
        assert_eq!(mcp.depth(), 2);
        assert_eq!(mcp.subs(), vec!["mcp-server", "agent-a"]);
        assert_eq!(Actor::over("x", ClientType::Web, None).depth(), 1);
    }

    //  * an entry without client_type
    //  * an unknown client_type
    //  * an unexpected member
    #[test]
    fn malformed_chains_do_not_deserialize() {
        for bad in [
            r#"{"sub":"a"}"#,
            r#"{"sub":"a","client_type":"robot"}"#,
            r#"{"sub":"a","client_type":"web","act":{"sub":"b"}}"#,
            r#"{"sub":"a","client_type":"web","extra":1}"#,
        ] {
            assert!(serde_json::from_str::<Actor>(bad).is_err(), "{bad}");
        }
        let ok: Actor = serde_json::from_str(
            r#"{"sub":"a","client_type":"web","act":{"sub":"b","client_type":"ai-agent"}}"#,
        )
        .unwrap();
        assert_eq!(ok.subs(), vec!["a", "b"]);
    }
}
